"""MAML on the MeLU-style network, twice: vectorised with ``torch.func`` (``maml``, in
``vectorised``) and with learn2learn's per-task ``clone()``/``adapt()`` loop (``maml-l2l``, in
``reference``).

Both minimise the same objective: for each task, ``inner_steps`` gradient steps of size
``inner_lr`` on the masked mean squared error of its support ratings, starting from the shared
parameters, then the mean squared error on its query ratings; the meta-loss is the mean over
tasks. ``adapt = "decision"`` adapts only the decision layers (MeLU's local update) while the
embeddings are learned by the outer loop alone; ``adapt = "all"`` adapts every parameter.
``first_order`` drops the second-order terms (the inner gradients are treated as constants).

``cuda_graph`` replays ``maml``'s meta-step from a CUDA graph; ``throughput`` and ``command``
provide ``bench perf``, which measures one meta-step of both implementations side by side.
"""

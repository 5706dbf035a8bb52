"""``bench perf``: meta-training throughput of ``maml-l2l`` against ``maml``.

Declared as a ``bench.commands`` entry point; building its parser imports nothing heavy.
"""

from __future__ import annotations

import argparse

from bench.commands import Command, positive_int
from bench.errors import BenchError


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] [cpu]")
    parser.add_argument(
        "--batch-sizes",
        type=_csv_ints,
        default=(32, 256, 1024),
        help="tasks per meta-batch, comma-separated [32,256,1024]",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=5,
        help="rounds of measurement; each times one step of both implementations [5]",
    )
    parser.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--no-cuda-graph", action="store_true", help="on CUDA, run maml's steps eagerly"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.devices import resolve_device
    from learners.maml.throughput import measure, render

    try:
        device = resolve_device(args.device)
    except BenchError as exc:
        raise BenchError(f"--device: {exc}") from exc
    if args.threads:
        torch.set_num_threads(args.threads)
    graph = not args.no_cuda_graph
    rows = measure(args.batch_sizes, device, rounds=args.repeats, cuda_graph=graph)
    print(render(rows, device, cuda_graph=graph))
    return 0


PERF = Command(
    help="meta-training throughput of maml-l2l against maml, with its spread",
    add_arguments=add_arguments,
    run=run,
)

"""The built-in learners, one module per family (``maml`` and ``network`` are packages).

They are declared as ``bench.learners`` entry points in ``pyproject.toml``, exactly as a
third-party package declares its own; this package never registers anything on import.
"""

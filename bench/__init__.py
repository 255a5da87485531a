"""Benchmarks that print tables and write JSON to ``outputs/bench/`` (not tests; nothing here asserts).

Run everything with ``python -m bench.run_all [--quick]`` or one module at a time (``python -m bench.train_step``,
``bench.pipeline``, ``bench.data_pipeline``, ``bench.inference``, ``bench.int8``). Results and how to read them:
``bench/RESULTS.md``.

Importing the package runs the project's start-up module first (zlib before Paddle, thread and MKL settings),
so every ``python -m bench.X`` is safe whatever it imports next.
"""
from datasets import runtime as _runtime  # noqa: F401  -- must run before paddle is imported

"""``python -m training.det +experiment=NAME [overrides]`` — fine-tune / evaluate the DB text detector.

``--cfg job`` prints the resolved config; ``mode=eval`` prints the metric JSON as the last stdout line.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: `paddle.distributed.launch` takes a .py path
    import sys
    from pathlib import Path

    _here = Path(__file__).resolve().parent  # training/ must not shadow top-level modules; the project root must
    sys.path[:] = [str(_here.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _here]

import training  # noqa: F401  -- start-up fix before paddle

from omegaconf import DictConfig

from training.cli import run_entry


def task(cfg: DictConfig) -> dict | None:
    """The det run: config ``conf/det.yaml`` (``task: det``) through the one runner."""
    from training.runner import main as run_task

    return run_task(cfg)  # the result dict: its eval metric is what sweepers optimise


def main() -> None:
    run_entry("det", task)


if __name__ == "__main__":
    main()

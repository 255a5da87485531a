"""``python -m training.rec +experiment=NAME [overrides]`` — fine-tune / evaluate the SVTR+CTC text recogniser.

``--cfg job`` prints the resolved config; ``mode=eval`` prints the metric JSON as the last stdout line.
"""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

from omegaconf import DictConfig

from training.cli import run_entry


def task(cfg: DictConfig) -> None:
    from training.rec_task import run

    run(cfg)


def main() -> None:
    run_entry("rec", task)


if __name__ == "__main__":
    main()

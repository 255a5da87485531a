"""What the user sees while training: a tqdm bar (or log lines when stderr is not a terminal) and a
one-screen rich summary at the end.

Why the reader-vs-compute split: on these CPUs a step is seconds to tens of seconds, and the first question
about a slow run is whether the data pipeline or the model is the bottleneck.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["ProgressReporter", "print_summary"]

log = logging.getLogger("training.trainer")


class ProgressReporter:
    """Progress over optimizer steps; a bar on a terminal, an INFO log line every ``log_every`` steps else."""

    def __init__(self, total_steps: int, initial_step: int, enabled: bool, bar: bool, log_every: int) -> None:
        self.enabled = enabled
        self.log_every = max(1, int(log_every))
        self.total = int(total_steps)
        self._bar = None
        if enabled and bar and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=initial_step, desc="train", unit="step",
                             dynamic_ncols=True, mininterval=0.5, file=sys.stderr)

    def update(self, step: int, epoch: int, loss: float, lr: float, samples_per_s: float, data_frac: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix(
                {"ep": epoch, "loss": f"{loss:.4g}", "lr": f"{lr:.2e}", "smp/s": f"{samples_per_s:.2f}",
                 "data": f"{100 * data_frac:.0f}%"},
                refresh=True,
            )
        elif step % self.log_every == 0 or step == self.total:
            log.info("step %d/%d epoch %d loss %.4g lr %.2e %.2f samples/s data %.0f%% of step time",
                     step, self.total, epoch, loss, lr, samples_per_s, 100 * data_frac)

    def message(self, text: str) -> None:
        """A line that does not break the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            log.info(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def print_summary(summary: Mapping[str, Any], title: str = "training summary") -> None:
    """A two-column rich table on stderr (stdout stays free for machine-readable lines)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False, expand=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in summary.items():
        if value is None or key == "history":
            continue
        table.add_row(key, _fmt(value))
    Console(stderr=True).print(table)

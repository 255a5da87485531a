"""What the user sees while training: a tqdm bar on a terminal, else one INFO line on stderr every
``log_every`` steps (step, loss, lr, samples/s, ETA) and one per eval; a one-screen rich summary at the end.

Why the lines have their own stderr handler: importing ``paddle.distributed`` sets the *root* logger to
WARNING (``paddle/distributed/utils/log_utils.py``), which silently swallowed every INFO line of a run
without a terminal (CI, ``nohup``), and Hydra's default console handler writes to stdout, which carries the
result JSON. So progress goes to a logger of its own (``training.progress``) that writes to stderr at INFO and
does not propagate.

Why the reader-vs-compute split: on these CPUs a step is seconds to tens of seconds, and the first question
about a slow run is whether the data pipeline or the model is the bottleneck.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["ProgressReporter", "print_summary", "progress_logger", "format_eta"]

#: seconds after which a line is printed even if ``log_every`` steps have not passed yet
MAX_SILENCE_S = 120.0


class _StderrHandler(logging.StreamHandler):
    """A stream handler bound to whatever ``sys.stderr`` is at emit time (pytest and redirections swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def progress_logger() -> logging.Logger:
    """``training.progress``: INFO and above to stderr, whatever the root logger's level and handlers."""
    logger = logging.getLogger("training.progress")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def format_eta(seconds: float) -> str:
    """``3725`` → ``1:02:05``; unknown (nan/inf/negative) → ``?``."""
    if not (seconds >= 0) or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressReporter:
    """Progress over optimizer steps; a bar on a terminal, an INFO line every ``log_every`` steps (and at
    least every ``MAX_SILENCE_S`` seconds) on stderr otherwise."""

    def __init__(self, total_steps: int, initial_step: int, enabled: bool, bar: bool, log_every: int) -> None:
        self.enabled = enabled
        self.log_every = max(1, int(log_every))
        self.total = int(total_steps)
        self._start_step = int(initial_step)
        self._t0 = self._last_line = time.monotonic()
        self._bar = None
        self._log = progress_logger()
        if enabled and bar and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=initial_step, desc="train", unit="step",
                             dynamic_ncols=True, mininterval=0.5, file=sys.stderr)

    def eta_s(self, step: int) -> float:
        """Seconds left at the mean pace of this process's steps so far."""
        done = step - self._start_step
        if done <= 0:
            return float("nan")
        return (time.monotonic() - self._t0) / done * max(0, self.total - step)

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
            return
        now = time.monotonic()
        if step % self.log_every == 0 or step == self.total or now - self._last_line >= MAX_SILENCE_S:
            self._last_line = now
            self._log.info("step %d/%d epoch %d loss %.4g lr %.2e %.2f samples/s data %.0f%% ETA %s",
                           step, self.total, epoch, loss, lr, samples_per_s, 100 * data_frac,
                           format_eta(self.eta_s(step)))

    def message(self, text: str) -> None:
        """A line that does not break the bar (eval results, early stopping)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            self._log.info(text)

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

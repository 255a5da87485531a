"""The run's own record of training: train-log points, eval results, ``metrics.json`` and a curve image.

Why here and not only in MLflow: the run directory must be complete on its own (tracking may be down), and
a resumed run must continue the same history, so the history lives in memory, is saved in every checkpoint
and is written to disk atomically.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["History", "write_json_atomic"]


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the file stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def write_json_atomic(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write JSON via a temp file + fsync + ``os.replace`` so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_clean(data), fh, indent=1, ensure_ascii=False, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the run dir is meant to be shared/read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _split_rates(rows: list[dict[str, float]]) -> tuple[list[str], list[str]]:
    """Eval keys whose values all lie in [0, 1] (precision, hmean, acc…) vs the rest (counts such as num_gt)."""
    keys = [k for k in rows[-1] if k != "step"]
    rates = [k for k in keys if not k.startswith("num") and all(
        0.0 <= r.get(k, 0.0) <= 1.0 for r in rows if isinstance(r.get(k), float) and math.isfinite(r[k]))]
    return rates, [k for k in keys if k not in rates]


class History:
    """Train-log points (averaged over ``log_every`` steps) and eval results, keyed by optimizer step."""

    def __init__(self) -> None:
        self.train: list[dict[str, float]] = []
        self.eval: list[dict[str, float]] = []

    def add_train(self, step: int, values: Mapping[str, float]) -> None:
        self.train.append({"step": int(step), **{k: float(v) for k, v in values.items()}})

    def add_eval(self, step: int, metrics: Mapping[str, Any]) -> None:
        row: dict[str, Any] = {"step": int(step)}
        for k, v in metrics.items():
            try:
                row[k] = float(v)
            except (TypeError, ValueError):
                continue  # non-scalar extras (e.g. per-class tables) are the caller's to store
        self.eval.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"train": [dict(r) for r in self.train], "eval": [dict(r) for r in self.eval]}

    def set_state_dict(self, state: Mapping[str, Any]) -> None:
        self.train = [dict(r) for r in state.get("train", [])]
        self.eval = [dict(r) for r in state.get("eval", [])]

    def plot(self, path: str | os.PathLike, main_metric: str | None = None) -> Path | None:
        """Loss (and lr) over steps on the left, eval metrics on the right; None when there is nothing to draw.

        Uses the non-interactive Agg canvas directly, so it works headless and never touches pyplot state."""
        if not self.train and not self.eval:
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax_loss = fig.add_subplot(1, 2, 1)
        if self.train:
            steps = [r["step"] for r in self.train]
            loss_keys = [k for k in self.train[-1] if k.startswith("loss")]
            for key in loss_keys:
                ax_loss.plot(steps, [r.get(key, math.nan) for r in self.train], label=key)
            ax_loss.set_xlabel("step")
            ax_loss.set_ylabel("loss")
            ax_loss.set_yscale("log" if all(r.get("loss", 1.0) > 0 for r in self.train) else "linear")
            if "lr" in self.train[-1]:
                ax_lr = ax_loss.twinx()
                ax_lr.plot(steps, [r.get("lr", math.nan) for r in self.train], color="grey", ls=":", label="lr")
                ax_lr.set_ylabel("lr", color="grey")
            ax_loss.legend(loc="upper right", fontsize=8)
        ax_loss.set_title("training loss")
        ax_eval = fig.add_subplot(1, 2, 2)
        if self.eval:
            steps = [r["step"] for r in self.eval]
            rates, counts = _split_rates(self.eval)
            for key in rates:
                lw = 2.5 if key == main_metric else 1.2
                ax_eval.plot(steps, [r.get(key, math.nan) for r in self.eval], marker="o", ms=3, lw=lw, label=key)
            ax_eval.set_xlabel("step")
            ax_eval.set_ylabel("rate")
            if rates:
                ax_eval.set_ylim(-0.02, 1.02)
                ax_eval.legend(loc="lower right", fontsize=8)
            if counts:  # num_gt/num_det on their own axis: on the rate axis they flattened hmean to a line at 0
                ax_count = ax_eval.twinx()
                for i, key in enumerate(counts):
                    ax_count.plot(steps, [r.get(key, math.nan) for r in self.eval], ls="--", lw=0.8,
                                  color=str(0.35 + 0.15 * (i % 4)), label=key)
                ax_count.set_ylabel("count", color="grey")
                ax_count.legend(loc="upper left", fontsize=7)
        ax_eval.set_title(f"eval (main: {main_metric})" if main_metric else "eval")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path

"""What of ``checkpoints/best`` goes to the MLflow run (``trainer.log_checkpoint``).

Why not the whole directory: the optimizer slots (AdamW: two per weight) and trainer state triple the size
and are only needed to resume, which happens from the run dir. Two 4-step det runs grew ``mlruns/`` by 46 MB
that way. ``weights`` (the default) uploads ``model.pdparams`` + ``state.json`` (+ ``charset.json`` when
present): exactly what ``python -m export … --checkpoint`` and ``model.pretrained=`` read.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from training.trainer.checkpoint import MODEL_FILE, STATE_FILE

__all__ = ["WEIGHTS_FILES", "log_best_checkpoint"]

log = logging.getLogger("training.trainer")

#: the files ``log_checkpoint: weights`` uploads (those present)
WEIGHTS_FILES = (MODEL_FILE, STATE_FILE, "charset.json")


def log_best_checkpoint(tracker, best: Path, mode: str, artifact_path: str = "checkpoints/best") -> None:
    """Upload ``best`` to ``tracker`` as ``mode`` says (``weights`` | ``full`` | ``none``); no-op without one."""
    best = Path(best)
    if mode == "none" or not (best / STATE_FILE).is_file():
        return
    if mode == "full":
        tracker.log_artifacts(best, artifact_path)
        return
    # links, not copies: the upload reads the same bytes and the run dir gains nothing
    with tempfile.TemporaryDirectory(prefix="ocr-best-weights-") as tmp:
        for name in WEIGHTS_FILES:
            if (best / name).is_file():
                os.symlink((best / name).resolve(), Path(tmp) / name)
        tracker.log_artifacts(tmp, artifact_path)

"""Free space and a write probe for directories a command is about to fill.

Paddle-free on purpose: ``training.cli`` probes Hydra's run directory before any heavy import, and the trainer
probes ``checkpoints/`` before loading a model, so both share these two helpers (one place for "can I write
here, and how much room is left" in the one-line errors).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["free_space", "probe_write"]


def free_space(path: Path) -> str:
    """Free space on the disk holding ``path`` (or its nearest existing parent), human readable."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = float(shutil.disk_usage(probe).free)
    except OSError:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown"  # pragma: no cover


def probe_write(directory: Path) -> None:
    """Create ``directory`` and write (then remove) a 4 KiB probe file in it.

    Why 4 KiB rather than an empty file: a full disk still lets you create an empty file, so only a write that
    allocates a block tells. Raises the ``OSError`` for the caller to turn into its own one-line message."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-") as handle:
        handle.write(b"\0" * 4096)
        handle.flush()

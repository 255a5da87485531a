"""Progress notes of long registry operations, on stderr.

Why a module of its own: stdout carries a command's results (tables, the JSON last line), stderr its one-line
error; a promotion that downloads two models and times them, or waits for another promotion's lock, must
still say what it is waiting for. Notes start with ``…`` so a reader can tell them from the error line. They
are printed when stderr is a terminal, or with ``OCR_REGISTRY_PROGRESS=1`` (CI logs); otherwise a script
reading stderr sees only the one line of an error or refusal. ``OCR_REGISTRY_PROGRESS=0`` silences them.

Usage::

    notice("measuring latency of ocr-det v2 and v1 side by side (7 interleaved rounds)")
"""
from __future__ import annotations

import os
import sys

__all__ = ["notice", "NOTICE_PREFIX"]

NOTICE_PREFIX = "… "


def notice(message: str) -> None:
    """One progress line on stderr (flushed at once, so it shows before the wait it announces)."""
    setting = os.environ.get("OCR_REGISTRY_PROGRESS", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return
    if setting in ("1", "true", "yes", "on") or sys.stderr.isatty():
        print(f"{NOTICE_PREFIX}{message}", file=sys.stderr, flush=True)

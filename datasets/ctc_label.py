"""CTC label encoding for the recogniser, with the length check CTC actually needs.

Why the check: CTC aligns a label of n characters to T output steps (T = input width // 8 for PP-OCR rec
models: 320 px → 40 steps), and two equal neighbours ("11", "00") can only be told apart with a blank step
between them. So a label needs ``n + repeats`` steps; a longer one gives an infinite CTC loss (Paddle then
returns inf/NaN or silently zeroes it). PaddleOCR only caps the character count (``max_text_length``), which
misses both the repeats and narrow inputs. Here a label that cannot fit raises :class:`CTCLabelError` (or is
flagged by :func:`ctc_fits`) before training starts.

Usage::

    label = encode_ctc("¥1,100.00", Charset.default(), max_len=25, time_steps=time_steps_for(320))
    label.ids      # int64[max_len], 0-padded (0 is also the blank: the loss reads ``length``)
    label.length   # 9
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from datasets.charset import Charset

__all__ = ["CTCLabel", "CTCLabelError", "CTC_STRIDE", "time_steps_for", "ctc_min_steps", "ctc_fits", "encode_ctc"]

#: horizontal downsampling of PP-OCR rec backbones (48×320 input → 40 time steps)
CTC_STRIDE = 8


class CTCLabelError(ValueError):
    """A transcription that cannot be a CTC target (unknown characters, empty, or too long)."""


@dataclass(frozen=True)
class CTCLabel:
    """Encoded label: ``ids`` (int64, padded with 0 to ``max_len``) and the true ``length``."""

    ids: np.ndarray
    length: int


def time_steps_for(width: int, stride: int = CTC_STRIDE) -> int:
    """CTC output steps of a rec model for an input ``width`` (PP-OCR: ``width // 8``)."""
    return int(width) // int(stride)


def ctc_min_steps(ids: Sequence[int]) -> int:
    """Minimum steps CTC needs for ``ids``: one per label plus a blank between each equal neighbour pair."""
    ids = list(ids)
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


def ctc_fits(text: str, charset: Charset, time_steps: int, max_len: int | None = None) -> bool:
    """True when ``text`` is non-empty, fully in ``charset``, at most ``max_len`` characters and needs no
    more than ``time_steps`` CTC steps."""
    if not text or not all(charset.contains(ch) for ch in text):
        return False
    ids = charset.encode(text)
    return (max_len is None or len(ids) <= max_len) and ctc_min_steps(ids) <= time_steps


def encode_ctc(text: str, charset: Charset, max_len: int = 25, time_steps: int | None = None,
               skip_unknown: bool = False) -> CTCLabel:
    """Encode ``text`` for CTC; raises :class:`CTCLabelError` with the reason when it cannot be a target.

    ``skip_unknown`` drops characters outside the charset (PaddleOCR's behaviour) instead of raising; the
    remaining label must still be non-empty."""
    unknown = list(dict.fromkeys(ch for ch in text if not charset.contains(ch)))
    if unknown and not skip_unknown:
        shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in unknown[:10])
        raise CTCLabelError(f"label {text!r} has characters outside the charset: {shown}")
    ids = charset.encode(text, skip_unknown=True)
    if not ids:
        raise CTCLabelError(f"label {text!r} is empty after encoding")
    if len(ids) > max_len:
        raise CTCLabelError(f"label {text!r} has {len(ids)} characters, more than max_len={max_len}")
    if time_steps is not None:
        need = ctc_min_steps(ids)
        if need > time_steps:
            raise CTCLabelError(
                f"label {text!r} needs {need} CTC steps ({len(ids)} characters + {need - len(ids)} blanks between "
                f"repeated characters) but the input gives only {time_steps} (width // {CTC_STRIDE}); "
                f"use a wider max_width or drop the sample")
    out = np.zeros(max_len, np.int64)
    out[: len(ids)] = ids
    return CTCLabel(out, len(ids))

"""Greedy (best-path) CTC decoding: per-step class probabilities → text and confidence.

Usage::

    texts = ctc_greedy_decode(probs, charset)        # probs: [B, T, C] softmax output, C = len(chars) + 1
    text, score = texts[0]

Class index 0 is the CTC blank and index ``i + 1`` is ``chars[i]`` — the convention of PaddleOCR's
``CTCLabelDecode`` and of :class:`datasets.charset.Charset`, so the PP-OCRv4 head decodes unchanged.
Best path: argmax per step, merge consecutive repeats, drop blanks (so "a a" needs a blank between them).
The score is the mean of the winning probabilities of the steps that produced a character, 0.0 for an
empty result — PaddleOCR's definition, kept so confidence thresholds carry over.

A class count that does not match the charset raises instead of decoding garbage: a silently shifted
charset is the classic "accuracy 0 after a dict change" failure.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ctc_greedy_decode", "BLANK_INDEX"]

#: class index of the CTC blank in every model we build or load
BLANK_INDEX = 0


def _chars_of(charset: Any) -> Sequence[str]:
    """Accept a ``Charset`` (anything with ``.chars``) or a plain sequence of characters."""
    chars = getattr(charset, "chars", charset)
    if isinstance(chars, str):
        chars = list(chars)
    return chars


def ctc_greedy_decode(probs: np.ndarray, charset: Any) -> list[tuple[str, float]]:
    """Decode ``probs`` ([B, T, C], or [T, C] for one sequence) into ``[(text, score), …]``, one per row.

    ``probs`` must be probabilities (the head's softmax output), not logits, or the scores mean nothing.
    ``charset`` is a ``Charset`` or a list of characters; ``C`` must equal ``len(chars) + 1``."""
    chars = _chars_of(charset)
    arr = np.asarray(probs)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"probs must be [B, T, C] or [T, C], got shape {np.shape(probs)}")
    num_classes = arr.shape[2]
    if num_classes != len(chars) + 1:
        raise ValueError(
            f"model emits {num_classes} classes but the charset has {len(chars)} characters "
            f"(+1 blank = {len(chars) + 1}); the charset does not belong to this model"
        )
    best = arr.argmax(axis=2)
    best_prob = np.take_along_axis(arr, best[..., None], axis=2)[..., 0]
    results: list[tuple[str, float]] = []
    for ids, step_probs in zip(best, best_prob):
        keep = ids != BLANK_INDEX
        keep[1:] &= ids[1:] != ids[:-1]
        kept = ids[keep]
        text = "".join(chars[i - 1] for i in kept)
        score = float(step_probs[keep].mean()) if kept.size else 0.0
        results.append((text, score))
    return results

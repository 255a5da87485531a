"""Greedy CTC decoding on hand-built probability sequences (index 0 = blank, i + 1 = chars[i])."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from training.postprocess import ctc_greedy_decode

CHARS = ["a", "b", "中"]


def _probs(path: list[int], peak: list[float], num_classes: int = 4) -> np.ndarray:
    """[T, C] rows whose argmax is ``path[t]`` with probability ``peak[t]``, the rest spread evenly."""
    rows = []
    for idx, p in zip(path, peak):
        row = np.full(num_classes, (1.0 - p) / (num_classes - 1), dtype=np.float32)
        row[idx] = p
        rows.append(row)
    return np.stack(rows)


def test_repeats_collapse_and_blanks_separate():
    # a a _ a b b _ _ 中  -> "aab中"; kept steps: 0 (a), 3 (a), 4 (b), 8 (中)
    path = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    peak = [0.9, 0.5, 0.8, 0.7, 0.6, 0.95, 0.99, 0.99, 0.8]
    (text, score), = ctc_greedy_decode(_probs(path, peak)[None], CHARS)
    assert text == "aab中"
    assert score == pytest.approx((0.9 + 0.7 + 0.6 + 0.8) / 4, abs=1e-6)


def test_all_blank_gives_empty_text_and_zero_score():
    (text, score), = ctc_greedy_decode(_probs([0, 0, 0], [0.9, 0.9, 0.9])[None], CHARS)
    assert (text, score) == ("", 0.0)


def test_batch_and_charset_object_and_2d_input():
    batch = np.stack([_probs([2, 0, 2], [0.6, 0.9, 0.8]), _probs([3, 3, 3], [0.5, 0.9, 0.9])])
    charset = SimpleNamespace(chars=CHARS)
    out = ctc_greedy_decode(batch, charset)
    assert [t for t, _ in out] == ["bb", "中"]
    assert out[0][1] == pytest.approx(0.7, abs=1e-6)
    assert out[1][1] == pytest.approx(0.5, abs=1e-6)
    assert ctc_greedy_decode(batch[0], "ab中") == [out[0]]


def test_class_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="charset"):
        ctc_greedy_decode(_probs([1], [0.9], num_classes=5)[None], CHARS)

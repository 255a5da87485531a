"""Reading order of detected text boxes: top to bottom, then left to right within a line.

PaddleOCR's ``sorted_boxes`` rule, kept exactly so our output order matches other tools running PP-OCRv4:
sort by the top-left corner (y, then x), then bubble a box before its predecessor while their top-left ``y``
differ by less than ``line_tol`` pixels (10 in PaddleOCR) and it lies further left.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

__all__ = ["sorted_boxes", "reading_order"]

T = TypeVar("T")


def reading_order(boxes: Sequence[np.ndarray], line_tol: float = 10.0) -> list[int]:
    """Indices of ``boxes`` (each N×2, first point = top-left) in reading order."""
    firsts = [np.asarray(b, dtype=np.float64).reshape(-1, 2)[0] for b in boxes]
    order = sorted(range(len(boxes)), key=lambda i: (firsts[i][1], firsts[i][0]))
    for i in range(len(order) - 1):
        for j in range(i, -1, -1):
            a, b = firsts[order[j]], firsts[order[j + 1]]
            if abs(b[1] - a[1]) < line_tol and b[0] < a[0]:
                order[j], order[j + 1] = order[j + 1], order[j]
            else:
                break
    return order


def sorted_boxes(items: Sequence[T], boxes: Sequence[np.ndarray] | None = None, line_tol: float = 10.0) -> list[T]:
    """``items`` re-ordered by the reading order of ``boxes`` (default: the items are the boxes)."""
    boxes = items if boxes is None else boxes  # type: ignore[assignment]
    return [items[i] for i in reading_order(boxes, line_tol)]  # type: ignore[arg-type]

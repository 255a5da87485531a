"""The last step of det post-processing that serving and training-time eval share: PaddleOCR's
``filter_tag_det_res`` (order quads, clip to the image, drop degenerate quads)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["order_points_clockwise", "filter_det_boxes"]


def order_points_clockwise(pts: np.ndarray) -> np.ndarray:
    """4 points → top-left, top-right, bottom-right, bottom-left (PaddleOCR's sum/diff rule)."""
    pts = np.asarray(pts, dtype=np.float32).reshape(4, 2)
    rect = np.zeros((4, 2), dtype=np.float32)
    s = pts.sum(axis=1)
    rect[0], rect[2] = pts[np.argmin(s)], pts[np.argmax(s)]
    rest = np.delete(pts, (np.argmin(s), np.argmax(s)), axis=0)
    diff = np.diff(rest, axis=1)
    rect[1], rect[3] = rest[np.argmin(diff)], rest[np.argmax(diff)]
    return rect


def filter_det_boxes(results: Sequence[tuple[np.ndarray, float]], src_h: int, src_w: int,
                     box_type: str = "quad") -> list[tuple[np.ndarray, float]]:
    """PaddleOCR's ``filter_tag_det_res``: order quads, clip to the last pixel (whole pixels), drop quads with a
    side ≤ 3 px. Polygons are only clipped."""
    kept: list[tuple[np.ndarray, float]] = []
    for points, score in results:
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        if box_type == "quad":
            pts = order_points_clockwise(pts)
        pts[:, 0] = np.clip(pts[:, 0], 0, src_w - 1).astype(np.int64)
        pts[:, 1] = np.clip(pts[:, 1], 0, src_h - 1).astype(np.int64)
        if box_type == "quad":
            if int(np.linalg.norm(pts[0] - pts[1])) <= 3 or int(np.linalg.norm(pts[0] - pts[3])) <= 3:
                continue
        kept.append((pts, float(score)))
    return kept

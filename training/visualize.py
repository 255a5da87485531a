"""Pictures people would rather see than read: detections drawn over the ground truth."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["draw_detections"]


def draw_detections(image: np.ndarray, predictions: Sequence[tuple[np.ndarray, float]],
                    ground_truth: Sequence[np.ndarray] = (), ignored: Sequence[bool] = ()) -> np.ndarray:
    """BGR copy of ``image`` with true polygons in green (don't-care in grey) and predictions in red."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for i, points in enumerate(ground_truth):
        colour = (160, 160, 160) if (i < len(ignored) and ignored[i]) else (0, 200, 0)
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], True, colour, thickness + 1)
    for points, score in predictions:
        pts = np.round(points).astype(np.int32)
        cv2.polylines(canvas, [pts], True, (0, 0, 255), thickness)
        cv2.putText(canvas, f"{score:.2f}", tuple(int(v) for v in pts[0]), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, (0, 0, 255), 1, cv2.LINE_AA)
    return canvas

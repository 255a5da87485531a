"""DB (Differentiable Binarization) post-process: probability map → text polygons in source pixels.

Usage::

    post = DBPostProcess(thresh=0.3, box_thresh=0.6, unclip_ratio=1.5)
    for points, score in post(prob_map, src_shape=(h, w)):   # prob_map: H×W floats in [0, 1]
        ...
    mlflow.log_params(post.params())                          # always logged beside the metric

Why it is written here instead of imported from PaddleOCR: training-time evaluation and the exported
model's evaluation must run the *same* code, and ``export/`` must not import Paddle for it. The steps and
their numeric details (integer truncation in the score mask, rounding before clipping, the ``+2`` on the
second size check, float32 arithmetic for quads) follow the DB paper and PaddleOCR 2.10's ``DBPostProcess``
so that our numbers are comparable with other tools running the same PP-OCRv4 weights:

1. binarise at ``thresh`` (optionally dilate with a 2×2 kernel);
2. contours of the bitmap (first ``max_candidates`` of them);
3. quad: minimum-area rectangle, dropped if its short side < ``min_size``;
   poly: ``approxPolyDP`` with ε = 0.2 % of the perimeter, dropped if < 4 vertices;
4. score = mean probability inside the rectangle (``fast``) or the contour polygon (``slow``; quads only —
   for polygons the fast score already is the polygon mean), dropped if < ``box_thresh``;
5. unclip (expand) by distance D = area × ``unclip_ratio`` / perimeter with a round-join Clipper offset;
   dropped if the offset splits into several polygons;
6. quad: minimum-area rectangle again; both: dropped if its short side < ``min_size + 2``;
7. scale from the map's size to ``src_shape``, round, clip to ``[0, w] × [0, h]``.

The map must cover exactly the resized image: if a caller padded the network input, crop the padding off
the map before calling, otherwise the scale factors are wrong.
"""
from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
import pyclipper
from shapely.geometry import Polygon

__all__ = ["DBPostProcess", "DetResult"]

#: one detection: polygon (N×2 float32, source-image pixels, clockwise from top-left for quads) and score
DetResult = tuple[np.ndarray, float]

_SCORE_MODES = ("fast", "slow")
_BOX_TYPES = ("quad", "poly")


class DBPostProcess:
    """Turn one DB probability map into scored polygons; see the module docstring for the exact steps."""

    def __init__(
        self,
        thresh: float = 0.3,
        box_thresh: float = 0.6,
        max_candidates: int = 1000,
        unclip_ratio: float = 1.5,
        use_dilation: bool = False,
        score_mode: Literal["fast", "slow"] = "fast",
        box_type: Literal["quad", "poly"] = "quad",
        min_size: int = 3,
    ) -> None:
        if score_mode not in _SCORE_MODES:
            raise ValueError(f"score_mode must be one of {_SCORE_MODES}, got {score_mode!r}")
        if box_type not in _BOX_TYPES:
            raise ValueError(f"box_type must be one of {_BOX_TYPES}, got {box_type!r}")
        if not 0.0 <= thresh < 1.0:
            raise ValueError(f"thresh must be in [0, 1), got {thresh}")
        if not 0.0 <= box_thresh <= 1.0:
            raise ValueError(f"box_thresh must be in [0, 1], got {box_thresh}")
        if unclip_ratio <= 0:
            raise ValueError(f"unclip_ratio must be > 0, got {unclip_ratio}")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        self.thresh = float(thresh)
        self.box_thresh = float(box_thresh)
        self.max_candidates = int(max_candidates)
        self.unclip_ratio = float(unclip_ratio)
        self.use_dilation = bool(use_dilation)
        self.score_mode = score_mode
        self.box_type = box_type
        self.min_size = int(min_size)
        self._dilation_kernel = np.ones((2, 2), dtype=np.uint8) if use_dilation else None

    def params(self) -> dict[str, Any]:
        """The parameters as a flat dict, logged beside every detection metric (a metric means nothing
        without the post-process that produced it)."""
        return {
            "thresh": self.thresh,
            "box_thresh": self.box_thresh,
            "max_candidates": self.max_candidates,
            "unclip_ratio": self.unclip_ratio,
            "use_dilation": self.use_dilation,
            "score_mode": self.score_mode,
            "box_type": self.box_type,
            "min_size": self.min_size,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"DBPostProcess({args})"

    def __call__(self, prob_map: np.ndarray, src_shape: tuple[int, int]) -> list[DetResult]:
        """Detect text regions in ``prob_map`` (H×W, or 1×H×W) and return them in the pixel frame of an
        image of shape ``src_shape`` = (height, width)."""
        pred = np.asarray(prob_map, dtype=np.float32)
        if pred.ndim == 3 and pred.shape[0] == 1:
            pred = pred[0]
        if pred.ndim != 2:
            raise ValueError(f"prob_map must be H×W (or 1×H×W), got shape {np.shape(prob_map)}")
        src_h, src_w = int(src_shape[0]), int(src_shape[1])
        if src_h <= 0 or src_w <= 0:
            raise ValueError(f"src_shape must be positive (h, w), got {src_shape}")

        bitmap = (pred > self.thresh).astype(np.uint8)
        if self._dilation_kernel is not None:
            bitmap = cv2.dilate(bitmap, self._dilation_kernel)
        contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        contours = contours[: self.max_candidates]
        if self.box_type == "quad":
            return self._quads(pred, contours, src_w, src_h)
        return self._polygons(pred, contours, src_w, src_h)

    # -- the two box types ---------------------------------------------------------------------------------

    def _quads(self, pred: np.ndarray, contours: tuple[np.ndarray, ...], src_w: int, src_h: int) -> list[DetResult]:
        map_h, map_w = pred.shape
        results: list[DetResult] = []
        for contour in contours:
            box, short_side = _mini_box(contour)
            if short_side < self.min_size:
                continue
            if self.score_mode == "fast":
                score = _mean_inside(pred, box)
            else:
                score = _mean_inside(pred, contour.reshape(-1, 2))
            if score < self.box_thresh:
                continue
            expanded = _unclip(box, self.unclip_ratio)
            if expanded is None:
                continue
            box, short_side = _mini_box(expanded)
            if short_side < self.min_size + 2:
                continue
            results.append((_to_source(box, map_w, map_h, src_w, src_h), score))
        return results

    def _polygons(self, pred: np.ndarray, contours: tuple[np.ndarray, ...], src_w: int, src_h: int) -> list[DetResult]:
        map_h, map_w = pred.shape
        results: list[DetResult] = []
        for contour in contours:
            epsilon = 0.002 * cv2.arcLength(contour, True)
            points = cv2.approxPolyDP(contour, epsilon, True).reshape(-1, 2)
            if len(points) < 4:
                continue
            score = _mean_inside(pred, points)
            if score < self.box_thresh:
                continue
            expanded = _unclip(points, self.unclip_ratio)
            if expanded is None:
                continue
            _, short_side = _mini_box(expanded)
            if short_side < self.min_size + 2:
                continue
            results.append((_to_source(expanded.astype(np.float64), map_w, map_h, src_w, src_h), score))
        return results


# -- geometry helpers (module-level so tests and the export stage can reuse them) ------------------------------


def _mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rectangle of ``points`` as 4×2 float32 corners ordered top-left, top-right,
    bottom-right, bottom-left, and its short side length.

    The ordering rule (sort by x, stable; in each x-pair the smaller y is the top one, ties go to the
    second) is PaddleOCR's; it decides which corner comes first, which matters for parity checks."""
    pts = np.asarray(points)
    if pts.dtype not in (np.int32, np.float32):
        pts = pts.astype(np.float32)
    rect = cv2.minAreaRect(pts.reshape(-1, 1, 2))
    corners = cv2.boxPoints(rect)
    corners = corners[np.argsort(corners[:, 0], kind="stable")]
    left, right = corners[:2], corners[2:]
    top_left, bottom_left = (left[0], left[1]) if left[1, 1] > left[0, 1] else (left[1], left[0])
    top_right, bottom_right = (right[0], right[1]) if right[1, 1] > right[0, 1] else (right[1], right[0])
    box = np.stack([top_left, top_right, bottom_right, bottom_left]).astype(np.float32)
    return box, float(min(rect[1]))


def _mean_inside(prob: np.ndarray, polygon: np.ndarray) -> float:
    """Mean of ``prob`` over the pixels of ``polygon`` (filled, boundary included).

    Works on the polygon's bounding window only, so the cost is the box size, not the image size.
    Vertex coordinates are truncated to int after shifting into the window, as PaddleOCR does."""
    h, w = prob.shape[:2]
    poly = np.asarray(polygon).reshape(-1, 2)
    xmin = int(np.clip(np.floor(poly[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(poly[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(poly[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(poly[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = poly - np.array([xmin, ymin], dtype=poly.dtype)
    cv2.fillPoly(mask, [shifted.astype(np.int32).reshape(-1, 1, 2)], 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(polygon: np.ndarray, ratio: float) -> np.ndarray | None:
    """Expand ``polygon`` by D = area × ratio / perimeter (DB's inverse of the shrink used for the
    training targets) with a round-join offset; ``None`` when the result is empty or not one polygon."""
    shape = Polygon(np.asarray(polygon, dtype=np.float64).reshape(-1, 2))
    if shape.length == 0:
        return None
    distance = shape.area * ratio / shape.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(np.asarray(polygon).reshape(-1, 2), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    expanded = offset.Execute(distance)
    if len(expanded) != 1 or len(expanded[0]) == 0:
        return None
    return np.asarray(expanded[0], dtype=np.int32).reshape(-1, 2)


def _to_source(box: np.ndarray, map_w: int, map_h: int, src_w: int, src_h: int) -> np.ndarray:
    """Scale map coordinates to the source image, round to whole pixels and clip to the image."""
    box = np.array(box)  # copy; dtype kept (float32 for quads, as the reference computes them)
    box[:, 0] = np.clip(np.round(box[:, 0] / map_w * src_w), 0, src_w)
    box[:, 1] = np.clip(np.round(box[:, 1] / map_h * src_h), 0, src_h)
    return box.astype(np.float32)

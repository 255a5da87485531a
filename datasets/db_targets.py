"""Training targets of DB (Differentiable Binarization, Liao et al., AAAI 2020), from the paper's formulas.

Why its own module: the detector's loss (``DBLoss``) only sees these four maps, so their geometry *is* the
label; keeping them in one small, tested function set makes "where is the text" checkable on a known square.

For a text polygon G with area A and perimeter L and shrink ratio r (0.4):

* offset distance ``D = A · (1 − r²) / L``;
* **probability (shrink) map**: 1 inside G shrunk by D (Vatti clipping, pyclipper), 0 elsewhere;
* **shrink mask**: 1 everywhere except don't-care regions: ignored polygons, polygons whose short side is
  below ``min_text_size`` and polygons whose shrink vanishes (too thin) are zeroed, so the loss neither
  rewards nor punishes them;
* **threshold map**: inside G dilated by D, ``1 − min(dist(p, edges of G) / D, 1)`` rescaled to
  ``[thresh_min, thresh_max]`` (0.3–0.7): highest on the border of G, falling to ``thresh_min`` at distance D;
  ``thresh_min`` elsewhere;
* **threshold mask**: 1 inside the dilated polygons (where the threshold loss applies).

Usage::

    targets = make_db_targets([quad], [False], height=640, width=640)
    targets.shrink_map, targets.shrink_mask, targets.threshold_map, targets.threshold_mask  # float32 HxW
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import pyclipper

__all__ = ["DBTargets", "polygon_area", "polygon_perimeter", "shrink_distance", "offset_polygon", "make_db_targets"]

#: pyclipper works on integers: coordinates are scaled by this factor (1/64 px precision)
_SCALE = 64.0
#: fillPoly fractional bits (1/16 px)
_SHIFT = 4


@dataclass
class DBTargets:
    """The four DB maps (float32, H×W) plus which input polygons ended up as don't-care (``ignored[i]``)."""

    shrink_map: np.ndarray
    shrink_mask: np.ndarray
    threshold_map: np.ndarray
    threshold_mask: np.ndarray
    ignored: list[bool]


def polygon_area(points: np.ndarray) -> float:
    """Unsigned area (shoelace formula)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_perimeter(points: np.ndarray) -> float:
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return float(np.linalg.norm(p - np.roll(p, -1, axis=0), axis=1).sum())


def shrink_distance(points: np.ndarray, ratio: float = 0.4) -> float:
    """The paper's offset ``D = A (1 − r²) / L`` (0 for a degenerate polygon)."""
    perimeter = polygon_perimeter(points)
    return polygon_area(points) * (1.0 - ratio * ratio) / perimeter if perimeter > 0 else 0.0


def offset_polygon(points: np.ndarray, distance: float) -> list[np.ndarray]:
    """Offset a polygon by ``distance`` px (negative shrinks) with round joins; returns 0..n polygons (a
    concave shape may split). Works for either vertex orientation (Clipper normalises it)."""
    offset = pyclipper.PyclipperOffset(arc_tolerance=0.25 * _SCALE)
    path = np.round(np.asarray(points, np.float64).reshape(-1, 2) * _SCALE).astype(np.int64).tolist()
    offset.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [np.asarray(p, np.float64) / _SCALE for p in offset.Execute(distance * _SCALE) if len(p) >= 3]


def _fill(canvas: np.ndarray, polygons: Sequence[np.ndarray], value: float) -> None:
    pts = [np.round(np.asarray(p, np.float64) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2) for p in polygons]
    if pts:
        cv2.fillPoly(canvas, pts, value, lineType=cv2.LINE_8, shift=_SHIFT)


def _short_side(points: np.ndarray) -> float:
    (_, _), (w, h), _ = cv2.minAreaRect(np.asarray(points, np.float32).reshape(-1, 2))
    return float(min(w, h))


def _edge_distance(points: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Distance from each grid pixel (ys × xs) to the nearest edge segment of the closed polygon."""
    a = np.asarray(points, np.float64).reshape(-1, 2)
    b = np.roll(a, -1, axis=0)
    px, py = xs[None, None, :], ys[None, :, None]
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    ex, ey = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
    length2 = np.maximum(ex * ex + ey * ey, 1e-12)
    t = np.clip(((px - ax) * ex + (py - ay) * ey) / length2, 0.0, 1.0)
    dx, dy = px - (ax + t * ex), py - (ay + t * ey)
    return np.sqrt(dx * dx + dy * dy).min(axis=0)


def _draw_border(canvas: np.ndarray, mask: np.ndarray, points: np.ndarray, distance: float) -> None:
    """Threshold label of one polygon: ``1 − d/D`` inside the polygon dilated by D (max-combined)."""
    h, w = canvas.shape
    dilated = offset_polygon(points, distance)
    if not dilated:
        return
    _fill(mask, dilated, 1.0)
    outer = np.concatenate(dilated)
    x0, y0 = max(0, int(np.floor(outer[:, 0].min()))), max(0, int(np.floor(outer[:, 1].min())))
    x1, y1 = min(w - 1, int(np.ceil(outer[:, 0].max()))), min(h - 1, int(np.ceil(outer[:, 1].max())))
    if x1 < x0 or y1 < y0:
        return
    region = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.float32)
    _fill(region, [p - (x0, y0) for p in dilated], 1.0)
    dist = _edge_distance(points, np.arange(x0, x1 + 1, dtype=np.float64), np.arange(y0, y1 + 1, dtype=np.float64))
    value = (1.0 - np.minimum(dist / distance, 1.0)).astype(np.float32) * region
    np.maximum(canvas[y0:y1 + 1, x0:x1 + 1], value, out=canvas[y0:y1 + 1, x0:x1 + 1])


def make_db_targets(
    polygons: Sequence[np.ndarray],
    ignores: Sequence[bool],
    height: int,
    width: int,
    shrink_ratio: float = 0.4,
    thresh_min: float = 0.3,
    thresh_max: float = 0.7,
    min_text_size: float = 8.0,
) -> DBTargets:
    """All four DB maps for the polygons of one (already augmented) image of ``height × width``."""
    if len(polygons) != len(ignores):
        raise ValueError(f"{len(polygons)} polygons but {len(ignores)} ignore flags")
    shrink_map = np.zeros((height, width), np.float32)
    shrink_mask = np.ones((height, width), np.float32)
    border = np.zeros((height, width), np.float32)
    threshold_mask = np.zeros((height, width), np.float32)
    ignored: list[bool] = []
    for points, ignore in zip(polygons, ignores):
        points = np.asarray(points, np.float64).reshape(-1, 2)
        area = polygon_area(points) if len(points) >= 3 else 0.0
        too_small = area < 1.0 or _short_side(points) < min_text_size
        if ignore or too_small:
            if len(points) >= 3:
                _fill(shrink_mask, [points], 0.0)
            ignored.append(True)
            continue
        distance = shrink_distance(points, shrink_ratio)
        shrunk = offset_polygon(points, -distance)
        if not shrunk:  # shrinking made it vanish: a sliver, not trainable text
            _fill(shrink_mask, [points], 0.0)
            ignored.append(True)
            continue
        _fill(shrink_map, shrunk, 1.0)
        _draw_border(border, threshold_mask, points, distance)
        ignored.append(False)
    threshold_map = border * (thresh_max - thresh_min) + thresh_min
    return DBTargets(shrink_map, shrink_mask, threshold_map.astype(np.float32), threshold_mask, ignored)

"""Text-detection precision / recall / hmean under the ICDAR2015 (Challenge 4, task 1) protocol.

Usage::

    metric = DetMetric()
    for preds, sample in zip(predictions, samples):          # preds: list of N×2 point arrays
        metric.update(preds, [i.points for i in sample.instances], [i.ignore for i in sample.instances])
    metric.compute()   # {"precision", "recall", "hmean", "num_gt", "num_det", "num_matched"}

Why written here: the number that decides "best checkpoint" and registry promotion must be computed the same
way in training and on the exported model, without Paddle, and must match the official script so numbers
compare with published ones. Per image, as the official ``script.py`` does:

1. A detection whose intersection with any don't-care GT is more than ``area_precision_thresh`` (50 %) of
   the detection's own area is discarded: it counts neither as a hit nor as a false alarm.
2. Greedy one-to-one matching in GT order, then detection order: a care GT and a kept detection that are
   both still unmatched match when IoU **>** ``iou_thresh`` (0.5). The official script and PaddleOCR use
   the strict comparison, so IoU exactly 0.5 is *not* a match here either.
3. Counts are accumulated over images; precision = matched / kept detections, recall = matched / care GT.

Empty cases. Per image (returned by :meth:`DetMetric.update`) the official convention: with no care GT,
recall = 1 and precision = 1 if there is no kept detection else 0; with care GT but no detection,
precision = 0. Globally (:meth:`DetMetric.compute`): with no care GT and no kept detection anywhere,
precision = recall = hmean = 1 (nothing to find, nothing found wrongly; the official script reports 0
there, which would make an empty eval split look like a broken model); with no care GT but detections,
recall = 1 and precision = 0; with care GT but no detection, precision = recall = 0. hmean is 0 whenever
precision + recall is 0.

Polygons are shapely polygons; an invalid one (self-intersecting, e.g. a quad with mis-ordered corners) is
repaired with ``buffer(0)``, which may keep only one lobe of a bow-tie. A polygon with fewer than three
points or zero area is kept in the counts but can match nothing.

Data-parallel: :meth:`state` is three integers, so ``all_reduce(SUM)`` of it on every rank and
:meth:`merge` into a fresh metric gives the global result.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

__all__ = ["DetMetric", "to_polygon", "image_match"]


def to_polygon(points: Any) -> BaseGeometry:
    """A valid shapely geometry for an N×2 point list; empty for fewer than three points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return Polygon()
    poly = Polygon(pts)
    if not poly.is_valid:
        poly = poly.buffer(0)
    return poly


def _area(geom: BaseGeometry) -> float:
    return 0.0 if geom.is_empty else float(geom.area)


def _intersection(a: BaseGeometry, b: BaseGeometry) -> float:
    if a.is_empty or b.is_empty or not a.intersects(b):
        return 0.0
    return float(a.intersection(b).area)


def _iou(a: BaseGeometry, b: BaseGeometry) -> float:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _ratio(num: int, den: int, when_den_zero: float) -> float:
    return num / den if den else when_den_zero


def _hmean(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def image_match(
    pred_polys: Sequence[Any],
    gt_polys: Sequence[Any],
    gt_ignore: Sequence[bool] | None = None,
    *,
    iou_thresh: float = 0.5,
    area_precision_thresh: float = 0.5,
) -> dict[str, Any]:
    """Evaluate one image (steps 1–2 of the module docstring).

    Returns counts (``num_gt``/``num_det`` are *care* GT and *kept* detections), the per-image precision,
    recall and hmean, ``matches`` as ``[(gt_index, det_index), …]`` and ``discarded`` detection indices, so
    a caller can draw hits, misses and false alarms."""
    if gt_ignore is None:
        gt_ignore = [False] * len(gt_polys)
    if len(gt_ignore) != len(gt_polys):
        raise ValueError(f"{len(gt_polys)} GT polygons but {len(gt_ignore)} ignore flags")
    gts = [to_polygon(p) for p in gt_polys]
    dets = [to_polygon(p) for p in pred_polys]
    dont_care = [g for g, ign in zip(gts, gt_ignore) if ign]

    discarded: list[int] = []
    for d_idx, det in enumerate(dets):
        det_area = _area(det)
        for g in dont_care:
            overlap = _intersection(det, g) / det_area if det_area > 0 else 0.0
            if overlap > area_precision_thresh:
                discarded.append(d_idx)
                break
    discarded_set = set(discarded)

    care_gt = [i for i, ign in enumerate(gt_ignore) if not ign]
    kept_det = [i for i in range(len(dets)) if i not in discarded_set]
    matched_det: set[int] = set()
    matches: list[tuple[int, int]] = []
    for g_idx in care_gt:
        for d_idx in kept_det:
            if d_idx in matched_det:
                continue
            if _iou(gts[g_idx], dets[d_idx]) > iou_thresh:
                matched_det.add(d_idx)
                matches.append((g_idx, d_idx))
                break

    num_gt, num_det, num_matched = len(care_gt), len(kept_det), len(matches)
    if num_gt == 0:
        recall, precision = 1.0, (0.0 if num_det else 1.0)
    else:
        recall, precision = num_matched / num_gt, _ratio(num_matched, num_det, 0.0)
    return {
        "num_gt": num_gt,
        "num_det": num_det,
        "num_matched": num_matched,
        "precision": precision,
        "recall": recall,
        "hmean": _hmean(precision, recall),
        "matches": matches,
        "discarded": discarded,
    }


class DetMetric:
    """Accumulates ICDAR2015 counts over images; see the module docstring for the protocol and the
    empty-case conventions."""

    def __init__(self, iou_thresh: float = 0.5, area_precision_thresh: float = 0.5) -> None:
        self.iou_thresh = float(iou_thresh)
        self.area_precision_thresh = float(area_precision_thresh)
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated images."""
        self.num_gt = 0
        self.num_det = 0
        self.num_matched = 0
        self.num_images = 0

    def update(
        self,
        pred_polys: Sequence[Any],
        gt_polys: Sequence[Any],
        gt_ignore: Sequence[bool] | None = None,
    ) -> dict[str, Any]:
        """Add one image: predicted polygons, GT polygons and their don't-care flags (all False when
        omitted). Returns the per-image result of :func:`image_match`."""
        result = image_match(
            pred_polys,
            gt_polys,
            gt_ignore,
            iou_thresh=self.iou_thresh,
            area_precision_thresh=self.area_precision_thresh,
        )
        self.num_gt += result["num_gt"]
        self.num_det += result["num_det"]
        self.num_matched += result["num_matched"]
        self.num_images += 1
        return result

    def compute(self) -> dict[str, float | int]:
        """Global precision, recall, hmean and the counts behind them."""
        if self.num_gt == 0:
            recall, precision = 1.0, (0.0 if self.num_det else 1.0)
        else:
            recall = self.num_matched / self.num_gt
            precision = _ratio(self.num_matched, self.num_det, 0.0)
        return {
            "precision": precision,
            "recall": recall,
            "hmean": _hmean(precision, recall),
            "num_gt": self.num_gt,
            "num_det": self.num_det,
            "num_matched": self.num_matched,
        }

    def state(self) -> np.ndarray:
        """``[num_gt, num_det, num_matched]`` as int64 — all a data-parallel reduction needs (sum it)."""
        return np.array([self.num_gt, self.num_det, self.num_matched], dtype=np.int64)

    def merge(self, other: DetMetric | Sequence[int] | np.ndarray) -> DetMetric:
        """Add another metric's counts (a ``DetMetric`` or a :meth:`state` vector); returns ``self``.

        After ``all_reduce`` the summed state already holds every rank, so merge it into a *fresh*
        metric (or ``reset()`` first), not into the rank's own one."""
        if isinstance(other, DetMetric):
            counts = other.state()
            self.num_images += other.num_images
        else:
            counts = np.asarray(other).reshape(-1)
            if counts.shape != (3,):
                raise ValueError(f"a DetMetric state has 3 counts, got shape {np.shape(other)}")
        self.num_gt += int(counts[0])
        self.num_det += int(counts[1])
        self.num_matched += int(counts[2])
        return self

"""ICDAR2015 detection metric on axis-aligned boxes whose areas and IoUs are computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from training.metrics import DetMetric


def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


def _one(preds, gts, ignore=None) -> dict:
    metric = DetMetric()
    metric.update(preds, gts, ignore)
    return metric.compute()


def test_exact_match():
    r = _one([box(0, 0, 100, 10)], [box(0, 0, 100, 10)])
    assert (r["precision"], r["recall"], r["hmean"]) == (1.0, 1.0, 1.0)
    assert (r["num_gt"], r["num_det"], r["num_matched"]) == (1, 1, 1)


def test_split_gt_matches_at_most_once():
    gt = [box(0, 0, 100, 10)]  # area 1000
    # 60/40 split: IoU 600/1000 = 0.6 and 400/1000 = 0.4 -> one match
    r = _one([box(0, 0, 60, 10), box(60, 0, 100, 10)], gt)
    assert r["num_matched"] == 1 and r["num_det"] == 2
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == 1.0
    assert r["hmean"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    # three-way split: IoUs 0.4, 0.3, 0.3 -> no match
    r = _one([box(0, 0, 40, 10), box(40, 0, 70, 10), box(70, 0, 100, 10)], gt)
    assert r["num_matched"] == 0 and r["precision"] == 0.0 and r["recall"] == 0.0 and r["hmean"] == 0.0


def test_iou_exactly_half_is_not_a_match():
    # official script: IoU must be strictly greater than 0.5
    r = _one([box(0, 0, 50, 10)], [box(0, 0, 100, 10)])  # IoU 500/1000
    assert r["num_matched"] == 0
    r = _one([box(0, 0, 51, 10)], [box(0, 0, 100, 10)])  # IoU 510/1000
    assert r["num_matched"] == 1


def test_dont_care_overlap_discards_detection():
    gts = [box(0, 0, 100, 10), box(200, 0, 300, 10)]
    ignore = [False, True]
    # det fully inside the don't-care region -> discarded, neither hit nor false alarm
    r = _one([box(0, 0, 100, 10), box(210, 0, 290, 10)], gts, ignore)
    assert (r["num_gt"], r["num_det"], r["num_matched"]) == (1, 1, 1)
    assert r["precision"] == 1.0 and r["recall"] == 1.0
    # det 60 % inside the don't-care region (overlap x 240..300 of a 100-wide det) -> discarded
    r = _one([box(240, 0, 340, 10)], gts, ignore)
    assert r["num_det"] == 0 and r["precision"] == 0.0 and r["recall"] == 0.0
    # det 40 % inside -> kept, a false alarm
    r = _one([box(260, 0, 360, 10)], gts, ignore)  # overlap x 260..300
    assert r["num_det"] == 1 and r["num_matched"] == 0 and r["precision"] == 0.0


def test_dont_care_gt_is_never_matched_or_counted():
    r = _one([box(0, 0, 100, 10)], [box(0, 0, 100, 10)], [True])
    assert (r["num_gt"], r["num_det"], r["num_matched"]) == (0, 0, 0)
    assert (r["precision"], r["recall"], r["hmean"]) == (1.0, 1.0, 1.0)


def test_empty_prediction():
    r = _one([], [box(0, 0, 10, 10), box(20, 0, 30, 10)])
    assert (r["precision"], r["recall"], r["hmean"]) == (0.0, 0.0, 0.0)
    assert (r["num_gt"], r["num_det"]) == (2, 0)


def test_empty_gt():
    r = _one([box(0, 0, 10, 10)], [])
    assert (r["precision"], r["recall"], r["hmean"]) == (0.0, 1.0, 0.0)


def test_both_empty():
    metric = DetMetric()
    per_image = metric.update([], [])
    assert (per_image["precision"], per_image["recall"]) == (1.0, 1.0)
    r = metric.compute()
    assert (r["precision"], r["recall"], r["hmean"]) == (1.0, 1.0, 1.0)
    assert (r["num_gt"], r["num_det"], r["num_matched"]) == (0, 0, 0)


def test_many_to_one_and_one_to_many():
    # two detections on one GT: only the first matches
    metric = DetMetric()
    res = metric.update([box(0, 0, 100, 10), box(2, 0, 100, 10)], [box(0, 0, 100, 10)])
    assert res["matches"] == [(0, 0)]
    r = metric.compute()
    assert r["precision"] == 0.5 and r["recall"] == 1.0
    # one detection over two GTs: IoU 700/1000 with the first, 300/1000 with the second
    r = _one([box(0, 0, 100, 10)], [box(0, 0, 70, 10), box(70, 0, 100, 10)])
    assert r["num_matched"] == 1 and r["precision"] == 1.0 and r["recall"] == 0.5


def test_rotated_polygon_iou():
    # a diamond (area 200) against its bounding square (area 400): IoU 0.5 -> no match; square vs 0.9-scaled
    diamond = np.array([[10, 0], [20, 10], [10, 20], [0, 10]], dtype=np.float32)
    assert _one([diamond], [box(0, 0, 20, 20)])["num_matched"] == 0
    assert _one([box(0, 0, 20, 18)], [box(0, 0, 20, 20)])["num_matched"] == 1  # IoU 0.9


def test_invalid_and_degenerate_polygons_do_not_crash():
    bow_tie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], dtype=np.float32)
    line = np.array([[0, 0], [10, 0], [20, 0], [30, 0]], dtype=np.float32)
    r = _one([bow_tie, line, np.zeros((2, 2))], [box(0, 0, 10, 10)])
    assert r["num_det"] == 3 and r["num_gt"] == 1 and r["num_matched"] == 0


def test_accumulation_and_data_parallel_merge():
    images = [
        ([box(0, 0, 10, 10)], [box(0, 0, 10, 10)], [False]),  # 1 gt, 1 det, 1 match
        ([box(0, 0, 10, 10), box(50, 50, 60, 60)], [box(0, 0, 10, 10), box(100, 0, 110, 10)], [False, False]),
        ([], [box(0, 0, 10, 10)], [False]),  # 1 gt missed
    ]
    whole = DetMetric()
    for preds, gts, ign in images:
        whole.update(preds, gts, ign)
    r = whole.compute()
    assert (r["num_gt"], r["num_det"], r["num_matched"]) == (4, 3, 2)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 4)
    assert r["hmean"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))

    rank0, rank1 = DetMetric(), DetMetric()
    rank0.update(*images[0])
    for preds, gts, ign in images[1:]:
        rank1.update(preds, gts, ign)
    summed = rank0.state() + rank1.state()  # what all_reduce(SUM) gives every rank
    assert summed.dtype == np.int64 and summed.shape == (3,)
    assert DetMetric().merge(summed).compute() == r
    assert DetMetric().merge(rank0).merge(rank1).compute() == r


def test_mismatched_ignore_flags_rejected():
    with pytest.raises(ValueError):
        DetMetric().update([], [box(0, 0, 1, 1)], [False, True])

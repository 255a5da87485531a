"""DB post-process on synthetic probability maps whose correct answer is worked out by hand.

A filled pixel rectangle with columns x0..x1 and rows y0..y1 has the contour (pixel centres) of a
(x1 - x0) × (y1 - y0) rectangle; DB unclips it by D = area × ratio / perimeter, so the expected box is that
rectangle grown by D on every side (Clipper rounds to whole pixels, hence a 1-px tolerance in map units)."""
from __future__ import annotations

import numpy as np
import pytest

from training.postprocess import DBPostProcess


def _unclip_distance(w: float, h: float, ratio: float = 1.5) -> float:
    return w * h * ratio / (2 * (w + h))


def _expected_quad(x0: int, y0: int, x1: int, y1: int, ratio: float = 1.5) -> np.ndarray:
    d = _unclip_distance(x1 - x0, y1 - y0, ratio)
    return np.array([[x0 - d, y0 - d], [x1 + d, y0 - d], [x1 + d, y1 + d], [x0 - d, y1 + d]])


def _two_rect_map() -> np.ndarray:
    prob = np.zeros((160, 160), dtype=np.float32)
    prob[30:50, 20:60] = 0.9  # A: cols 20..59, rows 30..49, uniform 0.9
    prob[90:120, 70:105] = 0.5  # B: cols 70..139, rows 90..119; left half 0.5 ...
    prob[90:120, 105:140] = 0.9  # ... right half 0.9 -> mean 0.7
    return prob


def _by_x(results):
    return sorted(results, key=lambda r: r[0][:, 0].min())


def test_two_rectangles_boxes_and_scores():
    results = _by_x(DBPostProcess(thresh=0.3, box_thresh=0.6, unclip_ratio=1.5)(_two_rect_map(), (160, 160)))
    assert len(results) == 2
    (box_a, score_a), (box_b, score_b) = results
    assert box_a.dtype == np.float32 and box_a.shape == (4, 2)
    np.testing.assert_allclose(box_a, _expected_quad(20, 30, 59, 49), atol=1.0)
    np.testing.assert_allclose(box_b, _expected_quad(70, 90, 139, 119), atol=1.0)
    assert score_a == pytest.approx(0.9, abs=1e-6)
    assert score_b == pytest.approx((35 * 0.5 + 35 * 0.9) / 70, abs=1e-6)  # 0.7


def test_box_thresh_drops_low_scoring_region():
    results = DBPostProcess(box_thresh=0.8)(_two_rect_map(), (160, 160))
    assert len(results) == 1
    np.testing.assert_allclose(results[0][0], _expected_quad(20, 30, 59, 49), atol=1.0)


def test_thresh_binarises_before_contours():
    # at thresh 0.6 only B's right half (cols 105..139) survives binarisation, and A
    results = _by_x(DBPostProcess(thresh=0.6, box_thresh=0.6)(_two_rect_map(), (160, 160)))
    assert len(results) == 2
    np.testing.assert_allclose(results[1][0], _expected_quad(105, 90, 139, 119), atol=1.0)
    assert results[1][1] == pytest.approx(0.9, abs=1e-6)


def test_rescale_to_source_shape():
    # map 160×160 -> source 320 (h) × 480 (w): x ×3, y ×2
    results = _by_x(DBPostProcess()(_two_rect_map(), (320, 480)))
    scale = np.array([3.0, 2.0])
    np.testing.assert_allclose(results[0][0], _expected_quad(20, 30, 59, 49) * scale, atol=3.0)
    np.testing.assert_allclose(results[1][0], _expected_quad(70, 90, 139, 119) * scale, atol=3.0)
    # scores do not depend on the output frame
    assert results[0][1] == pytest.approx(0.9, abs=1e-6)


def test_boxes_are_clipped_to_the_image():
    prob = np.zeros((100, 100), dtype=np.float32)
    prob[2:22, 2:42] = 0.9  # unclip distance 9.58 pushes the top-left corner to about (-7.6, -7.6)
    (box, _score), = DBPostProcess()(prob, (200, 200))
    assert box[:, 0].min() == 0 and box[:, 1].min() == 0
    expected_right = (41 + _unclip_distance(39, 19)) * 2
    assert box[:, 0].max() == pytest.approx(expected_right, abs=2.0)


def _l_shape() -> np.ndarray:
    prob = np.zeros((160, 160), dtype=np.float32)
    prob[100:140, 10:20] = 0.9  # vertical bar, 10 wide x 40 tall
    prob[130:140, 10:50] = 0.9  # bottom bar, 40 wide x 10 tall -> 700 pixels in the L
    return prob


def test_fast_score_is_box_mean_slow_score_is_contour_mean():
    # min-area rectangle of the L is its 40x40 bounding square: fast = 0.9 * 700 / 1600
    fast = DBPostProcess(box_thresh=0.0, score_mode="fast")(_l_shape(), (160, 160))
    slow = DBPostProcess(box_thresh=0.0, score_mode="slow")(_l_shape(), (160, 160))
    assert fast[0][1] == pytest.approx(0.9 * 700 / 1600, abs=1e-4)
    assert slow[0][1] == pytest.approx(0.9, abs=1e-4)
    assert DBPostProcess(box_thresh=0.6, score_mode="fast")(_l_shape(), (160, 160)) == []
    assert len(DBPostProcess(box_thresh=0.6, score_mode="slow")(_l_shape(), (160, 160))) == 1


def test_poly_keeps_concavity_quad_does_not():
    from shapely.geometry import Point, Polygon

    quad = DBPostProcess(box_thresh=0.0, box_type="quad")(_l_shape(), (160, 160))
    poly = DBPostProcess(box_thresh=0.6, box_type="poly")(_l_shape(), (160, 160))
    assert len(quad) == 1 and len(poly) == 1
    poly_pts, poly_score = poly[0]
    assert len(poly_pts) >= 6
    assert poly_score == pytest.approx(0.9, abs=1e-4)
    # L contour polygon: area 621, perimeter 156 -> D = 5.97; (40, 110) is ~20 px from both bars
    inner_corner = Point(40, 110)
    assert Polygon(quad[0][0]).contains(inner_corner)
    assert not Polygon(poly_pts).contains(inner_corner)
    for corner in [(10, 100), (10, 139), (49, 139), (49, 130)]:
        assert Polygon(poly_pts).contains(Point(corner))


def test_small_regions_dropped_and_max_candidates():
    prob = _two_rect_map()
    prob[5:8, 150:153] = 0.9  # 3x3 pixels -> min-area rect 2x2 < min_size 3
    assert len(DBPostProcess()(prob, (160, 160))) == 2
    assert len(DBPostProcess(max_candidates=1)(prob, (160, 160))) <= 1


def test_dilation_bridges_a_one_pixel_gap():
    prob = np.zeros((80, 100), dtype=np.float32)
    prob[30:50, 20:40] = 0.9
    prob[30:50, 41:61] = 0.9  # column 40 is empty
    assert len(DBPostProcess()(prob, (80, 100))) == 2
    (box, _), = DBPostProcess(use_dilation=True)(prob, (80, 100))
    assert box[:, 0].min() < 20 and box[:, 0].max() > 60


def test_empty_map_and_params():
    post = DBPostProcess(thresh=0.2, box_thresh=0.5, unclip_ratio=2.0, box_type="poly")
    assert post(np.zeros((32, 32), np.float32), (64, 64)) == []
    assert post.params() == {
        "thresh": 0.2,
        "box_thresh": 0.5,
        "max_candidates": 1000,
        "unclip_ratio": 2.0,
        "use_dilation": False,
        "score_mode": "fast",
        "box_type": "poly",
        "min_size": 3,
    }
    with pytest.raises(ValueError):
        DBPostProcess(score_mode="median")
    with pytest.raises(ValueError):
        DBPostProcess(box_type="circle")


def test_accepts_channel_first_map():
    prob = _two_rect_map()
    assert len(DBPostProcess()(prob[None], (160, 160))) == 2


def test_second_size_check_after_unclip():
    # With a tiny unclip ratio the box barely grows: a region 3 px (centre to centre) high passes the first
    # check (short side 3 >= min_size) but not the second (< min_size + 2); one 6 px high passes both.
    prob = np.zeros((60, 60), dtype=np.float32)
    prob[10:14, 10:41] = 0.9  # 31 x 4 pixels -> 30 x 3; D = 30*3*0.1 / 66 = 0.14
    prob[30:37, 10:41] = 0.9  # 31 x 7 pixels -> 30 x 6
    results = DBPostProcess(box_thresh=0.0, unclip_ratio=0.1)(prob, (60, 60))
    assert len(results) == 1
    assert results[0][0][:, 1].min() >= 29

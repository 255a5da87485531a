"""DB targets of known shapes land where the paper's formulas put them."""
from __future__ import annotations

import numpy as np
import pytest

from datasets.db_targets import make_db_targets, offset_polygon, shrink_distance

SQUARE = np.array([[100, 100], [200, 100], [200, 200], [100, 200]], np.float32)  # 100 px side
D = 100 * 100 * (1 - 0.4**2) / 400  # = 21 px


def test_shrink_distance_formula():
    assert shrink_distance(SQUARE, 0.4) == pytest.approx(D)
    shrunk = offset_polygon(SQUARE, -D)
    assert len(shrunk) == 1
    np.testing.assert_allclose(shrunk[0].min(0), [100 + D, 100 + D], atol=0.05)
    np.testing.assert_allclose(shrunk[0].max(0), [200 - D, 200 - D], atol=0.05)


def test_shrink_map_is_the_shrunk_square():
    t = make_db_targets([SQUARE], [False], 300, 300)
    ys, xs = np.nonzero(t.shrink_map)
    assert abs(xs.min() - 121) <= 1 and abs(xs.max() - 179) <= 1
    assert abs(ys.min() - 121) <= 1 and abs(ys.max() - 179) <= 1
    assert t.shrink_map[125:176, 125:176].min() == 1.0
    assert t.shrink_map[:, :118].max() == 0 and t.shrink_map[:, 183:].max() == 0
    assert t.shrink_mask.min() == 1.0  # nothing ignored


def test_threshold_map_peaks_on_the_border():
    t = make_db_targets([SQUARE], [False], 300, 300)
    row = t.threshold_map[150]
    assert row[100] == pytest.approx(0.7, abs=1e-6) and row[200] == pytest.approx(0.7, abs=1e-6)
    # linear fall-off: 1 - d/D scaled into [0.3, 0.7]
    for d in (5, 10, 15):
        expect = 0.3 + 0.4 * (1 - d / D)
        assert row[100 - d] == pytest.approx(expect, abs=1e-5)  # outside, towards the dilated edge
        assert row[100 + d] == pytest.approx(expect, abs=1e-5)  # inside, towards the centre
    assert row[150] == pytest.approx(0.3)  # centre is farther than D from every edge
    assert t.threshold_map[5, 5] == pytest.approx(0.3)
    assert np.all(np.diff(row[100:122]) <= 1e-6) and np.all(np.diff(row[79:101]) >= -1e-6)
    mask_row = t.threshold_mask[150]
    assert mask_row[80:221].min() == 1 and mask_row[:77].max() == 0 and mask_row[224:].max() == 0


def test_ignore_and_too_small_regions_are_masked():
    other = SQUARE + [0, 0]
    other = other + np.array([[0, 0]]) + [150, 0]  # second square at x 250..350
    thin = np.array([[20, 250], [200, 250], [200, 254], [20, 254]], np.float32)  # 4 px tall: too small
    t = make_db_targets([SQUARE, other, thin], [False, True, False], 300, 400)
    assert t.ignored == [False, True, True]
    assert t.shrink_mask[150, 300] == 0 and t.shrink_mask[252, 100] == 0 and t.shrink_mask[150, 150] == 1
    assert t.shrink_map[:, 240:].max() == 0 and t.shrink_map[245:].max() == 0
    assert t.threshold_mask[150, 300] == 0  # no border supervision for don't-care text
    assert t.shrink_mask[10, 10] == 1


def test_vertex_order_does_not_matter():
    a = make_db_targets([SQUARE], [False], 300, 300)
    b = make_db_targets([SQUARE[::-1].copy()], [False], 300, 300)
    for name in ("shrink_map", "shrink_mask", "threshold_map", "threshold_mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_polygon_crossing_the_border_is_clipped_not_crashing():
    quad = np.array([[-30, 10], [60, 10], [60, 60], [-30, 60]], np.float32)
    t = make_db_targets([quad], [False], 64, 64)
    assert t.shrink_map[35, 0] == 1 and t.threshold_map.shape == (64, 64)

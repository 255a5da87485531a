"""crop_polygon geometry on images whose content is known, and the crops CLI end to end."""
from __future__ import annotations

import datasets  # noqa: F401  -- start-up fix before anything else

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.crops import crop_polygon, order_quad, polygon_to_quad, write_crops
from datasets.icdar2015 import write_icdar2015_sample
from datasets.imageio import read_image
from datasets.ppocr_label import read_ppocr_rec
from datasets.sample import DetSample, TextInstance

ROOT = Path(__file__).resolve().parents[1]


def _gradient(height: int = 200, width: int = 300) -> np.ndarray:
    """Each pixel encodes its position: B = x, G = y (mod 256), so a crop's content can be checked exactly."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.dstack([xs % 256, ys % 256, np.full_like(xs, 128)]).astype(np.uint8)


def test_axis_aligned_rectangle_is_cut_exactly():
    image = _gradient()
    crop = crop_polygon(image, [[50, 40], [170, 40], [170, 80], [50, 80]])
    assert crop.shape == (40, 120, 3)
    np.testing.assert_array_equal(crop[:, :, 0], image[40:80, 50:170, 0])
    np.testing.assert_array_equal(crop[:, :, 1], image[40:80, 50:170, 1])


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [2, 3, 0, 1], [3, 2, 1, 0], [0, 2, 1, 3], [1, 0, 3, 2]])
def test_point_order_does_not_matter(order):
    quad = np.array([[50, 40], [170, 40], [170, 80], [50, 80]], np.float32)
    np.testing.assert_array_equal(order_quad(quad[order]), quad)
    np.testing.assert_array_equal(crop_polygon(_gradient(), quad[order]), crop_polygon(_gradient(), quad))


def test_order_quad_keeps_detector_order_for_rotated_and_slanted_boxes():
    for quad in ([[20, 10], [120, 27], [117, 47], [17, 30]],     # rotated clockwise a little
                 [[20, 27], [118, 10], [121, 30], [23, 47]],     # rotated the other way
                 [[0, 0], [3, 0], [13, 10], [10, 10]]):          # strongly slanted parallelogram
        quad = np.array(quad, np.float32)
        np.testing.assert_array_equal(order_quad(quad[[2, 0, 3, 1]]), quad)


def test_rotated_quad_is_rectified():
    # a 160x40 bar rotated by 30°: left half black, right half white, on grey
    image = np.full((300, 300, 3), 128, np.uint8)
    center, size, angle = (150.0, 150.0), (160.0, 40.0), 30.0
    corners = cv2.boxPoints((center, size, angle))
    half = cv2.boxPoints(((center[0] - 40 * np.cos(np.radians(angle)), center[1] - 40 * np.sin(np.radians(angle))),
                          (80.0, 40.0), angle))
    cv2.fillPoly(image, [np.round(corners).astype(np.int32)], (255, 255, 255))
    cv2.fillPoly(image, [np.round(half).astype(np.int32)], (0, 0, 0))
    crop = crop_polygon(image, corners)
    assert abs(crop.shape[1] - 160) <= 1 and abs(crop.shape[0] - 40) <= 1
    inner = crop[5:-5]
    assert inner[:, 5:70].mean() < 20          # left part black
    assert inner[:, 90:-5].mean() > 235        # right part white


def test_vertical_line_is_rotated_counter_clockwise():
    image = np.full((200, 100, 3), 255, np.uint8)
    image[20:100, 40:70] = 0                   # top half of the box black
    crop = crop_polygon(image, [[40, 20], [70, 20], [70, 180], [40, 180]])
    assert crop.shape == (30, 160, 3)          # 160 tall x 30 wide became 30 tall x 160 wide
    assert crop[:, :75].mean() < 10 and crop[:, 85:].mean() > 245   # top → left (np.rot90)


def test_polygon_reduces_to_min_area_rect_or_bbox():
    poly = [[10, 10], [60, 10], [110, 10], [110, 40], [60, 40], [10, 40]]
    np.testing.assert_allclose(polygon_to_quad(poly), [[10, 10], [110, 10], [110, 40], [10, 40]])
    np.testing.assert_allclose(polygon_to_quad(poly, "bbox"), [[10, 10], [110, 10], [110, 40], [10, 40]])
    assert crop_polygon(_gradient(), poly).shape == (30, 100, 3)
    with pytest.raises(ValueError, match="zero area"):
        crop_polygon(_gradient(), [[0, 0], [10, 0], [20, 0], [5, 0]])
    with pytest.raises(ValueError, match="at least 3"):
        polygon_to_quad([[0, 0], [1, 1]])


def test_matches_paddleocr_get_rotate_crop_image():
    from datasets.runtime import ensure_ppocr_on_path

    ensure_ppocr_on_path()
    utility = pytest.importorskip("tools.infer.utility")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for _ in range(20):
        center = rng.uniform(80, 200, 2)
        size = rng.uniform(10, 120, 2)
        box = order_quad(cv2.boxPoints((tuple(center), tuple(size), float(rng.uniform(-40, 40)))))
        box = box + rng.uniform(-3, 3, box.shape).astype(np.float32)  # perspective-ish jitter
        box = order_quad(box)
        expected = utility.get_rotate_crop_image(image, box.copy())
        np.testing.assert_array_equal(crop_polygon(image, box), expected)


def test_write_crops_and_cli(tmp_path):
    image = _gradient()
    data = tmp_path / "icdar"
    write_icdar2015_sample(data, "img_1", image, [
        TextInstance([[50, 40], [170, 40], [170, 80], [50, 80]], "hello"),
        TextInstance([[10, 100], [60, 100], [60, 130], [10, 130]], "###", ignore=True),
        TextInstance([[200, 20], [230, 20], [230, 180], [200, 180]], "竖排文字"),
    ], ext=".png")
    result = write_crops([DetSample(data / "images" / "img_1.png", [TextInstance([[0, 0], [5, 0], [9, 0], [2, 0]], "flat")])],
                         tmp_path / "none")
    assert result.samples == [] and "zero area" in result.skipped[0]

    out = tmp_path / "rec"
    proc = subprocess.run([sys.executable, "-m", "datasets.crops", "icdar2015", str(data), "--out", str(out),
                           "--ext", ".png"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["num_crops"] == 2
    samples = read_ppocr_rec(out / "label.txt")
    assert [s.text for s in samples] == ["hello", "竖排文字"]
    assert all(s.image_path.parent == out / "crops" for s in samples)
    first = read_image(samples[0].image_path)
    np.testing.assert_array_equal(first[:, :, 0], image[40:80, 50:170, 0])
    assert read_image(samples[1].image_path).shape == (30, 160, 3)   # vertical line rotated

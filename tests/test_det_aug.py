"""Det augmentation: polygons still cover the same pixels after every geometric step, crops keep text whole."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.det_aug import build_det_aug, choose_text_safe_crop

CONF = Path(__file__).resolve().parents[1] / "conf" / "aug"
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]  # pure BGR colours absent from the grey background
POLYS = [
    np.array([[60, 50], [300, 70], [295, 120], [55, 100]], np.float32),
    np.array([[350, 200], [600, 180], [610, 260], [360, 280]], np.float32),
    np.array([[80, 330], [260, 330], [260, 420], [80, 420]], np.float32),
]


def _scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 20, (480, 640, 3)), 60, 200).astype(np.uint8)
    for poly, colour in zip(POLYS, COLOURS):
        cv2.fillPoly(image, [np.round(poly * 16).astype(np.int32)], colour, lineType=cv2.LINE_AA, shift=4)
    return image


def _geometry_only() -> dict:
    cfg = yaml.safe_load((CONF / "det_default.yaml").read_text())
    cfg.update(color=None, blur=None, noise=None, jpeg=None, size=512)
    return cfg


def _colour_mask(image: np.ndarray, colour) -> np.ndarray:
    return (np.abs(image.astype(np.int16) - np.array(colour, np.int16)).max(axis=2) < 60).astype(np.uint8)


def _fill(shape, poly) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, shift=4)
    return mask


@pytest.mark.parametrize("seed", range(8))
def test_augmented_polygons_cover_the_same_pixels(seed):
    aug = build_det_aug(_geometry_only())
    image = _scene()
    out = aug(image, POLYS, [False] * 3, np.random.default_rng(seed))
    assert out.image.shape == (512, 512, 3)
    assert len(out.polygons) >= 1  # the crop keeps at least one text
    for poly, ignore in zip(out.polygons, out.ignores):
        assert not ignore  # nothing was cut by the crop
        area = _fill(out.image.shape[:2], poly)
        colour = max(COLOURS, key=lambda c: int((_colour_mask(out.image, c) & area).sum()))
        ink = _colour_mask(out.image, colour)
        coverage = (ink & area).sum() / max(ink.sum(), 1)  # the colour's pixels lie inside the polygon
        fill = (ink & area).sum() / max(area.sum(), 1)  # and the polygon is filled by that colour
        assert coverage > 0.9 and fill > 0.9, (seed, coverage, fill)


def test_same_rng_same_result_and_configs_build():
    aug = build_det_aug(yaml.safe_load((CONF / "det_default.yaml").read_text()))
    a = aug(_scene(), POLYS, [False, True, False], np.random.default_rng(5))
    b = aug(_scene(), POLYS, [False, True, False], np.random.default_rng(5))
    assert np.array_equal(a.image, b.image) and a.ignores == b.ignores
    for pa, pb in zip(a.polygons, b.polygons):
        np.testing.assert_array_equal(pa, pb)
    with pytest.raises(KeyError, match="colour"):
        build_det_aug({"colour": {"p": 1.0}})


def test_none_config_only_fits_and_pads():
    aug = build_det_aug(yaml.safe_load((CONF / "none.yaml").read_text()), size=320)
    out = aug(_scene(), POLYS, [False] * 3, np.random.default_rng(0))
    assert out.image.shape == (320, 320, 3)
    for got, want in zip(out.polygons, POLYS):
        np.testing.assert_allclose(got, want * 0.5, atol=0.01)  # 640 → 320
    assert out.image[250:].max() == 0  # 480*0.5 = 240 rows of image, then padding


def test_text_safe_crop_never_cuts_a_box():
    rng = np.random.default_rng(0)
    boxes = [np.array([[x, y], [x + 40, y], [x + 40, y + 15], [x, y + 15]], np.float32)
             for x, y in rng.integers(0, 560, (12, 2))]
    for _ in range(50):
        x0, y0, x1, y1 = choose_text_safe_crop((600, 600), boxes, rng, min_side_ratio=0.1)
        for b in boxes:
            inside = b[:, 0].min() >= x0 and b[:, 0].max() <= x1 and b[:, 1].min() >= y0 and b[:, 1].max() <= y1
            outside = b[:, 0].max() <= x0 or b[:, 0].min() >= x1 or b[:, 1].max() <= y0 or b[:, 1].min() >= y1
            assert inside or outside


def test_det_datasets_on_synthetic_data(tmp_path):
    from datasets.icdar2015 import read_icdar2015
    from datasets.loaders import DetEvalDataset, DetTrainDataset, det_eval_collate, unpack_polygons
    from datasets.synth import generate_det_dataset

    samples = read_icdar2015(generate_det_dataset(tmp_path, 2, "icdar2015", seed=0, image_size=(320, 240)))
    train = DetTrainDataset(samples, {"enabled": False}, size=256)
    image, shrink_map, shrink_mask, threshold_map, threshold_mask = train[0]
    assert image.shape == (3, 256, 256) and image.dtype == np.float32
    assert shrink_map.shape == shrink_mask.shape == threshold_map.shape == threshold_mask.shape == (256, 256)
    assert shrink_map.sum() > 0 and threshold_mask.sum() > shrink_map.sum()
    for poly in [i.points * 256 / 320 for i in samples[0].instances]:  # no aug: only the 320 → 256 fit
        centre = np.round(poly.mean(0)).astype(int)
        if min(np.ptp(poly, 0)) > 12:
            assert shrink_map[centre[1], centre[0]] == 1
    evaluation = DetEvalDataset(samples, limit_side_len=960)
    item = evaluation[1]
    assert item[0].shape == (3, 256, 320)  # 240 rounded to a multiple of 32
    batch = det_eval_collate([evaluation[0], evaluation[1]])
    polys, ignores = unpack_polygons(batch[2][1], batch[3][1], batch[4][1])
    want, want_ignores = evaluation.ground_truth(1)
    assert ignores == want_ignores and all(np.array_equal(a, b) for a, b in zip(polys, want))

"""Paddle Inference predictors on the pretrained PP-OCRv4 files, with real rendered text (Noto CJK SC)."""
from __future__ import annotations

import export  # noqa: F401  -- project start-up before paddle

import cv2
import numpy as np
import pytest

from export.engine import RuntimeOptions, gpu_available
from export.inference_yml import DET_POST_DEFAULTS, read_inference_yml
from export.predictors import ClsPredictor, DetPredictor, RecPredictor, order_points_clockwise
from export.pretrained import pretrained_model_dir
from export.reading_order import reading_order, sorted_boxes
from export.samples import render_line, render_page
from training.metrics.rec import NormalizeConfig, normalize_text

LINES = ["增值税专用发票", "开票日期 2024年05月18日", "购买方 上海科技有限公司", "Total Amount 88.00"]


def norm(text: str) -> str:
    return normalize_text(text, NormalizeConfig())


@pytest.fixture(scope="module")
def det() -> DetPredictor:
    return DetPredictor(runtime_opts={"num_threads": 2})


@pytest.fixture(scope="module")
def rec() -> RecPredictor:
    return RecPredictor(runtime_opts={"num_threads": 2})


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    from shapely.geometry import Polygon

    pa, pb = Polygon(a), Polygon(b)
    return pa.intersection(pb).area / pa.union(pb).area


def test_det_finds_every_rendered_line(det):
    page, truth = render_page(LINES)
    boxes = det.predict(page)
    assert len(boxes) == len(LINES)
    ordered = sorted_boxes(boxes, [b for b, _ in boxes])
    for (points, score), (_, gt) in zip(ordered, truth):
        assert points.shape == (4, 2) and score > 0.6
        assert _iou(points, gt) > 0.5  # unclipped DB boxes are a bit larger than the ink box
    prob = det.prob_map(page)
    assert prob.ndim == 2 and prob.shape[0] % 32 == 0 and (prob > 0.3).mean() > 0.01


def test_det_defaults_are_paddleocr_serving_defaults(det):
    # resize: the measured default (bench/RESULTS.md section 8), not PaddleOCR 2.x's max 960
    assert (det.limit_side_len, det.limit_type, det.max_side_limit) == (736, "min", 2048)
    params = det.params()
    assert {k: params[k] for k in DET_POST_DEFAULTS} == DET_POST_DEFAULTS
    assert params["box_thresh"] == 0.6 and params["unclip_ratio"] == 1.5


def test_det_blank_image_has_no_boxes(det):
    assert det.predict(np.full((200, 300, 3), 255, np.uint8)) == []


def test_rec_decodes_chinese_and_english(rec):
    texts = ["增值税发票金额1234.56元ABC", "购买方上海科技有限公司", "Total 88"]
    out = rec.predict([render_line(t) for t in texts])
    assert [norm(t) for t, _ in out] == [norm(t) for t in texts]
    assert all(score > 0.9 for _, score in out)


def test_rec_batching_restores_order_and_matches_single(rec):
    texts = ["短", "中等长度的文本行", "a much longer English line of text 12345", "发票", "金额合计"]
    crops = [render_line(t) for t in texts]
    batched = rec.predict(crops)
    single = RecPredictor(batch_size=1, runtime_opts={"num_threads": 2}).predict(crops)
    assert [norm(t) for t, _ in batched] == [norm(t) for t, _ in single]
    assert [norm(t) for t, _ in batched][1:] == [norm(t) for t in texts][1:]


def test_rec_batch_width_follows_paddleocr_rule(rec):
    narrow, wide = render_line("ab"), render_line("一条很长很长很长很长很长很长很长的文本行")
    assert rec.preprocess([narrow]).shape == (1, 3, 48, 320)
    expected = int(48 * wide.shape[1] / wide.shape[0])
    assert rec.preprocess([narrow, wide]).shape == (2, 3, 48, expected)


def test_rec_rejects_a_charset_that_does_not_fit(rec):
    from datasets.charset import Charset

    small = RecPredictor(charset=Charset(("a", "b")), runtime_opts={"num_threads": 2})
    with pytest.raises(ValueError, match="classes"):
        small.predict([render_line("ab")])


def test_cls_turns_upside_down_crops(rec):
    cls = ClsPredictor(runtime_opts={"num_threads": 2})
    upright = render_line("开票日期2024年05月18日")
    flipped = cv2.rotate(upright, cv2.ROTATE_180)
    turned, labels = cls.predict([upright, flipped])
    assert [label for label, _ in labels] == ["0", "180"]
    assert np.array_equal(turned[1], upright) and turned[0] is upright
    assert norm(rec.predict([turned[1]])[0][0]) == norm("开票日期2024年05月18日")


def test_oneDNN_off_gives_the_same_boxes(det):
    page, _ = render_page(LINES[:2])
    plain = DetPredictor(runtime_opts=RuntimeOptions(enable_mkldnn=False, num_threads=1))
    a, b = det.predict(page), plain.predict(page)
    assert len(a) == len(b) and all(np.abs(x - y).max() <= 1 for (x, _), (y, _) in zip(a, b))


@pytest.mark.skipif(gpu_available(), reason="a GPU is present")
def test_use_gpu_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA"):
        DetPredictor(runtime_opts={"use_gpu": True})


def test_rapidocr_dirs_read_with_defaults():
    spec = read_inference_yml(pretrained_model_dir("rec"), "rec")
    assert spec.charset is not None and spec.charset.num_classes == 6625
    assert read_inference_yml(pretrained_model_dir("cls"), "cls").post == {"label_list": ["0", "180"], "thresh": 0.9}


def test_missing_model_dir_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DetPredictor(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="inference.pdmodel"):
        RecPredictor(tmp_path / "empty")


def test_reading_order_groups_lines_with_tolerance():
    def box(x, y):
        return np.array([[x, y], [x + 50, y], [x + 50, y + 20], [x, y + 20]], dtype=np.float32)

    # second line's right word sits 4 px higher than its left word: still one line, read left to right
    boxes = [box(300, 104), box(10, 10), box(10, 108), box(200, 12)]
    assert reading_order(boxes) == [1, 3, 2, 0]
    assert reading_order(boxes, line_tol=1) == [1, 3, 0, 2]


def test_order_points_clockwise():
    pts = np.array([[100, 40], [0, 0], [0, 40], [100, 0]], dtype=np.float32)
    assert order_points_clockwise(pts).tolist() == [[0, 0], [100, 0], [100, 40], [0, 40]]

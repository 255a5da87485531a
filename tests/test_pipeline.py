"""End-to-end OCR pipeline and ``python -m export.predict``: rendered invoice lines come back in reading order;
every bad-image code is produced for its kind of bad file while the other images still run."""
from __future__ import annotations

import export  # noqa: F401  -- project start-up before paddle

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from export.imagecheck import (IMAGE_QUALITY_POOR, IMAGE_TOO_LARGE, IMAGE_UNREADABLE, ImageCheckConfig,
                               ImageCheckError, ImageChecker)
from export.pipeline import OCRPipeline
from export.samples import render_page
from training.metrics.rec import NormalizeConfig, normalize_text

ROOT = Path(__file__).resolve().parents[1]
INVOICE = ["增值税专用发票", "发票代码 3100213130", "开票日期 2024年05月18日", "购买方 上海科技有限公司",
           "价税合计 1234.56", "Total Amount 88.00"]


def norm(text: str) -> str:
    return normalize_text(text, NormalizeConfig())


@pytest.fixture(scope="module")
def ocr() -> OCRPipeline:
    return OCRPipeline(runtime_opts={"num_threads": 2}, image_check=ImageCheckConfig(max_pixels=4_000_000))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    page, _ = render_page(INVOICE)
    out = {"invoice": d / "invoice.png", "missing": d / "missing.jpg", "garbage": d / "garbage.jpg",
           "truncated": d / "truncated.jpg", "empty": d / "empty.png", "huge": d / "huge.png",
           "blank": d / "blank.png", "blurred": d / "blurred.png", "dark": d / "dark.png"}
    cv2.imwrite(str(out["invoice"]), page)
    out["garbage"].write_bytes(os.urandom(2048))
    ok, jpeg = cv2.imencode(".jpg", page)
    out["truncated"].write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    out["empty"].write_bytes(b"")
    cv2.imwrite(str(out["huge"]), np.full((2100, 2000, 3), 255, np.uint8))  # 4.2 MP > the 4 MP limit above
    cv2.imwrite(str(out["blank"]), np.full((400, 600, 3), 255, np.uint8))
    cv2.imwrite(str(out["blurred"]), cv2.GaussianBlur(page, (0, 0), 5))
    cv2.imwrite(str(out["dark"]), (page * 0.02).astype(np.uint8))
    return out


def test_invoice_lines_come_back_in_reading_order(ocr, images):
    page = cv2.imread(str(images["invoice"]))
    results = ocr.predict_image(page)
    assert [norm(r["text"]) for r in results] == [norm(t) for t in INVOICE]
    for r in results:
        assert len(r["points"]) == 4 and all(isinstance(v, int) for p in r["points"] for v in p)
        assert 0.5 <= r["score"] <= 1.0
    ys = [r["points"][0][1] for r in results]
    assert ys == sorted(ys)


def test_two_columns_read_left_to_right(ocr):
    page, _ = render_page(["名称", "数量", "单价"], columns=[0, 0, 0], width=700)
    # put the three words on one line, slightly staggered vertically (within PaddleOCR's 10 px tolerance)
    row = np.full((120, 900, 3), 255, np.uint8)
    for i, (x, dy) in enumerate([(600, 0), (40, 4), (320, 2)]):
        word = page[40 + i * 60: 40 + i * 60 + 50, 30:200]
        row[30 + dy: 80 + dy, x: x + 170] = word
    texts = [r["text"] for r in ocr.predict_image(row)]
    assert texts == ["数量", "单价", "名称"]


def test_upside_down_page_needs_the_angle_classifier(images):
    page = cv2.rotate(cv2.imread(str(images["invoice"])), cv2.ROTATE_180)
    with_cls = OCRPipeline(use_cls=True, runtime_opts={"num_threads": 2})
    texts = {norm(r["text"]) for r in with_cls.predict_image(page)}
    assert {norm(t) for t in INVOICE} <= texts


def test_drop_score_filters_low_confidence(images):
    strict = OCRPipeline(drop_score=1.01, runtime_opts={"num_threads": 2})
    assert strict.predict_image(cv2.imread(str(images["invoice"]))) == []


@pytest.mark.parametrize("name,code", [
    ("missing", IMAGE_UNREADABLE), ("garbage", IMAGE_UNREADABLE), ("truncated", IMAGE_UNREADABLE),
    ("empty", IMAGE_UNREADABLE), ("huge", IMAGE_TOO_LARGE), ("blank", IMAGE_QUALITY_POOR),
    ("blurred", IMAGE_QUALITY_POOR), ("dark", IMAGE_QUALITY_POOR),
])
def test_bad_image_codes(ocr, images, name, code):
    entry = ocr.predict_path(images[name])
    assert entry["image"] == str(images[name]) and "results" not in entry
    assert entry["error"]["code"] == code and entry["error"]["message"]


def test_bad_images_do_not_stop_the_others(ocr, images):
    entries = ocr.predict_paths([images["garbage"], images["invoice"], images["missing"]])
    assert [("error" in e) for e in entries] == [True, False, True]
    assert len(entries[1]["results"]) == len(INVOICE)


def test_zero_size_array_and_quality_switch():
    checker = ImageChecker()
    with pytest.raises(ImageCheckError) as err:
        checker.check_array(np.zeros((0, 10, 3), np.uint8))
    assert err.value.code == IMAGE_UNREADABLE
    blank = np.full((100, 100, 3), 255, np.uint8)
    assert ImageChecker(ImageCheckConfig(quality_check=False)).check_array(blank) is blank


def test_quality_check_keeps_a_single_word_on_a_white_page():
    page, _ = render_page(["合计"], width=1600)
    ImageChecker().check_array(page)  # sparse but sharp: not IMAGE_QUALITY_POOR


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export.predict", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_exit_codes_and_json(images, tmp_path):
    out = tmp_path / "out.json"
    bad = _run_cli(str(images["invoice"]), str(images["truncated"]), "--out", str(out), "--threads", "2")
    assert bad.returncode == 3, bad.stderr
    lines = [json.loads(line) for line in bad.stdout.splitlines()]
    assert [("error" in e) for e in lines] == [False, True]
    assert lines[1]["error"]["code"] == IMAGE_UNREADABLE
    assert [norm(r["text"]) for r in lines[0]["results"]] == [norm(t) for t in INVOICE]
    assert json.loads(out.read_text(encoding="utf-8")) == lines
    good = _run_cli(str(images["invoice"]), "--threads", "2")
    assert good.returncode == 0, good.stderr
    assert "3" in _run_cli("--help").stdout


def test_cli_max_pixels(images):
    res = _run_cli(str(images["invoice"]), "--max-pixels", "1000")
    assert res.returncode == 3
    assert json.loads(res.stdout.splitlines()[0])["error"]["code"] == IMAGE_TOO_LARGE


def _crops(num: int) -> list[tuple[np.ndarray, str]]:
    """Word and line crops from the synthetic generator (scene and invoice styles, zh/en/mixed), as whole images."""
    from datasets.synth import render_rec_line

    return [render_rec_line(np.random.default_rng([5, i]), ("mixed", "ch", "en")[i % 3], ("scene", "invoice")[i % 2],
                            max_chars=4 if i % 2 else 16) for i in range(num)]


def test_word_and_line_crops_read_as_one_line(ocr, tmp_path):
    """A crop fed as a whole image is enlarged at most ×4 (``max_upscale``): it comes back as one result reading
    its text. Without the bound (×10–25 here) the detector splits some of the same crops into pieces."""
    crops = _crops(12)
    texts = [[r["text"] for r in ocr.predict_image(image)] for image, _ in crops]
    assert all(len(t) == 1 for t in texts), texts
    exact = sum(norm(t[0]) == norm(label) for t, (_, label) in zip(texts, crops))
    assert exact >= 11, list(zip(texts, [label for _, label in crops]))
    unbounded = OCRPipeline(max_upscale=0, runtime_opts={"num_threads": 2})
    assert unbounded.det.params()["max_upscale"] == 0 and ocr.det.params()["max_upscale"] == 4.0
    assert any(len(unbounded.predict_image(image)) > 1 for image, _ in crops)
    # the command line serves the same bound, and takes another
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), crops[0][0])
    res = _run_cli(str(path), "--threads", "2")
    assert res.returncode == 0, res.stderr
    assert [norm(r["text"]) for r in json.loads(res.stdout.splitlines()[0])["results"]] == [norm(crops[0][1])]
    bad = _run_cli(str(path), "--max-upscale", "0.5")
    assert bad.returncode == 2 and "--max-upscale 0.5: must be >= 1" in bad.stderr


def test_identical_to_paddleocr_text_system(tmp_path):
    """Same boxes, texts and order as PaddleOCR 2.10's own ``TextSystem`` (tools/infer/predict_system.py from
    unstructured-paddleocr) on the same PP-OCRv4 files: what users compare us against."""
    import glob

    from datasets.imageio import read_image
    from datasets.runtime import ensure_ppocr_on_path
    from datasets.synth import generate_det_dataset
    from export.pretrained import pretrained_dict_path, pretrained_model_dir

    root = str(ensure_ppocr_on_path())
    sys.path.insert(0, root)  # its tools/ package must win over any other top-level "tools"
    try:
        from tools.infer import utility
        from tools.infer.predict_system import TextSystem
    finally:
        sys.path.remove(root)  # first occurrence only: ensure_ppocr_on_path's own entry stays

    args = utility.init_args().parse_args([])
    args.det_model_dir, args.rec_model_dir = str(pretrained_model_dir("det")), str(pretrained_model_dir("rec"))
    args.rec_char_dict_path, args.use_gpu, args.show_log, args.enable_mkldnn = str(pretrained_dict_path()), False, False, False
    paddleocr = TextSystem(args)
    ours = OCRPipeline(limit_side_len=960, limit_type="max", runtime_opts={"enable_mkldnn": False})  # 2.10 defaults
    generate_det_dataset(tmp_path, 3, kind="scene", seed=7, shift=True)
    images = [read_image(p) for p in sorted(glob.glob(str(tmp_path / "**" / "*.jpg"), recursive=True))]
    images.append(cv2.rotate(images[0], cv2.ROTATE_90_CLOCKWISE))  # vertical lines: crops turned 90°
    for image in images:
        boxes, recs, _ = paddleocr(image)
        theirs = [(b.astype(int).tolist(), text) for b, (text, _) in zip(boxes, recs)]
        assert theirs and [(r["points"], r["text"]) for r in ours.predict_image(image)] == theirs

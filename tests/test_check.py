"""datasets.check: every error kind is found with its file and line, warnings stay warnings, the JSON line and
exit codes of ``python -m datasets.check`` follow the DESIGN.md contract."""
from __future__ import annotations

import datasets  # noqa: F401  -- start-up fix before anything else

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.charset import Charset
from datasets.check import ctc_steps_needed, time_steps_for_width, validate
from datasets.errors import (
    DUPLICATE_ENTRY,
    DUPLICATE_IMAGE,
    EMPTY_LABEL_FILE,
    EMPTY_TEXT,
    IMAGE_WITHOUT_LABEL,
    MALFORMED_LINE,
    MISSING_IMAGE,
    OOV,
    OUT_OF_IMAGE,
    SELF_INTERSECTING,
    TEXT_TOO_LONG,
    TOO_FEW_POINTS,
    TRUNCATED_IMAGE,
    UNREADABLE_IMAGE,
    ZERO_AREA,
)
from datasets.imageio import write_image

ROOT = Path(__file__).resolve().parents[1]
BOX = "10,10,90,10,90,40,10,40"


def _noise(path: Path, width: int = 200, height: int = 100, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_image(path, rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _run(*args: str) -> tuple[int, list[str], str]:
    proc = subprocess.run([sys.executable, "-m", "datasets.check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    return proc.returncode, proc.stdout.strip().splitlines(), proc.stderr


@pytest.fixture()
def dirty_icdar(tmp_path: Path) -> Path:
    """One ICDAR2015 set with every error kind the reader + checker must find, plus one clean sample."""
    images, gts = tmp_path / "images", tmp_path / "gts"
    _noise(images / "img_1.jpg")
    gts.mkdir(parents=True)
    (gts / "gt_img_1.txt").write_text("\ufeff" + "\n".join([
        f"{BOX},fine",
        "10,10,90,10,90,40,10,oops",                  # 2: malformed
        "0,0,10,0,20,0,5,0,flat",                     # 3: zero area
        "150,10,500,10,500,40,150,40,wide",           # 4: outside the 200x100 image
        "10,10,90,40,90,10,10,40,crossed",            # 5: self-intersecting (warning)
    ]) + "\n", encoding="utf-8")
    truncated = _noise(images / "img_2.jpg", seed=2).read_bytes()
    (images / "img_2.jpg").write_bytes(truncated[: len(truncated) * 2 // 3])
    (images / "img_3.jpg").write_bytes(b"this is not an image")
    shutil.copy(images / "img_1.jpg", images / "img_4.jpg")
    _noise(images / "img_5.jpg", seed=5)
    _noise(images / "img_6.jpg", seed=6)              # no label file
    _noise(images / "img_8.jpg", seed=8)              # the one clean sample
    for n in (2, 3, 4, 7, 8):                         # 7: label without image
        (gts / f"gt_img_{n}.txt").write_text(f"{BOX},ok\n", encoding="utf-8")
    (gts / "gt_img_5.txt").write_text("\n", encoding="utf-8")   # empty label file
    return tmp_path


def test_every_error_kind_with_file_and_line(dirty_icdar):
    report = validate("icdar2015", dirty_icdar)
    gts, images = dirty_icdar / "gts", dirty_icdar / "images"
    found = {(issue.kind, Path(issue.file).relative_to(dirty_icdar).as_posix(), issue.line) for issue in report.errors}
    assert found == {
        (MALFORMED_LINE, "gts/gt_img_1.txt", 2),
        (ZERO_AREA, "gts/gt_img_1.txt", 3),
        (OUT_OF_IMAGE, "gts/gt_img_1.txt", 4),
        (TRUNCATED_IMAGE, "images/img_2.jpg", None),
        (UNREADABLE_IMAGE, "images/img_3.jpg", None),
        (DUPLICATE_IMAGE, "images/img_4.jpg", None),
        (EMPTY_LABEL_FILE, "gts/gt_img_5.txt", None),
        (IMAGE_WITHOUT_LABEL, "images/img_6.jpg", None),
        (MISSING_IMAGE, "gts/gt_img_7.txt", None),
    }
    messages = {issue.kind: issue.message for issue in report.errors}
    assert "outside the 200x100 image" in messages[OUT_OF_IMAGE] and "(500, 10)" in messages[OUT_OF_IMAGE]
    assert str(images / "img_1.jpg") in messages[DUPLICATE_IMAGE]
    assert "truncated" in messages[TRUNCATED_IMAGE]
    assert "gt_img_2.txt" in messages[TRUNCATED_IMAGE]          # names where the image is labelled
    assert [(w.kind, w.line) for w in report.warnings] == [(SELF_INTERSECTING, 5)]
    assert (report.num_images, report.num_errors) == (6, 9)

    good, bad = report.split()
    assert [s.image_path.name for s in good] == ["img_8.jpg"]
    assert len(bad) == 5 and report.is_bad(bad[0]) and not report.is_bad(good[0])
    assert str(images / "img_6.jpg") in report.bad_keys()


def test_cli_exit_1_and_json_contract(dirty_icdar, tmp_path):
    code, lines, stderr = _run("icdar2015", str(dirty_icdar), "--json", str(tmp_path / "r.json"))
    assert code == 1, stderr
    data = json.loads(lines[-1])
    for key in ("num_images", "num_instances", "num_ignored", "num_errors", "errors"):
        assert key in data
    assert data["num_errors"] == len(data["errors"]) == 9
    malformed = [e for e in data["errors"] if e["kind"] == MALFORMED_LINE]
    assert malformed[0]["file"] == str(dirty_icdar / "gts" / "gt_img_1.txt") and malformed[0]["line"] == 2
    assert all({"file", "line", "message"} <= set(e) for e in data["errors"])
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8")) == data
    assert any("error" in line for line in lines[:-1])          # the human report came first


def test_cli_charset_coverage_oov_is_an_error_and_clean_is_exit_0(tmp_path):
    (tmp_path / "gts").mkdir()
    _noise(tmp_path / "images" / "img_1.jpg")
    (tmp_path / "gts" / "gt_img_1.txt").write_text(f"{BOX},abc\n{BOX},abd\n{BOX},###\n", encoding="utf-8")
    (tmp_path / "dict.txt").write_text("a\nb\nc\n", encoding="utf-8")
    code, lines, stderr = _run("icdar2015", str(tmp_path), "--charset", str(tmp_path / "dict.txt"))
    assert code == 1, stderr                      # training refuses these labels, so the check does too
    data = json.loads(lines[-1])
    assert (data["num_images"], data["num_instances"], data["num_ignored"], data["num_errors"]) == (1, 3, 1, 1)
    assert data["oov_chars"] == {"d": 1}
    assert data["charset_coverage"] == pytest.approx(5 / 6)
    assert data["charset"]["sha256"] == Charset.from_file(tmp_path / "dict.txt").sha256
    assert [(e["kind"], e["line"]) for e in data["errors"]] == [(OOV, 2)]
    assert data["oov_summary"].startswith("1 text line(s) contain characters outside the charset (4 chars): 'd'")
    assert any(data["oov_summary"] in line for line in lines[:-1])     # the readable report says it too
    # the same data with the missing character added (as training's model.charset.extra_chars) is clean
    code, lines, stderr = _run("icdar2015", str(tmp_path), "--charset", str(tmp_path / "dict.txt"),
                               "--extra-chars", "d")
    assert code == 0, stderr
    assert json.loads(lines[-1])["num_errors"] == 0


def test_cli_missing_path_is_usage_error(tmp_path):
    code, _, stderr = _run("rctw17", str(tmp_path / "nope"))
    assert code == 2 and "not found" in stderr


def test_ppocr_det_duplicates_points_and_unlabelled_neighbours(tmp_path):
    _noise(tmp_path / "imgs" / "a.jpg")
    _noise(tmp_path / "imgs" / "b.jpg", seed=1)
    _noise(tmp_path / "imgs" / "forgotten.jpg", seed=2)
    ok = json.dumps([{"transcription": "t", "points": [[0, 0], [200, 0], [200.5, 100], [0, 100]]}])
    two = json.dumps([{"transcription": "t", "points": [[0, 0], [5, 5]]}])
    label = tmp_path / "train.txt"
    other = json.dumps([{"transcription": "u", "points": [[0, 0], [200, 0], [200.5, 100], [0, 100]]}])
    label.write_text(f"imgs/a.jpg\t{ok}\nimgs/b.jpg\t{two}\nimgs/a.jpg\t{other}\n", encoding="utf-8")
    report = validate("ppocr-det", label)
    # the same image labelled twice with labels that disagree: an error naming both places
    assert [(e.kind, e.line) for e in report.errors] == [(TOO_FEW_POINTS, 2), (DUPLICATE_ENTRY, 3)]
    assert "also at" in report.errors[1].message and f"{label}:1" in report.errors[1].message
    assert "different label" in report.errors[1].message
    assert [(w.kind, Path(w.file).name) for w in report.warnings] == [(IMAGE_WITHOUT_LABEL, "forgotten.jpg")]
    # ... with the same label: a counted warning, the sample stays
    label.write_text(f"imgs/a.jpg\t{ok}\nimgs/b.jpg\t{two}\nimgs/a.jpg\t{ok}\n", encoding="utf-8")
    report = validate("ppocr-det", label)
    assert [(e.kind, e.line) for e in report.errors] == [(TOO_FEW_POINTS, 2)]
    assert [(w.kind, w.line) for w in report.warnings if w.kind == DUPLICATE_ENTRY] == [(DUPLICATE_ENTRY, 3)]
    assert report.num_duplicates == 1 and report.to_dict()["num_duplicates"] == 1
    assert [s.image_path.name for s in report.split()[0]] == ["a.jpg", "a.jpg"]
    # 0.5 px past the border passes the default 1 px tolerance, not a zero tolerance
    strict = validate("ppocr-det", label, tolerance=0.0)
    assert [e.kind for e in strict.errors].count(OUT_OF_IMAGE) == 2


def test_rec_labels_too_long_for_ctc_and_oov(tmp_path):
    for n in range(4):
        _noise(tmp_path / f"{n}.jpg", 64, 16, seed=n)
    label = tmp_path / "rec.txt"
    label.write_text("0.jpg\taab\n1.jpg\taaab\n2.jpg\tabcdefg\n3.jpg\t \n", encoding="utf-8")
    charset = Charset(("a", "b", "c", "d", "e", "f"), use_space_char=False)
    report = validate("ppocr-rec", label, charset, max_text_len=6, rec_width=40)   # 40 / 8 = 5 CTC steps
    assert sorted((e.line, e.kind) for e in report.errors) == [(3, OOV), (4, EMPTY_TEXT)]
    too_long = [w for w in report.warnings if w.kind == TEXT_TOO_LONG]
    assert [w.line for w in too_long] == [2, 3] and report.num_too_long == 2
    assert "needs 6 CTC steps" in too_long[0].message
    assert "7 characters > max_text_len 6" in too_long[1].message
    assert [e.line for e in report.errors if e.kind == OOV] == [3]
    assert report.oov_chars == {"g": 1}
    assert report.to_dict()["num_instances"] == 3


def test_ctc_arithmetic():
    assert time_steps_for_width(320) == 40
    assert ctc_steps_needed("hello") == 6       # "ll" needs a blank between
    assert ctc_steps_needed("中文") == 2

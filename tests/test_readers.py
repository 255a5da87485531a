"""Readers and writers on small hand-written label files: BOM, CRLF, commas, quotes, ###, difficult flag,
layouts, pairing errors, strict vs lenient reading, ratio mixing, converters, image I/O errors."""
from __future__ import annotations

import datasets  # noqa: F401  -- start-up fix before anything else

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.convert import convert
from datasets.errors import (
    EMPTY_LABEL,
    EMPTY_LABEL_FILE,
    EMPTY_TEXT,
    ENCODING,
    IMAGE_WITHOUT_LABEL,
    MALFORMED_LINE,
    MISSING_IMAGE,
    TOO_FEW_POINTS,
    DatasetError,
    ValidationIssue,
)
from datasets.formats import FORMATS, parse_data_spec, read_det, read_rec
from datasets.icdar2015 import locate_icdar2015, read_icdar2015, write_icdar2015_sample
from datasets.imageio import image_size, read_image, verify_image, write_image
from datasets.ppocr_label import read_ppocr_det, read_ppocr_rec, write_ppocr_det_label, write_ppocr_rec_label
from datasets.rctw17 import parse_rctw17_line, read_rctw17, write_rctw17_sample
from datasets.sample import TextInstance

BOM = "\ufeff"
QUAD = [[10, 10], [90, 10], [90, 40], [10, 40]]


def _image(path: Path, width: int = 200, height: int = 100) -> Path:
    write_image(path, np.full((height, width, 3), 200, np.uint8))
    return path


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------------------------------------- ICDAR2015
def test_icdar2015_bom_crlf_commas_and_dont_care(tmp_path):
    _image(tmp_path / "images" / "img_1.jpg")
    _write(tmp_path / "gts" / "gt_img_1.txt",
           BOM + "10,10,90,10,90,40,10,40,Hello, world, again\r\n"
           "100,50,150,50,150,80,100,80,###\r\n\r\n"
           "1,2,3,4,5,6,7,8,\r\n")
    (sample,) = read_icdar2015(tmp_path)
    assert sample.image_path == tmp_path / "images" / "img_1.jpg"
    texts = [(i.text, i.ignore, i.line) for i in sample.instances]
    assert texts == [("Hello, world, again", False, 1), ("###", True, 2), ("", False, 4)]
    np.testing.assert_array_equal(sample.instances[0].points, np.array(QUAD, np.float32))


def test_icdar2015_official_layout_and_natural_order(tmp_path):
    images, gts = tmp_path / "ch4_training_images", tmp_path / "ch4_training_localization_transcription_gt"
    for n in (1, 2, 10):
        _image(images / f"img_{n}.jpg")
        _write(gts / f"gt_img_{n}.txt", f"0,0,5,0,5,5,0,5,w{n}\n")
    samples = read_icdar2015(tmp_path)
    assert [s.image_path.name for s in samples] == ["img_1.jpg", "img_2.jpg", "img_10.jpg"]
    # the images folder itself works as root too (labels found in the sibling folder)
    assert locate_icdar2015(images) == (images, gts)
    assert len(read_icdar2015(images)) == 3


def test_icdar2015_flat_folder_and_png(tmp_path):
    _image(tmp_path / "img_7.png")
    _write(tmp_path / "gt_img_7.txt", "0,0,5,0,5,5,0,5,abc\n")
    (sample,) = read_icdar2015(tmp_path)
    assert sample.image_path.name == "img_7.png"


def test_icdar2015_refuses_train_and_test_side_by_side(tmp_path):
    for images, gts in (("ch4_training_images", "ch4_training_localization_transcription_gt"),
                        ("ch4_test_images", "Challenge4_Test_Task1_GT")):
        (tmp_path / images).mkdir()
        (tmp_path / gts).mkdir()
    with pytest.raises(ValueError, match="several ICDAR2015 sets"):
        read_icdar2015(tmp_path)


def test_icdar2015_strict_raises_with_file_and_line(tmp_path):
    _image(tmp_path / "images" / "img_1.jpg")
    label = _write(tmp_path / "gts" / "gt_img_1.txt", "0,0,5,0,5,5,0,5,ok\n0,0,5,zero,5,5,0,5,bad\n")
    with pytest.raises(DatasetError) as info:
        read_icdar2015(tmp_path)
    assert (info.value.file, info.value.line, info.value.kind) == (str(label), 2, MALFORMED_LINE)
    assert str(info.value).startswith(f"{label}:2: coordinate 4 is not a number")


def test_icdar2015_lenient_collects_every_problem(tmp_path):
    _image(tmp_path / "images" / "img_1.jpg")
    _image(tmp_path / "images" / "img_2.jpg")       # no label file
    _write(tmp_path / "gts" / "gt_img_1.txt", "0,0,5,0,5,5,0,5,ok\n1,2,3,4,5,6,7,8\n")
    _write(tmp_path / "gts" / "gt_img_3.txt", "0,0,5,0,5,5,0,5,orphan\n")   # no image
    _image(tmp_path / "images" / "img_4.jpg")
    _write(tmp_path / "gts" / "gt_img_4.txt", "\n  \n")                       # empty
    issues: list[ValidationIssue] = []
    samples = read_icdar2015(tmp_path, issues=issues)
    assert [s.image_path.name for s in samples] == ["img_1.jpg", "img_4.jpg"]
    assert [i.text for i in samples[0].instances] == ["ok"]              # the good line survives
    found = {(Path(i.file).name, i.line, i.kind) for i in issues}
    assert found == {("gt_img_1.txt", 2, MALFORMED_LINE), ("gt_img_3.txt", None, MISSING_IMAGE),
                     ("gt_img_4.txt", None, EMPTY_LABEL_FILE), ("img_2.jpg", None, IMAGE_WITHOUT_LABEL)}
    by_kind = {i.kind: i for i in issues}
    assert by_kind[MALFORMED_LINE].key == str(tmp_path / "images" / "img_1.jpg")
    assert "8 coordinates and a transcription" in by_kind[MALFORMED_LINE].message


def test_non_utf8_label_line_is_reported_with_its_line(tmp_path):
    _image(tmp_path / "images" / "img_1.jpg")
    _write(tmp_path / "gts" / "gt_img_1.txt", "0,0,5,0,5,5,0,5,ok\n0,0,5,0,5,5,0,5,中文\n", encoding="gbk")
    issues: list[ValidationIssue] = []
    (sample,) = read_icdar2015(tmp_path, issues=issues)
    assert [(i.line, i.kind) for i in issues] == [(2, ENCODING)]
    assert "UTF-8" in issues[0].message
    assert [i.text for i in sample.instances] == ["ok"]


def test_icdar2015_writer_round_trip(tmp_path):
    image = np.full((60, 120, 3), 255, np.uint8)
    instances = [TextInstance([[10.4, 10.6], [90, 10], [90, 40], [10, 40]], "a,b"),
                 TextInstance(QUAD, "hidden", ignore=True)]
    written = write_icdar2015_sample(tmp_path, "img_3", image, instances)
    (read,) = read_icdar2015(tmp_path)
    assert read.image_path == written.image_path and read.source == written.source
    for a, b in zip(read.instances, written.instances):
        np.testing.assert_array_equal(a.points, b.points)
        assert (a.text, a.ignore) == (b.text, b.ignore)
    assert written.instances[0].points[0].tolist() == [10, 11]          # rounded as written
    assert (written.instances[1].text, written.instances[1].ignore) == ("###", True)
    assert read_image(written.image_path).shape == (60, 120, 3)


# ---------------------------------------------------------------------------------------------- RCTW-17
def test_rctw17_quotes_commas_difficult_and_bom(tmp_path):
    _image(tmp_path / "image_0.jpg")
    _write(tmp_path / "image_0.txt",
           BOM + '1,2,30,2,30,20,1,20,0,"中国,北京"\r\n'
           '1,2,30,2,30,20,1,20,1,"say ""hi"""\r\n'
           '1,2,30,2,30,20,1,20,0,"他说"你好"啊"\n'
           '1,2,30,2,30,20,1,20,0,###\n')
    (sample,) = read_rctw17(tmp_path)
    assert [(i.text, i.ignore) for i in sample.instances] == [
        ("中国,北京", False), ('say "hi"', True), ('他说"你好"啊', False), ("###", True)]


def test_rctw17_bad_difficult_flag_and_pairing(tmp_path):
    (tmp_path / "part1").mkdir()
    _image(tmp_path / "part1" / "image_1.jpeg")
    label = _write(tmp_path / "part1" / "image_1.txt", '1,2,30,2,30,20,1,20,0,"ok"\n1,2,30,2,30,20,1,20,2,"x"\n')
    _image(tmp_path / "part2" / "image_2.png")                         # no label
    _write(tmp_path / "part2" / "image_3.txt", '1,2,30,2,30,20,1,20,0,"x"\n')   # no image
    with pytest.raises(DatasetError, match=r"image_1\.txt:2: difficult flag .* must be 0 or 1"):
        read_rctw17(tmp_path)
    issues: list[ValidationIssue] = []
    samples = read_rctw17(tmp_path, issues=issues)
    assert [s.image_path.name for s in samples] == ["image_1.jpeg"]
    assert {(Path(i.file).name, i.line, i.kind) for i in issues} == {
        (label.name, 2, MALFORMED_LINE), ("image_3.txt", None, MISSING_IMAGE), ("image_2.png", None, IMAGE_WITHOUT_LABEL)}


def test_rctw17_unterminated_quote_is_malformed():
    with pytest.raises(ValueError, match="unterminated"):
        parse_rctw17_line('1,2,3,4,5,6,7,8,0,"abc')


def test_rctw17_writer_round_trip_keeps_quotes_and_difficult_text(tmp_path):
    instances = [TextInstance(QUAD, 'a "quoted", text'), TextInstance(QUAD, "难认", ignore=True)]
    written = write_rctw17_sample(tmp_path, "image_5", np.zeros((50, 100, 3), np.uint8), instances)
    (read,) = read_rctw17(tmp_path)
    assert [(i.text, i.ignore) for i in read.instances] == [('a "quoted", text', False), ("难认", True)]
    assert [(i.text, i.ignore) for i in written.instances] == [(i.text, i.ignore) for i in read.instances]
    assert (tmp_path / "image_5.txt").read_text(encoding="utf-8").splitlines()[1].endswith(',1,"难认"')


# ---------------------------------------------------------------------------------------------- PaddleOCR
def test_ppocr_det_parse_ignore_and_root_lookup(tmp_path):
    _image(tmp_path / "imgs" / "a.jpg")
    ann = [{"transcription": "你好", "points": QUAD}, {"transcription": "###", "points": QUAD},
           {"transcription": "*", "points": [[0, 0], [5, 0], [5, 5], [0, 5], [0, 3]], "difficult": False}]
    # PPOCRLabel style: Label.txt inside the image folder, paths relative to its parent
    label = _write(tmp_path / "imgs" / "Label.txt", BOM + f"imgs/a.jpg\t{json.dumps(ann, ensure_ascii=False)}\n")
    (sample,) = read_ppocr_det(label)
    assert sample.image_path == tmp_path / "imgs" / "a.jpg" and sample.line == 1
    assert [(i.text, i.ignore, len(i.points)) for i in sample.instances] == [
        ("你好", False, 4), ("###", True, 4), ("*", True, 5)]


def test_ppocr_det_errors_with_file_and_line(tmp_path):
    _image(tmp_path / "a.jpg")
    label = _write(tmp_path / "train.txt", "\n".join([
        f"a.jpg\t{json.dumps([{'transcription': 'ok', 'points': QUAD}])}",
        "a.jpg\t[{\"transcription\": \"x\", \"points\": [[1, 2]}]",       # bad JSON
        "no_tab_here",
        f"missing.jpg\t{json.dumps([{'transcription': 'x', 'points': QUAD}])}",
        f"a.jpg\t{json.dumps([{'transcription': 'x', 'points': [[0, 0], [1, 1]]}])}",
        "a.jpg\t[]",
        f"a.jpg\t{json.dumps([{'points': QUAD}])}",
    ]) + "\n")
    with pytest.raises(DatasetError, match=r"train\.txt:2: annotation is not valid JSON"):
        read_ppocr_det(label)
    issues: list[ValidationIssue] = []
    samples = read_ppocr_det(label, issues=issues)
    assert [(i.line, i.kind) for i in issues] == [
        (2, MALFORMED_LINE), (3, MALFORMED_LINE), (4, MISSING_IMAGE), (5, TOO_FEW_POINTS), (6, EMPTY_LABEL),
        (7, MALFORMED_LINE)]
    assert "missing 'transcription'" in issues[-1].message
    assert "image not found" in issues[2].message and "missing.jpg" in issues[2].message
    assert [s.line for s in samples] == [1, 5, 6]


def test_ppocr_det_ratio_mixing_is_seeded(tmp_path):
    for name in "abcd":
        _image(tmp_path / f"{name}.jpg", 20, 20)
    lines = [f"{n}.jpg\t{json.dumps([{'transcription': n, 'points': QUAD}])}\n" for n in "abcd"]
    real = _write(tmp_path / "real.txt", "".join(lines))
    synth = _write(tmp_path / "synth.txt", "".join(lines[:2]))
    mixed = read_ppocr_det([real, synth], ratios=[0.5, 2.0], seed=3)
    assert len(mixed) == 2 + 4
    assert [s.instances[0].text for s in mixed[2:]] == ["a", "b", "a", "b"]
    again = read_ppocr_det([real, synth], ratios=[0.5, 2.0], seed=3)
    assert [s.image_path for s in again] == [s.image_path for s in mixed]
    with pytest.raises(ValueError, match="one ratio per file"):
        read_ppocr_det([real, synth], ratios=[1.0])


def test_ppocr_rec_reader_errors_and_round_trip(tmp_path):
    _image(tmp_path / "crops" / "1.jpg", 100, 32)
    label = _write(tmp_path / "rec.txt", "crops/1.jpg\t Hello world \ncrops/1.jpg\ta\tb\ncrops/1.jpg\t\n"
                                          "crops/nope.jpg\tx\n")
    issues: list[ValidationIssue] = []
    (sample,) = read_ppocr_rec(label, issues=issues)
    assert sample.text == " Hello world " and sample.line == 1
    assert [(i.line, i.kind) for i in issues] == [(2, MALFORMED_LINE), (3, EMPTY_TEXT), (4, MISSING_IMAGE)]
    out = write_ppocr_rec_label([sample], tmp_path / "out" / "label.txt", root=tmp_path)
    assert out.read_text(encoding="utf-8") == "crops/1.jpg\t Hello world \n"
    assert read_ppocr_rec(out, root=tmp_path)[0].text == " Hello world "


def test_ppocr_det_writer_round_trip(tmp_path):
    _image(tmp_path / "data" / "x.jpg")
    samples = read_ppocr_det(_write(tmp_path / "data" / "l.txt",
                                    f"x.jpg\t{json.dumps([{'transcription': 't', 'points': [[1.5, 2], [9, 2], [9, 8]]}])}\n"))
    out = write_ppocr_det_label(samples, tmp_path / "out" / "det.txt")
    assert out.read_text(encoding="utf-8").startswith("../data/x.jpg\t")
    (again,) = read_ppocr_det(out)
    assert again.image_path.resolve() == (tmp_path / "data" / "x.jpg").resolve()
    np.testing.assert_array_equal(again.instances[0].points, samples[0].instances[0].points)


# ---------------------------------------------------------------------------------------------- registry
def test_formats_registry_and_data_spec(tmp_path):
    assert set(FORMATS) == {"icdar2015", "rctw17", "ppocr-det", "ppocr-rec"}
    spec = parse_data_spec("ppocr-det:/data/a:b.txt")
    assert (spec.format, spec.path) == ("ppocr-det", Path("/data/a:b.txt"))
    with pytest.raises(ValueError, match="unknown dataset format 'coco'"):
        parse_data_spec("coco:x")
    with pytest.raises(ValueError, match="FORMAT:PATH"):
        parse_data_spec("icdar2015")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_det("icdar2015", tmp_path / "nope")
    with pytest.raises(ValueError, match="recognition format"):
        read_det("ppocr-rec", tmp_path / "x.txt")


def test_read_rec_from_det_format_skips_ignored(tmp_path):
    write_rctw17_sample(tmp_path, "image_1", np.zeros((50, 100, 3), np.uint8),
                        [TextInstance(QUAD, "keep"), TextInstance(QUAD, "drop", ignore=True)])
    (rec,) = read_rec("rctw17", tmp_path)
    assert rec.text == "keep" and rec.points.shape == (4, 2) and rec.line == 1


def test_convert_det_to_ppocr_and_rec(tmp_path):
    data = tmp_path / "icdar"
    write_icdar2015_sample(data, "img_1", np.full((60, 120, 3), 255, np.uint8),
                           [TextInstance(QUAD, "a,b"), TextInstance(QUAD, "x", ignore=True)])
    summary = convert("icdar2015", data, tmp_path / "out", copy_images=True)
    (sample,) = read_ppocr_det(summary["label_file"])
    assert sample.image_path == tmp_path / "out" / "images" / "img_1.jpg"
    assert [(i.text, i.ignore) for i in sample.instances] == [("a,b", False), ("###", True)]
    rec = convert("icdar2015", data, tmp_path / "rec", to="ppocr-rec")
    (line,) = read_ppocr_rec(rec["label_file"])
    assert line.text == "a,b" and read_image(line.image_path).shape == (30, 80, 3)
    with pytest.raises(ValueError, match="cannot become a detection label file"):
        convert("ppocr-rec", rec["label_file"], tmp_path / "x", to="ppocr-det")


# ---------------------------------------------------------------------------------------------- image I/O
def test_read_image_non_ascii_path_and_errors(tmp_path):
    path = _image(tmp_path / "图片 1.png", 30, 20)
    assert read_image(path).shape == (20, 30, 3)
    with pytest.raises(DatasetError, match="not found") as info:
        read_image(tmp_path / "missing.jpg")
    assert info.value.file == str(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="0 bytes"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match="cannot decode"):
        read_image(tmp_path / "text.jpg")


def test_verify_image_finds_truncation(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for ext in (".jpg", ".png"):
        good = write_image(tmp_path / f"good{ext}", image)
        assert verify_image(good) is None
        data = good.read_bytes()
        bad = tmp_path / f"bad{ext}"
        bad.write_bytes(data[: len(data) * 2 // 3])
        problem = verify_image(bad)
        assert problem is not None and "truncated" in problem.lower()
    assert "not found" in verify_image(tmp_path / "none.jpg")


def test_image_size_follows_exif_rotation_like_decoding(tmp_path):
    pil = Image.fromarray(np.zeros((40, 100, 3), np.uint8))
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90°: decoders return a 100-high, 40-wide image
    path = tmp_path / "rotated.jpg"
    pil.save(path, exif=exif.tobytes())
    assert image_size(path) == (40, 100)
    assert read_image(path).shape[:2] == (100, 40)


def _alpha_only_text(height: int = 48, width: int = 160) -> np.ndarray:
    """Coverage of the word "Hi" drawn only in the alpha channel; the colour under it is black everywhere."""
    import cv2

    alpha = np.zeros((height, width), np.uint8)
    cv2.putText(alpha, "Hi there", (4, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2)
    return alpha


@pytest.mark.parametrize("mode,fmt", [("RGBA", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP"), ("RGBA16", "PNG"),
                                      ("P", "PNG")])
def test_transparency_is_flattened_onto_white(tmp_path, mode, fmt):
    """Text that lives only in the alpha channel reads as dark text on white, not as an all-black image."""
    import cv2

    alpha = _alpha_only_text()
    black = np.zeros(alpha.shape + (3,), np.uint8)
    path = tmp_path / f"a.{fmt.lower()}"
    if mode == "RGBA16":   # 16-bit BGRA through OpenCV's writer
        bgra = np.dstack([black, alpha]).astype(np.uint16) * 257
        assert cv2.imwrite(str(path), bgra)
    elif mode == "P":      # palette with a transparent entry (tRNS), fully transparent background
        pil = Image.fromarray(np.where(alpha[:, :, None] > 127, 0, 255).repeat(3, 2).astype(np.uint8)).convert(
            "P", palette=Image.ADAPTIVE, colors=2)
        white = [i for i, c in enumerate(np.array(pil.getpalette()[:6]).reshape(2, 3)) if c.sum() > 300][0]
        pil.save(path, transparency=white)
    elif mode == "LA":
        Image.fromarray(np.dstack([np.zeros_like(alpha), alpha]), "LA").save(path, fmt)
    else:
        Image.fromarray(np.dstack([black, alpha]), "RGBA").save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    image = read_image(path)
    assert image.shape == alpha.shape + (3,) and image.dtype == np.uint8
    ink = alpha > 200
    assert image[~(alpha > 0)].min() >= 250          # transparent background → white
    assert image[ink].max() <= 10                    # opaque black ink stays black
    from export.imagecheck import ImageChecker

    checked = ImageChecker().load(path)                  # not "under-exposed"
    assert np.array_equal(checked, image)


def test_image_check_flattens_bgra_arrays():
    from export.imagecheck import IMAGE_QUALITY_POOR, ImageChecker, ImageCheckError

    alpha = _alpha_only_text()
    bgra = np.dstack([np.zeros(alpha.shape + (3,), np.uint8), alpha])
    out = ImageChecker().check_array(bgra, "x.png")
    assert out.shape == alpha.shape + (3,) and out[alpha == 0].min() == 255
    with pytest.raises(ImageCheckError) as info:       # the same pixels without alpha are still refused
        ImageChecker().check_array(np.ascontiguousarray(bgra[:, :, :3]), "x.png")
    assert info.value.code == IMAGE_QUALITY_POOR and "under-exposed" in info.value.message

"""Synthetic data: exact polygons that survive a write/read round trip, determinism, and real CJK ink."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.charset import Charset
from datasets.fonts import available_fonts, default_cjk_font
from datasets.icdar2015 import read_icdar2015
from datasets.ppocr_label import read_ppocr_rec
from datasets.rctw17 import read_rctw17
from datasets.synth import _rng_for, generate_det_dataset, generate_rec_dataset, main, render_det_image
from datasets.synth_text import CH_WORDS, EN_WORDS, KINDS, LANGS, make_text

SIZE = (320, 240)


def _polygon_mask(shape, points) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(points) * 16).astype(np.int32)], 1, shift=4)
    return mask


@pytest.mark.parametrize("fmt, reader", [("icdar2015", read_icdar2015), ("rctw17", read_rctw17)])
def test_written_polygons_read_back_as_rendered(tmp_path, fmt, reader):
    root = generate_det_dataset(tmp_path / fmt, 3, fmt, lang="mixed", seed=7, image_size=SIZE)
    samples = reader(root)
    assert len(samples) == 3
    for i, sample in enumerate(samples):
        rendered = render_det_image(_rng_for(7, i, 0), SIZE, "mixed")
        assert [inst.text for inst in sample.instances] == [inst.text for inst in rendered.instances]
        assert len(rendered.instances) >= 1
        for got, want in zip(sample.instances, rendered.instances):
            np.testing.assert_allclose(got.points, np.round(want.points), atol=1e-6)
            assert not got.ignore
        image = cv2.imread(str(sample.image_path))
        assert image.shape[:2] == (SIZE[1], SIZE[0])


def test_same_seed_gives_identical_labels(tmp_path):
    a = generate_det_dataset(tmp_path / "a", 3, "icdar2015", seed=3, image_size=SIZE)
    b = generate_det_dataset(tmp_path / "b", 3, "icdar2015", seed=3, image_size=SIZE)
    c = generate_det_dataset(tmp_path / "c", 3, "icdar2015", seed=4, image_size=SIZE)
    labels = lambda root: [p.read_bytes() for p in sorted((root / "gts").iterdir())]  # noqa: E731
    assert labels(a) == labels(b)
    assert [p.read_bytes() for p in sorted((a / "images").iterdir())] == [p.read_bytes() for p in sorted((b / "images").iterdir())]
    assert labels(a) != labels(c)
    # image i does not depend on how many images were asked for
    d = generate_det_dataset(tmp_path / "d", 2, "icdar2015", seed=3, image_size=SIZE)
    assert labels(d) == labels(a)[:2]


def test_cjk_ink_is_drawn_inside_the_polygons():
    checked = 0
    for i in range(4):
        synth = render_det_image(np.random.default_rng([11, i]), SIZE, lang="ch")
        union = np.zeros(synth.ink.shape, np.uint8)
        for inst in synth.instances:
            mask = _polygon_mask(synth.ink.shape, inst.points)
            union |= mask
            inside = float((synth.ink * mask).sum())
            # text strokes cover a real share of their box: not an empty or tofu-only line
            assert inside > 0.08 * mask.sum(), inst.text
            checked += any("\u4e00" <= ch <= "\u9fff" for ch in inst.text)
        total = float(synth.ink.sum())
        outside = float((synth.ink * (1 - union)).sum())
        assert outside < 0.02 * total  # only anti-aliasing rims may fall outside
    assert checked >= 4  # Chinese lines were drawn


def test_cjk_glyphs_are_real_not_tofu():
    font = default_cjk_font()
    assert font.covers("增值税发票 ¥1,234.56 ABC")
    assert not font.covers("\U0001F600")  # no emoji glyph: such text would be skipped, never drawn as boxes
    pil = font.load(40)
    masks = []
    for ch in "增值":
        from PIL import Image, ImageDraw

        img = Image.new("L", (60, 60), 0)
        ImageDraw.Draw(img).text((5, 0), ch, font=pil, fill=255)
        masks.append(np.asarray(img) > 127)
    assert masks[0].sum() > 100 and (masks[0] != masks[1]).sum() > 100
    assert len(available_fonts(include_system=False)) == 2


def test_corpus_is_inside_the_recogniser_charset():
    charset, font = Charset.default(), default_cjk_font()
    rng = np.random.default_rng(0)
    texts = list(CH_WORDS) + list(EN_WORDS) + [make_text(rng, lang, kind) for lang in LANGS for kind in KINDS
                                               for _ in range(200)]
    oov = {ch for t in texts for ch in t if not charset.contains(ch)}
    assert not oov
    assert font.missing("".join(texts)) == []


def test_cli_det_and_rec_shifted(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "r"), "--num", "2", "--format", "rctw17", "--lang", "ch",
                 "--kind", "invoice", "--size", "320x240", "--seed", "1"]) == 0
    assert len(read_rctw17(tmp_path / "r")) == 2
    assert main(["--out", str(tmp_path / "rec"), "--num", "5", "--rec", "--shift"]) == 0
    samples = read_ppocr_rec(tmp_path / "rec" / "label.txt")
    assert len(samples) == 5 and all(s.text for s in samples)
    label = generate_rec_dataset(tmp_path / "rec2", 5, seed=0, shift=True)
    assert label.read_bytes() == (tmp_path / "rec" / "label.txt").read_bytes()


def test_rec_lines_with_inserted_new_characters(tmp_path, capsys):
    """Lines for a charset extension: every line carries 1-2 of the new characters; a character no font can
    draw is refused up front (it would otherwise fail 50 tries per line)."""
    new = "毖恫刽豢耪"
    assert main(["--out", str(tmp_path / "new"), "--num", "8", "--rec", "--insert-chars", new, "--seed", "3"]) == 0
    label = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["out"])
    texts = [line.split("\t", 1)[1] for line in label.read_text(encoding="utf-8").splitlines()]
    assert len(texts) == 8
    assert all(1 <= sum(ch in new for ch in text) for text in texts)
    assert all(len(text.strip(new)) > 0 for text in texts)  # the usual line is still there around them
    with pytest.raises(ValueError, match="no font renders"):
        generate_rec_dataset(tmp_path / "bad", 2, insert_chars="\ue000")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "det"), "--num", "1", "--insert-chars", new])

"""The charset-extension hard set: ``datasets.synth --rec --text random-rare`` (3-8 characters from a fixed pool of
3,000 dictionary characters the word corpus never uses), reproducible per seed, combinable with --insert-chars."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.charset_extension import compare_int8
from datasets.charset import Charset
from datasets.fonts import available_fonts
from datasets.ppocr_label import read_ppocr_rec
from datasets.synth import generate_rec_dataset
from datasets.synth_text import (KINDS, LANGS, RARE_LENGTH, RARE_POOL_SIZE, corpus_chars, make_text,
                                 random_rare_text, rare_pool)

ROOT = Path(__file__).resolve().parents[1]
NEW = "毖恫刽"


def _is_cjk(ch: str) -> bool:
    return 0x4E00 <= ord(ch) <= 0x9FFF


def test_pool_is_fixed_renderable_dictionary_characters_outside_the_corpus():
    pool = rare_pool()
    assert len(pool) == RARE_POOL_SIZE == len(set(pool))
    assert list(pool) == sorted(pool)  # evenly spaced picks of a code-point-sorted list stay sorted
    dictionary = set(Charset.default().chars)
    fonts = available_fonts(include_system=False)
    assert all(ch in dictionary and _is_cjk(ch) and all(f.covers(ch) for f in fonts) for ch in pool)
    assert not set(pool) & corpus_chars()
    # spread over the whole CJK block, not the first 3,000 candidates
    assert ord(pool[0]) < 0x4F00 and ord(pool[-1]) > 0x9E00


def test_corpus_chars_holds_every_character_the_word_corpus_writes():
    rng = np.random.default_rng(0)
    known = corpus_chars()
    seen = set()
    for lang in LANGS:
        for kind in KINDS:
            for _ in range(400):
                seen |= {ch for ch in make_text(rng, lang, kind) if _is_cjk(ch)}
    assert seen and seen <= known


def test_random_rare_text_is_seeded_3_to_8_pool_characters():
    pool = set(rare_pool())
    lines = [random_rare_text(np.random.default_rng([5, i])) for i in range(300)]
    assert lines == [random_rare_text(np.random.default_rng([5, i])) for i in range(300)]
    assert lines != [random_rare_text(np.random.default_rng([6, i])) for i in range(300)]
    assert {len(line) for line in lines} == set(range(RARE_LENGTH[0], RARE_LENGTH[1] + 1))
    assert all(set(line) <= pool for line in lines)


def test_rare_lines_with_inserted_characters_are_reproducible(tmp_path):
    pool = set(rare_pool())
    a = generate_rec_dataset(tmp_path / "a", 6, seed=5, insert_chars=NEW, text_mode="random-rare")
    b = generate_rec_dataset(tmp_path / "b", 6, seed=5, insert_chars=NEW, text_mode="random-rare")
    c = generate_rec_dataset(tmp_path / "c", 6, seed=6, insert_chars=NEW, text_mode="random-rare")
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    texts = [s.text for s in read_ppocr_rec(a)]
    assert len(texts) == 6
    for text in texts:
        new = [ch for ch in text if ch in NEW]
        old = [ch for ch in text if ch not in NEW]
        assert 1 <= len(new) <= 2 and RARE_LENGTH[0] <= len(old) <= RARE_LENGTH[1] and set(old) <= pool
        assert not any(word in text for word in ("发票", "金额", "有限公司"))


def test_unknown_text_mode_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="--text must be one of corpus, random-rare"):
        generate_rec_dataset(tmp_path / "x", 2, text_mode="rare")
    assert not (tmp_path / "x").exists()


def _synth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "datasets.synth", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_writes_hard_lines_and_rejects_bad_values(tmp_path):
    done = _synth("--rec", "--text", "random-rare", "--num", "3", "--seed", "5", "--out", str(tmp_path / "hard"),
                  "--insert-chars", NEW)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    texts = [s.text for s in read_ppocr_rec(result["out"])]
    assert len(texts) == 3 and all(any(ch in NEW for ch in t) for t in texts)
    assert all(set(t) - set(NEW) <= set(rare_pool()) for t in texts)

    bad = _synth("--rec", "--text", "rare", "--num", "3", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--text: invalid choice: 'rare'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()
    det = _synth("--text", "random-rare", "--num", "1", "--out", str(tmp_path / "det"))
    assert det.returncode == 2 and det.stderr.strip().splitlines()[-1].endswith("--text random-rare needs --rec "
                                                                               "(it makes recogniser lines)")


def test_int8_within_one_point_per_eval_set():
    fp32 = {"hard_old": {"acc": 0.700, "norm_edit_dis": 0.90}, "hard_new": {"acc": 0.770, "norm_edit_dis": 0.92}}
    int8 = {"hard_old": {"acc": 0.690, "norm_edit_dis": 0.89}, "hard_new": {"acc": 0.750, "norm_edit_dis": 0.93}}
    delta = compare_int8(fp32, int8)
    assert delta["hard_old"]["within_1_point"] and delta["hard_old"]["acc"] == pytest.approx(-0.01)
    assert not delta["hard_new"]["within_1_point"] and delta["hard_new"]["norm_edit_dis"] == pytest.approx(0.01)

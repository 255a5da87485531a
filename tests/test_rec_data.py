"""Rec data: resize/pad, CTC label encoding and its length rule, width bucketing, reproducible loading."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.charset import Charset
from datasets.ctc_label import CTCLabelError, ctc_fits, ctc_min_steps, encode_ctc, time_steps_for
from datasets.loaders import RecCollate, RecDataset, SeededBatchSampler, WidthBucketBatchSampler, build_loader, set_epoch
from datasets.rec_aug import build_rec_aug
from datasets.sample import RecSample


@pytest.fixture(scope="module")
def charset() -> Charset:
    return Charset.default()


def _write(tmp_path, name: str, h: int, w: int) -> RecSample:
    image = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(image, "ab", (2, h - 3), cv2.FONT_HERSHEY_SIMPLEX, h / 40, (0, 0, 0), 1)
    path = tmp_path / f"{name}.png"
    cv2.imwrite(str(path), image)
    return RecSample(path, name)


def test_ctc_encoding_and_length_rule(charset):
    label = encode_ctc("¥1,100.00", charset, max_len=25, time_steps=time_steps_for(320))
    assert label.length == 9 and label.ids.shape == (25,) and label.ids.dtype == np.int64
    assert charset.decode(label.ids[: label.length]) == "¥1,100.00"
    assert label.ids[9:].sum() == 0
    assert ctc_min_steps(charset.encode("1100")) == 6  # "11" and "00" each need a blank between
    assert time_steps_for(320) == 40
    assert ctc_fits("12" * 20, charset, 40)  # 40 labels, no repeats: fits exactly
    assert not ctc_fits("1" * 21, charset, 40)  # 21 + 20 blanks = 41 steps
    with pytest.raises(CTCLabelError, match="needs 41 CTC steps"):
        encode_ctc("1" * 21, charset, max_len=25, time_steps=40)
    with pytest.raises(CTCLabelError, match="U\\+1F600"):
        encode_ctc("ok\U0001F600", charset)
    assert encode_ctc("ok\U0001F600", charset, skip_unknown=True).length == 2
    with pytest.raises(CTCLabelError, match="max_len"):
        encode_ctc("a" * 30, charset, max_len=25)


def test_rec_dataset_resizes_keeping_aspect_and_collate_pads(tmp_path, charset):
    samples = [_write(tmp_path, "short", 20, 100), _write(tmp_path, "longline", 20, 400)]
    ds = RecDataset(samples, charset, height=48, max_width=320)
    image, label, length = ds[0]
    assert image.shape == (3, 48, 240)  # ceil(48 * 100 / 20)
    assert image.min() >= -1 and image.max() <= 1
    assert charset.decode(label[:length]) == "short"
    assert ds[1][0].shape == (3, 48, 320)  # 960 capped at max_width
    assert ds.widths() == [240, 320]
    images, labels, lengths, ratios = RecCollate(320)([ds[0], ds[1]])
    assert images.shape == (2, 3, 48, 320) and labels.shape == (2, 25) and list(lengths) == [5, 8]
    np.testing.assert_allclose(ratios, [240 / 320, 1.0])
    assert np.all(images[0, :, :, 240:] == 0)  # right padding
    # a narrow batch is widened to what the labels need for CTC: "1111" needs 7 steps = 56 px
    narrow = [(np.zeros((3, 48, 20), np.float32), encode_ctc("1111", charset).ids, np.int64(4))]
    assert RecCollate(320)(narrow)[0].shape[-1] == 56
    assert RecCollate(320, min_width=320)(narrow)[0].shape[-1] == 320


def test_rec_dataset_checks_labels(tmp_path, charset):
    good = _write(tmp_path, "good", 20, 60)
    bad = RecSample(good.image_path, "1" * 21)
    with pytest.raises(CTCLabelError, match="cannot be CTC targets"):
        RecDataset([good, bad], charset)
    ds = RecDataset([good, bad], charset, on_error="skip")
    assert len(ds) == 1 and len(ds.skipped) == 1


def test_rec_dataset_crops_regions(tmp_path, charset):
    page = np.full((100, 200, 3), 255, np.uint8)
    page[40:60, 20:120] = 0
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), page)
    sample = RecSample(path, "ab", points=np.array([[20, 40], [120, 40], [120, 60], [20, 60]], np.float32))
    ds = RecDataset([sample], charset)
    image, _, _ = ds[0]
    assert image.shape == (3, 48, 240) and image.max() < -0.9  # the black region only
    assert ds.widths() == [240]


def test_width_buckets_are_homogeneous_and_sharded():
    rng = np.random.default_rng(0)
    widths = rng.integers(16, 321, 103)
    full = WidthBucketBatchSampler(widths, 8, seed=1, rank=0, num_replicas=1)
    batches = list(full)
    assert sorted(i for b in batches for i in b) == list(range(103))
    spread = np.mean([np.ptp(widths[b]) for b in batches])
    random_spread = np.mean([np.ptp(widths[b]) for b in SeededBatchSampler(103, 8, seed=1, rank=0, num_replicas=1)])
    assert spread < random_spread / 4
    assert batches == list(WidthBucketBatchSampler(widths, 8, seed=1, rank=0, num_replicas=1))
    full.set_epoch(1)
    assert list(full) != batches
    ranks = [WidthBucketBatchSampler(widths, 8, seed=1, rank=r, num_replicas=3) for r in range(3)]
    shards = [list(s) for s in ranks]
    assert len({len(s) for s in shards}) == 1 and all(len(s) == len(r) for s, r in zip(shards, ranks))
    assert {i for s in shards for b in s for i in b} == set(range(103))
    ranks[0].set_epoch(0, start_batch=2)
    assert list(ranks[0]) == shards[0][2:] and len(ranks[0]) == len(shards[0]) - 2
    ordered = list(WidthBucketBatchSampler(widths, 8, shuffle=False, rank=0, num_replicas=1))
    flat = [i for b in ordered for i in b]
    assert list(widths[flat]) == sorted(widths)


def test_loader_order_and_augmentation_reproducible_across_workers(tmp_path, charset):
    samples = [_write(tmp_path, f"w{i}", 20, 40 + 13 * i) for i in range(10)]
    ds = RecDataset(samples, charset, aug=build_rec_aug({"distort": {"p": 1.0}}), seed=3)
    runs = []
    for workers in (0, 1):
        loader = build_loader(ds, batch_size=4, num_workers=workers, seed=3)
        set_epoch(loader, 2)
        runs.append([[t.numpy() for t in batch] for batch in loader])
    assert len(runs[0]) == len(runs[1]) == 3
    for a, b in zip(*runs):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def _write_rec_lines(root, texts, line_image) -> None:
    """``root/train.txt`` (PaddleOCR rec labels) over rendered line images ``root/img/N.png``."""
    from datasets.imageio import write_image
    from datasets.ppocr_label import write_ppocr_rec_label
    from datasets.sample import RecSample

    samples = [RecSample(write_image(root / "img" / f"{i}.png", line_image(t)), t) for i, t in enumerate(texts)]
    write_ppocr_rec_label(samples, root / "train.txt", root=root)


def test_lines_outside_the_charset_stop_training_unless_skipping_is_chosen(tmp_path, line_image):
    """PaddleOCR silently drops characters it does not know; here a line with one is an error naming the
    characters, the file and line, and the fix — unless data.on_error=skip, which drops and counts them."""
    from datasets.charset import Charset
    from training.cli import UserError
    from training.data import load_split

    _write_rec_lines(tmp_path, ["发票金额", "毖恫号码", "ABC123"], line_image)
    split = {"format": "ppocr-rec", "root": str(tmp_path), "label_files": ["train.txt"], "ratios": None}
    charset = Charset.default()
    with pytest.raises(UserError) as err:
        load_split("train", split, task="rec", cache_dir=tmp_path / "cache", charset=charset)
    message = str(err.value)
    assert "1 text line(s)" in message and "'毖恫'" in message and "train.txt:2" in message
    assert "model.charset.extra_chars='毖恫'" in message and "data.on_error=skip" in message
    data = load_split("train", split, task="rec", cache_dir=tmp_path / "cache", charset=charset, on_error="skip")
    assert [s.text for s in data.samples] == ["发票金额", "ABC123"] and data.num_skipped == 1
    extended = load_split("train", split, task="rec", cache_dir=tmp_path / "cache", charset=charset.extend("毖恫"))
    assert len(extended.samples) == 3 and extended.num_skipped == 0


def test_train_split_mixes_other_sources_by_ratio(tmp_path, line_image):
    """data.train.mix: real lines + synthetic lines by ratio (PaddleOCR's ratio_list meaning; >1 repeats)."""
    from training.cli import UserError
    from training.data import load_split

    _write_rec_lines(tmp_path, ["发票金额", "号码", "ABC123"], line_image)
    real = {"format": "ppocr-rec", "root": str(tmp_path), "label_files": ["train.txt"], "ratios": None}
    synth = {"format": "synth", "num": 4, "seed": 5, "kind": "invoice"}
    kw = dict(task="rec", cache_dir=tmp_path / "cache")

    alone = load_split("train", real, **kw)
    half = load_split("train", {**real, "mix": [{**synth, "ratio": 0.5}]}, **kw)
    assert half.format == "mixed" and half.path.count(" + ppocr-rec:") == 1 and half.path.endswith(" x0.5")
    assert len(half.samples) == 3 + 2 and half.samples[:3] == alone.samples
    assert half.digest["digest"] != alone.digest["digest"]
    again = load_split("train", {**real, "mix": [{**synth, "ratio": 0.5}]}, **kw)
    assert [s.text for s in again.samples] == [s.text for s in half.samples]  # fixed by the seed
    over = load_split("train", {**real, "mix": [{**synth, "ratio": 2.5}]}, **kw)
    assert len(over.samples) == 3 + 10 and len({str(s.image_path) for s in over.samples[3:]}) == 4
    with pytest.raises(UserError, match=r"data.train.mix\[0\].ratio must be a number > 0"):
        load_split("train", {**real, "mix": [{**synth, "ratio": 0}]}, **kw)
    with pytest.raises(UserError, match=r"data.train.mix\[0\].num must be set for format synth"):
        load_split("train", {**real, "mix": [{"format": "synth", "ratio": 1}]}, **kw)
    with pytest.raises(UserError, match=r"data.train.mix\[0\].format must be set"):
        load_split("train", {**real, "mix": [{"num": 3, "ratio": 1}]}, **kw)


def test_data_ppocr_follows_the_task_and_a_det_page_keeps_its_other_words(tmp_path, line_image):
    """``data=ppocr`` reads rec label files under training.rec and det label files under training.det; with a
    det label file as rec data, skipping drops only the out-of-charset word, not the page it is on."""
    from hydra import compose, initialize_config_dir

    from datasets.charset import Charset
    from datasets.imageio import write_image
    from datasets.ppocr_label import write_ppocr_det_label
    from datasets.sample import DetSample, TextInstance
    from training.cli import UserError
    from training.data import load_split

    conf = Path(__file__).resolve().parents[1] / "conf"
    for task in ("det", "rec"):
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name=task, overrides=["data=ppocr"])
        assert (cfg.data.train.format, cfg.data.eval.format) == (f"ppocr-{task}", f"ppocr-{task}")

    page = np.full((100, 200, 3), 255, np.uint8)
    image = write_image(tmp_path / "p.png", page)
    quad = lambda y: np.array([[5, y], [150, y], [150, y + 30], [5, y + 30]], np.float32)  # noqa: E731
    sample = DetSample(image, [TextInstance(quad(5), "ABC"), TextInstance(quad(50), "毖x")])
    write_ppocr_det_label([sample], tmp_path / "train.txt", root=tmp_path)
    split = {"format": "ppocr-det", "root": str(tmp_path), "label_files": ["train.txt"], "ratios": None}
    charset = Charset.default()
    with pytest.raises(UserError, match="1 text line"):
        load_split("train", split, task="rec", cache_dir=tmp_path / "c", charset=charset)
    data = load_split("train", split, task="rec", cache_dir=tmp_path / "c", charset=charset, on_error="skip")
    assert [s.text for s in data.samples] == ["ABC"] and data.num_skipped == 1

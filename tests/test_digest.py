"""dataset_digest: stable over order, location and label-file format; sensitive to labels and image content."""
from __future__ import annotations

import datasets  # noqa: F401  -- start-up fix before anything else

import shutil
from pathlib import Path

import numpy as np
import pytest

from datasets.convert import convert
from datasets.digest import dataset_digest
from datasets.formats import read_det
from datasets.icdar2015 import read_icdar2015, write_icdar2015_sample
from datasets.ppocr_label import read_ppocr_det
from datasets.sample import DetSample, RecSample, TextInstance

QUAD = [[10, 10], [90, 10], [90, 40], [10, 40]]


@pytest.fixture()
def icdar(tmp_path: Path) -> Path:
    root = tmp_path / "icdar"
    rng = np.random.default_rng(0)
    for n in range(1, 4):
        write_icdar2015_sample(root, f"img_{n}", rng.integers(0, 255, (60, 120, 3), dtype=np.uint8),
                               [TextInstance(QUAD, f"word{n}"), TextInstance(np.add(QUAD, 5), "###", ignore=True)],
                               ext=".png")
    return root


def test_digest_shape_and_counts(icdar):
    result = dataset_digest(read_icdar2015(icdar))
    assert set(result) == {"digest", "num_images", "num_instances", "mode"}
    assert (result["num_images"], result["num_instances"], result["mode"]) == (3, 6, "fast")
    assert len(result["digest"]) == 64 and int(result["digest"], 16) >= 0
    with pytest.raises(ValueError, match="fast"):
        dataset_digest([], mode="quick")


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_stable_over_sample_and_instance_order(icdar, mode):
    samples = read_icdar2015(icdar)
    shuffled = [DetSample(s.image_path, list(reversed(s.instances)), s.source, s.line) for s in reversed(samples)]
    assert dataset_digest(samples, mode) == dataset_digest(shuffled, mode)
    assert dataset_digest(f"icdar2015:{icdar}", mode) == dataset_digest(samples, mode)


def test_stable_when_moved_or_relabelled_in_another_format(icdar, tmp_path):
    reference = dataset_digest(read_icdar2015(icdar), "full")
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(icdar, moved)
    assert dataset_digest(read_icdar2015(moved), "full") == reference
    summary = convert("icdar2015", icdar, tmp_path / "ppocr")          # same images, PaddleOCR label file
    assert dataset_digest(read_ppocr_det(summary["label_file"]), "full") == reference


def test_changes_with_labels_and_image_content(icdar):
    samples = read_icdar2015(icdar)
    fast, full = dataset_digest(samples, "fast"), dataset_digest(samples, "full")
    relabelled = [DetSample(samples[0].image_path, [TextInstance(QUAD, "other")])] + samples[1:]
    assert dataset_digest(relabelled)["digest"] != fast["digest"]
    nudged = [DetSample(samples[0].image_path, [TextInstance(np.add(QUAD, 0.5), "word1")])] + samples[1:]
    assert dataset_digest(nudged)["digest"] != fast["digest"]

    image = samples[0].image_path
    data = bytearray(image.read_bytes())
    data[-20] ^= 0xFF                                # same size, different bytes
    image.write_bytes(bytes(data))
    assert dataset_digest(samples, "fast") == fast   # fast mode only sees sizes...
    assert dataset_digest(samples, "full")["digest"] != full["digest"]   # ...full mode sees the change
    image.write_bytes(bytes(data) + b"\0")
    assert dataset_digest(samples, "fast")["digest"] != fast["digest"]


def test_rec_samples_and_plain_paths(icdar, tmp_path):
    images = sorted((icdar / "images").iterdir())
    rec = [RecSample(path, f"t{i}") for i, path in enumerate(images)]
    result = dataset_digest(rec, "full")
    assert (result["num_images"], result["num_instances"]) == (3, 3)
    assert dataset_digest(list(reversed(rec)), "full") == result
    plain = dataset_digest([str(p) for p in images])
    assert plain["num_instances"] == 0 and plain["digest"] != dataset_digest(rec)["digest"]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        dataset_digest([tmp_path / "missing.png"])
    assert read_det("icdar2015", icdar)[0].image_path == images[0]

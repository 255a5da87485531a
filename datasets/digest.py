"""A stable fingerprint of a dataset, recorded with every run and model version.

Usage::

    dataset_digest(samples)                          # {"digest": "…", "num_images": …, "num_instances": …, "mode": "fast"}
    dataset_digest("icdar2015:data/icdar2015", mode="full")

Why this shape:

* it is computed over the *canonical samples* (relative image path, polygons rounded to 0.01 px, text, ignore
  flag), not over label files, so it does not change with file order, line order inside a label file, line
  endings, a BOM, or the folder the dataset was copied to (paths are relative to the images' common folder);
* ``fast`` hashes image file sizes (a stat per image: cheap enough to run on every training start), ``full``
  hashes image bytes (catches a re-encoded or edited image of the same size; reads everything).
"""
from __future__ import annotations

import hashlib
import json
import os
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from datasets.formats import DataSpec, parse_data_spec, read_samples
from datasets.sample import DetSample, RecSample

__all__ = ["dataset_digest", "MODES"]

MODES = ("fast", "full")


def _points(points: np.ndarray | None) -> list[list[float]] | None:
    if points is None:
        return None
    return [[round(float(x), 2) + 0.0, round(float(y), 2) + 0.0] for x, y in np.asarray(points).reshape(-1, 2)]


def _file_content(path: Path, mode: str) -> str | int:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found (while computing the dataset digest)")
    if mode == "fast":
        return path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _common_root(paths: Sequence[Path]) -> Path:
    parents = {str(path.resolve().parent) for path in paths}
    return Path(os.path.commonpath(sorted(parents))) if parents else Path(".")


def _label_record(item: DetSample | RecSample | Path) -> tuple[Any, int]:
    """Label part of one record (order-independent) and how many instances it holds."""
    if isinstance(item, DetSample):
        instances = sorted(json.dumps([_points(i.points), i.text, bool(i.ignore)], ensure_ascii=False)
                           for i in item.instances)
        return instances, len(instances)
    if isinstance(item, RecSample):
        return [item.text, _points(item.points)], 1
    return None, 0


def _to_items(source: Any) -> list[DetSample | RecSample | Path]:
    if isinstance(source, str) and ":" in source and not Path(source).exists():
        source = parse_data_spec(source)
    if isinstance(source, DataSpec):
        return list(read_samples(source.format, source.path))
    if isinstance(source, (str, PathLike)):
        raise TypeError(f"{source}: pass samples, a list of image paths, or a 'FORMAT:PATH' spec")
    items = []
    for item in source:
        items.append(item if isinstance(item, (DetSample, RecSample)) else Path(item))
    return items


def dataset_digest(samples_or_paths: Iterable[DetSample | RecSample | str | PathLike[str]] | DataSpec | str,
                   mode: str = "fast") -> dict[str, Any]:
    """Digest of a dataset: ``{"digest": sha256 hex, "num_images", "num_instances", "mode"}``.

    Accepts samples (DetSample / RecSample, e.g. from :func:`datasets.formats.read_det`), plain image paths
    (images only, no labels), or a ``FORMAT:PATH`` spec / :class:`DataSpec` (read strictly). The digest is
    independent of the order of samples and of instances within a sample."""
    if mode not in MODES:
        raise ValueError(f"digest mode must be one of {MODES}, got {mode!r}")
    items = _to_items(samples_or_paths)
    image_paths = [Path(item.image_path) if isinstance(item, (DetSample, RecSample)) else item for item in items]
    root = _common_root(image_paths)
    content_cache: dict[Path, str | int] = {}
    records = []
    num_instances = 0
    for item, path in zip(items, image_paths):
        resolved = path.resolve()
        if resolved not in content_cache:
            content_cache[resolved] = _file_content(path, mode)
        labels, count = _label_record(item)
        num_instances += count
        relative = Path(os.path.relpath(resolved, root)).as_posix()
        records.append(json.dumps([relative, content_cache[resolved], labels], ensure_ascii=False))
    digest = hashlib.sha256()
    digest.update(f"ocr-dataset-digest v1 {mode}\n".encode())
    for record in sorted(records):
        digest.update(record.encode("utf-8"))
        digest.update(b"\n")
    return {"digest": digest.hexdigest(), "num_images": len(content_cache), "num_instances": num_instances,
            "mode": mode}

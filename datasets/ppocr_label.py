"""PaddleOCR label files (what PaddleOCR's ``SimpleDataSet`` and PPOCRLabel read and write): readers, writers.

Usage::

    det = read_ppocr_det("data/train_det.txt")                       # DetSample list
    mixed = read_ppocr_det(["real.txt", "synth.txt"], ratios=[1.0, 0.3], seed=0)
    rec = read_ppocr_rec("data/rec/label.txt")                       # RecSample list
    write_ppocr_det_label(det, "out/det_label.txt", root="out")

Formats (one sample per line, fields separated by one TAB):

* det: ``relative/path.jpg<TAB>[{"transcription": "...", "points": [[x, y], ...]}, ...]`` — transcription
  ``###`` or ``*`` marks a don't-care region (PaddleOCR ignores any ``difficult`` key, and so do we);
* rec: ``relative/path.jpg<TAB>text``.

Image paths are relative to ``root``. Without ``root``, a path is looked up beside the label file, then one
folder up (PPOCRLabel writes ``Label.txt`` inside the image folder with paths like ``imgs/1.jpg``).

Several label files can be mixed with ``ratios`` like PaddleOCR's ``ratio_list``: a ratio below 1 keeps that
fraction of a file's samples (seeded random choice, file order kept); above 1 repeats the file
(``2.5`` = two full copies plus half).
"""
from __future__ import annotations

import json
import os
import random
from os import PathLike
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np

from datasets.errors import (
    EMPTY_LABEL,
    EMPTY_TEXT,
    MALFORMED_LINE,
    MISSING_IMAGE,
    TOO_FEW_POINTS,
    ValidationIssue,
    report,
)
from datasets.labelio import SourcedInstance, iter_label_lines
from datasets.sample import IGNORE_TEXTS, DetSample, RecSample, TextInstance
from datasets.atomic import write_text_atomic

__all__ = [
    "read_ppocr_det",
    "read_ppocr_rec",
    "parse_ppocr_det_annotation",
    "resolve_image_path",
    "write_ppocr_det_label",
    "write_ppocr_rec_label",
]

PathArg = str | PathLike[str]
T = TypeVar("T")


def resolve_image_path(name: str, label_file: Path, root: PathArg | None = None) -> Path:
    """Where the image ``name`` of a label line lives (see the module docstring for the lookup order).

    Backslashes from Windows tools are accepted. When no candidate exists the first one is returned, so the
    error names the path a user would expect."""
    name = name.strip()
    if os.sep == "/":
        name = name.replace("\\", "/")
    relative = Path(name)
    if relative.is_absolute():
        return relative
    if root is not None:
        return Path(root) / relative
    candidates = [label_file.parent / relative, label_file.parent.parent / relative]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def _as_points(value: object) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise ValueError("'points' must be a non-empty list of [x, y] pairs")
    coords = []
    for point in value:
        if (not isinstance(point, (list, tuple)) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)):
            raise ValueError(f"'points' must be a list of [x, y] number pairs, found {json.dumps(point)}")
        if not all(np.isfinite(point)):
            raise ValueError(f"'points' holds a non-finite coordinate: {json.dumps(point)}")
        coords.append(point)
    return np.asarray(coords, dtype=np.float32)


def parse_ppocr_det_annotation(text: str) -> list[tuple[np.ndarray, str]]:
    """Parse the JSON half of a det label line into ``[(points Nx2, transcription), ...]``.

    ValueError names the instance (1-based) and what is wrong; polygon size is checked by the caller."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"annotation is not valid JSON ({exc.msg} at character {exc.pos + 1})") from None
    if not isinstance(data, list):
        raise ValueError('annotation must be a JSON list of {"transcription", "points"} objects, '
                         f"found {type(data).__name__}")
    parsed = []
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"instance {index}: expected an object, found {json.dumps(item, ensure_ascii=False)[:60]}")
        missing = [field for field in ("transcription", "points") if field not in item]
        if missing:
            raise ValueError(f"instance {index}: missing {' and '.join(repr(m) for m in missing)}")
        transcription = item["transcription"]
        if not isinstance(transcription, str):
            raise ValueError(f"instance {index}: 'transcription' must be a string, found {json.dumps(transcription)}")
        try:
            points = _as_points(item["points"])
        except ValueError as exc:
            raise ValueError(f"instance {index}: {exc}") from None
        parsed.append((points, transcription))
    return parsed


def _split_line(text: str, what: str) -> tuple[str, str]:
    parts = text.split("\t")
    if len(parts) == 1:
        raise ValueError(f"expected `image_path<TAB>{what}`, found no TAB: {text[:80]!r}")
    if len(parts) > 2:
        raise ValueError(f"expected one TAB between image path and {what}, found {len(parts) - 1} "
                         "(a TAB inside the text?)")
    if not parts[0].strip():
        raise ValueError("empty image path before the TAB")
    return parts[0], parts[1]


def _read_det_file(label_file: Path, root: PathArg | None, issues: list[ValidationIssue] | None) -> list[DetSample]:
    samples = []
    for number, text in iter_label_lines(label_file, issues):
        try:
            name, annotation = _split_line(text, "JSON annotations")
        except ValueError as exc:
            report(issues, label_file, number, str(exc), MALFORMED_LINE)
            continue
        image = resolve_image_path(name, label_file, root)
        try:
            parsed = parse_ppocr_det_annotation(annotation)
        except ValueError as exc:
            report(issues, label_file, number, str(exc), MALFORMED_LINE, key=image)
            continue
        if not image.is_file():
            report(issues, label_file, number, f"image not found: {image}", MISSING_IMAGE, key=image)
            continue
        instances: list[TextInstance] = []
        for index, (points, transcription) in enumerate(parsed, start=1):
            if len(points) < 3:
                report(issues, label_file, number,
                       f"instance {index}: polygon has {len(points)} point(s), at least 3 are needed",
                       TOO_FEW_POINTS, key=image)
                continue
            instances.append(SourcedInstance(points, transcription, transcription.strip() in IGNORE_TEXTS,
                                             line=number))
        if not parsed:
            report(issues, label_file, number, "no text instances ([]); PaddleOCR silently skips such lines",
                   EMPTY_LABEL, key=image)
        samples.append(DetSample(image, instances, source=label_file, line=number))
    return samples


def _read_rec_file(label_file: Path, root: PathArg | None, issues: list[ValidationIssue] | None) -> list[RecSample]:
    samples = []
    for number, text in iter_label_lines(label_file, issues):
        try:
            name, label = _split_line(text, "text")
        except ValueError as exc:
            report(issues, label_file, number, str(exc), MALFORMED_LINE)
            continue
        image = resolve_image_path(name, label_file, root)
        if not image.is_file():
            report(issues, label_file, number, f"image not found: {image}", MISSING_IMAGE, key=image)
            continue
        if not label.strip():
            report(issues, label_file, number, "empty transcription", EMPTY_TEXT, key=image)
            continue
        samples.append(RecSample(image, label, source=label_file, line=number))
    return samples


def _subsample(items: list[T], ratio: float, rng: random.Random) -> list[T]:
    if ratio < 0:
        raise ValueError(f"sampling ratio must be >= 0, got {ratio}")
    whole, fraction = int(ratio), ratio - int(ratio)
    picked = sorted(rng.sample(range(len(items)), round(len(items) * fraction))) if fraction else []
    return items * whole + [items[i] for i in picked]


def _read_many(label_files: PathArg | Sequence[PathArg], ratios: float | Sequence[float] | None, seed: int,
               read_one: Callable[[Path], list[T]]) -> list[T]:
    files = [Path(label_files)] if isinstance(label_files, (str, PathLike)) else [Path(f) for f in label_files]
    if not files:
        raise ValueError("no label files given")
    if ratios is None:
        ratios = [1.0] * len(files)
    elif isinstance(ratios, (int, float)):
        ratios = [float(ratios)] * len(files)
    if len(ratios) != len(files):
        raise ValueError(f"{len(files)} label files but {len(ratios)} ratios; give one ratio per file")
    for path in files:
        if not path.exists():
            raise FileNotFoundError(f"{path}: label file not found")
        if path.is_dir():
            found = sorted(p.name for p in path.glob("*.txt") if p.is_file())[:5]
            here = f"; label files in it: {', '.join(found)}" if found else ""
            raise ValueError(f"{path}: is a folder; PaddleOCR label formats take the label file (e.g. label.txt)"
                             f"{here}")
    rng = random.Random(seed)
    samples: list[T] = []
    for path, ratio in zip(files, ratios):
        samples.extend(_subsample(read_one(path), float(ratio), rng))
    return samples


def read_ppocr_det(label_files: PathArg | Sequence[PathArg], *, root: PathArg | None = None,
                   ratios: float | Sequence[float] | None = None, seed: int = 0,
                   issues: list[ValidationIssue] | None = None) -> list[DetSample]:
    """Read PaddleOCR det label file(s) into :class:`DetSample` (``line`` = the label line).

    Errors (raised when ``issues`` is None, else collected): malformed line or JSON, image not found,
    polygon with fewer than 3 points, empty annotation list, empty label file, invalid UTF-8."""
    return _read_many(label_files, ratios, seed, lambda path: _read_det_file(path, root, issues))


def read_ppocr_rec(label_files: PathArg | Sequence[PathArg], *, root: PathArg | None = None,
                   ratios: float | Sequence[float] | None = None, seed: int = 0,
                   issues: list[ValidationIssue] | None = None) -> list[RecSample]:
    """Read PaddleOCR rec label file(s) into :class:`RecSample`.

    Errors (raised when ``issues`` is None, else collected): line without exactly one TAB, image not found,
    empty transcription, empty label file, invalid UTF-8."""
    return _read_many(label_files, ratios, seed, lambda path: _read_rec_file(path, root, issues))


def _relative(image: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(Path(image).resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(image).resolve().as_posix()


def _number(value: float) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() else round(value, 3)


def _check_single_line(text: str, sample: object) -> None:
    if "\t" in text or "\n" in text or "\r" in text:
        raise ValueError(f"transcription {text!r} of {sample} contains a TAB or line break, which PaddleOCR "
                         "label files cannot hold")


def write_ppocr_det_label(samples: Iterable[DetSample], path: PathArg, root: PathArg | None = None) -> Path:
    """Write a PaddleOCR det label file; image paths relative to ``root`` (default: the label's folder, which
    is also where :func:`read_ppocr_det` looks first). Ignored instances are written as ``###``."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    lines = []
    for sample in samples:
        annotations = []
        for instance in sample.instances:
            text = instance.text
            if instance.ignore and text.strip() not in IGNORE_TEXTS:
                text = "###"
            _check_single_line(text, sample.image_path)
            points = [[_number(x), _number(y)] for x, y in np.asarray(instance.points).reshape(-1, 2)]
            annotations.append({"transcription": text, "points": points})
        lines.append(f"{_relative(sample.image_path, root)}\t{json.dumps(annotations, ensure_ascii=False)}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(lines))
    return path


def write_ppocr_rec_label(samples: Iterable[RecSample], path: PathArg, root: PathArg | None = None) -> Path:
    """Write a PaddleOCR rec label file (``relative_path<TAB>text``), paths relative to ``root`` (default:
    the label's folder)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    lines = []
    for sample in samples:
        _check_single_line(sample.text, sample.image_path)
        lines.append(f"{_relative(sample.image_path, root)}\t{sample.text}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(lines))
    return path

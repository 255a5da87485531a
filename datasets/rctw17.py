"""RCTW-17 (Reading Chinese Text in the Wild) detection labels: reader and writer.

Usage::

    samples = read_rctw17("data/rctw17/train")           # DetSample list; raises DatasetError FILE:LINE
    issues = []
    samples = read_rctw17("data/rctw17/train", issues=issues)   # lenient
    write_rctw17_sample(Path("out"), "image_0", image, instances)

Format: ``image_N.txt`` beside ``image_N.jpg`` (the release splits them over ``part1/`` … ``part6/``, so the
root is searched recursively); each line ``x1,y1,x2,y2,x3,y3,x4,y4,difficult,"transcription"``. The
transcription is a CSV field: quoted, may contain commas and doubled quotes; sloppy files with undoubled inner
quotes are accepted too (the field runs to the end of the line). ``difficult=1`` (or ``###``) is don't-care for
detection; the transcription is kept.
"""
from __future__ import annotations

import csv
from os import PathLike
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.errors import IMAGE_WITHOUT_LABEL, MALFORMED_LINE, MISSING_IMAGE, ValidationIssue, report
from datasets.imageio import is_image_file, write_image
from datasets.labelio import SourcedInstance, is_label_file, iter_label_lines, natural_key, parse_quad
from datasets.sample import IGNORE_TEXTS, DetSample, TextInstance
from datasets.atomic import write_text_atomic

__all__ = [
    "read_rctw17",
    "read_rctw17_file",
    "parse_rctw17_line",
    "format_rctw17_line",
    "write_rctw17_sample",
]

def _unquote(field: str) -> str:
    """The transcription from the rest of the line after the difficult flag."""
    stripped = field.strip()
    if not stripped.startswith('"'):
        return field  # unquoted transcription: take it verbatim
    try:
        rows = list(csv.reader([stripped], strict=True))
    except csv.Error:
        rows = []
    if len(rows) == 1 and len(rows[0]) == 1:
        return rows[0][0]
    if len(stripped) >= 2 and stripped.endswith('"'):
        return stripped[1:-1]  # inner quotes not doubled: the field is everything between the outer quotes
    raise ValueError(f"unterminated quoted transcription: {field.strip()!r}")


def parse_rctw17_line(text: str) -> tuple[np.ndarray, bool, str]:
    """Parse one label line into ``(points 4x2 float32, difficult, transcription)``; ValueError says why not."""
    parts = text.split(",", 9)
    if len(parts) < 10:
        raise ValueError(f'expected x1,y1,...,x4,y4,difficult,"transcription" (10 fields), '
                         f"found {len(parts)}: {text!r}")
    points = parse_quad(parts[:8])
    flag = parts[8].strip()
    if flag not in ("0", "1"):
        raise ValueError(f"difficult flag (field 9) must be 0 or 1, found {flag!r}")
    return points, flag == "1", _unquote(parts[9])


def read_rctw17_file(label_path: str | PathLike[str], image_path: str | PathLike[str],
                     issues: list[ValidationIssue] | None = None) -> DetSample:
    """Read one RCTW-17 label file for ``image_path``; malformed lines are raised or collected (and skipped)."""
    label_path, image_path = Path(label_path), Path(image_path)
    instances: list[TextInstance] = []
    for number, text in iter_label_lines(label_path, issues, key=str(image_path)):
        try:
            points, difficult, transcription = parse_rctw17_line(text)
        except ValueError as exc:
            report(issues, label_path, number, str(exc), MALFORMED_LINE, key=image_path)
            continue
        ignore = difficult or transcription.strip() in IGNORE_TEXTS
        instances.append(SourcedInstance(points, transcription, ignore, line=number))
    return DetSample(image_path, instances, source=label_path)


def read_rctw17(root: str | PathLike[str], *, issues: list[ValidationIssue] | None = None) -> list[DetSample]:
    """Read every ``X.txt`` + ``X.{jpg,jpeg,png,…}`` pair under ``root`` (recursively) into :class:`DetSample`.

    Label files without an image, images without a label file, empty label files and malformed lines are
    errors: raised when ``issues`` is None, else collected (a sample keeps its good lines)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: RCTW-17 dataset folder not found")
    if not root.is_dir():
        raise ValueError(f"{root}: RCTW-17 expects a folder of image_N.jpg + image_N.txt pairs, not a file")
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=natural_key)
    labels = [p for p in files if is_label_file(p)]
    images = {(p.parent, p.stem.lower()): p for p in files if is_image_file(p)}
    samples: list[DetSample] = []
    paired: set[tuple[Path, str]] = set()
    for label in labels:
        key = (label.parent, label.stem.lower())
        image = images.get(key)
        if image is None:
            report(issues, label, None,
                   f"label file without image: no {label.stem}.jpg/.jpeg/.png beside it", MISSING_IMAGE)
            continue
        paired.add(key)
        samples.append(read_rctw17_file(label, image, issues))
    for key, image in images.items():
        if key not in paired:
            report(issues, image, None, f"image without label: expected {image.with_suffix('.txt')}",
                   IMAGE_WITHOUT_LABEL, key=image)
    return samples


def _format_number(value: float, decimals: int) -> str:
    return str(int(round(float(value)))) if decimals <= 0 else f"{float(value):.{decimals}f}"


def format_rctw17_line(instance: TextInstance, decimals: int = 0) -> str:
    """One RCTW-17 label line: ignore → ``difficult=1`` (the text is kept), text quoted CSV-style."""
    points = np.asarray(instance.points, dtype=np.float32).reshape(-1, 2)
    if len(points) != 4:
        raise ValueError(f"RCTW-17 stores quadrilaterals; got a polygon with {len(points)} points "
                         f"(text {instance.text!r})")
    if "\n" in instance.text or "\r" in instance.text:
        raise ValueError(f"RCTW-17 transcriptions are single-line; got {instance.text!r}")
    coords = ",".join(_format_number(v, decimals) for v in points.reshape(-1))
    quoted = '"' + instance.text.replace('"', '""') + '"'
    return f"{coords},{int(bool(instance.ignore))},{quoted}"


def write_rctw17_sample(out_dir: Path, stem: str, image: np.ndarray, instances: Sequence[TextInstance], *,
                        ext: str = ".jpg", decimals: int = 0) -> DetSample:
    """Write ``out_dir/{stem}{ext}`` and ``out_dir/{stem}.txt``; return the sample exactly as
    :func:`read_rctw17` will read it back (coordinates rounded to ``decimals``)."""
    out_dir = Path(out_dir)
    image_path = out_dir / f"{stem}{ext}"
    label_path = out_dir / f"{stem}.txt"
    lines = [format_rctw17_line(instance, decimals) for instance in instances]
    written = []
    for number, line in enumerate(lines, start=1):
        points, difficult, text = parse_rctw17_line(line)
        written.append(SourcedInstance(points, text, difficult or text.strip() in IGNORE_TEXTS, line=number))
    write_image(image_path, image)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(label_path, "".join(line + "\n" for line in lines))
    return DetSample(image_path, written, source=label_path)

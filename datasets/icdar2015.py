"""ICDAR 2015 (Incidental Scene Text) detection labels: reader and writer.

Usage::

    samples = read_icdar2015("data/icdar2015")           # DetSample list; raises DatasetError FILE:LINE
    issues = []
    samples = read_icdar2015("data/icdar2015", issues=issues)   # lenient: problems collected instead
    write_icdar2015_sample(Path("out"), "img_1", image, instances)

Format: one ``gt_img_N.txt`` per ``img_N.jpg``; each line ``x1,y1,x2,y2,x3,y3,x4,y4,transcription`` with the
quad clockwise from the text's top-left. Quirks handled: UTF-8 BOM (the official files have one), CRLF line
ends, transcriptions containing commas (only the first 8 commas separate fields), ``###`` = don't care.

Layouts found under ``root`` (images may live in a sibling folder of the labels):

* ``root/images/`` + ``root/gts/`` (also ``gt/``; the layout :func:`write_icdar2015_sample` writes),
* the official ``ch4_training_images/`` + ``ch4_training_localization_transcription_gt/`` (or the test pair
  ``ch4_test_images/`` + ``Challenge4_Test_Task1_GT/``), with ``root`` either their parent or the images folder,
* a flat folder holding both the images and the ``gt_*.txt`` files.
"""
from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.errors import IMAGE_WITHOUT_LABEL, MALFORMED_LINE, MISSING_IMAGE, ValidationIssue, report
from datasets.imageio import IMAGE_EXTENSIONS, is_image_file, write_image
from datasets.labelio import SourcedInstance, is_label_file, iter_label_lines, natural_key, parse_quad
from datasets.sample import IGNORE_TEXTS, DetSample, TextInstance
from datasets.atomic import write_text_atomic

__all__ = [
    "read_icdar2015",
    "read_icdar2015_file",
    "parse_icdar2015_line",
    "format_icdar2015_line",
    "locate_icdar2015",
    "write_icdar2015_sample",
    "LAYOUTS",
]

#: (images folder, labels folder) pairs recognised under a dataset root, in lookup order
LAYOUTS: tuple[tuple[str, str], ...] = (
    ("images", "gts"),
    ("images", "gt"),
    ("ch4_training_images", "ch4_training_localization_transcription_gt"),
    ("ch4_test_images", "Challenge4_Test_Task1_GT"),
)

_IGNORE_TEXT = "###"


def locate_icdar2015(root: str | PathLike[str]) -> tuple[Path, Path]:
    """Return ``(images_dir, labels_dir)`` for a dataset root (see the module docstring for layouts).

    Raises FileNotFoundError for a missing root and ValueError when the root holds several sets (training
    and test side by side), since silently merging them would leak the test set into training."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: ICDAR2015 dataset folder not found")
    if not root.is_dir():
        raise ValueError(f"{root}: ICDAR2015 expects a folder (images + gt_*.txt), not a file")
    found = [(root / images, root / labels) for images, labels in LAYOUTS
             if (root / images).is_dir() and (root / labels).is_dir()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(str(images) for images, _ in found)
        raise ValueError(f"{root}: holds several ICDAR2015 sets; pass one images folder instead: {names}")
    for images, labels in LAYOUTS:
        if root.name == images and (root.parent / labels).is_dir():
            return root, root.parent / labels
        if root.name == labels and (root.parent / images).is_dir():
            return root.parent / images, root
    return root, root


def parse_icdar2015_line(text: str) -> tuple[np.ndarray, str]:
    """Parse one label line into ``(points 4x2 float32, transcription)``; ValueError says what is wrong.

    Only the first 8 commas separate fields, so ``1,2,3,4,5,6,7,8,Hello, world`` has text ``Hello, world``."""
    parts = text.split(",", 8)
    if len(parts) < 9:
        raise ValueError(f"expected 8 coordinates and a transcription separated by commas "
                         f"(x1,y1,...,x4,y4,text), found {len(parts)} field(s): {text!r}")
    return parse_quad(parts[:8]), parts[8]


def read_icdar2015_file(label_path: str | PathLike[str], image_path: str | PathLike[str],
                        issues: list[ValidationIssue] | None = None) -> DetSample:
    """Read one ``gt_*.txt`` for ``image_path``; malformed lines are raised or collected (and skipped)."""
    label_path, image_path = Path(label_path), Path(image_path)
    instances: list[TextInstance] = []
    for number, text in iter_label_lines(label_path, issues, key=str(image_path)):
        try:
            points, transcription = parse_icdar2015_line(text)
        except ValueError as exc:
            report(issues, label_path, number, str(exc), MALFORMED_LINE, key=image_path)
            continue
        ignore = transcription.strip() in IGNORE_TEXTS
        instances.append(SourcedInstance(points, transcription, ignore, line=number))
    return DetSample(image_path, instances, source=label_path)


def _label_stem(label: Path) -> str:
    stem = label.stem
    return stem[3:] if stem.lower().startswith("gt_") else stem


def read_icdar2015(root: str | PathLike[str], *, issues: list[ValidationIssue] | None = None) -> list[DetSample]:
    """Read an ICDAR2015 dataset folder into :class:`DetSample` (natural order: img_2 before img_10).

    Pairs ``gt_X.txt`` (or ``X.txt``) with image ``X.jpg|.jpeg|.png|…``. A label file without its image, an
    image without its label file, an empty label file and a malformed line are errors: raised as
    :class:`~datasets.errors.DatasetError` when ``issues`` is None, else appended to ``issues`` (the sample is
    still returned without the bad lines; samples without an image are dropped)."""
    images_dir, labels_dir = locate_icdar2015(root)
    labels = sorted((p for p in labels_dir.iterdir() if p.is_file() and is_label_file(p)), key=natural_key)
    images = {p.stem.lower(): p for p in sorted(images_dir.iterdir(), key=natural_key) if p.is_file() and is_image_file(p)}
    samples: list[DetSample] = []
    paired: set[str] = set()
    extensions = "/".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS[:3])
    for label in labels:
        stem = _label_stem(label)
        image = images.get(stem.lower())
        if image is None:
            report(issues, label, None, f"label file without image: no {stem}.{{{extensions}}} in {images_dir}",
                   MISSING_IMAGE)
            continue
        paired.add(stem.lower())
        samples.append(read_icdar2015_file(label, image, issues))
    for stem, image in images.items():
        if stem not in paired:
            report(issues, image, None, f"image without label: expected {labels_dir / f'gt_{image.stem}.txt'}",
                   IMAGE_WITHOUT_LABEL, key=image)
    return samples


def _format_number(value: float, decimals: int) -> str:
    return str(int(round(float(value)))) if decimals <= 0 else f"{float(value):.{decimals}f}"


def _quad(instance: TextInstance, fmt: str) -> np.ndarray:
    points = np.asarray(instance.points, dtype=np.float32).reshape(-1, 2)
    if len(points) != 4:
        raise ValueError(f"{fmt} stores quadrilaterals; got a polygon with {len(points)} points "
                         f"(text {instance.text!r})")
    return points


def format_icdar2015_line(instance: TextInstance, decimals: int = 0) -> str:
    """One ICDAR2015 label line; a don't-care instance is written as ``###`` (the format has no flag)."""
    points = _quad(instance, "ICDAR2015")
    text = _IGNORE_TEXT if instance.ignore else instance.text
    if "\n" in text or "\r" in text:
        raise ValueError(f"ICDAR2015 transcriptions are single-line; got {text!r}")
    return ",".join(_format_number(v, decimals) for v in points.reshape(-1)) + "," + text


def write_icdar2015_sample(out_dir: Path, stem: str, image: np.ndarray, instances: Sequence[TextInstance], *,
                           ext: str = ".jpg", decimals: int = 0) -> DetSample:
    """Write ``out_dir/images/{stem}{ext}`` and ``out_dir/gts/gt_{stem}.txt``; return the sample exactly as
    :func:`read_icdar2015` will read it back (coordinates rounded to ``decimals``, ignored text ``###``)."""
    out_dir = Path(out_dir)
    image_path = out_dir / "images" / f"{stem}{ext}"
    label_path = out_dir / "gts" / f"gt_{stem}.txt"
    lines = [format_icdar2015_line(instance, decimals) for instance in instances]
    written = []
    for number, line in enumerate(lines, start=1):
        points, text = parse_icdar2015_line(line)
        written.append(SourcedInstance(points, text, text.strip() in IGNORE_TEXTS, line=number))
    write_image(image_path, image)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(label_path, "".join(line + "\n" for line in lines))
    return DetSample(image_path, written, source=label_path)

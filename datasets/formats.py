"""The registry of annotation formats: one name → one reader, shared by every command that takes data.

Usage::

    spec = parse_data_spec("icdar2015:data/icdar2015")    # DataSpec(format="icdar2015", path=Path(...))
    samples = read_det(spec.format, spec.path)            # list[DetSample]
    lines = read_rec("rctw17", "data/rctw17")             # list[RecSample], one per non-ignored region

Why a registry: ``datasets.check``, ``datasets.convert``, ``datasets.crops``, training configs and
``export.evaluate --data FORMAT:PATH`` all accept the same format names, and a new format is added here once.
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Callable

from datasets.errors import ValidationIssue
from datasets.icdar2015 import read_icdar2015
from datasets.ppocr_label import read_ppocr_det, read_ppocr_rec
from datasets.rctw17 import read_rctw17
from datasets.sample import DetSample, RecSample

__all__ = ["FormatSpec", "FORMATS", "DET_FORMATS", "REC_FORMATS", "DataSpec", "parse_data_spec", "get_format",
           "read_samples", "read_det", "read_rec", "det_to_rec"]


@dataclass(frozen=True)
class FormatSpec:
    """A format name's reader; ``task`` is ``"det"`` (DetSample) or ``"rec"`` (RecSample); ``takes`` says what
    PATH must be (for messages and ``--help``)."""

    name: str
    task: str
    reader: Callable[..., list[Any]]
    takes: str
    uses_root: bool = False


FORMATS: dict[str, FormatSpec] = {
    "icdar2015": FormatSpec("icdar2015", "det", read_icdar2015, "a folder of img_N.jpg + gt_img_N.txt"),
    "rctw17": FormatSpec("rctw17", "det", read_rctw17, "a folder of image_N.jpg + image_N.txt"),
    "ppocr-det": FormatSpec("ppocr-det", "det", read_ppocr_det, "a PaddleOCR det label file", uses_root=True),
    "ppocr-rec": FormatSpec("ppocr-rec", "rec", read_ppocr_rec, "a PaddleOCR rec label file", uses_root=True),
}
DET_FORMATS = tuple(name for name, spec in FORMATS.items() if spec.task == "det")
REC_FORMATS = tuple(name for name, spec in FORMATS.items() if spec.task == "rec")


@dataclass(frozen=True)
class DataSpec:
    """``FORMAT:PATH`` parsed."""

    format: str
    path: Path

    def __str__(self) -> str:
        return f"{self.format}:{self.path}"


def get_format(fmt: str) -> FormatSpec:
    """The :class:`FormatSpec` for ``fmt``; ValueError listing the known names otherwise."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}") from None


def parse_data_spec(spec: str) -> DataSpec:
    """Parse ``FORMAT:PATH`` (e.g. ``ppocr-det:data/train.txt``); only the first ``:`` separates."""
    fmt, sep, path = spec.partition(":")
    if not sep or not path:
        raise ValueError(f"data spec {spec!r} must look like FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    get_format(fmt)
    return DataSpec(fmt, Path(path))


def read_samples(fmt: str, path: str | PathLike[str], *, issues: list[ValidationIssue] | None = None,
                 root: str | PathLike[str] | None = None, **kwargs: Any) -> list[DetSample] | list[RecSample]:
    """Read ``path`` with the reader registered for ``fmt`` (DetSample or RecSample by the format's task).

    ``root`` applies to the PaddleOCR label formats (image paths are relative to it); other keyword
    arguments (``ratios``, ``seed``) go to the reader."""
    spec = get_format(fmt)
    if spec.uses_root:
        kwargs["root"] = root
    elif root is not None:
        raise ValueError(f"{fmt} does not take a root: its images are found next to the labels")
    return spec.reader(path, issues=issues, **kwargs)


def read_det(fmt: str, path: str | PathLike[str], *, issues: list[ValidationIssue] | None = None,
             root: str | PathLike[str] | None = None, **kwargs: Any) -> list[DetSample]:
    """Detection samples from a det format; ValueError for a recognition-only format."""
    if get_format(fmt).task != "det":
        raise ValueError(f"{fmt} is a recognition format (text lines); detection needs one of {', '.join(DET_FORMATS)}")
    return read_samples(fmt, path, issues=issues, root=root, **kwargs)  # type: ignore[return-value]


def det_to_rec(samples: list[DetSample]) -> list[RecSample]:
    """One :class:`RecSample` per non-ignored, non-empty text region (``points`` set: crop before use)."""
    out = []
    for sample in samples:
        for instance in sample.instances:
            if instance.ignore or not instance.text.strip():
                continue
            out.append(RecSample(sample.image_path, instance.text, source=sample.source,
                                 line=getattr(instance, "line", None) or sample.line, points=instance.points))
    return out


def read_rec(fmt: str, path: str | PathLike[str], *, issues: list[ValidationIssue] | None = None,
             root: str | PathLike[str] | None = None, **kwargs: Any) -> list[RecSample]:
    """Recognition samples from any format: rec label files directly, det formats as one region per
    non-ignored instance (``RecSample.points`` is the polygon; :func:`datasets.crops.crop_polygon` cuts it)."""
    samples = read_samples(fmt, path, issues=issues, root=root, **kwargs)
    if get_format(fmt).task == "rec":
        return samples  # type: ignore[return-value]
    return det_to_rec(samples)  # type: ignore[arg-type]

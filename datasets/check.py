"""Dataset validation: the report PaddleOCR lacks (it silently resamples bad samples instead).

Usage::

    python -m datasets.check icdar2015 data/icdar2015 --charset default --json check.json
    python -m datasets.check ppocr-rec data/rec/label.txt --charset my_dict.txt --rec-width 320

    report = validate("rctw17", "data/rctw17", charset=Charset.default())
    if report.num_errors:
        good, dropped = report.split()          # what ``data.on_error=skip`` trains on, and how many it dropped

The command prints a readable report (rich tables: counts, image/box size histograms, out-of-charset
characters, labels too long for the recognizer) and then, as the LAST stdout line, one JSON object with at
least ``num_images``, ``num_instances``, ``num_ignored``, ``num_errors``, ``errors`` [{file, line, message}]
and, with a charset, ``charset_coverage`` and ``oov_chars``. Exit status: 0 clean, 1 errors found, 2 bad usage
(unknown path, ambiguous layout).

Errors (each with file and line): unreadable or truncated image, malformed label line, invalid UTF-8, polygon
with fewer than 3 points or zero area, points outside the image, the same image (same path or same bytes)
labelled twice with labels that disagree, empty label files or annotation lists, images without labels and
labels without images, no samples at all (the error counts and names the image and label files that were
found), and - with ``--charset`` - characters outside the charset (training refuses them too, with the same
sentence; ``data.on_error=skip`` drops those lines).
Warnings (reported, exit status unaffected): self-intersecting polygons, the same image labelled twice with
the same label (a word cut twice is common in real label files; counted), labels longer than ``max_text_len``
or than CTC can emit in the recognizer's time steps (width / 8 for PP-OCRv4 rec at height 48: 40 steps at width
320; a repeated character needs a blank between, so ``"aa"`` takes 3 steps), unlabelled images next to the
images of a PaddleOCR label file.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from shapely import make_valid
from shapely.geometry import Polygon

from datasets.charset import Charset, CharsetError
from datasets.crops import polygon_to_quad
from datasets.errors import (
    DUPLICATE_ENTRY,
    DUPLICATE_IMAGE,
    ERROR,
    IMAGE_WITHOUT_LABEL,
    NO_SAMPLES,
    OOV,
    OUT_OF_IMAGE,
    SELF_INTERSECTING,
    TEXT_TOO_LONG,
    TOO_FEW_POINTS,
    UNREADABLE_IMAGE,
    WARNING,
    ZERO_AREA,
    DatasetError,
    ValidationIssue,
    one_line,
)
from datasets.atomic import write_text_atomic
from datasets.formats import FORMATS, get_format, read_samples
from datasets.imageio import ImageInfo, inspect_image, is_image_file
from datasets.labelio import is_label_file
from datasets.sample import DetSample, RecSample

__all__ = ["CheckReport", "validate", "ctc_steps_needed", "time_steps_for_width", "main", "REC_DOWNSAMPLE",
           "check_command", "oov_message"]

#: PP-OCRv4 rec (PPLCNetV3 + SVTR neck at height 48) emits one CTC step per 8 input columns
REC_DOWNSAMPLE = 8

_SIZE_EDGES = (320, 640, 960, 1280, 1920, 2560)
_BOX_HEIGHT_EDGES = (8, 16, 32, 64, 128, 256)
_ASPECT_EDGES = (0.67, 1, 2, 4, 8, 16)
_LENGTH_EDGES = (5, 10, 15, 20, 25, 40, 80)
_MAX_JSON_WARNINGS = 1000


def time_steps_for_width(width: int) -> int:
    """CTC time steps of PP-OCRv4 rec for input width ``width`` (height 48)."""
    return max(1, int(width) // REC_DOWNSAMPLE)


def ctc_steps_needed(text: str) -> int:
    """Minimum CTC output length for ``text``: one step per character plus a blank between equal neighbours."""
    return len(text) + sum(1 for a, b in zip(text, text[1:]) if a == b)


def _histogram(values: Iterable[float], edges: Sequence[float], unit: str = "") -> dict[str, int]:
    """Counts per bin labelled ``≤e0``, ``e0–e1``, …, ``>eN`` (all bins present, in order)."""
    labels = [f"≤{edges[0]}{unit}"] + [f"{a}–{b}{unit}" for a, b in zip(edges, edges[1:])] + [f">{edges[-1]}{unit}"]
    counts = [0] * len(labels)
    values = np.asarray(list(values), dtype=np.float64)
    if values.size:
        for index in np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left"):
            counts[int(index)] += 1
    return dict(zip(labels, counts))


@dataclass
class CheckReport:
    """Everything :func:`validate` found. ``samples`` are all samples read (bad ones included);
    :meth:`split` separates them for ``data.on_error=skip``."""

    format: str
    path: str
    samples: list[DetSample] | list[RecSample] = field(default_factory=list)
    issues: list[ValidationIssue] = field(default_factory=list)
    num_images: int = 0
    num_instances: int = 0
    num_ignored: int = 0
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    box_sizes: list[tuple[float, float]] = field(default_factory=list)
    text_lengths: list[int] = field(default_factory=list)
    charset: Charset | None = None
    charset_coverage: float | None = None
    oov_chars: Counter = field(default_factory=Counter)
    max_text_len: int | None = None
    time_steps: int | None = None
    num_too_long: int = 0
    #: (file, line, text) of every text with characters outside the charset, in reading order
    oov_lines: list[tuple[str, int | None, str]] = field(default_factory=list)
    num_duplicates: int = 0

    # ------------------------------------------------------------------ issues
    @property
    def errors(self) -> list[ValidationIssue]:
        return [issue for issue in self.issues if issue.is_error]

    @property
    def warnings(self) -> list[ValidationIssue]:
        return [issue for issue in self.issues if not issue.is_error]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def ok(self) -> bool:
        return self.num_errors == 0

    def bad_keys(self, ignore_kinds: Iterable[str] = ()) -> set[str]:
        """Image paths (as ``str``) of the samples an error invalidates; matches ``str(sample.image_path)``
        of samples read with the same format, path and root. Errors of ``ignore_kinds`` are left out (training
        drops out-of-charset *lines* itself, not the whole page they were labelled on)."""
        ignore = set(ignore_kinds)
        return {issue.key for issue in self.issues if issue.is_error and issue.key and issue.kind not in ignore}

    def is_bad(self, sample: DetSample | RecSample) -> bool:
        return str(sample.image_path) in self.bad_keys()

    def split(self, samples: Sequence[DetSample | RecSample] | None = None, *,
              ignore_kinds: Iterable[str] = ()) -> tuple[list, list]:
        """``(good, bad)`` samples (default: the report's own). Errors that concern no sample (an empty label
        file, a label file without its image) drop nothing: there is nothing to train on there anyway."""
        bad_keys = self.bad_keys(ignore_kinds)
        good, bad = [], []
        for sample in self.samples if samples is None else samples:
            (bad if str(sample.image_path) in bad_keys else good).append(sample)
        return good, bad

    def error_kinds(self) -> Counter:
        return Counter(issue.kind for issue in self.errors)

    # ------------------------------------------------------------------ output
    def histograms(self) -> dict[str, dict[str, int]]:
        out = {"image_max_side": _histogram((max(w, h) for w, h in self.image_sizes), _SIZE_EDGES, "px")}
        if self.box_sizes:
            out["box_height"] = _histogram((h for _, h in self.box_sizes), _BOX_HEIGHT_EDGES, "px")
            out["box_aspect_w_over_h"] = _histogram((w / h for w, h in self.box_sizes if h > 0), _ASPECT_EDGES)
        out["text_length"] = _histogram(self.text_lengths, _LENGTH_EDGES)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``python -m datasets.check`` prints last (see the module docstring)."""
        warnings = self.warnings
        sizes = np.asarray(self.image_sizes, dtype=np.int64).reshape(-1, 2)
        data: dict[str, Any] = {
            "format": self.format,
            "path": self.path,
            "num_images": self.num_images,
            "num_instances": self.num_instances,
            "num_ignored": self.num_ignored,
            "num_errors": self.num_errors,
            "num_warnings": len(warnings),
            "error_kinds": dict(self.error_kinds()),
            "errors": [issue.to_dict() for issue in self.errors],
            "warnings": [issue.to_dict() for issue in warnings[:_MAX_JSON_WARNINGS]],
            "charset": None,
            "charset_coverage": self.charset_coverage,
            "oov_chars": dict(self.oov_chars.most_common()),
            "max_text_len": self.max_text_len,
            "ctc_time_steps": self.time_steps,
            "num_too_long": self.num_too_long,
            "num_duplicates": self.num_duplicates,
            "oov_summary": oov_message(self),
            "image_size": None if not len(sizes) else {
                "min": sizes.min(axis=0).tolist(), "median": np.median(sizes, axis=0).tolist(),
                "max": sizes.max(axis=0).tolist()},
            "histograms": self.histograms(),
        }
        if len(warnings) > _MAX_JSON_WARNINGS:
            data["warnings_truncated"] = len(warnings) - _MAX_JSON_WARNINGS
        if self.charset is not None:
            data["charset"] = {"source": self.charset.source, "sha256": self.charset.sha256,
                               "num_classes": self.charset.num_classes,
                               "use_space_char": self.charset.use_space_char}
        return data


# ---------------------------------------------------------------------------------------------- checks
def _where(sample: DetSample | RecSample, instance: Any = None) -> tuple[str, int | None]:
    line = getattr(instance, "line", None) or sample.line
    return str(sample.source or sample.image_path), line


def _label_of(sample: DetSample | RecSample) -> tuple:
    """What a sample says about its image, comparable across entries: text (and polygon) of a rec line,
    the sorted (text, ignore, polygon) set of a det page; coordinates rounded to a pixel."""
    def poly(points: Any) -> tuple:
        return () if points is None else tuple(np.round(np.asarray(points, dtype=np.float64).reshape(-1))
                                               .astype(int).tolist())

    if isinstance(sample, RecSample):
        return (sample.text, poly(sample.points))
    return tuple(sorted((inst.text, bool(inst.ignore), poly(inst.points)) for inst in sample.instances))


def _show_label(sample: DetSample | RecSample) -> str:
    if isinstance(sample, RecSample):
        return repr(sample.text)
    texts = [inst.text for inst in sample.instances]
    return f"{len(texts)} region(s) {texts[:3]!r}"


def _duplicate(report: CheckReport, sample: DetSample | RecSample, earlier: DetSample | RecSample,
               what: str, kind: str, at_image: bool = False) -> None:
    """A second label for the same picture: a counted warning when both labels agree (the same word cut
    twice), an error when they disagree (one of them is wrong, and training cannot tell which).
    ``at_image`` points the issue at the image file instead of the label line (byte-identical copies)."""
    file, line = (str(sample.image_path), None) if at_image else _where(sample)
    where = _where(earlier)
    at = f"{where[0]}:{where[1]}" if where[1] is not None else where[0]
    key = str(sample.image_path)
    if _label_of(sample) == _label_of(earlier):
        report.num_duplicates += 1
        report.issues.append(ValidationIssue(file, line, f"{what} (also at {at}) with the same label; counted "
                                             "twice", kind, WARNING, key))
    else:
        report.issues.append(ValidationIssue(file, line, f"{what} (also at {at}) with a different label: "
                                             f"{_show_label(sample)} vs {_show_label(earlier)}", kind, ERROR, key))


def _check_images(report: CheckReport, deep: bool) -> dict[str, ImageInfo]:
    """Decode every referenced image once; report bad files, repeated entries and byte-identical copies."""
    infos: dict[str, ImageInfo] = {}
    first_entry: dict[str, DetSample | RecSample] = {}
    first_by_hash: dict[str, DetSample | RecSample] = {}
    for sample in report.samples:
        key = str(sample.image_path)
        if key in first_entry:
            _duplicate(report, sample, first_entry[key], f"image {key} is labelled twice", DUPLICATE_ENTRY)
            continue
        first_entry[key] = sample
        info = inspect_image(sample.image_path, deep=deep)
        infos[key] = info
        if not info.ok:
            file, line = _where(sample)
            where = f" (labelled in {file}:{line})" if line is not None else f" (labelled in {file})"
            report.issues.append(ValidationIssue(key, None, f"{info.problem}{where}", info.kind or UNREADABLE_IMAGE,
                                                 ERROR, key))
            continue
        report.image_sizes.append((info.width, info.height))
        if info.sha256 in first_by_hash:
            earlier = first_by_hash[info.sha256]
            _duplicate(report, sample, earlier, f"duplicate image: {key} has the same bytes as "
                       f"{earlier.image_path}", DUPLICATE_IMAGE, at_image=True)
        else:
            first_by_hash[info.sha256] = sample
    return infos


def _check_polygon(report: CheckReport, sample: DetSample, instance: Any, info: ImageInfo | None,
                   tolerance: float) -> None:
    file, line = _where(sample, instance)
    key = str(sample.image_path)
    points = np.asarray(instance.points, dtype=np.float64).reshape(-1, 2)
    label = f"{instance.text!r}"
    if len(points) < 3:
        report.issues.append(ValidationIssue(file, line, f"polygon {label} has {len(points)} point(s), at least 3 "
                                             "are needed", TOO_FEW_POINTS, ERROR, key))
        return
    polygon = Polygon(points)
    valid = polygon.is_valid
    area = polygon.area if valid else make_valid(polygon).area  # a crossed quad's signed halves cancel out
    if area <= 1e-9:
        report.issues.append(ValidationIssue(file, line, f"polygon {label} has zero area: {points.tolist()}",
                                             ZERO_AREA, ERROR, key))
        return
    if not valid:
        report.issues.append(ValidationIssue(file, line, f"polygon {label} is self-intersecting (corners out of "
                                             "order?)", SELF_INTERSECTING, WARNING, key))
    if info is not None and info.ok:
        width, height = info.width, info.height
        outside = ((points[:, 0] < -tolerance) | (points[:, 0] > width + tolerance)
                   | (points[:, 1] < -tolerance) | (points[:, 1] > height + tolerance))
        if outside.any():
            x, y = points[int(np.argmax(outside))]
            report.issues.append(ValidationIssue(
                file, line, f"polygon {label}: {int(outside.sum())} point(s) outside the {width}x{height} image, "
                f"e.g. ({x:g}, {y:g})", OUT_OF_IMAGE, ERROR, key))
    try:
        quad = polygon_to_quad(points)
        w = max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[3] - quad[2]))
        h = max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))
        report.box_sizes.append((float(w), float(h)))
    except ValueError:
        pass


def _check_text(report: CheckReport, sample: DetSample | RecSample, text: str, instance: Any = None) -> None:
    file, line = _where(sample, instance)
    key = str(sample.image_path)
    report.text_lengths.append(len(text))
    if report.charset is not None:
        missing = [ch for ch in dict.fromkeys(text) if not report.charset.contains(ch)]
        if missing:
            shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in missing[:8])
            report.oov_lines.append((file, line, text))
            report.issues.append(ValidationIssue(file, line, f"characters not in the charset: {shown} in {text[:40]!r}",
                                                 OOV, ERROR, key))
    problems = []
    if report.max_text_len is not None and len(text) > report.max_text_len:
        problems.append(f"{len(text)} characters > max_text_len {report.max_text_len}")
    if report.time_steps is not None and ctc_steps_needed(text) > report.time_steps:
        problems.append(f"needs {ctc_steps_needed(text)} CTC steps (repeated characters need a blank between) "
                        f"> {report.time_steps} time steps")
    if problems:
        report.num_too_long += 1
        report.issues.append(ValidationIssue(file, line, f"label too long for the recognizer: {'; '.join(problems)}: "
                                             f"{text[:40]!r}", TEXT_TOO_LONG, WARNING, key))


def _check_unlabelled_neighbours(report: CheckReport) -> None:
    """PaddleOCR label files list images from folders that may hold more: name the ones nobody labels."""
    listed = {Path(s.image_path).resolve() for s in report.samples}
    folders = sorted({path.parent for path in listed})
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.is_file() and is_image_file(path) and path.resolve() not in listed:
                report.issues.append(ValidationIssue(str(path), None, "image without label (not listed in the "
                                                     "label file)", IMAGE_WITHOUT_LABEL, WARNING, None))


_INVENTORY_LIMIT = 20000


def _inventory(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Image files and label files under ``paths`` (folders searched recursively, at most 20k entries)."""
    images: list[Path] = []
    labels: list[Path] = []
    seen = 0
    for path in paths:
        candidates = [path] if path.is_file() else (sorted(path.rglob("*")) if path.is_dir() else [])
        for item in candidates:
            seen += 1
            if seen > _INVENTORY_LIMIT:
                break
            if item.is_file() and is_image_file(item):
                images.append(item)
            elif item.is_file() and is_label_file(item):
                labels.append(item)
    return images, labels


def _check_not_empty(report: CheckReport, fmt: str, paths: Sequence[Path]) -> None:
    """No sample at all is an error: training on it would fail later, and "no errors" would be a lie. The
    message counts and names what *was* found, so a wrong layout or a wrong folder is obvious."""
    if report.samples:
        return
    images, labels = _inventory(paths)

    def some(files: list[Path]) -> str:
        if not files:
            return ""
        names = ", ".join(str(f) for f in files[:3])
        return f" ({names}{', …' if len(files) > 3 else ''})"

    where = ", ".join(str(p) for p in paths)
    report.issues.append(ValidationIssue(
        where, None, f"no {fmt} samples found: {len(images)} image file(s){some(images)} and {len(labels)} label "
        f"file(s){some(labels)}; expected {get_format(fmt).takes}", NO_SAMPLES, ERROR, None))


def oov_message(report: CheckReport) -> str | None:
    """One sentence about the labels with characters outside the charset, or None. ``datasets.check`` prints
    it and training refuses with it, so both say the same thing about the same data."""
    if not report.oov_lines or report.charset is None:
        return None
    unknown = "".join(dict.fromkeys(ch for _, _, text in report.oov_lines for ch in text
                                    if not report.charset.contains(ch)))
    file, line, text = report.oov_lines[0]
    where = f"{file}:{line}" if line is not None else file
    shown = f"{unknown[:20]!r}{'…' if len(unknown) > 20 else ''}"
    return (f"{len(report.oov_lines)} text line(s) contain characters outside the charset ({len(report.charset)} "
            f"chars): {shown}; first at {where}: {text[:40]!r}. Add them with model.charset.extra_chars="
            f"'{unknown[:20]}' (or to the dict file)")


def check_command(fmt: str, paths: str | PathLike[str] | Sequence[str | PathLike[str]], *,
                  root: str | PathLike[str] | None = None, charset: Charset | None = None) -> str:
    """The ``python -m datasets.check`` command line that checks exactly this data (and charset), quoted for
    a POSIX shell, so an error message can hand it to the user and it runs as printed."""
    from datasets.charset import default_dict_path

    items = [paths] if isinstance(paths, (str, PathLike)) else list(paths)
    args = ["python", "-m", "datasets.check", fmt, *(str(p) for p in items)]
    if root is not None and get_format(fmt).uses_root:
        args += ["--root", str(root)]
    if charset is not None:
        source, _, added = charset.source.rpartition("+")
        if not (source and added.isdigit()):
            source = charset.source
        if source and Path(source).is_file():
            try:
                is_default = Path(source).resolve() == default_dict_path().resolve()
            except CharsetError:
                is_default = False
            args += ["--charset", "default" if is_default else source]
            if not charset.use_space_char:
                args.append("--no-space-char")
            base = _load_charset("default" if is_default else source, charset.use_space_char)
            extra = "".join(ch for ch in charset.chars if base is not None and not base.contains(ch))
            if extra:
                args += ["--extra-chars", extra]
    return " ".join(shlex.quote(a) for a in args)


def _load_charset(charset: Charset | str | PathLike[str] | None, use_space_char: bool,
                  extra_chars: str = "") -> Charset | None:
    if charset is None or isinstance(charset, Charset):
        loaded = charset
    elif str(charset) == "default":
        loaded = Charset.default()
        if not use_space_char:
            loaded = Charset(tuple(c for c in loaded.chars if c != " "), False, loaded.source)
    else:
        loaded = Charset.from_file(charset, use_space_char=use_space_char)
    if extra_chars:
        if loaded is None:
            raise CharsetError("--extra-chars needs --charset (the dict file they extend)")
        loaded = loaded.extend(extra_chars)
    return loaded


def validate(fmt: str, path: str | PathLike[str] | Sequence[str | PathLike[str]],
             charset: Charset | str | PathLike[str] | None = None, *, root: str | PathLike[str] | None = None,
             use_space_char: bool = True, max_text_len: int | None = 25, rec_width: int | None = 320,
             tolerance: float = 1.0, deep: bool = True, extra_chars: str = "") -> CheckReport:
    """Read a dataset leniently and check everything (see the module docstring); never raises for bad data.

    ``charset`` is a :class:`Charset`, a dict file path, or ``"default"`` (ppocr_keys_v1). ``rec_width`` sets
    the CTC time-step limit (width / 8); ``tolerance`` (pixels) lets annotation-tool rounding at the border
    pass. ``deep=False`` reads image headers only (fast, but truncated files go unnoticed). Raises
    FileNotFoundError / ValueError only for a wrong ``path`` or layout."""
    spec = get_format(fmt)
    issues: list[ValidationIssue] = []
    samples = read_samples(fmt, path, issues=issues, root=root if spec.uses_root else None)
    shown = str(path) if isinstance(path, (str, PathLike)) else ", ".join(str(p) for p in path)
    report = CheckReport(fmt, shown, samples, issues, charset=_load_charset(charset, use_space_char, extra_chars),
                         max_text_len=max_text_len,
                         time_steps=time_steps_for_width(rec_width) if rec_width else None)
    infos = _check_images(report, deep)
    report.num_images = len(infos)
    texts: list[str] = []
    for sample in samples:
        if isinstance(sample, RecSample):
            report.num_instances += 1
            texts.append(sample.text)
            _check_text(report, sample, sample.text)
            continue
        info = infos.get(str(sample.image_path))
        for instance in sample.instances:
            report.num_instances += 1
            _check_polygon(report, sample, instance, info, tolerance)
            if instance.ignore:
                report.num_ignored += 1
            elif instance.text.strip():
                texts.append(instance.text)
                _check_text(report, sample, instance.text, instance)
    if spec.uses_root and samples:
        _check_unlabelled_neighbours(report)
    _check_not_empty(report, fmt, [Path(path)] if isinstance(path, (str, PathLike)) else [Path(p) for p in path])
    if report.charset is not None:
        report.charset_coverage, report.oov_chars = report.charset.coverage(texts)
    return report


# ---------------------------------------------------------------------------------------------- printing
def _shorten(file: str, base: Path) -> str:
    """``file`` relative to the dataset folder when it lies inside it (tables stay readable)."""
    try:
        return Path(file).resolve().relative_to(base).as_posix()
    except ValueError:
        return file


def _print_report(report: CheckReport, max_rows: int, base: Path) -> None:
    from rich.columns import Columns
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    summary = Table(title=f"datasets.check {report.format} {report.path}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    rows = [("images", report.num_images), ("text instances", report.num_instances),
            ("ignored (###/difficult)", report.num_ignored), ("errors", report.num_errors),
            ("warnings", len(report.warnings))]
    if report.charset is not None:
        rows += [("charset", f"{Path(report.charset.source).name or 'given'} ({len(report.charset)} chars, "
                             f"sha256 {report.charset.sha256[:12]})"),
                 ("charset coverage", f"{report.charset_coverage:.4%}"), ("distinct OOV chars", len(report.oov_chars))]
    if report.time_steps is not None or report.max_text_len is not None:
        rows.append(("labels too long", f"{report.num_too_long} (max_text_len {report.max_text_len}, "
                                        f"{report.time_steps} CTC steps)"))
    for name, value in rows:
        summary.add_row(name, str(value))
    console.print(summary)

    kinds = Counter((issue.kind, issue.severity) for issue in report.issues)
    if kinds:
        table = Table(title="problems by kind")
        for column in ("kind", "severity", "count"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for (kind, severity), count in sorted(kinds.items(), key=lambda kv: (kv[0][1] != ERROR, -kv[1])):
            table.add_row(kind, severity, str(count), style="red" if severity == ERROR else "yellow")
        console.print(table)
    for title, issues, style in (("errors", report.errors, "red"), ("warnings", report.warnings, "yellow")):
        if not issues:
            continue
        issues = sorted(issues, key=lambda i: (i.file, i.line or 0))
        table = Table(title=f"{title} ({len(issues)}{f', first {max_rows}' if len(issues) > max_rows else ''}; "
                            f"paths relative to {base})")
        table.add_column("file:line", style=style, overflow="fold")
        table.add_column("kind")
        table.add_column("message", overflow="fold")
        for issue in issues[:max_rows]:
            file = _shorten(issue.file, base)
            table.add_row(f"{file}:{issue.line}" if issue.line is not None else file, issue.kind, issue.message)
        console.print(table)

    panels = []
    if report.image_sizes:
        table = Table(title="image sizes")
        table.add_column("width x height")
        table.add_column("images", justify="right")
        for (w, h), count in Counter(report.image_sizes).most_common(min(max_rows, 8)):
            table.add_row(f"{w}x{h}", str(count))
        panels.append(table)
    for name, histogram in report.histograms().items():
        peak = max(histogram.values())
        if not peak:
            continue
        table = Table(title=name.replace("_", " "))
        table.add_column("bin")
        table.add_column("count", justify="right")
        table.add_column("", min_width=12)
        for label, count in histogram.items():
            table.add_row(label, str(count), "█" * round(12 * count / peak))
        panels.append(table)
    if report.oov_chars:
        table = Table(title=f"outside the charset ({len(report.oov_chars)} distinct)")
        for column in ("char", "code point", "count"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for ch, count in report.oov_chars.most_common(max_rows):
            table.add_row(repr(ch), f"U+{ord(ch):04X}", str(count))
        panels.append(table)
    if panels:
        console.print(Columns(panels))
    verdict = (f"[bold red]✗ {report.num_errors} error(s)[/] in {report.path}" if report.num_errors
               else f"[bold green]✓ no errors[/] in {report.path}")
    if report.num_duplicates:
        verdict += f" ({report.num_duplicates} duplicate label(s) with the same text, counted twice)"
    console.print(verdict)
    oov = oov_message(report)
    if oov:
        console.print(oov, markup=False, highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.check",
                                     description="Validate an OCR dataset and print a report + a JSON line.")
    parser.add_argument("format", choices=list(FORMATS), help="annotation format")
    parser.add_argument("path", type=Path, nargs="+", help="dataset folder (icdar2015, rctw17) or label file(s) "
                        "(ppocr-*; several are checked as one set, as data.*.label_files)")
    parser.add_argument("--root", type=Path, default=None, help="image root for ppocr-* label files "
                        "(default: beside the label file, then one folder up)")
    parser.add_argument("--charset", default=None, help="PaddleOCR dict file, or 'default' for ppocr_keys_v1")
    parser.add_argument("--extra-chars", default="", help="characters appended to the charset, as training's "
                        "model.charset.extra_chars")
    space = parser.add_mutually_exclusive_group()
    space.add_argument("--use-space-char", dest="use_space_char", action="store_true", default=True,
                       help="append a space to the dict, as PaddleOCR's use_space_char (default)")
    space.add_argument("--no-space-char", dest="use_space_char", action="store_false")
    parser.add_argument("--max-text-len", type=int, default=25, help="recognizer's max_text_length (default 25; "
                        "0 disables the check)")
    parser.add_argument("--rec-width", type=int, default=320, help="recognizer input width at height 48: CTC time "
                        "steps = width / 8 (default 320 → 40; 0 disables the check)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="pixels a point may lie outside the image")
    parser.add_argument("--fast", action="store_true", help="read image headers only (skips truncation checks)")
    parser.add_argument("--json", dest="json_file", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--max-rows", type=int, default=30, help="rows per printed table")
    args = parser.parse_args(argv)
    if len(args.path) > 1 and not get_format(args.format).uses_root:
        parser.error(f"{args.format} takes one dataset folder, got {len(args.path)} paths")
    path = args.path[0] if len(args.path) == 1 else args.path
    try:
        report = validate(args.format, path, args.charset, root=args.root,
                          use_space_char=args.use_space_char, max_text_len=args.max_text_len or None,
                          rec_width=args.rec_width or None, tolerance=args.tolerance, deep=not args.fast,
                          extra_chars=args.extra_chars)
    except (OSError, ValueError, CharsetError, DatasetError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    first = args.path[0]
    base = (first if first.is_dir() else first.parent).resolve()
    _print_report(report, args.max_rows, base)
    data = report.to_dict()
    if args.json_file is not None:
        try:
            write_text_atomic(args.json_file, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        except OSError as exc:
            print(f"error: cannot write the JSON report: {one_line(exc)}", file=sys.stderr)
            return 2
    sys.stdout.flush()
    print(json.dumps(data, ensure_ascii=False), flush=True)
    return 1 if report.num_errors else 0


if __name__ == "__main__":
    sys.exit(main())

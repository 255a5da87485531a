"""Small pieces every label reader needs: decoding label files line by line, numbering lines, natural sort,
and an instance that remembers its line.

Why here and not in each reader: the same dirty-file quirks show up in every format (a UTF-8 BOM at the
start or, after concatenating files, in the middle; CRLF line ends; files saved as GBK), and each must be
reported the same way, with the file and the 1-based line number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Iterator

from datasets.errors import EMPTY_LABEL_FILE, ENCODING, UNREADABLE_FILE, ValidationIssue, report
from datasets.sample import TextInstance

__all__ = ["SourcedInstance", "iter_label_lines", "is_label_file", "natural_key", "parse_number", "BOM"]

BOM = "\ufeff"

#: text files that live in dataset folders but are not labels
_NOT_LABELS = frozenset({"readme.txt", "license.txt", "licence.txt"})


@dataclass
class SourcedInstance(TextInstance):
    """A :class:`TextInstance` plus the 1-based label line it came from, so geometric problems found later
    (zero area, outside the image) can still be reported as ``FILE:LINE``."""

    line: int | None = None


def natural_key(path: str | PathLike[str]) -> tuple:
    """Sort key putting ``img_2`` before ``img_10`` (datasets are numbered without zero padding)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path)))


def is_label_file(path: Path) -> bool:
    """A ``.txt`` file that is not a README/LICENSE (those sit in downloaded dataset folders)."""
    return path.suffix.lower() == ".txt" and path.name.lower() not in _NOT_LABELS


def parse_number(token: str) -> float | None:
    """A finite float from a label token (``"12"``, ``" 12.5 "``), or None if it is not one."""
    try:
        value = float(token.strip().lstrip(BOM))
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def parse_quad(tokens: "list[str]") -> "np.ndarray":
    """Eight coordinate tokens (x1,y1,…,x4,y4) → a 4×2 float32 array; ValueError names the bad one.

    Shared by the ICDAR2015 and RCTW-17 readers, whose lines start with the same eight numbers."""
    import numpy as np

    coords = []
    for index, token in enumerate(tokens):
        value = parse_number(token)
        if value is None:
            raise ValueError(f"coordinate {index + 1} is not a number: {token.strip()!r}")
        coords.append(value)
    return np.asarray(coords, dtype=np.float32).reshape(4, 2)


def iter_label_lines(path: str | PathLike[str], issues: list[ValidationIssue] | None = None, *,
                     key: str | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every non-blank line of a UTF-8 label file.

    Strips a BOM at the start of any line and the line end (``\\n`` or ``\\r\\n``). A line that is not valid
    UTF-8 is an :data:`~datasets.errors.ENCODING` issue naming the line (raised when ``issues`` is None). A file
    with no non-blank line is an :data:`~datasets.errors.EMPTY_LABEL_FILE` issue."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise ValueError(f"{path}: is a folder, expected a label file")
        raise FileNotFoundError(f"{path}: label file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report(issues, path, None, f"cannot read label file: {exc.strerror or exc}", UNREADABLE_FILE, key=key)
        return
    seen = False
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            report(issues, path, number,
                   f"not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1}); "
                   "re-save the file as UTF-8 (GBK/GB2312 is common for Chinese labels)", ENCODING, key=key)
            seen = True
            continue
        text = text.rstrip("\r\n").lstrip(BOM)
        if not text.strip():
            continue
        seen = True
        yield number, text
    if not seen:
        report(issues, path, None, "empty label file (no labelled line)", EMPTY_LABEL_FILE, key=key)

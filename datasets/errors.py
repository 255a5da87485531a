"""Errors and validation issues shared by the readers and ``datasets.check``.

Why one module: a reader must be usable in two ways. Training wants it *strict* (the first malformed line
stops everything with ``FILE:LINE: message``, long before a batch is built); the checker wants it *lenient*
(every problem collected, the rest of the dataset still read). Both modes report the same
:class:`ValidationIssue`, so a message reads the same whether it was raised or listed.

Usage::

    issues: list[ValidationIssue] = []
    samples = read_icdar2015(root, issues=issues)   # lenient: problems land in ``issues``
    samples = read_icdar2015(root)                  # strict: raises DatasetError on the first problem
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any

__all__ = [
    "DatasetError",
    "ValidationIssue",
    "report",
    "ERROR",
    "WARNING",
    "MALFORMED_LINE",
    "ENCODING",
    "UNREADABLE_IMAGE",
    "TRUNCATED_IMAGE",
    "MISSING_IMAGE",
    "IMAGE_WITHOUT_LABEL",
    "EMPTY_LABEL_FILE",
    "EMPTY_LABEL",
    "TOO_FEW_POINTS",
    "ZERO_AREA",
    "SELF_INTERSECTING",
    "OUT_OF_IMAGE",
    "DUPLICATE_IMAGE",
    "DUPLICATE_ENTRY",
    "OOV",
    "TEXT_TOO_LONG",
    "EMPTY_TEXT",
    "NO_SAMPLES",
    "UNREADABLE_FILE",
    "one_line",
]

ERROR = "error"
WARNING = "warning"

# Issue kinds (stable strings: they appear in the check JSON and in tests).
MALFORMED_LINE = "malformed_line"
ENCODING = "encoding"
UNREADABLE_IMAGE = "unreadable_image"
TRUNCATED_IMAGE = "truncated_image"
MISSING_IMAGE = "label_without_image"
IMAGE_WITHOUT_LABEL = "image_without_label"
EMPTY_LABEL_FILE = "empty_label_file"
EMPTY_LABEL = "empty_label"
TOO_FEW_POINTS = "too_few_points"
ZERO_AREA = "zero_area"
SELF_INTERSECTING = "self_intersecting"
OUT_OF_IMAGE = "out_of_image"
DUPLICATE_IMAGE = "duplicate_image"
DUPLICATE_ENTRY = "duplicate_entry"
OOV = "oov"
TEXT_TOO_LONG = "text_too_long"
EMPTY_TEXT = "empty_text"
NO_SAMPLES = "no_samples"
UNREADABLE_FILE = "unreadable_file"


def _location(file: str, line: int | None) -> str:
    return f"{file}:{line}" if line is not None else file


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a dataset.

    ``file``/``line`` point where a human should look (the label line, or the image file when the image
    itself is bad; ``line`` is None for file-level problems). ``kind`` is one of the constants of this module.
    ``key`` names the sample the issue invalidates (its resolved image path), so a caller that chooses to
    skip bad samples can drop exactly those; None when no sample is concerned (e.g. an empty label file).
    """

    file: str
    line: int | None
    message: str
    kind: str
    severity: str = ERROR
    key: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def to_dict(self) -> dict[str, Any]:
        """JSON form used by ``datasets.check`` (``file``, ``line``, ``message``, ``kind``, ``severity``)."""
        data = asdict(self)
        data.pop("key")
        return data

    def __str__(self) -> str:
        return f"{_location(self.file, self.line)}: {self.message}"


class DatasetError(Exception):
    """A dataset problem that stops reading; ``str()`` is ``FILE:LINE: message`` (``FILE: message``
    without a line), so it can be pasted into an editor's "go to"."""

    def __init__(self, file: str | PathLike[str], line: int | None, message: str, kind: str = MALFORMED_LINE,
                 key: str | None = None) -> None:
        self.file = str(file)
        self.line = line
        self.message = message
        self.kind = kind
        self.key = key
        super().__init__(f"{_location(self.file, line)}: {message}")

    @classmethod
    def from_issue(cls, issue: ValidationIssue) -> "DatasetError":
        return cls(issue.file, issue.line, issue.message, issue.kind, issue.key)

    def to_issue(self, severity: str = ERROR) -> ValidationIssue:
        return ValidationIssue(self.file, self.line, self.message, self.kind, severity, self.key)

    def __reduce__(self):  # keep it picklable across DataLoader worker processes
        return (type(self), (self.file, self.line, self.message, self.kind, self.key))


def report(issues: list[ValidationIssue] | None, file: str | PathLike[str], line: int | None, message: str,
           kind: str = MALFORMED_LINE, *, severity: str = ERROR, key: str | PathLike[str] | None = None) -> None:
    """Raise or collect one problem: the single switch between strict and lenient reading.

    ``issues is None`` means strict: errors raise :class:`DatasetError` (warnings are dropped, since a strict
    caller has nowhere to put them). Otherwise the issue is appended and reading goes on."""
    issue = ValidationIssue(str(file), line, message, kind, severity, None if key is None else str(key))
    if issues is not None:
        issues.append(issue)
    elif issue.is_error:
        raise DatasetError.from_issue(issue)


def one_line(exc: BaseException) -> str:
    """The one line a command prints for a bad input file or path (after ``error: ``), naming the file.

    Why one function: every command that takes user files (``datasets.check``, ``datasets.crops``,
    ``export.evaluate``, ``export.predict``, training, the registry) must say the same thing about the same
    problem, without a traceback. :class:`DatasetError` is already ``FILE:LINE: message``; an ``OSError``
    carries the file in ``filename`` (``PermissionError``, ``IsADirectoryError``, a full disk); anything
    else is its first message line."""
    if isinstance(exc, DatasetError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        target = f" -> {exc.filename2}" if getattr(exc, "filename2", None) else ""
        return f"{exc.filename}{target}: {reason}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

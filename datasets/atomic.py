"""Atomic file writes for the files our data commands produce (reports, label files).

Why: a command killed mid-write, or a disk that fills up, must never leave half a JSON report or half a
``label.txt`` where a previous good one was ("nothing lost"). The bytes go to a temp file in the same
folder, are flushed to disk, and replace the target in one ``os.replace``; on failure the temp file is
removed and the old target is untouched.

Usage::

    write_text_atomic("out/report.json", json.dumps(data) + "\\n")
"""
from __future__ import annotations

import errno
import os
import tempfile
from os import PathLike
from pathlib import Path

__all__ = ["write_bytes_atomic", "write_text_atomic"]


def write_bytes_atomic(path: str | PathLike[str], data: bytes, *, sync: bool = True) -> Path:
    """Write ``data`` to ``path`` via a temp file + fsync + ``os.replace``; creates the parent folder.
    ``sync=False`` skips the fsync (still all-or-nothing for a killed process; used for the thousands of
    small images a synthetic set or a crop run writes). Raises ``OSError`` (with ``filename`` set to
    ``path``) when it cannot be written."""
    path = Path(path)
    for folder in (path.parent, *path.parent.parents):   # say which part of the path is in the way
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file, not a folder", str(path))
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    return path


def write_text_atomic(path: str | PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """:func:`write_bytes_atomic` for text."""
    return write_bytes_atomic(path, text.encode(encoding))

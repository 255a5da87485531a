"""Where an export is written: refuse to replace what is there unless told to, and replace it atomically.

Why: ``python -m export det --out DIR`` used to delete the model files of whatever export DIR held (a rec
model, say) and write the new one in place — a crash in between left neither. Now an export is built in a
hidden directory beside DIR and only a complete one is published: by ``rename`` when DIR is new or empty, by
an atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``) when ``overwrite`` replaces an earlier export. A
directory holding anything that is not an inference export is never replaced.

Example::

    check_out_dir(out, overwrite=args.overwrite)   # raises OutDirError with one line
    with staged(out) as tmp:                        # tmp is removed unless published
        write_everything(tmp)
        publish(tmp, out)
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["OutDirError", "EXPORT_MARKERS", "is_export_dir", "check_out_dir", "staged", "publish"]

#: files that identify an inference export (ours, PaddleOCR's, Paddle 3's)
EXPORT_MARKERS = ("inference.yml", "inference.pdmodel", "inference.pdiparams", "inference.json", "parity.json")

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class OutDirError(ValueError):
    """The output directory cannot be (re)placed; the message is one line saying why and what to do."""


def is_export_dir(path: Path) -> bool:
    """True when ``path`` holds one of the files an inference export always has."""
    return any((Path(path) / name).exists() for name in EXPORT_MARKERS)


def _describe(path: Path) -> str:
    names = sorted(p.name for p in path.iterdir())
    return ", ".join(names[:4]) + (f", … ({len(names)} entries)" if len(names) > 4 else "")


def check_out_dir(out: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, a non-empty directory without ``overwrite``, or (even with it) a
    directory that holds something other than an export."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutDirError(f"--out {out}: is a file, not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not is_export_dir(out):
        raise OutDirError(f"--out {out}: holds files that are not an inference export ({_describe(out)}); "
                          "refusing to replace them even with --overwrite; choose another --out")
    if not overwrite:
        raise OutDirError(f"--out {out}: already holds an export ({_describe(out)}); pass --overwrite to replace "
                          "it (atomically) or choose another --out")


@contextlib.contextmanager
def staged(out: str | os.PathLike) -> Iterator[Path]:
    """A fresh hidden directory beside ``out`` (same filesystem, so publishing is a rename); removed on exit
    unless :func:`publish` moved it into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False when the call is not available here."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL (filesystem without exchange), EOPNOTSUPP
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(tmp: Path, out: str | os.PathLike) -> None:
    """Move the complete export ``tmp`` to ``out``: a rename when ``out`` is absent or empty, else an atomic
    exchange, after which the old export (now at ``tmp``) is deleted. Without ``renameat2`` the old export is
    renamed aside first and restored if the second rename fails."""
    out = Path(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.replace(tmp, out)  # rename(2) replaces an empty directory
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    aside = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, aside)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)

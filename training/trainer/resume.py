"""Which checkpoint a run continues from, and whether a run directory may be written at all.

Why a module of its own: these decisions are where runs used to lose work. A fresh run in a directory that
holds a finished one replaced its ``best``, ``latest`` and ``history.json``; ``trainer.resume=auto`` with a
damaged ``latest`` started fresh and the first save's cleanup deleted the previous ``best``. The rules here:

* ``trainer.resume`` unset: a run directory with a previous run's checkpoints (or a finished run's
  ``metrics.json``) is refused with one line, unless ``trainer.overwrite=true``.
* ``trainer.resume=auto``: continue from the newest checkpoint that loads (``latest``; if that is damaged or
  missing, the newest intact ``latest-s*``/``best``, with one WARNING naming what was damaged). If checkpoints
  exist but none loads, refuse with one line (or start fresh with ``trainer.overwrite=true``).
* ``trainer.resume=PATH``: that checkpoint; a damaged file is one line naming it.
* Damaged checkpoint directories are never deleted (see ``checkpoint._cleanup``).

Example::

    check_run_dir(run_dir, cfg.trainer)          # before building the model: refusals cost seconds, not minutes
    ckpt = load_for_resume(cfg.trainer.resume, run_dir, overwrite=cfg.trainer.overwrite)
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.diskspace import probe_write
from training.trainer.checkpoint import (
    Checkpoint,
    CheckpointError,
    damaged_checkpoints,
    intact_checkpoints,
    load_checkpoint,
    write_error,
)

__all__ = ["RunDirError", "previous_run", "check_run_dir", "load_for_resume", "normalise_resume"]

log = logging.getLogger("training.trainer")

#: files a resume from an older checkpoint rewrites with fewer rows; a copy of each is kept first
_REWRITTEN = ("history.json", "metrics.json")


class RunDirError(CheckpointError):
    """The run directory holds work this run must not replace (one line: what, and the options)."""


def normalise_resume(spec: Any) -> str | None:
    """``null``/``""``/``none`` → None, ``AUTO`` → ``auto``, a path stays a string."""
    if spec is None or str(spec).strip().lower() in ("", "null", "none"):
        return None
    return "auto" if str(spec).strip().lower() == "auto" else str(spec)


def previous_run(run_dir: str | Path) -> str | None:
    """What an earlier run left in ``run_dir`` (a short phrase), or None when there is nothing to lose.

    Counted: any checkpoint entry, and a ``metrics.json`` saying the run completed. A run that failed before
    its first checkpoint left nothing worth protecting."""
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    entries = sorted(e.name for e in root.iterdir() if not e.name.startswith(".")) if root.is_dir() else []
    if entries:
        shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
        return f"checkpoints: {shown}"
    metrics = run_dir / "metrics.json"
    try:
        status = json.loads(metrics.read_text(encoding="utf-8")).get("status") if metrics.is_file() else None
    except (OSError, ValueError, AttributeError):
        status = "unreadable"
    if status in ("completed", "early_stopped", "unreadable"):
        return f"metrics.json of a {status} run"
    return None


def _refusal(run_dir: Path, found: str) -> RunDirError:
    return RunDirError(f"{run_dir} holds a previous run ({found}); continue it with trainer.resume=auto, use a "
                       "new hydra.run.dir, or replace it with trainer.overwrite=true")


def _option(cfg: Mapping[str, Any] | Any, key: str, default: Any = None) -> Any:
    getter = getattr(cfg, "get", None)
    return getter(key, default) if getter is not None else getattr(cfg, key, default)


def check_writable(run_dir: str | Path) -> None:
    """Create ``run_dir/checkpoints`` and write a probe file there; a read-only or full disk is one line."""
    try:
        probe_write(Path(run_dir) / "checkpoints")
    except OSError as exc:
        raise write_error(exc, "the run directory", Path(run_dir), "Nothing was changed.") from None


def check_run_dir(run_dir: str | Path, cfg_trainer: Mapping[str, Any] | Any) -> None:
    """Pre-flight before any model or data loads: refuse a run that would replace an earlier run's work, or an
    ``auto`` resume with nothing intact to resume from; check that the directory can be written."""
    run_dir = Path(run_dir)
    resume = normalise_resume(_option(cfg_trainer, "resume"))
    overwrite = bool(_option(cfg_trainer, "overwrite", False))
    found = previous_run(run_dir)
    if found and not overwrite:
        if resume is None:
            raise _refusal(run_dir, found)
        if resume == "auto" and not intact_checkpoints(run_dir):
            raise _no_intact(run_dir, damaged_checkpoints(run_dir) or [found])
        if resume != "auto" and (run_dir / "checkpoints").resolve() not in Path(resume).resolve().parents:
            raise _refusal(run_dir, found)
    check_writable(run_dir)


def _no_intact(run_dir: Path, problems: list[str]) -> RunDirError:
    return RunDirError(f"trainer.resume=auto: no intact checkpoint to resume from in {run_dir / 'checkpoints'} "
                       f"({'; '.join(problems)}); start fresh with trainer.overwrite=true or use a new "
                       "hydra.run.dir (damaged files are left in place)")


def _keep_copies(run_dir: Path, step: int) -> list[str]:
    """Copy the files an older resume point will rewrite, so no history is lost; returns the copies' names."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = []
    for name in _REWRITTEN:
        src = run_dir / name
        if src.is_file():
            dst = run_dir / f"{src.stem}.before-resume-s{step}-{stamp}{src.suffix}"
            shutil.copy2(src, dst)
            kept.append(dst.name)
    return kept


def _resume_auto(run_dir: Path, overwrite: bool, announce: bool) -> Checkpoint | None:
    problems = damaged_checkpoints(run_dir)
    failed: list[str] = []
    for path in intact_checkpoints(run_dir):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:
            failed.append(str(exc))
            continue
        if path.name != "latest" or failed:
            what = "; ".join(failed + problems) or f"{run_dir / 'checkpoints' / 'latest'} is missing"
            kept = _keep_copies(run_dir, ckpt.step) if announce else []
            if announce:
                log.warning("trainer.resume=auto: %s; resuming from %s (step %d), the newest intact checkpoint; "
                            "damaged files are left in place%s", what, path, ckpt.step,
                            f", earlier {' and '.join(kept)} kept" if kept else "")
        return ckpt
    problems = failed + problems
    if problems or previous_run(run_dir):
        if not overwrite:
            raise _no_intact(run_dir, problems or [previous_run(run_dir) or ""])
        if announce:
            log.warning("trainer.resume=auto: nothing intact to resume from in %s; starting fresh because "
                        "trainer.overwrite=true", run_dir)
        return None
    if announce:
        log.info("trainer.resume=auto: no checkpoint in %s, starting fresh", run_dir / "checkpoints")
    return None


def load_for_resume(spec: Any, run_dir: str | Path, *, overwrite: bool = False,
                    announce: bool = True) -> Checkpoint | None:
    """The checkpoint this run continues from (None: a fresh start), applying the rules of the module
    docstring. ``announce``: log warnings and keep copies (rank 0 only in data-parallel runs)."""
    run_dir = Path(run_dir)
    resume = normalise_resume(spec)
    if resume == "auto":
        return _resume_auto(run_dir, overwrite, announce)
    found = previous_run(run_dir)
    if resume is None:
        if found and not overwrite:
            raise _refusal(run_dir, found)
        if found and announce:
            log.warning("trainer.overwrite=true: this run replaces the previous run's checkpoints and history in "
                        "%s", run_dir)
        return None
    path = Path(resume)
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"trainer.resume={resume}: no such checkpoint")
    ckpt = load_checkpoint(path)
    own_root = (run_dir / "checkpoints").resolve()
    if found and not overwrite and own_root not in ckpt.path.resolve().parents:
        raise _refusal(run_dir, found)
    return ckpt

"""Atomic ``latest``/``best`` checkpoints: write, find, load.

Layout (``run_dir/checkpoints/``)::

    latest -> latest-s00000120-3f9a1c/     # a relative symlink; the swap is the commit point
        model.pdparams        weights to evaluate/deploy (the EMA weights when EMA is on)
        train_model.pdparams  raw training weights, only when EMA is on (needed to resume)
        optimizer.pdopt       optimizer accumulators keyed by structured parameter name + lr scheduler
        trainer.pkl           RNG states (python/numpy; see capture_rng_state), EMA counters, AMP scaler,
                              history, timers
        state.json            readable: step, epoch, position in epoch, best metric, last metrics,
                              resolved config, extra state (e.g. charset), versions; written last
    best -> best-s00000100-77e0b2/

Why symlinks: a directory cannot be ``os.replace``-d over a non-empty directory, and a rename dance
(old away, new in) leaves a window with no ``latest``. Each checkpoint is written into a hidden temp
directory, fsync-ed, renamed to its final unique name, and only then published by atomically replacing
the symlink. A crash at any point leaves the previous ``latest`` complete and loadable; leftovers are
removed by the next save. ``state.json`` records the size of every other file, so a truncated file is
recognised before Paddle or pickle try to parse it.

Every problem reading or writing a checkpoint is a :class:`CheckpointError` whose message is one line naming
the file and what is wrong (a full disk also says how much space is left). Superseded checkpoint directories
are removed only when they are complete: a damaged one (e.g. its ``state.json`` deleted) was not made damaged
by us and is left for the user to inspect.

Example::

    path = find_resume(run_dir)              # None when there is nothing to resume
    ckpt = load_checkpoint(path)
    model.set_state_dict(ckpt.training_weights)
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import pickle
import random
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle
from paddle.base import core

from training.diskspace import free_space

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "CheckpointWriteError",
    "intact_checkpoints",
    "damaged_checkpoints",
    "save_checkpoint",
    "load_checkpoint",
    "find_resume",
    "load_model_weights",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = 1
MODEL_FILE = "model.pdparams"
TRAIN_MODEL_FILE = "train_model.pdparams"
OPTIMIZER_FILE = "optimizer.pdopt"
TRAINER_FILE = "trainer.pkl"
STATE_FILE = "state.json"
#: files a checkpoint directory may hold besides ``state.json`` (their sizes are recorded in it)
DATA_FILES = (MODEL_FILE, TRAIN_MODEL_FILE, OPTIMIZER_FILE, TRAINER_FILE)


class CheckpointError(ValueError):
    """A checkpoint (or one file in it) cannot be read or written; the message is one line naming the file."""


class CheckpointWriteError(CheckpointError, OSError):
    """Writing a checkpoint failed (disk full, read-only directory, ...); the previous one is unchanged."""


def _short(exc: BaseException) -> str:
    """First line of an exception, capped: Paddle's and pickle's messages can be screens long."""
    text = (str(exc).strip().splitlines() or [""])[0].strip()
    return (text[:160] + "…") if len(text) > 160 else (text or type(exc).__name__)


def write_error(exc: OSError, what: str, where: Path, previous: str) -> CheckpointWriteError:
    """One line for a failed write: what, where, why, space left, and what is still intact."""
    reason = exc.strerror or _short(exc)
    failed = getattr(exc, "filename", None) or where
    return CheckpointWriteError(f"cannot write {what}: {reason} ({failed}); {free_space(where)} free on that "
                                f"disk. {previous}")


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint. ``model`` holds the evaluated/deployable weights; ``training_weights`` the ones
    to continue training from (they differ only when EMA is on)."""

    path: Path
    state: dict[str, Any]
    model: dict[str, Any]
    train_model: dict[str, Any] | None
    optimizer: dict[str, Any] | None
    trainer: dict[str, Any]

    @property
    def training_weights(self) -> dict[str, Any]:
        return self.train_model if self.train_model is not None else self.model

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable; state.json takes plain data only")


def _is_complete(ckpt_dir: Path) -> bool:
    """``state.json`` readable and every file it records present at its recorded size (cheap: no parsing)."""
    try:
        state = _read_state(ckpt_dir)
        for name in (state.get("files") or {}):
            _check_size(ckpt_dir / name, state)
    except CheckpointError:
        return False
    return True


def _cleanup(root: Path, name: str, keep: str | None) -> None:
    """Remove unpublished temp dirs and superseded *complete* targets of checkpoint ``name``.

    Why only complete ones: our writes publish complete directories, so an incomplete ``{name}-s*`` directory
    was damaged by something else; deleting it would destroy the evidence (and maybe the only weights)."""
    for entry in root.iterdir():
        stale_tmp = entry.name.startswith(f".tmp-{name}-s") or entry.name.startswith(f".{name}.link-")
        old_target = (entry.name.startswith(f"{name}-s") and entry.name != keep and not entry.is_symlink()
                      and _is_complete(entry))
        if not (stale_tmp or old_target):
            continue
        if entry.is_symlink() or entry.is_file():
            entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def save_checkpoint(
    root: str | os.PathLike,
    name: str,
    *,
    model: Mapping[str, Any],
    state: Mapping[str, Any],
    optimizer: Mapping[str, Any] | None = None,
    trainer: Mapping[str, Any] | None = None,
    train_model: Mapping[str, Any] | None = None,
) -> Path:
    """Write checkpoint ``name`` (``latest``/``best``) under ``root`` (``run_dir/checkpoints``) atomically.

    ``state`` must be JSON-serialisable (it becomes ``state.json``); ``trainer`` is pickled. Returns the
    published path ``root/name``. Any exception leaves the previously published checkpoint untouched."""
    if not name.isidentifier():
        raise ValueError(f"checkpoint name {name!r} must be a plain identifier such as 'latest' or 'best'")
    root = Path(root)
    step = int(state.get("step", 0))
    final_name = f"{name}-s{step:08d}-{uuid.uuid4().hex[:6]}"
    tmp = root / f".tmp-{final_name}"
    header = {"format": CHECKPOINT_FORMAT, "name": name, "saved_at": _dt.datetime.now().isoformat(timespec="seconds")}
    json.dumps({**header, **dict(state)}, default=_json_default)  # not JSON: fail before touching the disk
    try:
        _write_checkpoint_dir(root, tmp, final_name, name, header, state, model, optimizer, trainer, train_model)
    except OSError as exc:
        published = root / name
        previous = (f"The previous checkpoint {published} is unchanged." if (published / STATE_FILE).is_file()
                    else "No earlier checkpoint of this name exists.")
        raise write_error(exc, f"checkpoint '{name}' (step {step})", root, previous) from None
    _cleanup(root, name, keep=final_name)
    return root / name


def _named(write, path: Path):
    """``write`` with an ``OSError`` that lacks a file name given ``path`` (Paddle's and pickle's don't say)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return write(*args, **kwargs)
        except OSError as exc:
            if getattr(exc, "filename", None):
                raise
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    return call


def _write_checkpoint_dir(root: Path, tmp: Path, final_name: str, name: str, header: Mapping[str, Any],
                          state: Mapping[str, Any], model: Mapping[str, Any], optimizer: Mapping[str, Any] | None,
                          trainer: Mapping[str, Any] | None, train_model: Mapping[str, Any] | None) -> None:
    """The write-fsync-rename-publish sequence of :func:`save_checkpoint` (see the module docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        tmp.mkdir()
        for file_name, data in ((MODEL_FILE, model), (TRAIN_MODEL_FILE, train_model), (OPTIMIZER_FILE, optimizer)):
            if data is not None:
                _named(paddle.save, tmp / file_name)(dict(data), str(tmp / file_name))
        with open(tmp / TRAINER_FILE, "wb") as fh:
            _named(pickle.dump, tmp / TRAINER_FILE)(dict(trainer or {}), fh, protocol=pickle.HIGHEST_PROTOCOL)
        sizes = {f: (tmp / f).stat().st_size for f in DATA_FILES if (tmp / f).is_file()}
        state_json = json.dumps({**header, **dict(state), "files": sizes}, indent=1, ensure_ascii=False,
                                default=_json_default)
        (tmp / STATE_FILE).write_text(state_json, encoding="utf-8")  # last: marks the directory complete
        for f in tmp.iterdir():
            _fsync_file(f)
        _fsync_dir(tmp)
        final = root / final_name
        os.rename(tmp, final)
        _fsync_dir(root)
        link_tmp = root / f".{name}.link-{uuid.uuid4().hex[:6]}"
        os.symlink(final_name, link_tmp)
        published = root / name
        if published.is_dir() and not published.is_symlink():  # e.g. a copied run dir with links resolved
            os.rename(published, root / f"{name}-s_legacy-{uuid.uuid4().hex[:6]}")
        os.replace(link_tmp, published)  # the commit point
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_state(ckpt_dir: Path) -> dict[str, Any]:
    """``state.json`` parsed and checked; any problem is one line naming the file."""
    path = ckpt_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or _short(exc)})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 text; the checkpoint is damaged") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is truncated "
                              "or damaged") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path}: not a checkpoint state (a JSON object with 'step' was expected)")
    if state.get("format", -1) != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')!r}, this version reads "
                              f"{CHECKPOINT_FORMAT}")
    return state


def _check_size(path: Path, state: Mapping[str, Any]) -> None:
    """Compare with the size recorded at save time: a truncated file is named before anyone parses it."""
    expected = (state.get("files") or {}).get(path.name)
    if not path.is_file():
        if expected is not None or path.name == MODEL_FILE:
            raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
        return
    actual = path.stat().st_size
    if expected is not None and actual != expected:
        raise CheckpointError(f"{path}: {actual} bytes, but {expected} were written; the file is truncated or "
                              "damaged")


def _load_tensors(path: Path, state: Mapping[str, Any], what: str, **kwargs: Any) -> dict[str, Any]:
    _check_size(path, state)
    try:
        data = paddle.load(str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001 -- Paddle raises ValueError/RuntimeError/UnpicklingError/EOFError
        raise CheckpointError(f"{path}: cannot be loaded as {what} ({_short(exc)}); the file is truncated or "
                              "damaged") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not {what}")
    return data


def _load_pickle(path: Path, state: Mapping[str, Any]) -> dict[str, Any]:
    _check_size(path, state)
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or _short(exc)})") from None
    except Exception as exc:  # noqa: BLE001 -- pickle raises many types on damaged input
        raise CheckpointError(f"{path}: cannot be unpickled ({type(exc).__name__}: {_short(exc)}); the file is "
                              "truncated or damaged") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not the trainer state")
    return data


def _resolve_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    for candidate in (path / "checkpoints" / "latest", path / "latest"):
        if (candidate / STATE_FILE).is_file():
            return candidate
    if path.is_symlink() and not path.exists():
        raise CheckpointError(f"{path}: points to {os.readlink(path)}, which does not exist")
    if path.is_dir() and any((path / f).exists() for f in DATA_FILES):
        raise CheckpointError(f"{path / STATE_FILE}: missing; the checkpoint is incomplete or damaged")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    raise FileNotFoundError(
        f"{path}: not a checkpoint (no {STATE_FILE}); pass a checkpoint directory such as RUN/checkpoints/latest"
    )


def load_checkpoint(path: str | os.PathLike, *, weights_only: bool = False) -> Checkpoint:
    """Load a checkpoint directory (or a run dir / checkpoints dir, meaning its ``latest``).

    ``weights_only`` skips the optimizer and trainer state (for evaluation and export). Raises
    :class:`CheckpointError` (one line naming the file) for a damaged file, ``FileNotFoundError`` for a path
    that is no checkpoint at all."""
    ckpt_dir = _resolve_dir(path)
    state = _read_state(ckpt_dir)
    model = _load_tensors(ckpt_dir / MODEL_FILE, state, "model weights")
    train_file = ckpt_dir / TRAIN_MODEL_FILE
    train_model = None
    if train_file.is_file() or "train_model.pdparams" in (state.get("files") or {}):
        train_model = _load_tensors(train_file, state, "training weights")
    optimizer = trainer = None
    if not weights_only:
        opt_file = ckpt_dir / OPTIMIZER_FILE
        if opt_file.is_file() or OPTIMIZER_FILE in (state.get("files") or {}):
            optimizer = _load_tensors(opt_file, state, "optimizer state", return_numpy=True)
        trainer = _load_pickle(ckpt_dir / TRAINER_FILE, state)
    return Checkpoint(path=ckpt_dir, state=state, model=model, train_model=train_model,
                      optimizer=optimizer, trainer=trainer or {})


def load_model_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The deployable weights of a checkpoint (EMA weights when the run used EMA)."""
    return load_checkpoint(path, weights_only=True).model


def find_resume(run_dir: str | os.PathLike) -> Path | None:
    """``run_dir/checkpoints/latest`` when it holds a complete checkpoint, else None."""
    latest = Path(run_dir) / "checkpoints" / "latest"
    return latest if (latest / STATE_FILE).is_file() else None


def _state_step(ckpt_dir: Path) -> int | None:
    try:
        return int(_read_state(ckpt_dir)["step"])
    except (CheckpointError, TypeError, ValueError):
        return None


def intact_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint directories of ``run_dir`` whose ``state.json`` is readable, newest step first (the published
    ``latest``/``best`` names are used where they point at one). Files other than ``state.json`` are checked
    when loading."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    published = {}
    for name in ("latest", "best"):
        link = root / name
        if (link / STATE_FILE).is_file():
            published.setdefault(link.resolve(), link)
    found: dict[Path, tuple[int, float, Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        step = _state_step(entry)
        if step is None:
            continue
        real = entry.resolve()
        shown = published.get(real, entry if not entry.is_symlink() else real)
        rank = (step, 1.0 if shown.name == "latest" else 0.0, shown)
        if real not in found or found[real][1] < rank[1]:
            found[real] = rank
    return [path for _, _, path in sorted(found.values(), key=lambda r: (r[0], r[1], r[2].name), reverse=True)]


def damaged_checkpoints(run_dir: str | os.PathLike) -> list[str]:
    """One phrase per checkpoint entry of ``run_dir`` that cannot be resumed from (dangling link, missing or
    unreadable ``state.json``); empty when all are intact."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    out: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and not entry.exists():
            out.append(f"{entry} points to {os.readlink(entry)}, which does not exist")
        elif entry.is_dir() and not entry.is_symlink() and _state_step(entry) is None:
            reason = "state.json is missing" if not (entry / STATE_FILE).exists() else "state.json is unreadable"
            out.append(f"{entry}: {reason}")
    return out


def capture_rng_state() -> dict[str, Any]:
    """Python and numpy generator states (exact, picklable), plus Paddle's CUDA generators when a GPU is
    visible (their state is a seed + offset, so it pickles exactly too).

    Paddle's CPU generator is deliberately absent: in 2.6 its ``GeneratorState`` pickles as
    ``(device, seed, offset=0)`` without the engine state, so a restored state silently restarts the stream
    from the seed. The trainer instead reseeds Paddle at every optimizer step from ``(seed, step, rank)``,
    which makes dropout masks a function of the step and resume exact (see ``Trainer._reseed``)."""
    out: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    if paddle.is_compiled_with_cuda() and core.get_cuda_device_count() > 0:
        out["paddle_cuda"] = paddle.get_cuda_rng_state()
    return out


def restore_rng_state(rng: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; entries that are absent are left alone."""
    if "python" in rng:
        random.setstate(rng["python"])
    if "numpy" in rng:
        np.random.set_state(rng["numpy"])
    if "paddle_cuda" in rng and paddle.is_compiled_with_cuda() and core.get_cuda_device_count() > 0:
        paddle.set_cuda_rng_state(rng["paddle_cuda"])

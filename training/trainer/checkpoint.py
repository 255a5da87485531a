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
removed by the next save.

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

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
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


def _cleanup(root: Path, name: str, keep: str | None) -> None:
    """Remove unpublished temp dirs and superseded targets of checkpoint ``name``."""
    for entry in root.iterdir():
        stale_tmp = entry.name.startswith(f".tmp-{name}-s") or entry.name.startswith(f".{name}.link-")
        old_target = entry.name.startswith(f"{name}-s") and entry.name != keep
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
    root.mkdir(parents=True, exist_ok=True)
    step = int(state.get("step", 0))
    final_name = f"{name}-s{step:08d}-{uuid.uuid4().hex[:6]}"
    tmp = root / f".tmp-{final_name}"
    state_json = json.dumps(
        {"format": CHECKPOINT_FORMAT, "name": name, "saved_at": _dt.datetime.now().isoformat(timespec="seconds"),
         **dict(state)},
        indent=1, ensure_ascii=False, default=_json_default,
    )
    try:
        tmp.mkdir()
        paddle.save(dict(model), str(tmp / MODEL_FILE))
        if train_model is not None:
            paddle.save(dict(train_model), str(tmp / TRAIN_MODEL_FILE))
        if optimizer is not None:
            paddle.save(dict(optimizer), str(tmp / OPTIMIZER_FILE))
        with open(tmp / TRAINER_FILE, "wb") as fh:
            pickle.dump(dict(trainer or {}), fh, protocol=pickle.HIGHEST_PROTOCOL)
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
    _cleanup(root, name, keep=final_name)
    return published


def _load_pickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _resolve_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    for candidate in (path / "checkpoints" / "latest", path / "latest"):
        if (candidate / STATE_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"{path}: not a checkpoint (no {STATE_FILE}); pass a checkpoint directory such as RUN/checkpoints/latest"
    )


def load_checkpoint(path: str | os.PathLike, *, weights_only: bool = False) -> Checkpoint:
    """Load a checkpoint directory (or a run dir / checkpoints dir, meaning its ``latest``).

    ``weights_only`` skips the optimizer and trainer state (for evaluation and export)."""
    ckpt_dir = _resolve_dir(path)
    state = json.loads((ckpt_dir / STATE_FILE).read_text(encoding="utf-8"))
    if int(state.get("format", -1)) != CHECKPOINT_FORMAT:
        raise ValueError(f"{ckpt_dir}: checkpoint format {state.get('format')} != {CHECKPOINT_FORMAT}")
    model = paddle.load(str(ckpt_dir / MODEL_FILE))
    train_file = ckpt_dir / TRAIN_MODEL_FILE
    train_model = paddle.load(str(train_file)) if train_file.is_file() else None
    optimizer = trainer = None
    if not weights_only:
        opt_file = ckpt_dir / OPTIMIZER_FILE
        optimizer = paddle.load(str(opt_file), return_numpy=True) if opt_file.is_file() else None
        trainer = _load_pickle(ckpt_dir / TRAINER_FILE)
    return Checkpoint(path=ckpt_dir, state=state, model=model, train_model=train_model,
                      optimizer=optimizer, trainer=trainer or {})


def load_model_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The deployable weights of a checkpoint (EMA weights when the run used EMA)."""
    return load_checkpoint(path, weights_only=True).model


def find_resume(run_dir: str | os.PathLike) -> Path | None:
    """``run_dir/checkpoints/latest`` when it holds a complete checkpoint, else None."""
    latest = Path(run_dir) / "checkpoints" / "latest"
    return latest if (latest / STATE_FILE).is_file() else None


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

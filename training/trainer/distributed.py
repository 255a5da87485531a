"""Data-parallel helpers: one place that knows whether we run under ``paddle.distributed.launch``.

Why a module of its own: the trainer, the checkpoint writer and the tracker all need the same three answers
(am I distributed? am I rank 0? how do I sum a metric over ranks?) and must not each re-derive them from
environment variables. Launch with::

    python -m paddle.distributed.launch --nproc_per_node 2 --log_dir LOG training/det.py ...   (a .py path, not -m)

On a CPU-only machine the launcher picks the gloo backend; ``init_parallel_env`` + ``paddle.DataParallel``
then train exactly (parameters bitwise identical across ranks, see ``tests/test_distributed.py``). Not
available on CPU: ``SyncBatchNorm`` (BN statistics stay per rank), ``--devices 0,1``, ``fleet.init``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle
import paddle.distributed as dist

__all__ = [
    "init_distributed",
    "is_distributed",
    "world_size",
    "rank",
    "is_rank0",
    "wrap_model",
    "unwrap_model",
    "all_reduce_sum",
    "broadcast_from_rank0",
    "barrier",
]

_INITIALISED = False


def _env_world_size() -> int:
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)


def init_distributed() -> bool:
    """Initialise the parallel environment when launched with more than one process; idempotent.

    Returns True when running data-parallel. A single process (plain ``python -m ...``) is left alone, so
    the same entry point works with and without the launcher."""
    global _INITIALISED
    if _env_world_size() <= 1:
        return False
    if not _INITIALISED:
        dist.init_parallel_env()
        _INITIALISED = True
    return True


def is_distributed() -> bool:
    """True once :func:`init_distributed` set up more than one rank."""
    return _INITIALISED and world_size() > 1


def world_size() -> int:
    """Number of data-parallel ranks (1 when not launched by the launcher)."""
    if _INITIALISED:
        return dist.get_world_size()
    return _env_world_size()


def rank() -> int:
    """This process' rank (0 when not distributed)."""
    if _INITIALISED:
        return dist.get_rank()
    return int(os.environ.get("PADDLE_TRAINER_ID", "0") or 0)


def is_rank0() -> bool:
    """Only rank 0 writes checkpoints, logs and tracking data."""
    return rank() == 0


def wrap_model(model: paddle.nn.Layer, find_unused_parameters: bool = False) -> paddle.nn.Layer:
    """``paddle.DataParallel`` when distributed, the model itself otherwise.

    ``find_unused_parameters`` must be True for models with branches that get no gradient (e.g. a GTC head
    that the loss ignores); it costs a graph traversal per step, so it is off by default."""
    if not is_distributed():
        return model
    return paddle.DataParallel(model, find_unused_parameters=find_unused_parameters)


def unwrap_model(model: paddle.nn.Layer) -> paddle.nn.Layer:
    """The user's layer under a ``DataParallel`` wrapper (state dicts, EMA and eval use it)."""
    return model._layers if isinstance(model, paddle.DataParallel) else model


def all_reduce_sum(value: Any) -> np.ndarray:
    """Sum a numpy array (or scalar) over all ranks; the identity when not distributed.

    float64 is reduced as float64 (gloo supports it), so counts stay exact."""
    arr = np.asarray(value)
    if not is_distributed():
        return arr.copy()
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64, np.int32, np.int64) else np.float64
    tensor = paddle.to_tensor(arr.astype(dtype, copy=False))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.numpy().astype(arr.dtype if arr.dtype.kind == "f" else dtype)


def broadcast_from_rank0(value: float) -> float:
    """Rank 0's scalar on every rank, so decisions (best model, early stop) can never diverge."""
    if not is_distributed():
        return float(value)
    mine = float(value) if is_rank0() else 0.0
    return float(all_reduce_sum(np.asarray([mine], dtype=np.float64))[0])


def barrier() -> None:
    """Wait for all ranks (no-op in a single process)."""
    if is_distributed():
        dist.barrier()

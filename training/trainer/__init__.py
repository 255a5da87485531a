"""The task-agnostic trainer shared by the detector and the recogniser.

One job per module: ``config`` (:class:`TrainerConfig`), ``distributed`` (data-parallel helpers), ``optim``
(optimizer, schedule, name-stable optimizer state), ``ema`` (weight averaging), ``cpu_tuning`` (the
conv-bias speed-up), ``checkpoint`` (atomic latest/best files, one-line errors for damaged files),
``state`` (the trainer's state in and out of a checkpoint), ``resume`` (what a run continues from and what it
must not overwrite), ``history`` (metrics.json, curves), ``progress`` (bar or log lines, summary),
``artifacts`` (what of the best checkpoint goes to MLflow) and ``loop`` (the :class:`Trainer`). Tracking lives
next door in :mod:`training.tracking`.
"""
from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

from training.trainer import distributed  # noqa: F401  -- imported first: sampler and loop use it
from training.trainer.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointWriteError,
    find_resume,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)
from training.trainer.distributed import init_distributed, is_rank0, wrap_model, world_size
from training.trainer.ema import ModelEMA
from training.trainer.config import TrainerConfig
from training.trainer.loop import NonFiniteLossError, Trainer, seed_everything
from training.trainer.resume import RunDirError, check_run_dir
from training.trainer.optim import OptimConfig, build_optimizer

__all__ = [
    "Trainer",
    "TrainerConfig",
    "NonFiniteLossError",
    "seed_everything",
    "OptimConfig",
    "build_optimizer",
    "ModelEMA",
    "Checkpoint",
    "CheckpointError",
    "CheckpointWriteError",
    "RunDirError",
    "check_run_dir",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_weights",
    "find_resume",
    "init_distributed",
    "is_rank0",
    "world_size",
    "wrap_model",
]

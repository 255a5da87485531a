"""The task-agnostic trainer shared by the detector and the recogniser.

One job per module: ``distributed`` (data-parallel helpers), ``sampler`` (resumable data order), ``optim``
(optimizer, schedule, name-stable optimizer state), ``ema`` (weight averaging), ``checkpoint`` (atomic
latest/best, resume), ``history`` (metrics.json, curves), ``progress`` (bar, summary) and ``loop`` (the
:class:`Trainer`). Tracking lives next door in :mod:`training.tracking`.
"""
from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

from training.trainer import distributed  # noqa: F401  -- imported first: sampler and loop use it
from training.trainer.checkpoint import (
    Checkpoint,
    find_resume,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)
from training.trainer.distributed import init_distributed, is_rank0, wrap_model, world_size
from training.trainer.ema import ModelEMA
from training.trainer.loop import NonFiniteLossError, Trainer, TrainerConfig, seed_everything
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
    "save_checkpoint",
    "load_checkpoint",
    "load_model_weights",
    "find_resume",
    "init_distributed",
    "is_rank0",
    "world_size",
    "wrap_model",
]

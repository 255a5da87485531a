"""``TrainerConfig``: the fields of ``conf/trainer/*.yaml``, checked once when the trainer is built.

Why a dataclass and not the raw DictConfig: an unknown key (a typo such as ``trainer.save_evry``) must be an
error instead of silently doing nothing, and the loop reads typed fields.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["TrainerConfig", "LOG_CHECKPOINT_CHOICES"]

#: what the MLflow run receives of ``checkpoints/best``: weights + state.json (enough to evaluate and export),
#: the whole directory (with optimizer and trainer state, ~3x larger), or nothing
LOG_CHECKPOINT_CHOICES = ("weights", "full", "none")


@dataclasses.dataclass
class TrainerConfig:
    """Fields of ``conf/trainer/*.yaml``; the YAML files document each one."""

    max_steps: int | None = None
    epochs: int | None = None
    accum_steps: int = 1
    eval_every: int = 0
    eval_every_epochs: int = 0
    eval_at_end: bool = True
    save_every: int = 0
    log_every: int = 10
    early_stop_patience: int = 0
    early_stop_min_delta: float = 0.0
    amp: bool = False
    amp_level: str = "O1"
    amp_dtype: str = "float16"
    amp_init_scale: float = 1024.0
    ema: bool = False
    ema_decay: float = 0.999
    ema_warmup: bool = True
    freeze_bn: bool | None = False  # None (config null) counts as False here; training.runner resolves it
    resume: str | None = None
    seed: int = 42
    progress_bar: bool = True
    find_unused_parameters: bool = False
    upload_best_checkpoint: bool | None = None  # deprecated: false means log_checkpoint=none
    log_checkpoint: str = "weights"
    overwrite: bool = False
    summary: bool = True

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | "TrainerConfig" | None) -> "TrainerConfig":
        """Build from a dict/DictConfig; unknown keys are an error (a typo must not silently do nothing)."""
        if isinstance(cfg, cls):
            return cfg
        data: dict[str, Any] = {}
        if cfg is not None:
            try:
                from omegaconf import DictConfig, OmegaConf

                data = dict(OmegaConf.to_container(cfg, resolve=True)) if isinstance(cfg, DictConfig) else dict(cfg)
            except ImportError:  # pragma: no cover
                data = dict(cfg)
        data.pop("_target_", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"trainer config: unknown field(s) {unknown}; known: {sorted(known)}")
        out = cls(**data)
        if not out.max_steps and not out.epochs:
            raise ValueError("trainer config: set trainer.max_steps or trainer.epochs (or both)")
        if out.accum_steps < 1:
            raise ValueError(f"trainer.accum_steps must be >= 1, got {out.accum_steps}")
        if out.resume in ("", "null", "none", "None"):
            out.resume = None
        if out.upload_best_checkpoint is False:
            out.log_checkpoint = "none"
        if out.log_checkpoint not in LOG_CHECKPOINT_CHOICES:
            raise ValueError(f"trainer.log_checkpoint must be one of {list(LOG_CHECKPOINT_CHOICES)}, "
                             f"got {out.log_checkpoint!r}")
        return out

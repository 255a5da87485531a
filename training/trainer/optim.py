"""Optimizer + learning-rate schedule from the ``optim`` config group, and a name-stable optimizer state.

Why the custom state functions: Paddle keys optimizer state by generated tensor names
(``linear_3.w_0_moment1_0``) that depend on how many layers the process built before. A resume that builds
the model in a different order (e.g. without first building a pretrained model) would fail or, worse, load
moments onto the wrong tensors. :func:`optimizer_state` keys accumulators by the model's structured
parameter names instead, and :func:`load_optimizer_state` maps them back.

Example::

    optimizer, scheduler = build_optimizer(cfg.optim, model, total_steps=10_000)
    ...
    optimizer.step(); scheduler.step()      # the trainer steps the schedule once per optimizer step
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle
from paddle.optimizer.lr import LRScheduler

__all__ = [
    "OptimConfig",
    "WarmupCosineLR",
    "build_optimizer",
    "build_scheduler",
    "optimizer_state",
    "load_optimizer_state",
    "current_lr",
    "apply_lr_multipliers",
]

log = logging.getLogger("training.trainer")


@dataclasses.dataclass
class OptimConfig:
    """Fields of ``conf/optim/*.yaml`` (see the YAML files for what each one means)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    decay_norm_and_bias: bool = False
    grad_clip: float | None = 10.0
    scheduler: str = "cosine"
    warmup_steps: int = 0
    warmup_start_ratio: float = 0.0
    min_lr_ratio: float = 0.0
    #: ``{fnmatch pattern over structured parameter names: lr multiplier}``, e.g. ``{"backbone.*": 0.1}`` (move a pretrained backbone less)
    lr_mult: dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | "OptimConfig" | None) -> "OptimConfig":
        """Build from a dict/DictConfig; unknown keys are an error (a typo must not silently do nothing)."""
        if isinstance(cfg, cls):
            return cfg
        data = _to_dict(cfg)
        data.pop("_target_", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"optim config: unknown field(s) {unknown}; known: {sorted(known)}")
        if "betas" in data and data["betas"] is not None:
            data["betas"] = tuple(float(b) for b in data["betas"])
        out = cls(**data)
        out.lr_mult = {str(k): float(v) for k, v in dict(out.lr_mult or {}).items()}
        bad = {k: v for k, v in out.lr_mult.items() if not v > 0}
        if bad:
            raise ValueError(f"optim.lr_mult: multipliers must be > 0, got {bad}")
        out.name = out.name.lower()
        if out.name not in ("adamw", "adam", "sgd", "momentum"):
            raise ValueError(f"optim.name={out.name!r}: expected adamw, adam or sgd")
        if out.scheduler not in ("cosine", "linear", "constant"):
            raise ValueError(f"optim.scheduler={out.scheduler!r}: expected cosine, linear or constant")
        return out


def _to_dict(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    try:  # DictConfig -> plain containers, interpolations resolved
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


class WarmupCosineLR(LRScheduler):
    """Linear warm-up then cosine (or linear, or constant) decay, in closed form, stepped per optimizer step.

    Closed form (no recurrence on the previous lr) so a restored ``last_epoch`` gives exactly the same
    lr as an uninterrupted run. ``lr(t)`` for ``t < warmup``: ``base * (r0 + (1 - r0) * (t + 1) / warmup)``
    (the first step already learns); afterwards the decay runs over the remaining ``total - warmup`` steps
    down to ``base * min_lr_ratio``.
    """

    def __init__(
        self,
        learning_rate: float,
        total_steps: int,
        warmup_steps: int = 0,
        decay: str = "cosine",
        warmup_start_ratio: float = 0.0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.decay = decay
        self.warmup_start_ratio = float(warmup_start_ratio)
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(learning_rate=float(learning_rate), last_epoch=last_epoch)

    def get_lr(self) -> float:
        t = self.last_epoch
        base = self.base_lr
        if t < self.warmup_steps:
            r0 = self.warmup_start_ratio
            return base * (r0 + (1.0 - r0) * (t + 1) / self.warmup_steps)
        if self.decay == "constant":
            return base
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, max(0.0, (t - self.warmup_steps) / span))
        if self.decay == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:  # linear
            factor = 1.0 - progress
        return base * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * factor)


def build_scheduler(cfg: OptimConfig, total_steps: int) -> WarmupCosineLR:
    """The schedule for ``total_steps`` optimizer steps.

    A warm-up longer than half the run is never what was meant (e.g. the default 100 warm-up steps in a
    4-step smoke run): it is cut to ``total_steps // 2`` with a warning."""
    warmup = int(cfg.warmup_steps)
    if warmup > total_steps // 2:
        log.warning("optim.warmup_steps=%d is more than half of the %d training steps; using %d",
                    warmup, total_steps, total_steps // 2)
        warmup = total_steps // 2
    return WarmupCosineLR(
        cfg.lr,
        total_steps=total_steps,
        warmup_steps=warmup,
        decay=cfg.scheduler,
        warmup_start_ratio=cfg.warmup_start_ratio,
        min_lr_ratio=cfg.min_lr_ratio,
    )


def build_optimizer(
    cfg: Mapping[str, Any] | OptimConfig | None, model: paddle.nn.Layer, total_steps: int
) -> tuple[paddle.optimizer.Optimizer, WarmupCosineLR]:
    """Optimizer over the model's trainable parameters, with its schedule and global-norm clipping.

    Weight decay: ``adamw`` decays decoupled and, unless ``decay_norm_and_bias``, skips 1-D parameters
    (biases, norm scales) as is usual; ``adam``/``sgd`` add an L2 term to every parameter (PaddleOCR's
    ``regularizer: L2``), except parameters that carry their own regularizer (Paddle's precedence rule).
    Frozen parameters (``stop_gradient=True``) are left out.
    """
    cfg = OptimConfig.from_mapping(cfg)
    named = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    if not named:
        raise ValueError("the model has no trainable parameters (all stop_gradient=True)")
    params = [p for _, p in named]
    apply_lr_multipliers(named, cfg.lr_mult)
    scheduler = build_scheduler(cfg, total_steps)
    clip = paddle.nn.ClipGradByGlobalNorm(float(cfg.grad_clip)) if cfg.grad_clip else None
    if cfg.name == "adamw":
        no_decay = set() if cfg.decay_norm_and_bias else {p.name for _, p in named if len(p.shape) <= 1}
        optimizer = paddle.optimizer.AdamW(
            learning_rate=scheduler,
            beta1=cfg.betas[0],
            beta2=cfg.betas[1],
            epsilon=cfg.eps,
            parameters=params,
            weight_decay=float(cfg.weight_decay),
            apply_decay_param_fun=lambda name: name not in no_decay,
            grad_clip=clip,
        )
    elif cfg.name == "adam":
        optimizer = paddle.optimizer.Adam(
            learning_rate=scheduler,
            beta1=cfg.betas[0],
            beta2=cfg.betas[1],
            epsilon=cfg.eps,
            parameters=params,
            weight_decay=paddle.regularizer.L2Decay(float(cfg.weight_decay)) if cfg.weight_decay else None,
            grad_clip=clip,
        )
    else:  # sgd with momentum
        optimizer = paddle.optimizer.Momentum(
            learning_rate=scheduler,
            momentum=cfg.momentum,
            parameters=params,
            use_nesterov=cfg.nesterov,
            weight_decay=paddle.regularizer.L2Decay(float(cfg.weight_decay)) if cfg.weight_decay else None,
            grad_clip=clip,
        )
    return optimizer, scheduler


def apply_lr_multipliers(named: list[tuple[str, paddle.Tensor]], lr_mult: Mapping[str, float]) -> dict[str, float]:
    """Give parameters matching a pattern of ``lr_mult`` their own lr multiplier; returns ``{name: mult}``.

    Why: fine-tuning often wants part of a pretrained model to move less (a backbone) or more (a fresh
    layer) than the rest, which one global lr cannot express. (Measured on a 5-character charset extension:
    a 10x lr on the CTC head learned the new characters less well than the plain lr and cost 3.5 points on
    the old ones, so it is not applied automatically there.) Paddle scales each parameter's step by
    ``param.optimize_attr['learning_rate']`` in every optimizer, so this
    keeps one parameter list (global-norm clipping stays global, which param groups would split). The first
    matching pattern wins; a pattern that matches nothing is an error (a typo must not silently do nothing).
    """
    import fnmatch

    chosen: dict[str, float] = {}
    used: set[str] = set()
    for name, param in named:
        mult = 1.0
        for pattern, value in lr_mult.items():
            if fnmatch.fnmatchcase(name, pattern):
                mult = float(value)
                used.add(pattern)
                chosen[name] = mult
                break
        param.optimize_attr["learning_rate"] = mult
    unused = [p for p in lr_mult if p not in used]
    if unused:
        raise ValueError(f"optim.lr_mult: pattern(s) {unused} match no trainable parameter "
                         f"(names look like {named[-1][0]!r})")
    if chosen:
        log.info("lr multipliers: %s", ", ".join(f"{n} x{m:g}" for n, m in chosen.items()))
    return chosen


def current_lr(optimizer: paddle.optimizer.Optimizer) -> float:
    """The lr the next ``optimizer.step()`` will use."""
    return float(optimizer.get_lr())


def _param_name_map(model: paddle.nn.Layer) -> dict[str, str]:
    return {p.name: n for n, p in model.named_parameters()}


def optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer) -> dict[str, Any]:
    """Optimizer accumulators keyed ``{accumulator: {structured_param_name: ndarray}}`` (+ master weights,
    + the lr scheduler state). Independent of Paddle's generated tensor names; see the module docstring."""
    names = _param_name_map(model)
    acc: dict[str, dict[str, np.ndarray]] = {}
    for acc_name, per_param in optimizer._accumulators.items():
        for pname, var in per_param.items():
            if pname not in names:
                raise KeyError(f"optimizer holds state for {pname!r}, which is not a parameter of the model")
            acc.setdefault(acc_name, {})[names[pname]] = np.array(var.numpy(), copy=True)
    master = {
        names[pname]: np.array(var.numpy(), copy=True)
        for pname, var in getattr(optimizer, "_master_weights", {}).items()
        if pname in names
    }
    lr_state = optimizer._learning_rate.state_dict() if isinstance(optimizer._learning_rate, LRScheduler) else None
    return {"format": "structured-v1", "type": type(optimizer).__name__, "accumulators": acc,
            "master_weights": master, "lr_scheduler": lr_state}


def load_optimizer_state(
    optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer, state: Mapping[str, Any]
) -> None:
    """Restore :func:`optimizer_state` output into a freshly built optimizer for ``model``.

    Accumulators are created eagerly (as the first ``step()`` would) and overwritten, so the next step
    continues exactly. Raises ``ValueError`` on optimizer-type, parameter-set or shape mismatches."""
    if state.get("format") != "structured-v1":
        raise ValueError("optimizer state was not written by training.trainer.optim.optimizer_state")
    if state["type"] != type(optimizer).__name__:
        raise ValueError(f"checkpoint optimizer is {state['type']}, config builds {type(optimizer).__name__}")
    by_struct = dict(model.named_parameters())
    params = [p for p in optimizer._parameter_list if not isinstance(p, dict)]
    if not params and getattr(optimizer, "_param_groups", None):
        params = [p for g in optimizer._param_groups for p in g["params"]]
    block = paddle.static.default_main_program().global_block()
    if optimizer.helper is None:  # set by the first step(); creating accumulators needs it
        from paddle.base.layer_helper import LayerHelper

        optimizer.helper = LayerHelper(type(optimizer).__name__)
    optimizer._create_accumulators(block, [p for p in params if not p.stop_gradient])
    for acc_name, per_param in state["accumulators"].items():
        if acc_name not in optimizer._accumulators:
            raise ValueError(f"checkpoint has optimizer accumulator {acc_name!r} that {type(optimizer).__name__} lacks")
        for struct_name, value in per_param.items():
            if struct_name not in by_struct:
                raise ValueError(f"optimizer state for {struct_name!r}: no such parameter in the model")
            var = optimizer._accumulators[acc_name].get(by_struct[struct_name].name)
            if var is None:
                raise ValueError(f"optimizer state for {struct_name!r}: parameter is not optimised (frozen?)")
            if tuple(var.shape) != tuple(value.shape):
                raise ValueError(
                    f"optimizer state {acc_name}/{struct_name}: shape {tuple(value.shape)} != {tuple(var.shape)}"
                )
            var.set_value(value)
    for struct_name, value in state.get("master_weights", {}).items():
        var = optimizer._master_weights.get(by_struct[struct_name].name)
        if var is not None:
            var.set_value(value)
    if state.get("lr_scheduler") is not None and isinstance(optimizer._learning_rate, LRScheduler):
        optimizer._learning_rate.set_state_dict(dict(state["lr_scheduler"]))

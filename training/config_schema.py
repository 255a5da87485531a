"""Types, ranges and closed key sets of the training config, checked before any model or data loads.

Why a table and not only the dataclasses in ``training.trainer``: those run after the model and the data
are built, so ``trainer.max_steps=abc`` used to cost a minute and end in a traceback, and
``trainer.max_steps=-5`` "completed" with zero steps. Each entry here names a dotted key, what it must be,
and a range; :func:`validate` returns the first problem as one line that names the key and the value.

Example::

    problem = validate(cfg)           # None, or "trainer.max_steps=-5: must be >= 1 (or null)"
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

__all__ = ["Spec", "SCHEMA", "CLOSED_SECTIONS", "EXTRA_KNOWN", "validate", "unknown_keys"]


@dataclass(frozen=True)
class Spec:
    """What one key may hold: a kind (``int``, ``float``, ``bool``, ``str``, ``choice``), bounds, null."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False          # True: value must be > lo (not >=)
    hi_open: bool = False          # True: value must be < hi
    nullable: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """The rule as a user reads it, e.g. "an integer >= 1 (or null)"."""
        noun = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(
            self.kind, "one of " + ", ".join(self.choices))
        bounds = []
        if self.lo is not None:
            bounds.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            bounds.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        text = noun + (" " + " and ".join(bounds) if bounds else "")
        return text + (" (or null)" if self.nullable else "")


def _int(lo: float | None = None, hi: float | None = None, nullable: bool = False) -> Spec:
    return Spec("int", lo, hi, nullable=nullable)


def _num(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
         nullable: bool = False) -> Spec:
    return Spec("float", lo, hi, lo_open, hi_open, nullable)


_BOOL = Spec("bool")


def _choice(*values: str) -> Spec:
    return Spec("choice", choices=values)


#: dotted key -> rule. Keys absent from a composed config (e.g. rec-only keys in det) are skipped.
SCHEMA: dict[str, Spec] = {
    "mode": _choice("train", "eval"),
    "seed": _int(0),
    "trainer.max_steps": _int(1, nullable=True),
    "trainer.epochs": _int(1, nullable=True),
    "trainer.accum_steps": _int(1),
    "trainer.eval_every": _int(0),
    "trainer.eval_every_epochs": _int(0),
    "trainer.eval_at_end": _BOOL,
    "trainer.save_every": _int(0),
    "trainer.log_every": _int(1),
    "trainer.early_stop_patience": _int(0),
    "trainer.early_stop_min_delta": _num(0),
    "trainer.amp": _BOOL,
    "trainer.amp_level": _choice("O1", "O2"),
    "trainer.amp_dtype": _choice("float16", "bfloat16"),
    "trainer.amp_init_scale": _num(0, lo_open=True),
    "trainer.ema": _BOOL,
    "trainer.ema_decay": _num(0, 1, lo_open=True, hi_open=True),
    "trainer.ema_warmup": _BOOL,
    "trainer.freeze_bn": Spec("bool", nullable=True),
    "trainer.resume": Spec("str", nullable=True),
    "trainer.seed": _int(0),
    "trainer.progress_bar": _BOOL,
    "trainer.find_unused_parameters": _BOOL,
    "trainer.upload_best_checkpoint": Spec("bool", nullable=True),  # deprecated: false = log_checkpoint none
    "trainer.log_checkpoint": _choice("weights", "full", "none"),
    "trainer.overwrite": _BOOL,
    "trainer.summary": _BOOL,
    "optim.name": _choice("adamw", "adam", "sgd", "momentum"),
    "optim.lr": _num(0, lo_open=True),
    "optim.weight_decay": _num(0),
    "optim.eps": _num(0, lo_open=True),
    "optim.momentum": _num(0, 1, hi_open=True),
    "optim.nesterov": _BOOL,
    "optim.decay_norm_and_bias": _BOOL,
    "optim.grad_clip": _num(0, nullable=True),
    "optim.scheduler": _choice("cosine", "linear", "constant"),
    "optim.warmup_steps": _int(0),
    "optim.warmup_start_ratio": _num(0, 1),
    "optim.min_lr_ratio": _num(0, 1),
    "data.batch_size": _int(1),
    "data.eval_batch_size": _int(1),
    "data.num_workers": _int(0),
    "data.on_error": _choice("raise", "skip"),
    "data.train.num": _int(1, nullable=True),
    "data.eval.num": _int(1, nullable=True),
    "postprocess.thresh": _num(0, 1),
    "postprocess.box_thresh": _num(0, 1),
    "postprocess.max_candidates": _int(1),
    "postprocess.unclip_ratio": _num(0, lo_open=True),
    "postprocess.use_dilation": _BOOL,
    "eval_resize.limit_side_len": _int(1),
    "eval_resize.limit_type": _choice("max", "min"),
    # long-side cap after the policy; null = the policy's default (datasets.resize.effective_max_side_limit). Not 0:
    # PaddleOCR 3.x / PaddleX read the same key from inference.yml and a 0 cap would shrink every image to nothing
    "eval_resize.max_side_limit": _int(32, nullable=True),
    # largest enlargement of the short-side rule; null = the policy's default (datasets.resize.effective_max_upscale)
    "eval_resize.max_upscale": _num(1, nullable=True),
    "quant.fold_affine": _BOOL,
    "quant.fold_affine_padded": _BOOL,
    "quant.compact": _BOOL,
    "quant.calib_batches": _int(1),
    "tracking.run_name": Spec("str", nullable=True),
    "tracking.max_param_length": _int(1),
    "tracking.http_timeout": _num(0, lo_open=True),
    "tracking.http_max_retries": _int(0),
    "tracking.probe_timeout": _num(0, lo_open=True),
}

#: sections whose direct keys are all read by code: an unknown key there is a typo that would silently do nothing
#: (their nested mappings, e.g. data.train, stay open for format-specific keys)
#: keys code still reads although no shipped config sets them (deprecated spellings)
EXTRA_KNOWN = {"trainer": ("upload_best_checkpoint",)}

CLOSED_SECTIONS = ("trainer", "optim", "tracking", "postprocess", "eval_resize", "paths", "data", "model", "aug", "quant",
                   "registry", "metric")


def _type_problem(spec: Spec, value: Any) -> bool:
    if spec.kind == "bool":
        return not isinstance(value, bool)
    if spec.kind == "int":
        return isinstance(value, bool) or not isinstance(value, int)
    if spec.kind == "float":
        return isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if spec.kind == "str":
        return not isinstance(value, str)
    return str(value) not in spec.choices


def _range_problem(spec: Spec, value: float) -> bool:
    if spec.lo is not None and (value <= spec.lo if spec.lo_open else value < spec.lo):
        return True
    return spec.hi is not None and (value >= spec.hi if spec.hi_open else value > spec.hi)


def check_value(key: str, spec: Spec, value: Any) -> str | None:
    """One line when ``value`` breaks ``spec``, else None."""
    if value is None:
        return None if spec.nullable else f"{key}=null: must be {spec.describe()}"
    shown = f"{value!r}" if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value
    if _type_problem(spec, value) or (spec.kind in ("int", "float") and _range_problem(spec, value)):
        return f"{key}={shown}: must be {spec.describe()}"
    return None


def _lookup(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, (DictConfig, Mapping)) or part not in node:
            return False, None
        if isinstance(node, DictConfig) and OmegaConf.is_missing(node, part):
            return False, None  # ``???``: reported by the caller as a value that must be set
        node = node[part]
    return True, node


def unknown_keys(cfg: DictConfig, reference: Mapping[str, Iterable[str]]) -> str | None:
    """One line for the first key of a closed section that ``reference`` (section -> known keys) lacks."""
    for section, known in reference.items():
        present, node = _lookup(cfg, section) if section else (True, cfg)
        if not present or not isinstance(node, (DictConfig, Mapping)):
            continue
        known = set(known)
        for key in node:
            if key not in known and key != "_target_":
                full = f"{section}.{key}" if section else str(key)
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"did you mean {(section + '.') if section else ''}{close[0]}?" if close else (
                    "known: " + ", ".join(sorted(known)))
                return f"{full}: unknown key (nothing reads it); {hint}"
    return None


def validate(cfg: DictConfig) -> str | None:
    """The first type/range problem of ``cfg`` as one line, or None. Interpolations are resolved first;
    a value that cannot resolve is reported with its key."""
    for key, spec in SCHEMA.items():
        try:
            present, value = _lookup(cfg, key)
        except Exception as exc:  # noqa: BLE001 -- an interpolation that fails to resolve
            return f"{key}: cannot resolve ({str(exc).splitlines()[0]})"
        if not present:
            continue
        if isinstance(value, (DictConfig,)) or OmegaConf.is_list(value):
            return f"{key}: must be {spec.describe()}, got a {'list' if OmegaConf.is_list(value) else 'mapping'}"
        problem = check_value(key, spec, value)
        if problem:
            return problem
    betas = _lookup(cfg, "optim.betas")[1]
    if betas is not None:
        values = list(betas) if OmegaConf.is_list(betas) else None
        if values is None or len(values) != 2 or any(check_value("b", _num(0, 1, hi_open=True), b) for b in values):
            return f"optim.betas={OmegaConf.to_container(betas) if OmegaConf.is_list(betas) else betas}: " \
                   "must be two numbers >= 0 and < 1, e.g. [0.9,0.999]"
    steps, epochs = _lookup(cfg, "trainer.max_steps")[1], _lookup(cfg, "trainer.epochs")[1]
    if _lookup(cfg, "trainer")[0] and steps is None and epochs is None:
        return "trainer.max_steps and trainer.epochs are both null: set at least one"
    return None

"""The part of a training run that does not depend on the task: run dir, seeds, resolved config, tracker,
lineage tags, the trainer call, and the last-line JSON. ``det_task``/``rec_task`` supply the task pieces."""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from training.cli import UserError

__all__ = ["TaskParts", "run_dir_of", "resolved", "run_training", "resolve_freeze_bn", "print_result", "charset_from_cfg"]

log = logging.getLogger(__name__)


def run_dir_of(cfg: DictConfig) -> Path:
    """Hydra's output dir for this run (``hydra.run.dir``); the cwd when called outside Hydra (tests)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path(cfg.get("run_dir") or ".").resolve()


def resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def charset_from_cfg(model_cfg: DictConfig | dict):
    """The configured charset: the dict file (default ppocr_keys_v1) + space flag + extra characters."""
    from datasets.charset import Charset, CharsetError

    cs_cfg = dict(model_cfg.get("charset") or {})
    try:
        if cs_cfg.get("dict_path"):
            charset = Charset.from_file(cs_cfg["dict_path"], bool(cs_cfg.get("use_space_char", True)))
        else:
            charset = Charset.default()
            if not cs_cfg.get("use_space_char", True):
                charset = Charset(tuple(c for c in charset.chars if c != " "), False, charset.source)
    except CharsetError as exc:
        raise UserError(f"model.charset: {exc}") from None
    if cs_cfg.get("extra_chars"):
        charset = charset.extend(str(cs_cfg["extra_chars"]))
    return charset


@dataclass
class TaskParts:
    """What a task hands to :func:`run_training`."""

    model: Any
    loss_fn: Callable
    train_loader: Any
    eval_fn: Callable
    main_metric: str
    train_data: Any
    eval_data: Any
    extra_state: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    forward_fn: Callable | None = None
    after_fit: Callable[[Any, Any, dict], None] | None = None   # (model, tracker, summary) → pictures etc.


def resolve_freeze_bn(cfg: DictConfig) -> bool:
    """``trainer.freeze_bn: null`` means "on for QAT runs": QAT starts from a calibrated FP32 model and, at
    CPU batch sizes, re-estimated BN statistics cost more than QAT wins (measured: PP-OCRv4 det QAT, batch
    4, 40 steps: hmean 0.942 with BN updating, 0.967 frozen, FP32 parent 0.956). The resolved value is
    written back so the saved config and MLflow params show it."""
    from omegaconf import open_dict

    value = cfg.trainer.get("freeze_bn")
    if value is None:
        value = bool(cfg.get("quant") is not None and cfg.quant.get("enabled"))
        with open_dict(cfg):
            cfg.trainer.freeze_bn = value
    return bool(value)


def run_training(cfg: DictConfig, parts: TaskParts, default_experiment: str) -> dict:
    """Train with the shared trainer, track it, and return the summary."""
    from training.tracking import build_tracker
    from training.trainer import Trainer

    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolve_freeze_bn(cfg)
    config = resolved(cfg)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    tracker = build_tracker(cfg.tracking, default_experiment=default_experiment)
    trainer = Trainer(parts.model, parts.loss_fn, parts.train_loader, cfg.trainer, cfg.optim, run_dir, tracker,
                      eval_fn=parts.eval_fn, main_metric=parts.main_metric, forward_fn=parts.forward_fn,
                      resolved_config=config, extra_state=parts.extra_state,
                      run_name=cfg.tracking.get("run_name"))
    if trainer.start_tracking():
        tracker = trainer.tracker
        for split, context in ((parts.train_data, "training"), (parts.eval_data, "eval")):
            tracker.log_dataset_input(split.name, split.digest["digest"], len(split.samples),
                                      f"{split.format}:{split.path}", context=context)
        tracker.set_tags({**parts.tags,
                          "data.train.digest": parts.train_data.digest["digest"],
                          "data.eval.digest": parts.eval_data.digest["digest"],
                          "data.train.num": len(parts.train_data.samples),
                          "data.eval.num": len(parts.eval_data.samples),
                          "data.train.skipped": parts.train_data.num_skipped,
                          "data.eval.skipped": parts.eval_data.num_skipped})
    summary = trainer.fit(end_tracking=False)
    if parts.after_fit is not None and trainer.rank0:
        try:
            parts.after_fit(parts.model, trainer.tracker, summary)
        except Exception as exc:  # noqa: BLE001 -- pictures must never fail a finished run
            log.warning("could not log eval pictures: %s", exc)
    trainer.tracker.end("FINISHED")
    if cfg.get("registry") is not None and cfg.registry.get("register") and trainer.rank0:
        summary = {**summary, "registry": publish(cfg, default_experiment, summary, parts)}
    return summary


def publish(cfg: DictConfig, default_experiment: str, summary: dict, parts: TaskParts) -> dict:
    """``registry.register=true``: export + register through the registry stage, reached by name so that
    training never imports a later stage. A failure here is reported; the trained run stays complete."""
    from hydra.utils import get_method

    task = "det" if default_experiment.endswith("det") else "rec"
    try:
        return get_method("registry.publish.after_training")(cfg, task, summary, parts.train_data, parts.eval_data)
    except Exception as exc:  # noqa: BLE001
        log.error("registration failed (the run and its checkpoints are complete in %s): %s", summary.get("run_dir"), exc)
        return {"error": str(exc)}


def print_result(result: dict) -> None:
    """The machine-readable result as the last stdout line (progress and logs go to stderr)."""
    sys.stdout.flush()
    print(json.dumps(result, ensure_ascii=False, default=str))

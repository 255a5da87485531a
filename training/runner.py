"""One runner for both tasks: seeds, model, data, ``mode=eval`` or training, tracking, the after-training
step, and the last-line JSON. The task (:class:`training.task.Task`) supplies the det/rec pieces.

Read :func:`run` top to bottom; it is the whole flow of ``python -m training.det|rec``. What happens after
training (export → INT8 report → register) is owned by the registry stage and reached through config
(``registry.after_training``, a Hydra ``_target_``), so training never imports a later stage.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from training.cli import UserError
from training.det_task import DetTask
from training.lineage import data_tags
from training.rec_task import RecTask
from training.task import BuiltModel, StepFailed, Task, TrainedRun, task_name

__all__ = ["TASKS", "task_for", "run", "main", "run_dir_of", "resolved", "resolve_freeze_bn", "print_result"]

log = logging.getLogger(__name__)

TASKS: dict[str, type[Task]] = {"det": DetTask, "rec": RecTask}

#: summary keys copied into the result JSON
_RESULT_KEYS = ("status", "best_metric", "best_step", "steps", "train_time_s", "samples_per_s", "run_dir",
                "best_checkpoint", "tracking_run_id")


def task_for(cfg: DictConfig) -> Task:
    """The task object of this run (the one place det/rec is decided: ``cfg.task``)."""
    return TASKS[task_name(cfg)](cfg)


def run_dir_of(cfg: DictConfig) -> Path:
    """Hydra's output dir for this run (``hydra.run.dir``); the cwd when called outside Hydra (tests)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path(cfg.get("run_dir") or ".").resolve()


def resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


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


def print_result(result: dict) -> None:
    """The machine-readable result as the last stdout line (progress and logs go to stderr)."""
    sys.stdout.flush()
    print(json.dumps(result, ensure_ascii=False, default=str))


def main(cfg: DictConfig) -> dict[str, Any] | None:
    """What ``@hydra.main`` calls. A failed after-training step ends the command with exit 1 and one line
    naming the step (the result JSON, printed first, says what was completed). Returns the result, whose
    eval metric is the Hydra task's return value (what sweepers optimise)."""
    try:
        return run(cfg)
    except StepFailed as exc:
        print(f"error: {exc} (the trained run is complete in {run_dir_of(cfg)})", file=sys.stderr)
        sys.exit(1)


def run(cfg: DictConfig) -> dict[str, Any]:
    """``mode=eval``: evaluate the configured weights on ``data.eval`` (training data is not read).
    ``mode=train``: fine-tune, then the after-training step. Returns the printed result; raises
    :class:`StepFailed` after printing it when a requested after-training step failed."""
    from training.trainer import check_run_dir, seed_everything

    if cfg.mode not in ("train", "eval"):
        raise UserError(f"config error: mode must be train or eval, got {cfg.mode!r}")
    task = task_for(cfg)
    if cfg.mode == "train":  # refuse to replace an earlier run's work before minutes of model/data loading
        check_run_dir(run_dir_of(cfg), cfg.trainer)
    seed_everything(int(cfg.seed))
    built = task.build_model()
    eval_data = task.load_split("eval")
    log.info(eval_data.describe())
    evaluator = task.evaluator(eval_data)
    if cfg.mode == "eval":
        built.model.eval()
        result = task.eval_result(evaluator.evaluate(built.model).compute(), eval_data, built)
        print_result(result)
        return result
    train_data = task.load_split("train")
    log.info(train_data.describe())
    summary, after, failure = _train(cfg, task, built, train_data, eval_data, evaluator)
    result = {"task": task.name, **{k: summary.get(k) for k in _RESULT_KEYS}, "final": summary.get("final_metrics"),
              **({"ptq": summary["ptq"]} if "ptq" in summary else {}), **after}
    if failure is not None:
        result["failed_step"] = failure.step
    print_result(result)
    if failure is not None:
        raise failure
    return result


def _train(cfg: DictConfig, task: Task, built: BuiltModel, train_data: Any, eval_data: Any,
           evaluator: Any) -> tuple[dict, dict, StepFailed | None]:
    """Train with the shared trainer and track it; on rank 0 log pictures and run the after-training step
    while the MLflow run is still open (the INT8 report logs into it). Returns (summary, what the
    after-training step produced, its failure or None)."""
    from training.ptq import is_ptq, run_ptq
    from training.tracking import build_tracker
    from training.trainer import Trainer

    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolve_freeze_bn(cfg)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    qat = built.qat
    extra_state = {"task": task.name, **task.extra_state(built), **(qat.checkpoint_extra() if qat else {})}
    tracker = build_tracker(cfg.tracking, default_experiment=task.experiment)
    trainer = Trainer(built.model, task.loss_fn(), task.train_loader(train_data), cfg.trainer, cfg.optim, run_dir,
                      tracker, eval_fn=evaluator, main_metric=task.main_metric, resolved_config=resolved(cfg),
                      extra_state=extra_state, run_name=cfg.tracking.get("run_name"))
    if trainer.start_tracking():
        _log_lineage(trainer.tracker, {"task": task.name, **task.tags(built),
                                       **(qat.tracking_params() if qat else {})}, train_data, eval_data)
    if is_ptq(qat):  # quant=ptq_int8: calibrate the observers, 0 optimizer steps, then eval and checkpoints
        summary = run_ptq(trainer, qat.config)
    else:
        summary = trainer.fit(end_tracking=False)
    after: dict = {}
    failure: StepFailed | None = None
    if trainer.rank0:
        try:
            task.pictures(built.model, trainer.tracker, evaluator)
        except Exception as exc:  # noqa: BLE001 -- pictures must never fail a finished run
            log.warning("could not log eval pictures: %s", exc)
        trained = TrainedRun(task=task.name, run_dir=run_dir,
                             checkpoint=summary.get("best_checkpoint") or summary.get("latest_checkpoint"),
                             run_id=summary.get("tracking_run_id"), train_data=train_data, eval_data=eval_data,
                             serving=task.serving(), quant_block=qat.block if qat else None, tracker=trainer.tracker)
        try:
            after = _after_training(cfg, trained)
        except StepFailed as exc:
            failure, after = exc, exc.done
            trainer.tracker.set_tags({"after_training.failed_step": exc.step, "after_training.error": str(exc)})
    trainer.tracker.end("FINISHED")  # training itself finished; a failed later step is tagged, not hidden
    return summary, after, failure


def _log_lineage(tracker: Any, tags: dict, train_data: Any, eval_data: Any) -> None:
    for split, context in ((train_data, "training"), (eval_data, "eval")):
        tracker.log_dataset_input(split.name, split.digest["digest"], len(split.samples),
                                  f"{split.format}:{split.path}", context=context)
    tracker.set_tags({**tags, **data_tags(train_digest=train_data.digest["digest"], train_size=len(train_data.samples),
                                          train_skipped=train_data.num_skipped, eval_digest=eval_data.digest["digest"],
                                          eval_size=len(eval_data.samples), eval_skipped=eval_data.num_skipped)})


def _after_training(cfg: DictConfig, trained: TrainedRun) -> dict:
    """Call ``registry.after_training`` (a Hydra ``_target_`` with ``_partial_: true``): export → INT8 report
    → register, as the config asks. Any failure becomes :class:`StepFailed` naming the step."""
    from hydra.utils import instantiate

    node = (cfg.get("registry") or {}).get("after_training")
    if node is None:
        return {}
    try:
        hook = instantiate(node)
    except Exception as exc:  # noqa: BLE001 -- a bad _target_ is one line, not a Hydra traceback
        raise StepFailed("registry.after_training", f"cannot load {node.get('_target_')}: {exc}") from None
    try:
        return dict(hook(cfg, trained) or {})
    except StepFailed:
        raise
    except Exception as exc:  # noqa: BLE001 -- the hook names its steps; anything else is named here
        log.debug("after-training step failed", exc_info=True)
        raise StepFailed("registry.after_training", f"{type(exc).__name__}: {exc}") from None

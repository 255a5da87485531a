"""One interface for the detector and the recogniser, so one runner (:mod:`training.runner`) trains both.

Why: det and rec differ in their model, data, evaluator, loss, tags and pictures, and in nothing else; the run
dir, tracking, trainer call, result JSON and what happens after training are the same. A task says *what* to
build; the runner says *when*. Which task a run is comes from one place: the root config's ``task`` key
(``conf/det.yaml``: det, ``conf/rec.yaml``: rec), read by :func:`task_name`.

Example::

    task = task_for(cfg)                 # training.runner: DetTask(cfg) or RecTask(cfg)
    built = task.build_model()           # model + load report + QAT session (or None)
    evaluator = task.evaluator(task.load_split("eval"))
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from omegaconf import DictConfig

from training.cli import UserError

__all__ = ["TASK_NAMES", "Task", "BuiltModel", "TrainedRun", "StepFailed", "task_name"]

TASK_NAMES = ("det", "rec")


def task_name(cfg: DictConfig) -> str:
    """The task of this run: ``cfg.task``. A model option of the other task is a config error here, once,
    instead of a shape error deep in Paddle."""
    name = str(cfg.get("task") or "")
    if name not in TASK_NAMES:
        raise UserError(f"config error: task must be one of {', '.join(TASK_NAMES)}, got {name!r}")
    model_task = cfg.get("model", {}).get("task")
    if model_task and model_task != name:
        raise UserError(f"config error: model.task={model_task} but this is the {name} entry point "
                        f"(pick a model={name}/… option)")
    return name


@dataclass
class BuiltModel:
    """A model with its starting weights: the load report (``.source``, ``.fresh``, ``.head``) and, for
    ``quant=qat_int8``, the QAT session (PaddleSlim object + the checkpoint's quant block)."""

    model: Any
    report: Any
    qat: Any = None


@dataclass(frozen=True)
class TrainedRun:
    """What the after-training step (``registry.after_training``) receives about a finished run.

    ``serving`` holds the export parameters both exporters take (det: ``post_params``, ``limit_side_len``,
    ``limit_type``; rec: none — the charset and input shape come from the checkpoint)."""

    task: str
    run_dir: Path
    checkpoint: str | None
    run_id: str | None
    train_data: Any
    eval_data: Any
    serving: Mapping[str, Any]
    quant_block: Mapping[str, Any] | None
    tracker: Any

    @property
    def eval_spec(self) -> str:
        """``FORMAT:PATH`` of the eval split, as ``python -m export.evaluate --data`` takes it."""
        return f"{self.eval_data.format}:{self.eval_data.path}"


class StepFailed(Exception):
    """A step after training that the config asked for (export, INT8 report, register) failed. The trained
    run is complete on disk; the command ends non-zero with one line naming ``step``. ``done`` holds what
    the earlier steps produced (reported in the result JSON)."""

    def __init__(self, step: str, message: str, done: Mapping[str, Any] | None = None) -> None:
        first = (message.strip().splitlines() or [""])[0]
        super().__init__(f"{step} failed: {first}")
        self.step = step
        self.done = dict(done or {})


class Task(ABC):
    """What differs between det and rec. Heavy imports (paddle, models) stay inside the methods so that
    ``--cfg job`` and config errors answer without loading Paddle."""

    name: ClassVar[str]
    main_metric: ClassVar[str]
    experiment: ClassVar[str]  # default MLflow experiment

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def build_model(self) -> BuiltModel:
        """The model with its starting weights (pretrained, or the FP32 parent wrapped for QAT)."""

    @abstractmethod
    def load_split(self, split: str) -> Any:
        """``training.data.SplitData`` of ``data.<split>``, validated for this task."""

    @abstractmethod
    def evaluator(self, eval_data: Any) -> Any:
        """The trainer's ``eval_fn`` (``training.evaluation``), through the serving pre/post-processing."""

    @abstractmethod
    def train_loader(self, train_data: Any) -> Any:
        """Batches for the trainer (augmented, sharded per data-parallel rank)."""

    @abstractmethod
    def loss_fn(self) -> Callable[[Any, Any], Any]:
        """``(model outputs, batch) → loss dict`` as the trainer calls it."""

    @abstractmethod
    def tags(self, built: BuiltModel) -> dict[str, Any]:
        """Run tags beside the shared lineage (task, arch, pretrained source, charset, QAT params)."""

    @abstractmethod
    def extra_state(self, built: BuiltModel) -> dict[str, Any]:
        """What checkpoints must carry for export to rebuild the model (post-process, charset, input)."""

    @abstractmethod
    def eval_result(self, metrics: Mapping[str, Any], eval_data: Any, built: BuiltModel) -> dict[str, Any]:
        """``mode=eval``'s JSON: the metrics plus what they were measured with."""

    def serving(self) -> dict[str, Any]:
        """Export parameters for the after-training step (see :class:`TrainedRun`)."""
        return {}

    def pictures(self, model: Any, tracker: Any, evaluator: Any) -> None:
        """End of training: a few eval predictions or reports as run artifacts (optional)."""

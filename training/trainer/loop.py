"""The task-agnostic trainer shared by the detector and the recogniser.

The task glue (``training/det.py``, ``training/rec.py``) builds the model, the loss, the loaders and an eval
function; this module decides *when* things happen: forward/backward with gradient accumulation and (GPU)
AMP, optimizer and schedule steps, EMA, evaluation and best-model selection, early stopping, atomic
checkpoints and exact resume, non-finite-loss stops, progress, tracking and the final summary.

Example::

    seed_everything(cfg.trainer.seed)                 # before building the model
    init_distributed()                                # before building the samplers
    trainer = Trainer(model, loss_fn, train_loader, cfg.trainer, cfg.optim, run_dir, tracker,
                      eval_fn=evaluate, main_metric="hmean", resolved_config=resolved,
                      extra_state={"charset": charset_info})
    summary = trainer.fit()

Hooks:
* ``forward_fn(model, batch) -> outputs`` (default ``model(batch[0])``);
* ``loss_fn(outputs, batch) -> {"loss": scalar Tensor, <part>: scalar, ...}`` (mean over the batch, so
  that accumulation of k micro-batches equals one k-times larger batch);
* ``eval_fn(model) -> Mapping[str, float]`` or an object with ``state() -> {name: ndarray}`` (additive
  sufficient statistics, e.g. TP/FP/FN counts) and ``compute(state) -> Mapping[str, float]``; the second
  form is summed over data-parallel ranks before ``compute``, so each rank may evaluate its own shard. A
  plain mapping is used as is, and rank 0's main metric decides for all ranks.
* ``batch_size_fn(batch) -> int`` (default: first dimension of the first tensor) for samples/s.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle

from training.trainer import distributed as dist_utils
from training.trainer import state as trainer_state
from training.trainer.checkpoint import find_resume, restore_rng_state, write_error
from training.trainer.config import TrainerConfig
from training.trainer.cpu_tuning import fast_conv_bias
from training.trainer.ema import ModelEMA
from training.trainer.history import History, write_json_atomic
from training.trainer.optim import OptimConfig, build_optimizer, current_lr
from training.trainer.artifacts import log_best_checkpoint
from training.trainer.progress import ProgressReporter, print_summary
from training.trainer.resume import check_writable, load_for_resume
from training.tracking import NullTracker, Tracker, _to_plain

#: layers whose running statistics ``trainer.freeze_bn`` keeps fixed (``nn.BatchNorm`` is the legacy API
#: PaddleOCR models use; ``_BatchNormBase`` covers BatchNorm1D/2D/3D and SyncBatchNorm)
_BATCH_NORM_TYPES = (paddle.nn.BatchNorm, paddle.nn.layer.norm._BatchNormBase)

__all__ = ["Trainer", "TrainerConfig", "NonFiniteLossError", "seed_everything", "fast_conv_bias"]  # the last two
# are re-exported from their own modules (config, cpu_tuning) for older imports

log = logging.getLogger("training.trainer")


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN/inf loss (or non-finite weights); nothing after the last good checkpoint
    was saved. ``step`` is the optimizer step that would have been taken, ``losses`` its loss values and
    ``checkpoint`` the last good ``latest`` (None if none was written yet)."""

    def __init__(self, message: str, step: int, losses: Mapping[str, float], checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.losses = dict(losses)
        self.checkpoint = checkpoint


def seed_everything(seed: int) -> int:
    """Seed python, numpy and paddle (all devices). Call before building the model so that initial
    weights, and with them whole runs, are reproducible."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    paddle.seed(seed)
    return seed


def _default_forward(model: paddle.nn.Layer, batch: Any) -> Any:
    return model(batch[0] if isinstance(batch, (list, tuple)) else batch)


def _default_batch_size(batch: Any) -> int:
    first = batch
    while isinstance(first, (list, tuple)) and first:
        first = first[0]
    if isinstance(first, Mapping) and first:
        first = next(iter(first.values()))
    shape = getattr(first, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    return len(first) if hasattr(first, "__len__") else 1


def _scalar(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (paddle.Tensor, np.ndarray, np.generic)) and int(np.prod(value.shape or [1])) == 1:
        return float(value.item() if hasattr(value, "item") else value)
    return None


class _Window:
    """Running sums between two log points."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.micro = 0
        self.samples = 0
        self.reader_s = 0.0
        self.compute_s = 0.0

    def add(self, losses: Mapping[str, float], samples: int, reader_s: float, compute_s: float) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.micro += 1
        self.samples += samples
        self.reader_s += reader_s
        self.compute_s += compute_s

    def means(self) -> dict[str, float]:
        return {k: v / max(1, self.micro) for k, v in self.sums.items()}


class Trainer:
    """Train ``model`` on ``train_loader``; see the module docstring for the hooks.

    Args:
        model: the user's layer (not wrapped; the trainer wraps it in ``DataParallel`` when launched so).
            Pretrained weights must already be loaded: ``trainer.resume`` restores a checkpoint *on top*.
        loss_fn: ``loss_fn(outputs, batch) -> {"loss": Tensor, ...}``.
        train_loader: an iterable of batches, re-iterated per epoch; ``len()`` is needed when training by
            epochs. With a ``batch_sampler`` that has ``set_epoch``/``skip`` (``datasets.loaders.SeededBatchSampler``)
            the data order survives a resume without reloading the skipped batches.
        cfg_trainer, cfg_optim: the ``trainer`` and ``optim`` config groups (mappings or DictConfigs).
        run_dir: where ``checkpoints/``, ``metrics.json``, ``history.json`` and ``curves.png`` go.
        tracker: a :class:`~training.tracking.Tracker` (None: no tracking). Only rank 0 uses it.
        eval_fn, main_metric, greater_is_better: evaluation hook and the metric that picks ``best``.
        forward_fn, batch_size_fn: see the module docstring.
        resolved_config: the whole resolved config; stored in checkpoints and logged as params.
        extra_state: JSON-serialisable task data stored in every checkpoint (e.g. charset and its hash).
        run_name: the MLflow run name when the trainer starts the tracker.
    """

    def __init__(
        self,
        model: paddle.nn.Layer,
        loss_fn: Callable[[Any, Any], Mapping[str, Any]],
        train_loader: Iterable[Any],
        cfg_trainer: Mapping[str, Any] | TrainerConfig | None,
        cfg_optim: Mapping[str, Any] | OptimConfig | None,
        run_dir: str | Path,
        tracker: Tracker | None = None,
        *,
        eval_fn: Callable[[paddle.nn.Layer], Any] | None = None,
        main_metric: str | None = None,
        greater_is_better: bool = True,
        forward_fn: Callable[[paddle.nn.Layer, Any], Any] | None = None,
        batch_size_fn: Callable[[Any], int] | None = None,
        resolved_config: Mapping[str, Any] | None = None,
        extra_state: Mapping[str, Any] | None = None,
        run_name: str | None = None,
    ) -> None:
        self.cfg = TrainerConfig.from_mapping(cfg_trainer)
        if eval_fn is not None and not main_metric:
            raise ValueError("eval_fn given without main_metric: name the metric that selects the best model")
        if self.cfg.early_stop_patience and eval_fn is None:
            raise ValueError("trainer.early_stop_patience needs an eval_fn")
        self.model = model
        self.loss_fn = loss_fn
        self.train_loader = train_loader
        self.eval_fn = eval_fn
        self.main_metric = main_metric
        self.greater_is_better = bool(greater_is_better)
        self.forward_fn = forward_fn or _default_forward
        self.batch_size_fn = batch_size_fn or _default_batch_size
        self.resolved_config = _plain(resolved_config) if resolved_config is not None else None
        self.extra_state = dict(extra_state or {})
        json.dumps({"config": self.resolved_config, "extra": self.extra_state})  # fail now, not at step 5000
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.run_name = run_name

        dist_utils.init_distributed()
        self.rank0 = dist_utils.is_rank0()
        self.world_size = dist_utils.world_size()
        if self.rank0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tracker: Tracker = (tracker or NullTracker()) if self.rank0 else NullTracker()
        self._owns_tracker = False

        self.total_steps = self._compute_total_steps()
        self.optimizer, self.scheduler = build_optimizer(cfg_optim, model, self.total_steps)

        self.device = paddle.device.get_device()
        if self.device == "cpu":  # CPU speed-ups that keep the math (measured in bench/RESULTS.md)
            _runtime.keep_freed_memory()
            if _runtime.cpu_tuning_enabled("conv_bias"):
                fast_conv_bias(self.model)
        self.amp = bool(self.cfg.amp) and self.device.startswith("gpu")
        if self.cfg.amp and not self.amp:
            log.warning("trainer.amp=true but the device is %s: AMP is a no-op on CPU (Paddle has no fp16/bf16 "
                        "training kernels here); training in fp32", self.device)
        self.scaler = None
        if self.amp:
            if self.cfg.amp_level == "O2":
                self.model, self.optimizer = paddle.amp.decorate(
                    models=self.model, optimizers=self.optimizer, level="O2", dtype=self.cfg.amp_dtype)
            if self.cfg.amp_dtype == "float16":
                self.scaler = paddle.amp.GradScaler(init_loss_scaling=self.cfg.amp_init_scale)
        self.ema = ModelEMA(self.model, self.cfg.ema_decay, self.cfg.ema_warmup) if self.cfg.ema else None
        self.train_model = dist_utils.wrap_model(self.model, self.cfg.find_unused_parameters)

        self.history = History()
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.samples_seen = 0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.last_metrics: dict[str, float] = {}
        self.last_eval_step: int | None = None
        self.timers = {"train_s": 0.0, "reader_s": 0.0, "compute_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}
        self.status = "not_started"
        self.resumed_from: Path | None = None
        self.tracking_run_id: str | None = None
        self._resume_run_id: str | None = None
        self._pending_rng: Mapping[str, Any] | None = None
        self._last_saved: dict[str, tuple[int, int, int]] = {}
        self._stop_early = False
        self._warned: set[str] = set()
        self._maybe_resume()

    # ------------------------------------------------------------------ setup
    def _compute_total_steps(self) -> int:
        cfg = self.cfg
        by_epochs = None
        if cfg.epochs:
            try:
                per_epoch = len(self.train_loader)  # type: ignore[arg-type]
            except TypeError as exc:
                raise ValueError("trainer.epochs needs a train_loader with len(); set trainer.max_steps") from exc
            if per_epoch == 0:
                raise ValueError("the training loader is empty")
            by_epochs = max(1, cfg.epochs * per_epoch // cfg.accum_steps)
        if cfg.max_steps and by_epochs:
            return min(int(cfg.max_steps), by_epochs)
        return int(cfg.max_steps or by_epochs)  # type: ignore[arg-type]

    def _maybe_resume(self) -> None:
        """Continue from ``trainer.resume`` (see :mod:`training.trainer.resume` for the rules that keep earlier
        runs' work safe); a fresh start checks that the run dir can be written."""
        ckpt = load_for_resume(self.cfg.resume, self.run_dir, overwrite=self.cfg.overwrite, announce=self.rank0)
        if ckpt is not None:
            trainer_state.restore(self, ckpt)
        elif self.rank0:
            check_writable(self.run_dir)

    def start_tracking(self) -> str | None:
        """Start the tracker if nobody did (continuing the checkpoint's MLflow run on resume), log the
        resolved config as params and a few run tags. Idempotent; returns the run id (None without one)."""
        if self.tracker.active or self.tracker.failed or not self.rank0:
            return self.tracker.run_id
        run_id = self.tracker.start(run_name=self.run_name, resume_run_id=self._resume_run_id)
        if run_id is None:
            return None
        self._owns_tracker = True
        self.tracking_run_id = run_id
        if self.resolved_config is not None:
            self.tracker.log_params(self.resolved_config)
            self.tracker.log_dict(self.resolved_config, "config.yaml")
        tags = {"run_dir": str(self.run_dir.resolve()), "trainer.world_size": self.world_size,
                "trainer.device": self.device}
        if self.main_metric:
            tags["main_metric"] = self.main_metric
        if self.resumed_from is not None:
            tags["resumed_from_checkpoint"] = str(self.resumed_from)
        self.tracker.set_tags(tags)
        return run_id

    # ------------------------------------------------------------------ fit
    def fit(self, end_tracking: bool = True) -> dict[str, Any]:
        """Train until the budget (``max_steps``/``epochs``) or early stopping; returns the summary
        (see :meth:`summary`). Raises :class:`NonFiniteLossError` on a NaN/inf loss."""
        self.start_tracking()
        self.tracking_run_id = self.tracker.run_id or self.tracking_run_id
        if self._pending_rng is not None:
            restore_rng_state(self._pending_rng)
            self._pending_rng = None
        self._reseed()
        self.progress = ProgressReporter(self.total_steps, self.step, enabled=self.rank0,
                                         bar=self.cfg.progress_bar, log_every=self.cfg.log_every)
        self._t_start = time.perf_counter()
        self._base_train_s = self.timers["train_s"]
        end_status = "FINISHED"
        try:
            self._train_loop()
            self._finish()
        except NonFiniteLossError:
            end_status = "FAILED"
            self.status = "nonfinite_loss"
            raise
        except KeyboardInterrupt:
            end_status = "KILLED"
            self.status = "interrupted"
            raise
        except BaseException:
            end_status = "FAILED"
            self.status = "failed"
            raise
        finally:
            self.progress.close()
            self._update_train_time()
            if self.status in ("nonfinite_loss", "interrupted", "failed") and self.rank0:
                with contextlib.suppress(Exception):
                    self._write_metrics()
                self.tracker.set_tags({"status": self.status})
            if end_tracking and self._owns_tracker:
                self.tracker.end(end_status)
        summary = self.summary()
        if self.rank0 and self.cfg.summary:
            print_summary(summary)
        return summary

    def _reseed(self) -> None:
        """Seed Paddle's generators from ``(seed, step, rank)`` before each step's forward passes.

        Why: Paddle 2.6 cannot serialise its CPU generator (see ``capture_rng_state``), so the random
        stream (dropout, random layers) is made a pure function of the step instead; a resumed run then
        draws exactly what the uninterrupted run drew, and data-parallel ranks draw different masks."""
        words = np.random.SeedSequence([int(self.cfg.seed) % (2**32), self.step, dist_utils.rank()])
        paddle.seed(int(words.generate_state(1, dtype=np.uint32)[0]))

    def _set_epoch(self) -> int:
        """Point the sampler at the current epoch and skip what was consumed; returns batches to skip by hand."""
        sampler = getattr(self.train_loader, "batch_sampler", None)
        target = sampler if hasattr(sampler, "set_epoch") else self.train_loader
        if hasattr(target, "set_epoch"):
            target.set_epoch(self.epoch)
            dataset = getattr(self.train_loader, "dataset", None)
            if hasattr(dataset, "set_epoch"):  # per-epoch augmentation seeds (datasets.loaders)
                dataset.set_epoch(self.epoch)
        elif "no_set_epoch" not in self._warned:
            self._warned.add("no_set_epoch")
            log.warning("the train loader has no set_epoch(); a resumed run may see a different data order")
        skip = self.batch_in_epoch
        if skip and hasattr(sampler, "skip"):
            sampler.skip(skip)
            return 0
        if skip:
            log.info("skipping %d already-consumed batches of epoch %d by loading them", skip, self.epoch)
        return skip

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return paddle.amp.auto_cast(enable=True, level=self.cfg.amp_level, dtype=self.cfg.amp_dtype)
        return contextlib.nullcontext()

    def _budget_reached(self) -> bool:
        return self.step >= self.total_steps or bool(self.cfg.epochs and self.epoch >= self.cfg.epochs)

    def _epoch_len(self) -> int | None:
        try:
            return len(self.train_loader)  # type: ignore[arg-type]
        except TypeError:
            return None

    def _enter_train_mode(self, model: paddle.nn.Layer) -> None:
        """``model.train()``, except that with ``trainer.freeze_bn`` every batch-norm layer stays in eval mode.

        Why: fine-tuning at the small batches a CPU allows (2-8 images) re-estimates BN statistics from a
        handful of samples, which drags a well-calibrated pretrained model off (and under QAT the observers
        then calibrate on drifting activations). Frozen BN uses the running statistics and does not update
        them; BN scale/shift still train."""
        model.train()
        if self.cfg.freeze_bn:
            for layer in model.sublayers(include_self=True):
                if isinstance(layer, _BATCH_NORM_TYPES):
                    layer.eval()

    def _train_loop(self) -> None:
        cfg = self.cfg
        accum = cfg.accum_steps
        distributed = dist_utils.is_distributed()
        epoch_len = self._epoch_len()
        self._enter_train_mode(self.train_model)
        micro = 0  # micro-batches accumulated towards the next optimizer step (may span epochs)
        window = _Window()
        bad: dict[str, Any] | None = None
        done = self._budget_reached() or self._stop_early
        self.status = "running"
        while not done:
            manual_skip = self._set_epoch()
            iterator = iter(self.train_loader)
            for _ in range(manual_skip):
                next(iterator, None)
            produced, exhausted = 0, False
            while not (epoch_len is not None and self.batch_in_epoch >= epoch_len):
                t0 = time.perf_counter()
                try:
                    batch = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                t1 = time.perf_counter()
                produced += 1
                sync = micro + 1 == accum
                no_sync = self.train_model.no_sync() if distributed and not sync else contextlib.nullcontext()
                with no_sync:
                    with self._autocast():
                        outputs = self.forward_fn(self.train_model, batch)
                        losses = self.loss_fn(outputs, batch)
                    if not isinstance(losses, Mapping) or "loss" not in losses:
                        raise TypeError("loss_fn must return a mapping with a 'loss' entry")
                    loss = losses["loss"]
                    scaled = loss / accum if accum > 1 else loss
                    if self.scaler is not None:
                        scaled = self.scaler.scale(scaled)
                    scaled.backward()
                values = {k: v for k, v in ((k, _scalar(v)) for k, v in losses.items()) if v is not None}
                if bad is None and not all(math.isfinite(v) for v in values.values()):
                    bad = {"step": self.step + 1, "epoch": self.epoch, "batch": self.batch_in_epoch, "losses": values}
                micro += 1
                self.batch_in_epoch += 1
                samples = self.batch_size_fn(batch) * self.world_size
                t2 = time.perf_counter()
                window.add(values, samples, t1 - t0, t2 - t1)
                self.timers["reader_s"] += t1 - t0
                self.timers["compute_s"] += t2 - t1
                self.samples_seen += samples
                if micro < accum:
                    continue

                # ---- optimizer step boundary
                micro = 0
                flag = float(bad is not None)
                if distributed:  # every rank must take the same decision, or the others hang
                    flag = float(dist_utils.all_reduce_sum(np.asarray([flag], dtype=np.float64))[0])
                if flag:
                    self._raise_nonfinite(bad)
                t3 = time.perf_counter()
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.clear_grad()
                lr_used = current_lr(self.optimizer)
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                self.step += 1
                self._reseed()
                window.compute_s += time.perf_counter() - t3
                self.timers["compute_s"] += time.perf_counter() - t3
                self._report_step(window, lr_used)
                if self.step % max(1, cfg.log_every) == 0:
                    window.reset()

                evaluated = False
                if self.eval_fn is not None and cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._eval_and_select()
                    evaluated = True
                done = self._stop_early or self.step >= self.total_steps
                if epoch_len is not None and self.batch_in_epoch >= epoch_len:
                    break  # the epoch is complete: the epoch-end bookkeeping below also saves
                if evaluated or done or (cfg.save_every and self.step % cfg.save_every == 0):
                    self._save("latest")
                if done:
                    break
            epoch_complete = exhausted or (epoch_len is not None and self.batch_in_epoch >= epoch_len)
            if exhausted and produced == 0 and manual_skip == 0 and self.batch_in_epoch == 0:
                raise ValueError(f"the training loader yielded no batches in epoch {self.epoch}")
            if epoch_complete:
                self.epoch += 1
                self.batch_in_epoch = 0
                if (self.eval_fn is not None and cfg.eval_every_epochs and self.epoch % cfg.eval_every_epochs == 0
                        and self.last_eval_step != self.step):
                    self._eval_and_select()
                done = done or self._stop_early or self._budget_reached()
                if micro == 0 and self.step > 0 and (done or self.last_eval_step == self.step or (
                        cfg.save_every and self.step % cfg.save_every == 0)):
                    self._save("latest")
        if micro:
            log.info("discarding %d accumulated micro-batches that do not fill an optimizer step", micro)
            self.optimizer.clear_grad()
        self.status = "early_stopped" if self._stop_early else "completed"

    def _report_step(self, window: _Window, lr: float) -> None:
        means = window.means()
        elapsed = window.reader_s + window.compute_s
        sps = window.samples / elapsed if elapsed > 0 else 0.0
        data_frac = window.reader_s / elapsed if elapsed > 0 else 0.0
        self.progress.update(self.step, self.epoch, means.get("loss", math.nan), lr, sps, data_frac)
        if self.step % max(1, self.cfg.log_every) == 0 or self.step == self.total_steps:
            row = {**means, "lr": lr, "samples_per_s": sps, "data_frac": data_frac}
            self.history.add_train(self.step, row)
            self.tracker.log_metrics({f"train/{k}": v for k, v in row.items()} | {"train/epoch": self.epoch},
                                     step=self.step)

    def _raise_nonfinite(self, bad: Mapping[str, Any] | None) -> None:
        latest = find_resume(self.run_dir)
        if bad is not None:
            where = f"step {bad['step']} (epoch {bad['epoch']}, batch {bad['batch']} of the epoch)"
            losses = bad["losses"]
            detail = ", ".join(f"{k}={v}" for k, v in losses.items())
        else:
            where, losses, detail = f"step {self.step + 1}", {}, "on another data-parallel rank"
        message = (f"non-finite loss at {where}: {detail}. Training stopped before the optimizer step; the last "
                   f"good checkpoint is {latest.resolve() if latest else 'none (no checkpoint was written yet)'}. "
                   "Lower optim.lr, check the batch's labels, or enable optim.grad_clip.")
        log.error(message)
        raise NonFiniteLossError(message, step=int(bad["step"]) if bad else self.step + 1, losses=losses,
                                 checkpoint=latest.resolve() if latest else None)

    def _finish(self) -> None:
        if self.eval_fn is not None and self.cfg.eval_at_end and self.last_eval_step != self.step:
            self._eval_and_select()
            self._save("latest")
        if self._last_saved.get("latest") != (self.step, self.epoch, self.batch_in_epoch):
            self._save("latest")
        if not self.rank0:
            return
        self._write_metrics()
        curves = self.history.plot(self.run_dir / "curves.png", self.main_metric)
        self.tracker.log_artifact(self.run_dir / "metrics.json")
        self.tracker.log_artifact(self.run_dir / "history.json")
        if curves is not None:
            self.tracker.log_artifact(curves)
        log_best_checkpoint(self.tracker, self.ckpt_root / "best", self.cfg.log_checkpoint)
        self.tracker.set_tags({"status": self.status})

    # ------------------------------------------------------------------ eval
    def evaluate(self) -> dict[str, float]:
        """Run ``eval_fn`` on the EMA weights (when on) in eval mode without gradients, reduce across ranks.
        Training state (weights, mode, RNG position of the train loop) is unchanged afterwards."""
        if self.eval_fn is None:
            raise RuntimeError("no eval_fn was given")
        t0 = time.perf_counter()
        model = self.model
        was_training = model.training
        model.eval()
        try:
            swap = self.ema.apply_to(model) if self.ema is not None else contextlib.nullcontext()
            with swap, paddle.no_grad():
                result = self.eval_fn(model)
        finally:
            if was_training:
                self._enter_train_mode(model)
        metrics = self._reduce_metrics(result)
        self.timers["eval_s"] += time.perf_counter() - t0
        return metrics

    def _reduce_metrics(self, result: Any) -> dict[str, float]:
        if hasattr(result, "state") and hasattr(result, "compute") and callable(result.state):
            state = {k: dist_utils.all_reduce_sum(np.asarray(v)) for k, v in result.state().items()}
            result = result.compute(state)
        if not isinstance(result, Mapping):
            raise TypeError("eval_fn must return a mapping of metrics or an object with state()/compute()")
        out: dict[str, float] = {}
        for key, value in result.items():
            scalar = _scalar(value)
            if scalar is not None:
                out[str(key)] = scalar
        return out

    def _eval_and_select(self) -> None:
        metrics = self.evaluate()
        if self.main_metric not in metrics and self.rank0:  # other ranks may leave evaluation to rank 0
            raise KeyError(f"eval_fn returned {sorted(metrics)}; the main metric {self.main_metric!r} is missing")
        value = dist_utils.broadcast_from_rank0(metrics.get(self.main_metric, math.nan))
        delta = float(self.cfg.early_stop_min_delta)
        if self.best_value is None:
            improved = math.isfinite(value)
        elif self.greater_is_better:
            improved = value > self.best_value + delta
        else:
            improved = value < self.best_value - delta
        self.last_metrics = metrics
        self.last_eval_step = self.step
        self.history.add_eval(self.step, metrics)
        if improved:
            self.best_value, self.best_step, self.bad_evals = value, self.step, 0
        else:
            self.bad_evals += 1
        patience = int(self.cfg.early_stop_patience or 0)
        if patience and self.bad_evals >= patience:
            self._stop_early = True
        if improved:
            self._save("best")
        self.tracker.log_metrics({**{f"eval/{k}": v for k, v in metrics.items()},
                                  f"eval/best_{self.main_metric}": self.best_value}, step=self.step)
        if self.rank0:
            self._write_metrics()
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self.progress.message(
            f"eval @ step {self.step}: {shown} | best {self.main_metric}={self.best_value} @ step {self.best_step}"
            + (" (new best)" if improved else f" ({self.bad_evals} without improvement)")
            + (" -> early stop" if self._stop_early else ""))

    # ------------------------------------------------------------------ persistence
    def _update_train_time(self) -> None:
        """Wall time of all fit() calls of this run so far (resumes add up)."""
        if hasattr(self, "_t_start"):
            self.timers["train_s"] = self._base_train_s + (time.perf_counter() - self._t_start)

    def _weights_finite(self) -> bool:
        return all(bool(np.isfinite(p.numpy()).all()) for p in self.model.parameters())

    def _save(self, name: str) -> Path | None:
        if not self._weights_finite():  # every rank checks, so all ranks stop together
            message = (f"parameters became non-finite after step {self.step}; not writing checkpoint {name!r}. "
                       f"The last good checkpoint is kept.")
            log.error(message)
            latest = find_resume(self.run_dir)
            raise NonFiniteLossError(message, step=self.step, losses={},
                                     checkpoint=latest.resolve() if latest else None)
        if not self.rank0:
            return None
        return trainer_state.write_checkpoint(self, name)

    def _write_metrics(self) -> None:
        """``history.json`` and ``metrics.json``, atomically; a failed write is one line (the old files stay)."""
        self._update_train_time()
        try:
            self._write_metrics_files()
        except OSError as exc:
            raise write_error(exc, "the run's metrics", self.run_dir,
                              "The previous history.json/metrics.json are unchanged.") from None

    def _write_metrics_files(self) -> None:
        write_json_atomic(self.run_dir / "history.json", self.history.state_dict())
        write_json_atomic(self.run_dir / "metrics.json", {
            "status": self.status,
            "main_metric": self.main_metric,
            "greater_is_better": self.greater_is_better,
            "best": {"value": self.best_value, "step": self.best_step},
            "last_eval": {"step": self.last_eval_step, **self.last_metrics},
            "step": self.step,
            "epoch": self.epoch,
            "total_steps": self.total_steps,
            "samples_seen": self.samples_seen,
            "timers": self.timers,
            "eval_history": self.history.eval,
            "tracking_run_id": self.tracker.run_id or self.tracking_run_id,
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
        })

    def summary(self) -> dict[str, Any]:
        """What :meth:`fit` returns: status, best metric and step, last eval metrics, steps, epochs, samples,
        timings (seconds) and throughput, checkpoint paths and the tracking run id."""
        train_s = self.timers["train_s"]
        io_s = self.timers["reader_s"] + self.timers["compute_s"]
        best = self.ckpt_root / "best"
        latest = self.ckpt_root / "latest"
        return {
            "status": self.status,
            "main_metric": self.main_metric,
            "best_metric": self.best_value,
            "best_step": self.best_step,
            "final_metrics": dict(self.last_metrics),
            "steps": self.step,
            "epochs": self.epoch,
            "samples": self.samples_seen,
            "train_time_s": round(train_s, 3),
            "reader_time_s": round(self.timers["reader_s"], 3),
            "compute_time_s": round(self.timers["compute_s"], 3),
            "eval_time_s": round(self.timers["eval_s"], 3),
            "checkpoint_time_s": round(self.timers["checkpoint_s"], 3),
            "samples_per_s": round(self.samples_seen / io_s, 3) if io_s > 0 else None,
            "data_fraction": round(self.timers["reader_s"] / io_s, 4) if io_s > 0 else None,
            "world_size": self.world_size,
            "amp": self.amp,
            "ema": self.ema is not None,
            "best_checkpoint": str(best.resolve()) if best.exists() else None,
            "latest_checkpoint": str(latest.resolve()) if latest.exists() else None,
            "run_dir": str(self.run_dir),
            "tracking_run_id": self.tracker.run_id or self.tracking_run_id,
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
        }


def _plain(cfg: Any) -> Any:
    """OmegaConf → plain containers (the tracker's converter), mappings → dict."""
    cfg = _to_plain(cfg)
    return dict(cfg) if isinstance(cfg, Mapping) else cfg

"""The trainer's state in and out of a checkpoint: what ``state.json``/``trainer.pkl`` hold and how a resumed
trainer gets every counter, weight, optimizer slot, EMA shadow, loss scale, history and RNG state back.

Why separate from the loop: exact resume (a resumed run is bitwise identical to an uninterrupted one, tested in
``tests/test_trainer.py``) depends on this list being complete; keeping save and restore side by side makes a
missing field visible.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle

from training.trainer.checkpoint import OPTIMIZER_FILE, Checkpoint, CheckpointError, capture_rng_state, save_checkpoint
from training.trainer.optim import load_optimizer_state, optimizer_state

if TYPE_CHECKING:  # pragma: no cover
    from training.trainer.loop import Trainer

__all__ = ["state_json", "write_checkpoint", "restore"]

log = logging.getLogger("training.trainer")


def state_json(t: "Trainer") -> dict[str, Any]:
    """The readable part of a checkpoint (``state.json``): counters, best metric, config, extra task state."""
    return {
        "step": t.step,
        "epoch": t.epoch,
        "batch_in_epoch": t.batch_in_epoch,
        "samples_seen": t.samples_seen,
        "total_steps": t.total_steps,
        "accum_steps": t.cfg.accum_steps,
        "world_size": t.world_size,
        "main_metric": t.main_metric,
        "greater_is_better": t.greater_is_better,
        "best": {"value": t.best_value, "step": t.best_step},
        "best_metric": t.best_value,
        "bad_evals": t.bad_evals,
        "last_metrics": t.last_metrics,
        "last_eval_step": t.last_eval_step,
        "weights": {"model.pdparams": "ema" if t.ema is not None else "raw",
                    **({"train_model.pdparams": "raw"} if t.ema is not None else {})},
        "tracking_run_id": t.tracker.run_id or t.tracking_run_id or t._resume_run_id,
        "config": t.resolved_config,
        "extra": t.extra_state,
        "versions": {"paddle": paddle.__version__},
    }


def write_checkpoint(t: "Trainer", name: str) -> Path:
    """Write checkpoint ``name`` (``latest``/``best``) of trainer ``t`` atomically (rank 0 only)."""
    t0 = time.perf_counter()
    t._update_train_time()
    raw = t.model.state_dict()
    trainer_state = {
        "rng": capture_rng_state(),
        "ema": ({k: v for k, v in t.ema.state_dict().items() if k != "shadow"} if t.ema else None),
        "scaler": t.scaler.state_dict() if t.scaler is not None else None,
        "history": t.history.state_dict(),
        "timers": dict(t.timers),
    }
    path = save_checkpoint(
        t.ckpt_root, name,
        model=t.ema.shadow_state_dict() if t.ema is not None else raw,
        train_model=raw if t.ema is not None else None,
        optimizer=optimizer_state(t.optimizer, t.model),
        state=state_json(t),
        trainer=trainer_state,
    )
    t._last_saved[name] = (t.step, t.epoch, t.batch_in_epoch)
    t.timers["checkpoint_s"] += time.perf_counter() - t0
    return path


def restore(t: "Trainer", ckpt: Checkpoint) -> None:
    """Put trainer ``t`` into the state saved in ``ckpt`` (the RNG state is applied when ``fit`` starts)."""
    missing, unexpected = t.model.set_state_dict(ckpt.training_weights)
    if missing or unexpected:
        raise CheckpointError(f"{ckpt.path}: weights do not fit the model (missing {list(missing)[:5]}, "
                              f"unexpected {list(unexpected)[:5]}); was it trained with this model config?")
    if ckpt.optimizer is not None:
        try:
            load_optimizer_state(t.optimizer, t.model, ckpt.optimizer)
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{ckpt.path / OPTIMIZER_FILE}: does not fit this run's optimizer ({exc}); "
                                  "resume with the optim config the checkpoint was trained with") from None
    state, tstate = ckpt.state, ckpt.trainer
    if t.ema is not None:
        if tstate.get("ema") is not None:
            t.ema.set_state_dict({**tstate["ema"], "shadow": {k: np.asarray(v) for k, v in ckpt.model.items()}})
        else:
            log.warning("%s was trained without EMA; starting the EMA from the resumed weights", ckpt.path)
    if t.scaler is not None and tstate.get("scaler"):
        t.scaler.load_state_dict(tstate["scaler"])
    t.step = int(state["step"])
    t.epoch = int(state["epoch"])
    t.batch_in_epoch = int(state["batch_in_epoch"])
    t.samples_seen = int(state.get("samples_seen", 0))
    best = state.get("best") or {}
    t.best_value = best.get("value")
    t.best_step = best.get("step")
    t.bad_evals = int(state.get("bad_evals", 0))
    t.last_metrics = dict(state.get("last_metrics") or {})
    t.last_eval_step = state.get("last_eval_step")
    t.history.set_state_dict(tstate.get("history", {}))
    t.timers.update(tstate.get("timers", {}))
    t._pending_rng = tstate.get("rng")
    t._resume_run_id = state.get("tracking_run_id")
    t.resumed_from = ckpt.path.resolve()
    for key, now in (("accum_steps", t.cfg.accum_steps), ("world_size", t.world_size)):
        if state.get(key) is not None and state[key] != now:
            log.warning("resuming with %s=%s but the checkpoint used %s: the data order will differ from "
                        "an uninterrupted run", key, now, state[key])
    log.info("resumed from %s: step %d, epoch %d (+%d batches), best %s=%s at step %s", t.resumed_from,
             t.step, t.epoch, t.batch_in_epoch, t.main_metric, t.best_value, t.best_step)

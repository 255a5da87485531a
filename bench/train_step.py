"""``python -m bench.train_step``: training-step throughput of PP-OCRv4 mobile det and rec on this CPU, split
into reader / forward / loss / backward / optimizer time, with peak RSS, ours vs a PaddleOCR-style baseline.

Variants (each case runs each variant in a fresh child process, so peak RSS and start-up settings are its own):

* ``paddleocr`` — PaddleOCR 2.10's own ``tools/train.py`` (from the ``unstructured-paddleocr`` wheel, run
  unmodified by :mod:`bench.paddleocr_train`): its config for the same PP-OCRv4 mobile model (multi-branch
  training form), its ``SimpleDataSet`` reader and transforms on PaddleOCR label files written from the same
  synthetic data, its loop; the same optimizer settings, batch, input size, workers and stock runtime. Step phases
  come from wrapping its DataLoader, model, loss, ``backward`` and optimizer; its logged ``avg_batch_cost`` is
  kept as a cross-check.
* ``baseline`` — the "straightforward PaddleOCR-style pipeline on the same model and batch": PaddleOCR's
  multi-branch training form of the backbone (``backbone_form=train``), a plain loop (forward, loss, backward,
  ``optimizer.step``, ``clear_grad``, ``float()`` of each loss like ``tools/program.py``), stock runtime
  (``OCR_CPU_TUNING=none``: MKL's default dispatch, glibc defaults).
* ``before`` — our training path before the speed-ups of issue 9: deploy form through :class:`Trainer`, stock runtime.
* ``ours`` — our training path as it runs now: deploy form, :class:`Trainer`, CPU tuning on
  (:func:`datasets.runtime.cpu_tuning_enabled`: MKL AVX2 dispatch on AMD, glibc keeps freed memory,
  cheap conv-bias add).
* ``--ablate`` adds ``ours:mkl`` and ``ours:mkl,malloc`` (one speed-up at a time); ``ours@2threads`` (2 intra-op
  threads) and ``baseline+tuning`` can be asked for with ``--variants``.

All variants except ``paddleocr`` share the reader (``datasets.loaders`` with ``--workers`` processes on synthetic
data, augmentation from ``conf/aug``); all share the optimizer (AdamW, grad clip 10, cosine schedule) and random
initial weights (speed does not depend on their values). ``reader`` is the time the step waited for its batch;
``other`` is what the loop does besides the five phases (trainer bookkeeping, ``clear_grad``, schedule).
``cpu s/step`` is this process's user+sys CPU time per step — on a busy shared machine it is steadier than wall
time. The first ``--warmup`` steps (allocations, worker start-up) are not counted. ``--rounds N`` repeats each
case's variants round robin and reports medians over all their timed steps; ``--profile`` runs the timed steps
under ``paddle.profiler`` and adds a table of where the op time goes (dense/depthwise conv, elementwise,
activations, norms, losses, optimizer).

    python -m bench.train_step [--quick] [--cases det640x8 rec320x32 …]
                               [--variants paddleocr baseline before ours …]
                               [--steps 2] [--warmup 1] [--rounds 1] [--workers 2] [--threads 1] [--ablate]
                               [--profile] [--json FILE]
"""
from __future__ import annotations

import datasets  # noqa: F401  -- project start-up (zlib, MKL, threads) before paddle

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.common import (ROOT, child_env, fmt, machine, make_console, peak_rss_mb, print_header, run_child,
                          versions, write_json)

__all__ = ["CASES", "VARIANTS", "Case", "Variant", "run", "main"]

PHASES = ("reader", "forward", "loss", "backward", "optimizer", "other")

OPTIM = {"name": "adamw", "lr": 1e-4, "weight_decay": 1e-4, "grad_clip": 10.0, "scheduler": "cosine",
         "warmup_steps": 0}


@dataclasses.dataclass(frozen=True)
class Case:
    """One model + input size + batch size."""

    task: str
    size: int  # det: square side; rec: width at height 48
    batch: int

    @property
    def inputs(self) -> str:
        return f"3×{self.size}×{self.size}" if self.task == "det" else f"3×48×{self.size}"


@dataclasses.dataclass(frozen=True)
class Variant:
    """How a case is trained: backbone form, loop (plain or our Trainer) and ``OCR_CPU_TUNING``."""

    form: str
    loop: str
    tuning: str
    what: str
    threads: int | None = None  # None: the run's --threads


CASES: dict[str, Case] = {
    "det640x8": Case("det", 640, 8),
    "det320x2": Case("det", 320, 2),
    "rec320x32": Case("rec", 320, 32),
    "rec320x8": Case("rec", 320, 8),
}
QUICK_CASES = ("det320x2", "rec320x8")

VARIANTS: dict[str, Variant] = {
    "paddleocr": Variant("train", "paddleocr", "none",
                         "PaddleOCR 2.10 tools/train.py: its config, reader and loop; train form, stock runtime"),
    "baseline": Variant("train", "plain", "none", "PaddleOCR-style: train form, plain loop, stock runtime"),
    "before": Variant("deploy", "trainer", "none", "ours before issue 9: deploy form, Trainer, stock runtime"),
    "ours:mkl": Variant("deploy", "trainer", "mkl", "deploy form, Trainer, + MKL AVX2 dispatch"),
    "ours:mkl,malloc": Variant("deploy", "trainer", "mkl,malloc", "… + glibc keeps freed memory"),
    "ours": Variant("deploy", "trainer", "all", "ours: deploy form, Trainer, all CPU tuning"),
    "ours:mkl,conv_bias": Variant("deploy", "trainer", "mkl,conv_bias",
                                  "ours without keeping freed memory (lower peak RSS)"),
    "baseline+tuning": Variant("train", "plain", "mkl,malloc", "train form, plain loop, MKL + malloc tuning"),
    "ours@2threads": Variant("deploy", "trainer", "all", "ours with 2 intra-op threads (OCR_NUM_THREADS=2)", 2),
}
DEFAULT_VARIANTS = ("paddleocr", "baseline", "before", "ours")
ABLATION = ("ours:mkl", "ours:mkl,malloc")


# ------------------------------------------------------------------------------------------------ child side
class StepClock:
    """Per-step wall time of each phase, plus the step's total wall and CPU time."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.current: dict[str, float] | None = None
        self.on_step_end: Callable[[int], None] | None = None

    def begin(self) -> None:
        self.current = {p: 0.0 for p in PHASES}
        self.current["_t0"] = time.perf_counter()
        self.current["_c0"] = time.process_time()

    def add(self, phase: str, seconds: float) -> None:
        if self.current is not None:
            self.current[phase] += seconds

    def end(self) -> None:
        cur = self.current
        if cur is None:
            return
        cur["total"] = time.perf_counter() - cur.pop("_t0")
        cur["cpu"] = time.process_time() - cur.pop("_c0")
        cur["other"] = max(0.0, cur["total"] - sum(cur[p] for p in PHASES if p != "other"))
        self.steps.append(cur)
        self.current = None
        if self.on_step_end is not None:
            self.on_step_end(len(self.steps))

    def timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - start)
        return wrapper


class _TimedLoader:
    """A DataLoader stand-in that starts a step on every ``next()`` and books the wait as reader time.

    Everything else (``batch_sampler``, ``dataset``, ``len``) is the wrapped loader's, so the Trainer's epoch and
    resume handling sees the real thing."""

    def __init__(self, loader: Any, clock: StepClock) -> None:
        self._loader = loader
        self._clock = clock

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __iter__(self) -> Iterator[Any]:
        inner = iter(self._loader)
        while True:
            self._clock.begin()
            start = time.perf_counter()
            try:
                batch = next(inner)
            except StopIteration:
                self._clock.current = None
                return
            self._clock.add("reader", time.perf_counter() - start)
            yield batch


def _build_data(spec: dict[str, Any]) -> Any:
    """The same datasets the training tasks build, on the parent's synthetic data."""
    import yaml

    from datasets.loaders import DetTrainDataset, RecDataset, build_loader

    if spec["task"] == "det":
        from datasets.icdar2015 import read_icdar2015

        aug = yaml.safe_load((ROOT / "conf" / "aug" / "det_default.yaml").read_text())
        dataset = DetTrainDataset(read_icdar2015(spec["det_root"]), aug, size=spec["size"], seed=0)
    else:
        from datasets.charset import Charset
        from datasets.ppocr_label import read_ppocr_rec

        aug = yaml.safe_load((ROOT / "conf" / "aug" / "rec_default.yaml").read_text())
        dataset = RecDataset(read_ppocr_rec(spec["rec_label"]), Charset.default(), 48, spec["size"], aug, seed=0,
                             max_text_len=spec["size"] // 8, on_error="skip", min_width=spec["size"])
    loader = build_loader(dataset, spec["batch"], num_workers=spec["workers"], shuffle=True, seed=0, drop_last=True)
    needed = spec["warmup"] + spec["steps"]
    if len(loader) < needed:
        raise RuntimeError(f"{len(loader)} batches of synthetic data, need {needed}")
    return loader


def _build_model_and_loss(spec: dict[str, Any]) -> tuple[Any, Callable[[Any, Any], dict]]:
    """The network (in the variant's backbone form) and a ``loss_fn(outputs, batch)`` as the tasks define it."""
    from training.losses import CTCRecLoss, DetLoss
    from training.models import build_model

    if spec["task"] == "det":
        from datasets.loaders import DetTrainDataset

        model = build_model({"arch": "ppocrv4_mobile_det", "backbone_form": spec["form"]})
        det_loss, fields = DetLoss(), DetTrainDataset.FIELDS

        def loss_fn(outputs, batch):
            return det_loss(outputs, dict(zip(fields, batch)))
    else:
        from datasets.charset import Charset

        model = build_model({"arch": "ppocrv4_mobile_rec", "backbone_form": spec["form"],
                             "num_classes": Charset.default().num_classes})
        rec_loss = CTCRecLoss()

        def loss_fn(outputs, batch):
            return rec_loss(outputs, {"image": batch[0], "label": batch[1], "length": batch[2]})
    return model, loss_fn


def _plain_loop(model: Any, forward_fn: Callable, loss_fn: Callable, loader: Any, clock: StepClock,
                total_steps: int) -> dict[str, Any]:
    """PaddleOCR ``tools/program.py``'s inner loop, minus its logging and eval."""
    from training.trainer.optim import build_optimizer

    optimizer, scheduler = build_optimizer(OPTIM, model, total_steps)
    optimizer.step = clock.timed("optimizer", optimizer.step)
    model.train()
    iterator = iter(loader)
    for _ in range(total_steps):
        batch = next(iterator)
        losses = loss_fn(forward_fn(model, batch), batch)
        losses["loss"].backward()
        optimizer.step()
        optimizer.clear_grad()
        scheduler.step()
        _ = {k: float(v) for k, v in losses.items()}
        clock.end()
    return {}


def _trainer_loop(model: Any, forward_fn: Callable, loss_fn: Callable, loader: Any, clock: StepClock,
                  total_steps: int) -> dict[str, Any]:
    """Our :class:`~training.trainer.Trainer`, its hooks timed; a step ends after the trainer's bookkeeping
    (``_report_step``), so ``other`` holds the trainer's own per-step overhead."""
    from training.trainer import Trainer

    trainer_cfg = {"max_steps": total_steps, "eval_at_end": False, "save_every": 0, "log_every": 10_000,
                   "progress_bar": False, "summary": False, "upload_best_checkpoint": False, "seed": 0}
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, loss_fn, loader, trainer_cfg, OPTIM, run_dir, forward_fn=forward_fn)
        trainer.optimizer.step = clock.timed("optimizer", trainer.optimizer.step)
        report_step = trainer._report_step

        def report_and_end(*args: Any, **kwargs: Any) -> Any:
            out = report_step(*args, **kwargs)
            clock.end()
            return out

        trainer._report_step = report_and_end
        trainer.fit()
    switched = sum(1 for layer in model.sublayers(include_self=True) if "forward" in layer.__dict__)
    return {"conv_bias_switched": switched}


#: op-name fragment → category of the profile table (first match wins; names are Paddle's event names such as
#: ``depthwise_conv2d dygraph`` for a forward op and ``DepthwiseConv2dGradNode`` for its backward)
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("depthwise conv", ("depthwise",)),
    ("conv transpose", ("conv2d_transpose", "conv2dtranspose")),
    ("conv (dense)", ("conv2d",)),
    ("matmul / linear", ("matmul", "linear")),
    ("bias / affine / residual (add, mul)", ("add", "multiply", "subtract", "divide", "scale")),
    ("activations", ("hardswish", "hardsigmoid", "relu", "sigmoid", "swish", "gelu", "softmax")),
    ("batch / layer norm", ("batch_norm", "batchnorm", "layer_norm", "layernorm")),
    ("CTC loss", ("warpctc",)),
    ("optimizer (AdamW, clip)", ("adamw", "clip", "squared_l2_norm", "sqrt", "maximum", "elementwise_max")),
    ("resize / pool / reshape / concat", ("interp", "pool", "reshape", "concat", "slice", "transpose", "flatten",
                                          "squeeze", "split", "pad", "flip", "stack")),
)


def _category(name: str) -> str:
    low = name.lower()
    for category, fragments in CATEGORIES:
        if any(f in low for f in fragments):
            return category
    return "other (DB loss reductions, casts, …)"


def _profile_summary(prof: Any, steps: int) -> dict[str, Any]:
    """Per-op and per-category wall ms per step from a stopped ``paddle.profiler.Profiler``.

    Only top-level operator events are summed (forward ops and backward grad nodes), so nothing is counted twice."""
    from paddle.profiler.profiler_statistic import StatisticData

    data = StatisticData(prof.profiler_result.get_data(), prof.profiler_result.get_extra_info())
    ops = {name: (item.cpu_time / 1e6 / steps, item.call / steps) for name, item in data.event_summary.items.items()}
    total = sum(ms for ms, _ in ops.values()) or 1.0
    cats: dict[str, dict[str, float]] = {}
    for name, (ms, _) in ops.items():
        side = "backward" if "grad" in name.lower() else "forward"
        entry = cats.setdefault(_category(name), {"forward": 0.0, "backward": 0.0})
        entry[side] += ms
    categories = sorted(({"category": c, "ms": round(v["forward"] + v["backward"], 1),
                          "backward_ms": round(v["backward"], 1),
                          "share": round((v["forward"] + v["backward"]) / total, 4)} for c, v in cats.items()),
                        key=lambda r: -r["share"])
    top = sorted(({"op": n, "ms": round(ms, 1), "calls": round(c, 1), "share": round(ms / total, 4)}
                  for n, (ms, c) in ops.items()), key=lambda r: -r["ms"])[:20]
    return {"op_ms_per_step": round(total, 1), "categories": categories, "top_ops": top}


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one (case, variant) in this process; returns the JSON the parent reads."""
    if spec["loop"] == "paddleocr":
        from bench.paddleocr_train import run_tools_train

        return run_tools_train(spec)
    import paddle

    from datasets import runtime

    clock = StepClock()
    paddle.seed(0)
    loader = _TimedLoader(_build_data(spec), clock)
    model, loss_fn = _build_model_and_loss(spec)
    num_params = int(sum(int(p.size) for p in model.parameters()))

    def forward(m, batch):
        return m(batch[0])

    loop = _plain_loop if spec["loop"] == "plain" else _trainer_loop
    prof = None
    if spec.get("profile"):  # record the timed steps only (the warm-up allocates and builds caches)
        import paddle.profiler as profiler

        prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)

        def toggle(done: int) -> None:
            if done == spec["warmup"]:
                prof.start()
            elif done == spec["warmup"] + spec["steps"]:
                prof.stop()
        clock.on_step_end = toggle
    original_backward = paddle.Tensor.backward
    paddle.Tensor.backward = clock.timed("backward", original_backward)
    try:
        extra = loop(model, clock.timed("forward", forward), clock.timed("loss", loss_fn), loader, clock,
                     spec["warmup"] + spec["steps"])
    finally:
        paddle.Tensor.backward = original_backward
    if prof is not None:
        extra["profile"] = _profile_summary(prof, spec["steps"])
    timed = clock.steps[spec["warmup"]:]
    if not timed:
        raise RuntimeError(f"no timed steps ({len(clock.steps)} recorded)")
    return {
        "num_params": num_params,
        "steps": [{k: round(v, 4) for k, v in step.items()} for step in timed],
        "warmup_step_s": [round(s["total"], 3) for s in clock.steps[:spec["warmup"]]],
        "peak_rss_mb": peak_rss_mb(),
        "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE"),
        "cpu_tuning": os.environ.get("OCR_CPU_TUNING"),
        "malloc_tuned": runtime.cpu_tuning_enabled("malloc") and spec["loop"] == "trainer",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        **extra,
    }


# ------------------------------------------------------------------------------------------------ parent side
def _make_data(root: Path, cases: list[Case], warmup: int, steps: int) -> dict[str, str]:
    """Synthetic det pages and rec lines, just enough for the largest case of each task (+1 batch spare)."""
    from datasets.synth import generate_det_dataset, generate_rec_dataset

    out: dict[str, str] = {}
    det = [c.batch for c in cases if c.task == "det"]
    rec = [c.batch for c in cases if c.task == "rec"]
    if det:
        out["det_root"] = str(generate_det_dataset(root / "det", (warmup + steps + 1) * max(det), "icdar2015",
                                                   seed=0, image_size=(1280, 720)))
    if rec:  # some lines may be dropped by the CTC length check: a quarter more
        num = int((warmup + steps + 1) * max(rec) * 1.25) + 8
        out["rec_label"] = str(generate_rec_dataset(root / "rec", num, seed=0))
    return out


def run(case_names: list[str], variant_names: list[str], *, steps: int = 2, warmup: int = 1, workers: int = 2,
        threads: int = 1, rounds: int = 1, profile: bool = False,
        progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every (case, variant) in its own child process; per case, the variants run back to back, ``rounds``
    times round robin (similar machine load for all of them). Returns the report (the JSON of :func:`main`).

    Step times are pooled over rounds and summarised by their median (robust to a step disturbed by other
    processes). With ``profile`` the timed steps run under ``paddle.profiler`` (slower; use the result for
    where the time goes, not for throughput)."""
    if profile and warmup < 1:
        raise ValueError("profiling needs warmup >= 1 (the profiler starts after the warm-up steps)")
    cases = [CASES[n] for n in case_names]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = _make_data(Path(tmp), cases, warmup, steps)
        for name, case in zip(case_names, cases):
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variant_names}
            for rnd in range(rounds):
                for vname in variant_names:
                    variant = VARIANTS[vname]
                    spec = {"task": case.task, "size": case.size, "batch": case.batch, "form": variant.form,
                            "loop": variant.loop, "workers": workers, "warmup": warmup, "steps": steps,
                            "profile": profile, **data}
                    n = variant.threads or threads
                    env = child_env({"OCR_CPU_TUNING": variant.tuning, "OCR_NUM_THREADS": str(n),
                                     "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)})
                    progress(f"{name} · {vname}" + (f" · round {rnd + 1}/{rounds}" if rounds > 1 else "") + " …")
                    t0 = time.perf_counter()
                    result = run_child("bench.train_step", ["--child", json.dumps(spec)], env)
                    result["wall_s"] = round(time.perf_counter() - t0, 1)
                    result["threads"] = n
                    runs[vname].append(result)
            for vname in variant_names:
                variant = VARIANTS[vname]
                rows.append({"case": name, "task": case.task, "inputs": case.inputs, "batch": case.batch,
                             "variant": vname, "form": variant.form, "loop": variant.loop, "tuning": variant.tuning,
                             **_summarise(runs[vname], case.batch)})
    _add_ratios(rows)
    return {"machine": machine(), "versions": versions(("paddleslim", "unstructured_paddleocr")),
            "settings": {"steps": steps, "warmup": warmup, "rounds": rounds, "workers": workers, "threads": threads,
                         "profile": profile, "optimizer": OPTIM,
                         "weights": "random init (speed does not depend on values)"},
            "variants": {k: dataclasses.asdict(VARIANTS[k]) for k in variant_names},
            "results": rows, "total_s": round(time.perf_counter() - started, 1)}


def _summarise(runs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """One table row from a variant's child runs: medians over all their timed steps."""
    steps = [s for r in runs for s in r["steps"]]
    med = {k: statistics.median(s[k] for s in steps) for k in (*PHASES, "total", "cpu")}
    first = runs[0]
    out = {k: v for k, v in first.items() if k not in ("steps", "warmup_step_s", "wall_s", "peak_rss_mb", "profile")}
    out.update({
        "phases_s": {p: round(med[p], 4) for p in PHASES},
        "step_s": round(med["total"], 4),
        "cpu_s": round(med["cpu"], 4),
        "samples_per_s": round(batch / med["total"], 4),
        "timed_steps": len(steps),
        "steps_s": [s["total"] for s in steps],
        "steps_cpu_s": [s["cpu"] for s in steps],
        "warmup_step_s": [w for r in runs for w in r["warmup_step_s"]],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "child_wall_s": [r["wall_s"] for r in runs],
    })
    if "profile" in first:
        out["profile"] = first["profile"]
    return out


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """samples/s and CPU time of each row relative to the same case's ``baseline`` and ``before`` rows."""
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["variant"]] = row
    for row in rows:
        for ref in ("paddleocr", "baseline", "before"):
            other = by_case[row["case"]].get(ref)
            if other is not None:
                row[f"speedup_vs_{ref}"] = round(row["samples_per_s"] / other["samples_per_s"], 3)
                row[f"cpu_speedup_vs_{ref}"] = round(other["cpu_s"] / row["cpu_s"], 3)


def _print(report: dict[str, Any]) -> None:
    from rich.table import Table

    console = make_console()
    s = report["settings"]
    inputs = (", ".join(sorted({f"{r['task']} {r['inputs']} batch {r['batch']}" for r in report["results"]}))
              + f"; synthetic data, {s['workers']} DataLoader workers; {s['warmup']} warm-up + {s['steps']} timed "
                f"steps per run")
    print_header(console, report, inputs)
    table = Table(title=f"training step (threads {s['threads']}; seconds per step, median of the timed steps "
                        f"of {s['rounds']} round(s))")
    for col in ("case", "variant", "samples/s", "s/step", "reader", "fwd", "loss", "bwd", "optim", "other",
                "cpu s/step", "peak RSS MB", "× paddleocr wall/cpu", "× baseline wall/cpu", "× before wall/cpu"):
        table.add_column(col, justify="left" if col in ("case", "variant") else "right")
    for r in report["results"]:
        ph = r["phases_s"]
        table.add_row(f"{r['task']} {r['inputs']} b{r['batch']}", r["variant"], fmt(r["samples_per_s"]),
                      fmt(r["step_s"]), *(fmt(ph[p]) for p in PHASES), fmt(r["cpu_s"]), fmt(r["peak_rss_mb"], 0),
                      _pair(r, "paddleocr"), _pair(r, "baseline"), _pair(r, "before"))
    console.print(table)
    for name, v in report["variants"].items():
        console.print(f"  [bold]{name}[/]: {v['what']}")
    console.print("  × columns: speed-up over that case's paddleocr / baseline / before row in this run, from wall "
                  "time (samples/s) and from CPU time per step (steadier when other processes share the cores); "
                  f"total bench time {report['total_s']} s")
    for r in report["results"]:
        if "profile" in r:
            _print_profile(console, r)


def _pair(row: dict[str, Any], ref: str) -> str:
    if f"speedup_vs_{ref}" not in row:
        return "–"
    return f"{row[f'speedup_vs_{ref}']:.2f} / {row[f'cpu_speedup_vs_{ref}']:.2f}"


def _print_profile(console: Any, row: dict[str, Any]) -> None:
    from rich.table import Table

    prof = row["profile"]
    table = Table(title=f"where the op time goes: {row['task']} {row['inputs']} b{row['batch']} · {row['variant']} "
                        f"({prof['op_ms_per_step']:.0f} ms of ops per step, paddle.profiler)")
    for col in ("category", "ms/step", "of which backward", "share"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for c in prof["categories"]:
        table.add_row(c["category"], fmt(c["ms"], 0), fmt(c["backward_ms"], 0), f"{100 * c['share']:.1f} %")
    console.print(table)
    top = ", ".join(f"{o['op']} {100 * o['share']:.1f} %" for o in prof["top_ops"][:8])
    console.print(f"  top ops: {top}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=None)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(DEFAULT_VARIANTS))
    parser.add_argument("--ablate", action="store_true", help="also run ours with one speed-up at a time")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_CASES)}")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps per run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run each case's variants this many times round robin (steadier on a busy machine)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (conf/data default)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OCR_NUM_THREADS", "1")),
                        help="OCR_NUM_THREADS/OMP/MKL threads of the children (project default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="run the timed steps under paddle.profiler and print where the op time goes "
                             "(writes outputs/bench/train_profile.json unless --json)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="default outputs/bench/train_step.json")
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_main(json.loads(args.child))))
        return 0
    cases = args.cases or list(QUICK_CASES if args.quick else CASES)
    variants = list(args.variants)
    if args.ablate:
        variants = [v for v in variants if v != "ours"] + [v for v in ABLATION if v not in variants] + ["ours"]
    report = run(cases, variants, steps=args.steps, warmup=args.warmup, workers=args.workers, threads=args.threads,
                 rounds=args.rounds, profile=args.profile, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    _print(report)
    path = write_json(report, args.json, "train_profile.json" if args.profile else "train_step.json")
    print(f"wrote {path}", file=sys.stderr)
    print(json.dumps({"json": str(path), "results": [{k: r[k] for k in ("case", "variant", "samples_per_s")}
                                                     for r in report["results"]]}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``python -m bench.backbone_form``: what training in the fused deploy form costs in accuracy, against PaddleOCR's
multi-branch training form of the PPLCNetV3 backbone (``model.backbone_form=deploy|train``).

For each seed and task, both forms fine-tune from the same pretrained PP-OCRv4 mobile weights (the training form
is the exact expansion of the shipped fused weights) on the same synthetic data with the same steps and seed,
through the documented command (``python -m training.det|rec``) in a child process; the two forms run back to
back (order alternating by seed) so they see similar machine load. Reported per run: the run's own eval metric
after fine-tuning (det hmean, rec acc; the last eval and the best), the mean training loss over the last quarter
of the steps, and the median seconds per step from the run's ``history.json`` (reader + compute, steps after the
first). The pretrained metric on the same eval set (``mode=eval``) is the starting point.

Data: det = synthetic scenes in the shifted style (``data.*.shift=true``: other text, weight, slant, colours,
backgrounds), 320² crops, batch 4; rec = shifted invoice lines, 48×320, batch 8. Optimiser = the project default
(AdamW lr 1e-4, cosine, grad clip 10; BN statistics updating) with 5 warm-up steps.

    python -m bench.backbone_form [--tasks det rec] [--seeds 1 2] [--det-steps 40] [--rec-steps 40]
                                  [--out DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import ROOT, fmt, make_console, write_json

__all__ = ["FORMS", "TASK_ARGS", "run_one", "run", "main"]

FORMS = ("deploy", "train")

#: per task: the training command's data/optimiser overrides (same for both forms)
TASK_ARGS: dict[str, list[str]] = {
    "det": ["data.train.num=100", "data.eval.num=30", "data.train.shift=true", "data.eval.shift=true",
            "data.batch_size=4", "aug.size=320"],
    "rec": ["data.train.num=400", "data.eval.num=100", "data.train.kind=invoice", "data.eval.kind=invoice",
            "data.train.shift=true", "data.eval.shift=true", "data.batch_size=8"],
}
COMMON_ARGS = ["+experiment=smoke", "tracking=none", "registry.after_training=null", "data.num_workers=1",
               "optim.lr=1e-4", "optim.warmup_steps=5", "trainer.log_every=1", "trainer.save_every=0",
               "trainer.summary=false", "trainer.progress_bar=false"]


def _command(task: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", f"training.{task}", *COMMON_ARGS, *TASK_ARGS[task], *extra]


def _run_command(cmd: list[str], log: Path) -> tuple[dict[str, Any], float, float]:
    """Run a training command; returns its last-line JSON, wall seconds and the child's CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {proc.returncode} (log {log}):\n{tail}")
    return json.loads(lines[-1]), wall, cpu


def _history_stats(run_dir: Path, batch: int) -> dict[str, Any]:
    """Median s/step (reader + compute, the first step left out) and the mean loss over the last quarter."""
    train = json.loads((run_dir / "history.json").read_text())["train"]
    step_s = [batch / row["samples_per_s"] for row in train[1:] if row.get("samples_per_s")]
    tail = train[-max(1, len(train) // 4):]
    return {"step_s": round(statistics.median(step_s), 3) if step_s else None,
            "step_s_all": [round(s, 3) for s in step_s],
            "final_train_loss": round(statistics.fmean(row["loss"] for row in tail), 4)}


def _batch(task: str) -> int:
    return int(next(a for a in TASK_ARGS[task] if a.startswith("data.batch_size=")).split("=")[1])


def run_one(task: str, form: str, seed: int, steps: int, out: Path, overrides: list[str] = ()) -> dict[str, Any]:
    """Fine-tune one (task, form, seed); returns metrics, timing and the run dir."""
    run_dir = out / f"{task}-{form}-s{seed}"
    extra = [f"model.backbone_form={form}", f"seed={seed}", f"trainer.max_steps={steps}",
             f"trainer.eval_every={max(1, steps // 2)}", f"hydra.run.dir={run_dir}", *overrides]
    result, wall, cpu = _run_command(_command(task, extra), out / f"{task}-{form}-s{seed}.log")
    main = "hmean" if task == "det" else "acc"
    return {"task": task, "form": form, "seed": seed, "steps": result.get("steps"),
            "final": (result.get("final") or {}).get(main), "best": result.get("best_metric"),
            "best_step": result.get("best_step"), "train_time_s": result.get("train_time_s"),
            "wall_s": round(wall, 1), "child_cpu_s": round(cpu, 1), "run_dir": str(run_dir),
            **_history_stats(run_dir, _batch(task))}


def pretrained_metric(task: str, out: Path) -> float:
    """The pretrained weights' metric on the same eval set (``mode=eval``, deploy form)."""
    result, _, _ = _run_command(_command(task, ["mode=eval", f"hydra.run.dir={out / f'{task}-pretrained'}"]),
                                out / f"{task}-pretrained.log")
    return float(result["hmean" if task == "det" else "acc"])


def run(tasks: list[str], seeds: list[int], steps: dict[str, int], out: Path, overrides: list[str] = (),
        progress: Callable[[str], None] = lambda _: None, save: Callable[[dict], None] = lambda _: None) -> dict:
    """Every (seed, task, form); the report is saved after each run, so an interrupted bench keeps its rows."""
    report: dict[str, Any] = {"settings": {"steps": steps, "seeds": seeds, "common": COMMON_ARGS, "tasks": TASK_ARGS,
                                           "overrides": list(overrides)},
                              "pretrained": {}, "runs": [], "loadavg": []}
    for task in tasks:
        progress(f"{task} pretrained eval …")
        report["pretrained"][task] = pretrained_metric(task, out)
        save(report)
    for i, seed in enumerate(seeds):
        for task in tasks:
            for form in (FORMS if i % 2 == 0 else FORMS[::-1]):
                progress(f"{task} · {form} · seed {seed} · {steps[task]} steps …")
                report["runs"].append(run_one(task, form, seed, steps[task], out, overrides))
                report["loadavg"].append(os.getloadavg()[0])
                save(report)
    report["summary"] = summarise(report)
    save(report)
    return report


def summarise(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per task and form: mean and spread of the final/best metric over seeds, median s/step."""
    rows = []
    for task in report["pretrained"]:
        for form in FORMS:
            runs = [r for r in report["runs"] if r["task"] == task and r["form"] == form]
            if not runs:
                continue
            finals = [r["final"] for r in runs]
            rows.append({"task": task, "form": form, "seeds": len(runs), "pretrained": report["pretrained"][task],
                         "final_mean": statistics.fmean(finals), "final_min": min(finals), "final_max": max(finals),
                         "best_mean": statistics.fmean(r["best"] for r in runs),
                         "train_loss_mean": statistics.fmean(r["final_train_loss"] for r in runs),
                         "step_s": statistics.median(s for r in runs for s in r["step_s_all"])})
    return rows


def _print(report: dict[str, Any]) -> None:
    from rich.table import Table

    console = make_console()
    table = Table(title="deploy vs training form: fine-tuned from PP-OCRv4 mobile, same data/steps/seed")
    for col in ("task", "form", "seed", "steps", "pretrained", "final", "best (step)", "train loss (last ¼)",
                "s/step", "child CPU s"):
        table.add_column(col, justify="left" if col in ("task", "form") else "right")
    for r in report["runs"]:
        table.add_row(r["task"], r["form"], str(r["seed"]), str(r["steps"]), fmt(report["pretrained"][r["task"]], 3),
                      fmt(r["final"], 3), f"{fmt(r['best'], 3)} ({r['best_step']})", fmt(r["final_train_loss"], 3),
                      fmt(r["step_s"]), fmt(r["child_cpu_s"], 0))
    console.print(table)
    for s in report.get("summary", []):
        console.print(f"  {s['task']} {s['form']}: final {s['final_mean']:.3f} (min {s['final_min']:.3f}, max "
                      f"{s['final_max']:.3f}, {s['seeds']} seeds), median {s['step_s']:.2f} s/step")
    console.print(f"  1-minute load after each run: {', '.join(f'{x:.1f}' for x in report['loadavg'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backbone_form", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=("det", "rec"), default=["det", "rec"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--det-steps", type=int, default=40)
    parser.add_argument("--rec-steps", type=int, default=40)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="more overrides for both forms' training runs, e.g. trainer.freeze_bn=true")
    parser.add_argument("--out", type=Path, help="run dirs and logs (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="default outputs/bench/backbone_form.json")
    args = parser.parse_args(argv)
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        print(f"error: --out {args.out} is not empty (this bench writes fresh run dirs there)", file=sys.stderr)
        return 2
    steps = {"det": args.det_steps, "rec": args.rec_steps}
    with tempfile.TemporaryDirectory(prefix="backbone-form-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        path_holder: list[Path] = []

        def save(report: dict) -> None:
            path_holder[:] = [write_json(report, args.json, "backbone_form.json")]

        report = run(args.tasks, args.seeds, steps, out.resolve(), args.overrides,
                     progress=lambda msg: print(msg, file=sys.stderr, flush=True), save=save)
    _print(report)
    print(f"wrote {path_holder[0]}", file=sys.stderr)
    print(json.dumps({"json": str(path_holder[0]), "summary": report["summary"]}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

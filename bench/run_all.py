"""``python -m bench.run_all [--quick] [--only NAME …] [--skip NAME …]``: every benchmark, one after another.

Each module runs as its own process (``python -m bench.<name> …``) with its table streamed to this terminal and
its JSON written to ``outputs/bench/<name>.json``; a module that fails is reported at the end and the others
still run (exit status 1 if any failed). Why separate processes: the modules set up Paddle differently (oneDNN
predictors, training in dygraph, thread counts read once at start-up), and a crash in one must not hide the
others. ``--quick`` passes each module smaller settings (fewer cases, repeats and pages) for a smoke run of a
few minutes; the full run is what ``bench/RESULTS.md`` reports.
"""
from __future__ import annotations

import datasets  # noqa: F401  -- project start-up before anything imports paddle

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import OUT_DIR, ROOT, machine, make_console, versions, write_json

__all__ = ["MODULES", "main"]

#: name → (full-run arguments, --quick arguments); ``{json}`` becomes the module's JSON path.
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "data_pipeline": (["--json", "{json}"],
                      ["--workers", "0", "2", "--det-batches", "2", "--rec-batches", "2", "--json", "{json}"]),
    "train_step": (["--json", "{json}"], ["--quick", "--json", "{json}"]),
    "inference": (["--json", "{json}"], ["--repeat", "3", "--batches", "1", "--json", "{json}"]),
    "pipeline": (["--json", "{json}"], ["--pages", "3", "--repeat", "1", "--json", "{json}"]),
    "int8": (["--json", "{json}"], ["--models", "ppocrv4_det", "--repeat", "3", "--batches", "1", "--no-inspect",
                                    "--json", "{json}"]),
}


def _run(name: str, quick: bool, out_dir: Path) -> dict:
    json_path = out_dir / f"{name}.json"
    full, fast = MODULES[name]
    args = [a.replace("{json}", str(json_path)) for a in (fast if quick else full)]
    print(f"\n=== bench.{name} {' '.join(args)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT)
    return {"module": name, "args": args, "exit_code": code, "seconds": round(time.perf_counter() - start, 1),
            "json": str(json_path) if code == 0 and json_path.exists() else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller settings for a smoke run")
    parser.add_argument("--only", nargs="+", choices=list(MODULES), default=None)
    parser.add_argument("--skip", nargs="+", choices=list(MODULES), default=[])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where each module's JSON goes")
    args = parser.parse_args(argv)
    names = [n for n in (args.only or list(MODULES)) if n not in args.skip]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = [_run(name, args.quick, args.out_dir) for name in names]
    summary = {"machine": machine(), "versions": versions(), "quick": args.quick, "runs": runs,
               "total_s": round(time.perf_counter() - started, 1)}
    path = write_json(summary, args.out_dir / "run_all.json", "run_all.json")

    from rich.table import Table

    table = Table(title=f"bench.run_all{' --quick' if args.quick else ''}: {summary['total_s']} s")
    for col in ("module", "exit", "seconds", "json"):
        table.add_column(col)
    for r in runs:
        table.add_row(r["module"], str(r["exit_code"]), f"{r['seconds']:.0f}", r["json"] or "–")
    make_console().print(table)
    print(json.dumps({"json": str(path), "failed": [r["module"] for r in runs if r["exit_code"] != 0]}))
    return 1 if any(r["exit_code"] != 0 for r in runs) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

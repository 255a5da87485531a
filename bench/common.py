"""What every benchmark table states (machine, threads, versions) and the plumbing they share.

Why one module: the issue asks each table to say on what it was measured; keeping that in one place keeps the
tables comparable. Also here: peak RSS without psutil (not installed; ``resource`` is enough on Linux), JSON
output under ``outputs/bench/``, and running a measurement in a fresh child process — the only way to get a
per-configuration peak RSS and to switch start-up settings (``MKL_DEBUG_CPU_TYPE``, thread counts) that a
process reads once.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["ROOT", "OUT_DIR", "cpu_model", "machine", "versions", "peak_rss_mb", "write_json", "print_header",
           "run_child", "child_env", "fmt", "make_console"]

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "outputs" / "bench"

_THREAD_VARS = ("OCR_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "OCR_CPU_TUNING")


def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (``platform.processor()`` is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """CPU, core count, OS and the thread/tuning environment; ``load_1min`` says how busy the machine was."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "env": {k: os.environ.get(k) for k in _THREAD_VARS}, "load_1min": _load()}


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Python and the installed versions of the packages that decide speed here."""
    out = {"python": platform.python_version()}
    for name in ("paddlepaddle", "numpy", "opencv-python-headless", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ``ru_maxrss`` in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def write_json(report: Mapping[str, Any], path: Path | None, default_name: str) -> Path:
    """Write ``report`` to ``path`` (default ``outputs/bench/<default_name>``); returns the path."""
    path = Path(path) if path is not None else OUT_DIR / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    return path


def print_header(console: Any, report: Mapping[str, Any], inputs: str) -> None:
    """The lines above every table: machine, threads, versions, input sizes."""
    m, v = report["machine"], report["versions"]
    console.print(f"[bold]machine[/]: {m['cpu']} · {m['cores']} cores · {m['platform']} · load(1 min) {m['load_1min']}")
    env = ", ".join(f"{k}={val}" for k, val in m["env"].items() if val is not None) or "(defaults)"
    console.print(f"[bold]threads/env[/]: {env}")
    console.print("[bold]versions[/]: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    console.print(f"[bold]inputs[/]: {inputs}")


def child_env(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The environment for a measurement child: ours plus ``overrides`` (``None`` removes a variable).

    ``MKL_DEBUG_CPU_TYPE`` that *our* start-up set (not the user) is dropped first, so a child started with
    ``OCR_CPU_TUNING=none`` really runs MKL's default dispatch."""
    from datasets import runtime

    env = dict(os.environ)
    if runtime.MKL_DISPATCH_SET_HERE:
        env.pop("MKL_DEBUG_CPU_TYPE", None)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def run_child(module: str, args: Sequence[str], env: Mapping[str, str] | None = None,
              timeout: float | None = None) -> dict:
    """Run ``python -m module args`` (in this environment unless ``env`` is given) and return the JSON object on
    its last stdout line.

    A failing child raises ``RuntimeError`` with the tail of its stderr, so one broken configuration is
    reported clearly instead of as a JSON decode error."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=None if env is None else dict(env),
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise RuntimeError(f"{module} {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return json.loads(lines[-1])


def make_console() -> Any:
    """A rich console that does not squash wide tables into 80 columns when stdout is a pipe or a file."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def fmt(value: float | None, digits: int = 2) -> str:
    """Table cell for a number that may be missing."""
    return "–" if value is None else f"{value:.{digits}f}"

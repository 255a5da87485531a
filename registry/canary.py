"""Canary routing between a served champion and its challenger, and the per-request log used to compare them.

Why here and not in a proxy: ``mlflow models serve`` serves one model; a canary needs the champion and the
challenger behind one endpoint. So the served pyfunc (:mod:`registry.pyfunc_model`) holds both and asks a
:class:`CanaryRouter` per request (one ``predict`` call) which one answers. Every response names the version
that answered, and one JSON line per request goes to a log (``OCR_CANARY_LOG``), which :func:`summarize`
turns into per-version numbers (requests, latency, boxes, mean score, errors) for
``python -m registry compare NAME V1 V2 --canary-log FILE``.

Usage::

    router = CanaryRouter(0.1, seed=0)
    route = router.choose()                      # "challenger" about 10 % of the time, else "primary"
    append_record("canary.jsonl", {"version": "3", "route": route, "latency_ms": 41.0})
    summarize("canary.jsonl")                    # {"3": {"requests": 1, "latency_ms_median": 41.0, ...}}
"""
from __future__ import annotations

import json
import os
import random
import statistics
import threading
from pathlib import Path
from typing import Any, Iterable

__all__ = ["CanaryRouter", "append_record", "read_records", "summarize", "ROUTES"]

ROUTES = ("auto", "primary", "challenger")


class CanaryRouter:
    """Chooses ``primary`` or ``challenger`` per request; ``fraction`` in [0, 1]. Thread-safe."""

    def __init__(self, fraction: float, seed: int | None = None) -> None:
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"canary_fraction must be within [0, 1], got {fraction}")
        self.fraction = fraction
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def choose(self, requested: str = "auto", challenger_available: bool = True) -> str:
        """``requested`` ``primary``/``challenger`` pins the route (for comparisons); ``auto`` draws."""
        if requested not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}, got {requested!r}")
        if not challenger_available:
            return "primary"
        if requested != "auto":
            return requested
        with self._lock:
            return "challenger" if self._rng.random() < self.fraction else "primary"


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line with a single ``write`` on an ``O_APPEND`` descriptor, so lines from several
    server workers do not interleave."""
    line = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a canary log (unparsable lines skipped)."""
    out = []
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"{target}: canary log not found")
    for line in target.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _median(values: Iterable[float]) -> float | None:
    values = [float(v) for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Per answering version: requests, images, errors, median latency, mean boxes and mean score."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in read_records(path):
        groups.setdefault(str(rec.get("version") or rec.get("model_id") or "unknown"), []).append(rec)
    summary: dict[str, dict[str, Any]] = {}
    for version, recs in sorted(groups.items()):
        scores = [r["mean_score"] for r in recs if r.get("mean_score") is not None]
        summary[version] = {
            "requests": len(recs),
            "routes": sorted({str(r.get("route")) for r in recs}),
            "images": sum(int(r.get("images", 0)) for r in recs),
            "errors": sum(int(r.get("errors", 0)) for r in recs),
            "latency_ms_median": _median(r.get("latency_ms") for r in recs),
            "boxes_mean": statistics.fmean([float(r.get("boxes", 0)) for r in recs]) if recs else None,
            "score_mean": statistics.fmean(scores) if scores else None,
        }
    return summary

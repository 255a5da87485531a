"""Latency of a candidate against the champion, measured side by side at promotion time.

Why not compare the ``metric.latency_ms`` tags: each was measured once, at registration, on whatever load the
machine had then. On a shared machine a byte-identical copy of the champion was refused for "+110 %
latency". Timing both models now, in one process, interleaved (A B, B A, …) exposes them to the same load;
the gate then judges the *ratio*, which is what the threshold (``max_latency_increase_pct``) means: the median
over rounds of each round's candidate/champion ratio (the two runs of a round are adjacent in time, so a
load spike hits both; on a machine shared with other jobs the ratio of the two medians alone swung by 40 %
for identical models). Both medians and the recorded tags are printed for reference.

What is timed: the versioned network through the serving code (:mod:`export.predictors`), not the bundled
recogniser of a det version (identical on both sides): det on one rendered invoice page, rec on a batch of
rendered text lines (per-line time).

Usage::

    cmp = measure_side_by_side(client, "ocr-det", "2", "1", task="det", rounds=7)
    cmp.candidate_ms, cmp.champion_ms, cmp.ratio
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from registry.client import RegistryClient, RegistryError
from registry.progress import notice

__all__ = ["LatencyComparison", "measure_side_by_side", "time_interleaved"]

_WARMUP = 2


@dataclass(frozen=True)
class LatencyComparison:
    """Median milliseconds of both models from one interleaved session (or why there is none)."""

    candidate_version: str
    champion_version: str
    candidate_ms: float | None = None
    champion_ms: float | None = None
    rounds: int = 0
    workload: str = ""
    error: str | None = None      # set when the side-by-side measurement was not possible
    paired_ratio: float | None = None  # median over rounds of candidate/champion within the round

    @property
    def measured(self) -> bool:
        return self.error is None and self.candidate_ms is not None and self.champion_ms is not None

    @property
    def ratio(self) -> float | None:
        """candidate / champion: the paired per-round median when measured, else the ratio of the medians."""
        if not self.measured or not self.champion_ms:
            return None
        return self.paired_ratio if self.paired_ratio is not None else self.candidate_ms / self.champion_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def time_interleaved(run_a: Callable[[], Any], run_b: Callable[[], Any], rounds: int,
                     warmup: int = _WARMUP) -> tuple[float, float, float]:
    """Median ms of ``run_a`` and ``run_b`` and the median of their per-round ratio a/b: ``warmup`` untimed
    calls each, then ``rounds`` rounds alternating which goes first (A B, B A, …) so drift in machine load
    hits both equally."""
    for _ in range(max(0, warmup)):
        run_a()
        run_b()
    times: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(max(1, int(rounds))):
        order = (("a", run_a), ("b", run_b)) if r % 2 == 0 else (("b", run_b), ("a", run_a))
        for key, fn in order:
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) * 1000.0)
    ratios = [a / b for a, b in zip(times["a"], times["b"]) if b > 0]
    return (statistics.median(times["a"]), statistics.median(times["b"]),
            statistics.median(ratios) if ratios else float("nan"))


def _artifact_dir(model_root: Path, artifact: str) -> Path:
    """The folder of pyfunc artifact ``artifact`` inside a downloaded model (named in its MLmodel file)."""
    import yaml

    mlmodel = model_root / "MLmodel"
    if not mlmodel.is_file():
        raise RegistryError(f"{model_root}: no MLmodel file")
    meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    entry = ((meta.get("flavors") or {}).get("python_function") or {}).get("artifacts", {}).get(artifact)
    if not entry or not (model_root / entry["path"]).is_dir():
        raise RegistryError(f"{model_root}: the model has no {artifact!r} artifact")
    return model_root / entry["path"]


def _download(client: RegistryClient, name: str, version: str, dst: Path) -> Path:
    import mlflow.artifacts

    uri = client.call("get_model_version_download_uri", name, str(version))
    dst.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                    tracking_uri=client.tracking_uri))


def _workload(task: str, model_dir: Path) -> Callable[[], Any]:
    """One timed call of the serving predictor on a fixed rendered input."""
    from export.samples import DEFAULT_LINES, render_line, render_page

    if task == "det":
        from export.predictors import DetPredictor

        predictor = DetPredictor(model_dir)
        page, _ = render_page(DEFAULT_LINES, width=640)
        return lambda: predictor.predict(page)
    from export.predictors import RecPredictor

    predictor = RecPredictor(model_dir)
    lines = [render_line(text) for text in DEFAULT_LINES]
    return lambda: predictor.predict(lines)


def measure_side_by_side(client: RegistryClient, name: str, candidate: str, champion: str, *, task: str,
                         rounds: int = 7) -> LatencyComparison:
    """Download both versions, build their predictors and time them interleaved. Never raises for a model
    that cannot be measured (e.g. a version without artifacts): the result then carries ``error``."""
    base = LatencyComparison(str(candidate), str(champion), rounds=int(rounds))
    artifact = "det" if task == "det" else "rec"
    workload = ("det: one 640-px-wide rendered invoice page" if task == "det"
                else "rec: 6 rendered text lines per call")
    notice(f"measuring latency of {name} v{candidate} and champion v{champion} side by side "
           f"({rounds} interleaved rounds, {workload})")
    try:
        with tempfile.TemporaryDirectory(prefix="registry-latency-") as tmp:
            dirs = [_artifact_dir(_download(client, name, v, Path(tmp) / f"v{v}"), artifact)
                    for v in (candidate, champion)]
            run_candidate, run_champion = (_workload(task, d) for d in dirs)
            cand_ms, champ_ms, ratio = time_interleaved(run_candidate, run_champion, rounds)
    except Exception as exc:  # noqa: BLE001 - reported in the gate, the recorded figures are the fallback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return replace(base, workload=workload, error=f"{type(exc).__name__}: {first[:200]}")
    return LatencyComparison(str(candidate), str(champion), round(cand_ms, 2), round(champ_ms, 2), int(rounds),
                             workload, paired_ratio=round(ratio, 4))

"""One MLflow parent run per Hydra multirun (``-m`` sweeps, Optuna searches), with each job's run nested under it.

Why a Hydra callback: it is the seam Hydra gives for "before the first job / after the last one", and it works
the same with every launcher (basic, joblib, submitit) because jobs talk to it through files, not memory:
``on_multirun_start`` opens the parent run and writes ``mlflow_parent.json`` into the sweep dir (and sets
``OCR_SWEEP_PARENT_RUN_ID`` for jobs in this process or its children); each job's tracker creates its run with
``mlflow.parentRunId`` set (``training.tracking``) and leaves ``sweep_result.json`` (metric, run id, overrides)
in its own run dir; ``on_multirun_end`` reads those, records the best job and metric on the parent run and in
``sweep_summary.json``, and closes it.

Configured in ``conf/det.yaml``/``conf/rec.yaml``::

    hydra:
      callbacks:
        mlflow_sweep:
          _target_: training.hydra_callbacks.MlflowSweepCallback
"""
from __future__ import annotations

import atexit
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = ["MlflowSweepCallback", "PARENT_FILE", "RESULT_FILE", "PARENT_ENV", "write_job_result",
           "read_parent", "sweep_results"]

log = logging.getLogger(__name__)

PARENT_FILE = "mlflow_parent.json"
RESULT_FILE = "sweep_result.json"
SUMMARY_FILE = "sweep_summary.json"
PARENT_ENV = "OCR_SWEEP_PARENT_RUN_ID"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic: a reader (another job, the end-of-sweep callback) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_job_result(job_dir: Path, job_num: int, overrides: list[str], objective: float | None,
                     metric: str | None, result: dict[str, Any]) -> Path:
    """A job's outcome (its metric and MLflow run) for :meth:`MlflowSweepCallback.on_multirun_end`."""
    data = {"job": job_num, "overrides": overrides, "objective": objective, "metric": metric,
            "run_id": result.get("tracking_run_id"), "run_dir": str(job_dir)}
    path = Path(job_dir) / RESULT_FILE
    _write_json(path, data)
    return path


def read_parent(sweep_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The parent run written by ``on_multirun_start`` in ``sweep_dir``, if any."""
    try:
        return json.loads((Path(sweep_dir) / PARENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sweep_results(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every job result under ``sweep_dir``, ordered by job number."""
    rows = []
    for path in Path(sweep_dir).rglob(RESULT_FILE):
        try:
            rows.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(rows, key=lambda r: int(r.get("job", 0)))


def _best(rows: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    scored = [r for r in rows if isinstance(r.get("objective"), (int, float)) and math.isfinite(r["objective"])]
    if not scored:
        return None
    pick = min if direction == "minimize" else max
    return pick(scored, key=lambda r: r["objective"])


def _task_of(config: DictConfig) -> str:
    return str(config.get("task") or "run")


class MlflowSweepCallback(Callback):
    """Parent MLflow run per sweep; the best job (highest metric unless ``direction: minimize``) recorded on it.

    Tracking failures never stop the sweep: they are logged once and the jobs run unnested."""

    def __init__(self, direction: str = "maximize") -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"MlflowSweepCallback direction={direction!r}: expected maximize or minimize")
        self.direction = direction
        self._client = None
        self._run_id: str | None = None
        self._sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        tracking = config.get("tracking")
        if tracking is None or str(tracking.get("backend", "mlflow")).lower() in ("none", "null", "off"):
            return
        from training.tracking import MlflowTracker, default_run_name

        sweep_dir = Path(str(config.hydra.sweep.dir))
        task = _task_of(config)
        experiment = tracking.get("experiment") or f"ocr-{task}"
        name = tracking.get("run_name") or default_run_name(
            task, kind="sweep", choices=OmegaConf.select(config, "hydra.runtime.choices", default=None))
        tracker = MlflowTracker(experiment=experiment, tracking_uri=tracking.get("tracking_uri"),
                                http_timeout=tracking.get("http_timeout", 30),
                                http_max_retries=tracking.get("http_max_retries", 2),
                                probe_timeout=tracking.get("probe_timeout", 5))
        overrides = list(config.hydra.overrides.task)
        run_id = tracker.start(run_name=name, tags={
            "sweep": "parent", "sweep.dir": str(sweep_dir.resolve()), "sweep.overrides": " ".join(overrides),
            "sweep.sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_", default="")),
            "sweep.launcher": str(OmegaConf.select(config, "hydra.launcher._target_", default="")),
            "task": task}, nest=False)
        if run_id is None:
            return
        self._client, self._run_id, self._sweep_dir = tracker._client, run_id, sweep_dir
        os.environ[PARENT_ENV] = run_id
        atexit.register(self._close_aborted)  # a job that fails stops the sweep before on_multirun_end
        _write_json(sweep_dir / PARENT_FILE, {"run_id": run_id, "experiment": experiment,
                                              "tracking_uri": tracker.tracking_uri, "run_name": name})
        log.info("sweep: MLflow parent run %s (%s) in experiment %s", name, run_id, experiment)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = sweep_results(sweep_dir)
        best = _best(rows, self.direction)
        summary = {"direction": self.direction, "num_jobs": len(rows), "best": best, "jobs": rows,
                   "parent_run_id": self._run_id}
        try:
            _write_json(sweep_dir / SUMMARY_FILE, summary)
        except OSError as exc:
            log.warning("could not write %s: %s", sweep_dir / SUMMARY_FILE, exc)
        if self._client is None or self._run_id is None:
            os.environ.pop(PARENT_ENV, None)
            return
        try:
            self._record(rows, best)
            self._client.log_artifact(self._run_id, str(sweep_dir / SUMMARY_FILE))
            failed = any(r.get("objective") is None for r in rows) or not rows
            self._client.set_terminated(self._run_id, status="FAILED" if not best else "FINISHED")
            if failed and best:
                self._client.set_tag(self._run_id, "sweep.some_jobs_without_metric", "true")
        except Exception as exc:  # noqa: BLE001 -- tracking never fails a finished sweep
            log.warning("could not record the sweep in MLflow run %s: %s", self._run_id, exc)
        finally:
            os.environ.pop(PARENT_ENV, None)
            self._run_id = None

    def _close_aborted(self) -> None:
        """At interpreter exit, a parent run still open means the sweep stopped early (a failed job, Ctrl-C):
        record what finished and close the parent as FAILED instead of leaving it RUNNING forever."""
        if self._client is None or self._run_id is None or self._sweep_dir is None:
            return
        try:
            rows = sweep_results(self._sweep_dir)
            self._record(rows, _best(rows, self.direction))
            self._client.set_tag(self._run_id, "sweep.aborted", "true")
            self._client.set_terminated(self._run_id, status="FAILED")
        except Exception:  # noqa: BLE001 -- best effort at exit
            pass
        self._run_id = None

    def _record(self, rows: list[dict[str, Any]], best: dict[str, Any] | None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        name = next((str(r["metric"]) for r in rows if r.get("metric")), "objective")
        metrics = [Metric(f"sweep/{name}", float(r["objective"]), now, int(r["job"])) for r in rows
                   if isinstance(r.get("objective"), (int, float)) and math.isfinite(r["objective"])]
        tags = [RunTag("sweep.num_jobs", str(len(rows))), RunTag("sweep.metric", name)]
        if best is not None:
            metrics.append(Metric(f"best_{name}", float(best["objective"]), now, 0))
            tags += [RunTag("sweep.best_job", str(best["job"])),
                     RunTag("sweep.best_run_id", str(best.get("run_id"))),
                     RunTag("sweep.best_overrides", " ".join(best.get("overrides") or [])[:5000]),
                     RunTag("sweep.best_run_dir", str(best.get("run_dir")))]
        self._client.log_batch(self._run_id, metrics=metrics, tags=tags)

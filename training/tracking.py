"""The seam between training and MLflow: a small ``Tracker`` interface, an MLflow implementation that can
never kill a training run, and a no-op one.

Why a seam: the trainer logs a handful of things (params, tags, metrics, dataset inputs, artifacts) and must
keep training when the tracking server is down, the URI is wrong or the disk of the artifact store is full.
``MlflowTracker`` catches every MLflow error, reports it once on stderr, and turns itself into a no-op for the
rest of the run; the run directory on disk (checkpoints, ``metrics.json``, history, curves) is complete on its
own.

Example::

    tracker = build_tracker(cfg.tracking, default_experiment="ocr-det")
    run_id = tracker.start(run_name="rctw-ft")
    tracker.set_tags({"data.train.digest": digest, "charset.sha256": charset_hash})
    tracker.log_dataset_input("rctw-train", digest=digest, num=1200, source=str(root), context="training")
    ...
    tracker.end()

Tracking URI: ``tracking_uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
(relative to the working directory), so ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows the runs.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from training.lineage import DEFAULT_TRACKING_URI, code_tags, resolve_tracking_uri  # noqa: F401 -- re-exported

__all__ = [
    "Tracker",
    "NullTracker",
    "MlflowTracker",
    "build_tracker",
    "flatten_config",
    "default_tags",
    "resolve_tracking_uri",
    "DEFAULT_TRACKING_URI",
    "default_run_name",
    "sweep_parent_run_id",
]


def _hydra_choices() -> tuple[dict[str, str], Any]:
    """(group choices, HydraConfig) of the running Hydra job; ({}, None) outside Hydra (tests, scripts)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return {}, None
    return {str(k): str(v) for k, v in (hc.runtime.choices or {}).items() if v is not None}, hc


def _is_multirun(hc: Any) -> bool:
    return getattr(hc.mode, "name", str(hc.mode)) == "MULTIRUN"


def default_run_name(task: str | None = None, kind: str | None = None,
                     choices: Mapping[str, Any] | None = None) -> str:
    """``det-ppocrv4_mobile-smoke-20261201-072600-3f9a`` (task, model, experiment, time, 4 random hex digits;
    ``-j3`` for job 3 of a multirun). Why not MLflow's own names: MLflow draws them from Python's ``random``,
    which the run has just seeded, so every run got the same name. The suffix comes from ``os.urandom``.
    ``choices`` (Hydra's group choices) default to the running job's."""
    job_choices, hc = _hydra_choices()
    choices = {str(k): str(v) for k, v in (choices or job_choices).items() if v is not None}
    parts = [task or (hc.job.config_name if hc is not None else None) or "run"]
    if kind:
        parts.append(kind)
    model = choices.get("model")
    if model and kind is None:
        parts.append(model.rsplit("/", 1)[-1])
    experiment = choices.get("experiment") or choices.get("hparams_search")
    if experiment:
        parts.append(experiment.rsplit("/", 1)[-1])
    parts.append(time.strftime("%Y%m%d-%H%M%S"))
    if hc is not None and kind is None and _is_multirun(hc):
        parts.append(f"j{hc.job.num}")
    parts.append(os.urandom(2).hex())
    return "-".join(p.replace(" ", "_") for p in parts)


def _job_num() -> int:
    _, hc = _hydra_choices()
    return int(hc.job.num) if hc is not None else 0


def sweep_parent_run_id() -> str | None:
    """The MLflow parent run of the Hydra multirun this job belongs to (``training.hydra_callbacks``):
    ``$OCR_SWEEP_PARENT_RUN_ID`` when the sweep started in this process, else the sweep dir's
    ``mlflow_parent.json`` (other launchers' processes and hosts)."""
    choices, hc = _hydra_choices()
    if hc is None or not _is_multirun(hc):
        return None
    if os.environ.get("OCR_SWEEP_PARENT_RUN_ID"):
        return os.environ["OCR_SWEEP_PARENT_RUN_ID"]
    for folder in (Path(str(hc.sweep.dir)), Path(str(hc.runtime.output_dir)).parent):
        try:
            return str(json.loads((folder / "mlflow_parent.json").read_text(encoding="utf-8"))["run_id"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _to_plain(cfg: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return cfg


#: what MLflow accepts in a param name
_MLFLOW_KEY = re.compile(r"[\w\-. :/]+", re.ASCII)


def flatten_config(cfg: Any, max_length: int = 500, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists and scalars as JSON, strings as is, values cut to
    ``max_length`` characters (500 is the smallest limit among MLflow server versions)."""
    cfg = _to_plain(cfg)
    out: dict[str, str] = {}
    if isinstance(cfg, Mapping) and prefix and not all(_MLFLOW_KEY.fullmatch(str(k)) for k in cfg):
        # keys MLflow refuses in a param name (e.g. lr_mult's "head.fc.*" patterns): one JSON value instead
        out[prefix] = _truncate(json.dumps(cfg, default=str, ensure_ascii=False), max_length)
    elif isinstance(cfg, Mapping):
        if not cfg and prefix:
            out[prefix] = "{}"
        for key, value in cfg.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping):
                out.update(flatten_config(value, max_length, name))
            else:
                out[name] = _truncate(value if isinstance(value, str) else json.dumps(value, default=str), max_length)
    elif prefix:
        out[prefix] = _truncate(cfg if isinstance(cfg, str) else json.dumps(cfg, default=str), max_length)
    return out


def default_tags() -> dict[str, str]:
    """Code and library versions every run records (:func:`training.lineage.code_tags`: ``git.sha``,
    ``git.dirty``, ``lib.*``). Data digests and the charset hash are the caller's to add."""
    return code_tags()


class Tracker:
    """The interface, with no-op bodies. Every method is safe to call in any state, before ``start`` too."""

    run_id: str | None = None

    @property
    def active(self) -> bool:
        """True between a successful ``start`` and ``end``."""
        return False

    @property
    def failed(self) -> bool:
        """True once a tracking error switched this tracker off."""
        return False

    def start(self, run_name: str | None = None, resume_run_id: str | None = None,
              tags: Mapping[str, Any] | None = None, nest: bool = True) -> str | None:
        """Open a run (or reopen ``resume_run_id`` when it exists); returns the run id for lineage. Without a
        name the run gets :func:`default_run_name`; inside a Hydra multirun it is nested under the sweep's
        parent run unless ``nest`` is False."""
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log a (nested) config as flattened params."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values stringified)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log scalar metrics at an optimizer step; non-finite and non-numeric values are skipped."""

    def log_dataset_input(self, name: str, digest: str, num: int, source: str,
                          context: str = "training", tags: Mapping[str, str] | None = None) -> None:
        """Record a dataset as a run input (name, digest, number of samples, where it came from)."""

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Upload one file."""

    def log_artifacts(self, local_dir: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Upload a directory's contents (symlinks such as ``checkpoints/best`` are followed)."""

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """Store a dict as a JSON/YAML artifact (by the file's extension)."""

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Store a matplotlib figure as an image artifact."""

    def log_image(self, image: Any, artifact_file: str) -> None:
        """Store an HxW[xC] uint8 array or PIL image as an image artifact."""

    def end(self, status: str = "FINISHED") -> None:
        """Close the run with ``FINISHED``, ``FAILED`` or ``KILLED``."""


class NullTracker(Tracker):
    """Tracks nothing; used for ``tracking=none``, non-zero ranks and after a tracking failure."""


class MlflowTracker(Tracker):
    """MLflow through ``MlflowClient`` (no global active-run state), failing soft.

    ``max_param_length`` cuts param values (500 is what older MLflow servers accept; 3.x takes 6000).
    ``http_timeout``/``http_max_retries`` bound how long one call to a dead HTTP server can stall training
    (they set ``MLFLOW_HTTP_REQUEST_TIMEOUT``/``_MAX_RETRIES`` unless already set); an HTTP server is probed
    at ``start`` with ``probe_timeout`` so an unreachable one is detected in seconds, not minutes.
    """

    def __init__(
        self,
        experiment: str,
        tracking_uri: str | None = None,
        run_name: str | None = None,
        artifact_location: str | None = None,
        max_param_length: int = 500,
        http_timeout: float = 30,
        http_max_retries: int = 2,
        probe_timeout: float = 5,
    ) -> None:
        self.experiment = experiment
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.run_name = run_name
        self.artifact_location = artifact_location
        self.max_param_length = int(max_param_length)
        self.probe_timeout = float(probe_timeout)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(http_timeout)))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(int(http_max_retries)))
        self.run_id = None
        self._client = None
        self._active = False
        self._error: str | None = None

    # -- failure handling -------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._active and self._error is None

    @property
    def failed(self) -> bool:
        return self._error is not None

    @property
    def error(self) -> str | None:
        """The one error that switched tracking off, if any."""
        return self._error

    def _fail(self, what: str, exc: BaseException) -> None:
        if self._error is not None:
            return
        self._error = f"{what}: {type(exc).__name__}: {exc}"
        short = _truncate(str(exc).replace("\n", " "), 300)
        print(
            f"[tracking] ERROR: MLflow {what} failed ({type(exc).__name__}: {short}) with tracking URI "
            f"{self.tracking_uri!r}. Tracking is OFF for the rest of this run; training continues and the "
            "run directory on disk (checkpoints, metrics.json, history) is complete on its own.",
            file=sys.stderr,
            flush=True,
        )

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        if self._error is not None or (what != "start" and not self._active):
            return None
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - by design: tracking must never stop training
            self._fail(what, exc)
            return None

    # -- lifecycle --------------------------------------------------------------------------------------
    def _probe(self) -> None:
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        import requests

        url = self.tracking_uri.rstrip("/") + "/health"
        response = requests.get(url, timeout=self.probe_timeout)
        if response.status_code >= 500:
            raise ConnectionError(f"{url} answered HTTP {response.status_code}")

    def start(self, run_name: str | None = None, resume_run_id: str | None = None,
              tags: Mapping[str, Any] | None = None, nest: bool = True) -> str | None:
        if self._active:
            return self.run_id

        def _start() -> str:
            self._probe()
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment = client.get_experiment_by_name(self.experiment)
            if experiment is None:
                experiment_id = client.create_experiment(self.experiment, artifact_location=self.artifact_location)
            else:
                experiment_id = experiment.experiment_id
                if experiment.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment_id)
            all_tags = {**default_tags(), **{k: str(v) for k, v in (tags or {}).items()}}
            run = None
            if resume_run_id:
                try:
                    run = client.get_run(resume_run_id)
                except Exception:  # noqa: BLE001 - run from another store: start a new one below
                    run = None
                if run is not None and run.info.experiment_id != experiment_id:
                    run = None
            if run is not None:
                client.update_run(run.info.run_id, status="RUNNING")
                for key, value in all_tags.items():
                    client.set_tag(run.info.run_id, key, _truncate(value, 5000))
                client.set_tag(run.info.run_id, "resumed_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
            else:
                if resume_run_id:
                    all_tags["resumed_from_run_id"] = resume_run_id
                parent = sweep_parent_run_id() if nest else None
                if parent:
                    all_tags["mlflow.parentRunId"] = parent
                task = self.experiment[4:] if self.experiment.startswith("ocr-") else None
                name = run_name or self.run_name
                if name and parent:  # one tracking.run_name for a whole sweep: tell the jobs apart
                    name = f"{name}-j{_job_num()}"
                run = client.create_run(experiment_id, run_name=name or default_run_name(task),
                                        tags={k: _truncate(v, 5000) for k, v in all_tags.items()})
            self._client = client
            self.run_id = run.info.run_id
            self._active = True
            return self.run_id

        return self._guard("start", _start)

    def end(self, status: str = "FINISHED") -> None:
        def _end() -> None:
            self._client.set_terminated(self.run_id, status=status)

        self._guard("end", _end)
        self._active = False

    # -- logging ----------------------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        def _log() -> None:
            from mlflow.entities import Param

            flat = flatten_config(params, self.max_param_length)
            existing = self._client.get_run(self.run_id).data.params
            changed = sorted(k for k, v in flat.items() if k in existing and existing[k] != v)
            todo = [Param(k, v) for k, v in flat.items() if k not in existing]
            for i in range(0, len(todo), 100):
                self._client.log_batch(self.run_id, params=todo[i : i + 100])
            if changed:  # MLflow refuses to change a param; record which ones differ (e.g. on resume)
                self._client.set_tag(self.run_id, "params_changed_on_resume", _truncate(",".join(changed), 5000))

        self._guard("log_params", _log)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        def _log() -> None:
            from mlflow.entities import RunTag

            items = [RunTag(str(k), _truncate(str(v), 5000)) for k, v in tags.items()]
            for i in range(0, len(items), 100):
                self._client.log_batch(self.run_id, tags=items[i : i + 100])

        self._guard("set_tags", _log)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        def _log() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = []
            for key, value in metrics.items():
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    items.append(Metric(str(key), value, now, int(step or 0)))
            for i in range(0, len(items), 1000):
                self._client.log_batch(self.run_id, metrics=items[i : i + 1000])

        self._guard("log_metrics", _log)

    def log_dataset_input(self, name: str, digest: str, num: int, source: str,
                          context: str = "training", tags: Mapping[str, str] | None = None) -> None:
        def _log() -> None:
            from mlflow.data.code_dataset_source import CodeDatasetSource
            from mlflow.data.dataset_source_registry import resolve_dataset_source
            from mlflow.data.meta_dataset import MetaDataset
            from mlflow.entities import DatasetInput, InputTag
            from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

            class _CountedDataset(MetaDataset):
                """A metadata-only dataset whose profile carries the sample count."""

                @property
                def profile(self) -> dict[str, Any]:
                    return {"num_samples": int(num)}

                def to_dict(self) -> dict[str, str]:
                    return {**super().to_dict(), "profile": json.dumps(self.profile)}

            try:
                with warnings.catch_warnings():  # "can be interpreted in multiple ways" for local paths
                    warnings.simplefilter("ignore")
                    src = resolve_dataset_source(str(source))
            except Exception:  # noqa: BLE001 - e.g. "synthetic:seed=3": keep it as a description
                src = CodeDatasetSource({"source": str(source)})
            dataset = _CountedDataset(src, name=name, digest=str(digest)[:36])
            input_tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
            input_tags += [InputTag(str(k), str(v)) for k, v in (tags or {}).items()]
            self._client.log_inputs(self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), input_tags)])
            self._client.set_tag(self.run_id, f"data.{context}.{name}.digest", str(digest))

        self._guard("log_dataset_input", _log)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._guard("log_artifact",
                    lambda: self._client.log_artifact(self.run_id, str(Path(path).resolve()), artifact_path))

    def log_artifacts(self, local_dir: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._guard("log_artifacts",
                    lambda: self._client.log_artifacts(self.run_id, str(Path(local_dir).resolve()), artifact_path))

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self._guard("log_dict", lambda: self._client.log_dict(self.run_id, _to_plain(data), artifact_file))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self._guard("log_figure", lambda: self._client.log_figure(self.run_id, figure, artifact_file))

    def log_image(self, image: Any, artifact_file: str) -> None:
        self._guard("log_image", lambda: self._client.log_image(self.run_id, image, artifact_file=artifact_file))


_TRACKER_FIELDS = {"backend", "experiment", "tracking_uri", "run_name", "artifact_location", "max_param_length",
                   "http_timeout", "http_max_retries", "probe_timeout"}


def build_tracker(cfg: Mapping[str, Any] | None = None, /, *, default_experiment: str | None = None,
                  **fields: Any) -> Tracker:
    """A tracker from ``conf/tracking/*.yaml`` (a mapping, or its fields as keywords for ``_target_``).

    ``backend: none`` gives a :class:`NullTracker`; ``experiment: null`` takes ``default_experiment``
    (``ocr-det``/``ocr-rec``, chosen by the task)."""
    merged = {**(_to_plain(cfg) or {}), **fields}
    merged.pop("_target_", None)
    unknown = sorted(set(merged) - _TRACKER_FIELDS)
    if unknown:
        raise ValueError(f"tracking config: unknown field(s) {unknown}; known: {sorted(_TRACKER_FIELDS)}")
    backend = str(merged.pop("backend", "mlflow")).lower()
    if backend in ("none", "null", "off"):
        return NullTracker()
    if backend != "mlflow":
        raise ValueError(f"tracking.backend={backend!r}: expected mlflow or none")
    experiment = merged.pop("experiment", None) or default_experiment
    if not experiment:
        raise ValueError("tracking.experiment is not set and no default experiment was given")
    return MlflowTracker(experiment=experiment, **{k: v for k, v in merged.items() if v is not None})

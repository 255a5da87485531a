"""The lineage a model version carries, as MLflow version tags: one schema, read and written in one place.

Why tags (not params or a side file): version tags are what ``mlflow ui`` shows on the version page, what
``search_model_versions`` can filter on, and what the promotion gates read; keeping the key names here means
register, gates, show and compare can never disagree about them.

Keys (all values are strings, as MLflow stores them)::

    task                      det | rec
    data.train.digest / .size training data digest and number of samples
    data.eval.digest / .size  eval data digest and size the metrics of record were measured on
    data.eval.spec            FORMAT:PATH of that eval set (informational)
    charset.sha256            charset hash (rec; for det the bundled recogniser's)
    metric.<name>             metrics of record from export.evaluate (hmean/precision/recall or acc/...,
                              and latency_ms, the median per-image latency through the serving code)
    postprocess               JSON of the post-process parameters the metrics were measured with
    quantized                 yes | no
    fp32_parent_version       for INT8 children: the FP32 version they were quantised from
    git_sha, lib.<package>    code and library versions
    source_run_id             the MLflow run (training run when known) the model came from
    model_bytes               size of the inference directory
    rec_bundle                for det versions: which recogniser the served pipeline uses
    registration_id           unique id of the registration call (used to clean up a failed one)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = [
    "TASKS",
    "MAIN_METRIC",
    "TAG_TASK",
    "TAG_TRAIN_DIGEST",
    "TAG_TRAIN_SIZE",
    "TAG_EVAL_DIGEST",
    "TAG_EVAL_SIZE",
    "TAG_EVAL_SPEC",
    "TAG_CHARSET",
    "TAG_POSTPROCESS",
    "TAG_QUANTIZED",
    "TAG_FP32_PARENT",
    "TAG_GIT_SHA",
    "TAG_SOURCE_RUN",
    "TAG_MODEL_BYTES",
    "TAG_REC_BUNDLE",
    "TAG_REGISTRATION_ID",
    "METRIC_PREFIX",
    "LIB_PREFIX",
    "LATENCY_METRIC",
    "VersionInfo",
]

TASKS = ("det", "rec")
MAIN_METRIC = {"det": "hmean", "rec": "acc"}
LATENCY_METRIC = "latency_ms"

TAG_TASK = "task"
TAG_TRAIN_DIGEST = "data.train.digest"
TAG_TRAIN_SIZE = "data.train.size"
TAG_EVAL_DIGEST = "data.eval.digest"
TAG_EVAL_SIZE = "data.eval.size"
TAG_EVAL_SPEC = "data.eval.spec"
TAG_CHARSET = "charset.sha256"
TAG_POSTPROCESS = "postprocess"
TAG_QUANTIZED = "quantized"
TAG_FP32_PARENT = "fp32_parent_version"
TAG_GIT_SHA = "git_sha"
TAG_SOURCE_RUN = "source_run_id"
TAG_MODEL_BYTES = "model_bytes"
TAG_REC_BUNDLE = "rec_bundle"
TAG_REGISTRATION_ID = "registration_id"
METRIC_PREFIX = "metric."
LIB_PREFIX = "lib."


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class VersionInfo:
    """A model version as the gates and tables see it: identity, aliases and parsed lineage tags."""

    name: str
    version: str
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    run_id: str | None = None
    source: str | None = None
    model_id: str | None = None
    status: str | None = None
    created_ms: int | None = None

    @classmethod
    def from_model_version(cls, mv: Any) -> "VersionInfo":
        """Build from an ``mlflow.entities.model_registry.ModelVersion``."""
        return cls(
            name=mv.name,
            version=str(mv.version),
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", None) or ()),
            run_id=getattr(mv, "run_id", None),
            source=getattr(mv, "source", None),
            model_id=getattr(mv, "model_id", None),
            status=str(getattr(mv, "status", "") or "") or None,
            created_ms=getattr(mv, "creation_timestamp", None),
        )

    # ------------------------------------------------------------------ parsed views
    @property
    def task(self) -> str | None:
        return self.tags.get(TAG_TASK)

    @property
    def metrics(self) -> dict[str, float]:
        """``metric.*`` tags as floats (unparsable values are skipped)."""
        out: dict[str, float] = {}
        for key, value in self.tags.items():
            if key.startswith(METRIC_PREFIX):
                number = _float(value)
                if number is not None:
                    out[key[len(METRIC_PREFIX):]] = number
        return out

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)

    @property
    def main_metric_name(self) -> str | None:
        return MAIN_METRIC.get(self.task or "")

    @property
    def main_metric(self) -> float | None:
        name = self.main_metric_name
        return self.metric(name) if name else None

    @property
    def latency_ms(self) -> float | None:
        return self.metric(LATENCY_METRIC)

    @property
    def eval_digest(self) -> str | None:
        return self.tags.get(TAG_EVAL_DIGEST) or None

    @property
    def charset_sha256(self) -> str | None:
        return self.tags.get(TAG_CHARSET) or None

    @property
    def quantized(self) -> bool:
        return str(self.tags.get(TAG_QUANTIZED, "no")).lower() in ("yes", "true", "1")

    @property
    def postprocess(self) -> dict[str, Any]:
        try:
            value = json.loads(self.tags.get(TAG_POSTPROCESS, "{}"))
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def libraries(self) -> dict[str, str]:
        return {k[len(LIB_PREFIX):]: v for k, v in self.tags.items() if k.startswith(LIB_PREFIX)}

    @property
    def label(self) -> str:
        """``name vN`` for messages."""
        return f"{self.name} v{self.version}"

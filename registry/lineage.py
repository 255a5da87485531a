"""The lineage a model version carries, as MLflow version tags, parsed for the gates and tables.

Why tags (not params or a side file): version tags are what ``mlflow ui`` shows on the version page, what
``search_model_versions`` can filter on, and what the promotion gates read. The key names are defined once,
in :mod:`training.lineage` (training is the earliest stage that writes them); they are re-exported here so
register, gates, show and compare read the very names training wrote.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from training.lineage import (  # noqa: F401 -- re-exported: the one schema
    LATENCY_METRIC,
    LIB_PREFIX,
    MAIN_METRIC,
    METRIC_PREFIX,
    TAG_CHARSET,
    TAG_EVAL_DIGEST,
    TAG_EVAL_SIZE,
    TAG_EVAL_SPEC,
    TAG_FP32_PARENT,
    TAG_GIT_DIRTY,
    TAG_GIT_SHA,
    TAG_MODEL_ARCH,
    TAG_MODEL_BYTES,
    TAG_POSTPROCESS,
    TAG_QUANTIZED,
    TAG_REC_BUNDLE,
    TAG_REGISTRATION_ID,
    TAG_REGISTRY_GIT_SHA,
    TAG_SOURCE_RUN,
    TAG_TASK,
    TAG_TRAIN_DIGEST,
    TAG_TRAIN_SIZE,
    TAG_VAL_DIGEST,
    TAG_VAL_SIZE,
    TASKS,
)

__all__ = [
    "TASKS", "MAIN_METRIC", "TAG_TASK", "TAG_MODEL_ARCH", "TAG_TRAIN_DIGEST", "TAG_TRAIN_SIZE", "TAG_EVAL_DIGEST",
    "TAG_EVAL_SIZE", "TAG_EVAL_SPEC", "TAG_VAL_DIGEST", "TAG_VAL_SIZE", "TAG_CHARSET", "TAG_POSTPROCESS",
    "TAG_QUANTIZED", "TAG_FP32_PARENT", "TAG_GIT_SHA", "TAG_GIT_DIRTY", "TAG_REGISTRY_GIT_SHA", "TAG_SOURCE_RUN",
    "TAG_MODEL_BYTES", "TAG_REC_BUNDLE", "TAG_REGISTRATION_ID", "METRIC_PREFIX", "LIB_PREFIX", "LATENCY_METRIC",
    "VersionInfo",
]


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

"""Registry settings from ``conf/registry/default.yaml`` (or a Hydra ``registry`` group node) as typed data.

Why a typed object: gates, promote and the CLI all read thresholds and alias names; a dataclass with the
defaults spelled out makes a missing or misspelled key fail at load time with the key's name, not as a
``None`` deep inside a gate.

Usage::

    cfg = load_config()                          # conf/registry/default.yaml
    cfg = RegistryConfig.from_mapping(hydra_cfg.registry)
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["GateConfig", "LockConfig", "RegistryConfig", "default_config_path", "load_config"]


@dataclass(frozen=True)
class GateConfig:
    """Promotion gate thresholds (see the yaml for what each means)."""

    require_same_eval_digest: bool = True
    main_metric: Mapping[str, str] = field(default_factory=lambda: {"det": "hmean", "rec": "acc"})
    max_metric_drop: float = 0.005
    max_latency_increase_pct: float = 15.0
    require_charset_compatible: bool = True
    challenger_enforced: tuple[str, ...] = ("charset_compatible",)
    latency_mode: str = "side_by_side"   # or "recorded": compare the latency tags written at registration
    latency_rounds: int = 9              # interleaved timed rounds per model when measuring side by side

    def __post_init__(self) -> None:
        if self.latency_mode not in ("side_by_side", "recorded"):
            raise ValueError(f"registry.gates.latency_mode must be side_by_side or recorded, got {self.latency_mode!r}")
        if int(self.latency_rounds) < 1:
            raise ValueError(f"registry.gates.latency_rounds must be >= 1, got {self.latency_rounds!r}")


@dataclass(frozen=True)
class LockConfig:
    timeout_s: float = 60.0
    lease_s: float = 120.0


@dataclass(frozen=True)
class RetryConfig:
    """Retries of transient store errors, bounded in total by ``deadline_s`` (also the unreachable-server
    limit); ``http_*`` cap MLflow's own per-request retries (applied unless the MLFLOW_HTTP_* variables are set)."""

    attempts: int = 5
    backoff_s: float = 0.3
    deadline_s: float = 15.0
    http_timeout_s: float = 30.0
    http_max_retries: int = 1


@dataclass(frozen=True)
class Int8ReportConfig:
    """The INT8-vs-FP32 report after a QAT run (registry.after_training; options of
    export.int8.evaluate.compare_int8_fp32)."""

    enabled: bool = True
    batches: tuple[int, ...] = (1, 8)
    repeat: int = 10
    warmup: int = 2
    det_size: int = 640
    rec_width: int = 320


@dataclass(frozen=True)
class RegistryConfig:
    after_training: Mapping[str, Any] | None = None  # Hydra target the training runner calls
    register: bool = False
    int8_report: Int8ReportConfig = field(default_factory=Int8ReportConfig)
    tracking_uri: str | None = None
    names: Mapping[str, str] = field(default_factory=lambda: {"det": "ocr-det", "rec": "ocr-rec"})
    aliases: Mapping[str, str] = field(
        default_factory=lambda: {"champion": "champion", "challenger": "challenger", "previous": "previous-champion"})
    gates: GateConfig = field(default_factory=GateConfig)
    canary_fraction: float = 0.0
    serve_refresh_s: float = 30.0
    det_bundle_rec: str | None = "pretrained"
    lock: LockConfig = field(default_factory=LockConfig)
    retries: RetryConfig = field(default_factory=RetryConfig)

    @property
    def champion(self) -> str:
        return self.aliases["champion"]

    @property
    def challenger(self) -> str:
        return self.aliases["challenger"]

    @property
    def previous(self) -> str:
        return self.aliases["previous"]

    def name_for(self, task: str) -> str:
        try:
            return self.names[task]
        except KeyError:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(self.names)}") from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "RegistryConfig":
        """Build from a plain mapping or an OmegaConf node; unknown keys raise ``ValueError`` naming them."""
        if data is None:
            return cls()
        try:  # OmegaConf nodes → plain containers
            from omegaconf import DictConfig, OmegaConf

            if isinstance(data, DictConfig):
                data = OmegaConf.to_container(data, resolve=True)  # type: ignore[assignment]
        except ImportError:  # pragma: no cover - hydra is a dependency
            pass
        return _build(cls, dict(data), "registry")


def _build(klass: type, data: dict, where: str):
    known = {f.name: f for f in fields(klass)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    defaults = klass()
    for name, value in data.items():
        default = getattr(defaults, name)
        if is_dataclass(default) and isinstance(value, Mapping):
            value = _build(type(default), dict(value), f"{where}.{name}")
        elif isinstance(default, Mapping) and isinstance(value, Mapping):
            value = {**default, **value}
        elif isinstance(default, tuple) and isinstance(value, (list, tuple)):
            value = tuple(value)
        kwargs[name] = value
    return klass(**kwargs)


def default_config_path() -> Path:
    """``conf/registry/default.yaml`` next to the project's packages."""
    return Path(__file__).resolve().parent.parent / "conf" / "registry" / "default.yaml"


def load_config(path: str | Path | None = None) -> RegistryConfig:
    """Read the registry yaml (default: ``conf/registry/default.yaml``; missing default → built-in values)."""
    import yaml

    target = Path(path) if path else default_config_path()
    if not target.is_file():
        if path:
            raise FileNotFoundError(f"{target}: registry config not found")
        return RegistryConfig()
    data = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{target}: expected a mapping at the top level")
    return RegistryConfig.from_mapping(data)

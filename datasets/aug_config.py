"""Config plumbing shared by the augmentation builders (:mod:`datasets.det_aug`, :mod:`datasets.rec_aug`).

Why: both builders accept the same shapes of input (a plain mapping from YAML, Hydra's OmegaConf containers,
or keyword arguments from ``hydra.utils.instantiate``) and must reject typos loudly instead of silently
training with defaults."""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["plain", "merge_config", "symmetric_range"]


def plain(value: Any) -> Any:
    """OmegaConf containers (from Hydra) → plain dict/list, so the builders accept either."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [plain(v) for v in value]
    return value


def merge_config(defaults: Mapping[str, Any], cfg: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """Defaults overlaid with ``cfg`` one section deep. ``_target_`` is skipped; unknown keys raise
    ``KeyError`` naming ``what``; a section set to ``None`` stays ``None`` (= off)."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in defaults.items()}
    for key, value in (cfg or {}).items():
        if key == "_target_":
            continue
        if key not in defaults:
            raise KeyError(f"unknown {what} augmentation key {key!r}; known: {sorted(defaults)}")
        if isinstance(defaults[key], Mapping) and isinstance(value, Mapping):
            unknown = set(value) - set(defaults[key])
            if unknown:
                raise KeyError(f"unknown keys {sorted(unknown)} in {what} augmentation section {key!r}; "
                               f"known: {sorted(defaults[key])}")
            out[key] = {**defaults[key], **value}
        else:
            out[key] = value
    return out


def symmetric_range(value: Any) -> tuple[float, float]:
    """``10`` → ``(-10.0, 10.0)``; ``[a, b]`` → ``(a, b)``."""
    if isinstance(value, (int, float)):
        return (-float(value), float(value))
    lo, hi = value
    return float(lo), float(hi)

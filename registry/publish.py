"""After a training run with ``registry.register=true``: export the best checkpoint and register it.

This lives in the registry stage (which may import export and training) so that stages still flow one way;
the training runner reaches it by name (``hydra.utils.get_method``) only when the config asks for it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

__all__ = ["after_training"]

log = logging.getLogger(__name__)


def after_training(cfg: DictConfig, task: str, summary: Mapping[str, Any], train_data: Any, eval_data: Any) -> dict:
    """Export ``summary['best_checkpoint']`` to ``<run_dir>/export`` and register it with lineage.

    The metrics of record come from ``export.evaluate`` on the run's eval split through the serving code,
    not from the training-time eval, so the registry compares what would actually be deployed."""
    from export.jit_export import export_model
    from registry.config import RegistryConfig
    from registry.register import register_model

    checkpoint = summary.get("best_checkpoint") or summary.get("latest_checkpoint")
    if not checkpoint:
        raise RuntimeError("registry.register=true but the run produced no checkpoint")
    out_dir = Path(summary["run_dir"]) / "export"
    export = export_model(task, checkpoint, out_dir)
    log.info("exported %s → %s (parity max|Δ| %s)", checkpoint, out_dir, export.parity.get("max_abs_diff"))
    reg_cfg = OmegaConf.to_container(cfg.registry, resolve=True)
    if not reg_cfg.get("tracking_uri") and cfg.tracking.get("tracking_uri"):
        reg_cfg["tracking_uri"] = cfg.tracking.tracking_uri  # one store for runs and versions
    result = register_model(
        task, out_dir, eval_data=f"{eval_data.format}:{eval_data.path}",
        source_run_id=summary.get("tracking_run_id"), train_digest=train_data.digest["digest"],
        train_size=len(train_data.samples), cfg=RegistryConfig.from_mapping(reg_cfg))
    info = {"registered_model": result.name, "version": result.version, "export_dir": str(out_dir)}
    log.info("registered %s version %s", result.name, result.version)
    return info

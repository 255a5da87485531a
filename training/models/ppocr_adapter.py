"""The one place that touches ``unstructured_paddleocr.ppocr`` (PaddleOCR 2.10's modelling code).

Everything else builds models through :mod:`training.models.zoo`; if the source of the architectures ever
changes (another repackaging, our own modules), only this file changes.
"""
from __future__ import annotations

import copy
import logging
import warnings

from datasets.runtime import ensure_ppocr_on_path

__all__ = ["build_ppocr_model", "ppocr_module", "to_deploy_form", "is_deploy_form"]

log = logging.getLogger(__name__)

# Paddle's BatchNorm warns on every first training-mode forward that it "always tracks global mean and
# variance" (its documented behaviour, nothing to act on); the line broke the first progress line. Every model
# we train is built through this module, so the filter lives here, for that one message only.
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance",
                        category=UserWarning)


def ppocr_module(dotted: str):
    """Import ``ppocr.<dotted>`` after putting the package folder on ``sys.path`` (its modules import each
    other as top-level ``ppocr``)."""
    import importlib

    ensure_ppocr_on_path()
    _quiet_ppocr_logger()
    return importlib.import_module(f"ppocr.{dotted}")


def _quiet_ppocr_logger() -> None:
    """PaddleOCR's logger writes to **stdout** and, on import, warns that AIStudio's optional encryption module
    is absent — before our result JSON, so ``… | jq`` failed. Create that logger ourselves first (its
    ``get_logger`` returns an existing one unchanged), point it at stderr and keep errors only."""
    import sys

    from ppocr.utils.logging import get_logger

    logger = get_logger()
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)
    logger.setLevel(logging.ERROR)


def build_ppocr_model(architecture: dict):
    """PaddleOCR ``Architecture`` dict → ``BaseModel`` (backbone/neck/head)."""
    return ppocr_module("modeling.architectures").build_model(copy.deepcopy(architecture))


def _rep_layers(model):
    return [layer for layer in model.sublayers(include_self=True) if hasattr(layer, "rep") and hasattr(layer, "is_repped")]


def is_deploy_form(model) -> bool:
    """True when the re-parameterisable backbone layers hold one fused conv each (as exported models do)."""
    layers = _rep_layers(model)
    return bool(layers) and all(layer.is_repped for layer in layers)


def to_deploy_form(model, *, drop_branches: bool = True):
    """Fuse every learnable-rep layer's branches into one conv (PP-OCRv4's ``rep()``), in place.

    With ``drop_branches`` the now-unused branch sub-layers are removed, so ``state_dict`` keys match the
    exported inference files and the optimizer does not carry gradient-less parameters. Training in this
    form starts exactly from the shipped inference weights and avoids the multi-branch depthwise convs that
    dominate step time on CPU (STACK.md item 8)."""
    for layer in _rep_layers(model):
        layer.rep()
        if drop_branches:
            for name in ("identity", "conv_kxk", "conv_1x1"):
                if name in layer._sub_layers:
                    del layer._sub_layers[name]
                object.__setattr__(layer, name, None)
            if "id_tensor" in layer.__dict__ or "id_tensor" in getattr(layer, "_buffers", {}):
                layer.__dict__.pop("id_tensor", None)
                getattr(layer, "_buffers", {}).pop("id_tensor", None)
    return model

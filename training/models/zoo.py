"""Architectures by name (``model.arch``), each a PaddleOCR ``Architecture`` dict plus our adjustments.

========================  =====  ==========================================================================
name                      task   what
========================  =====  ==========================================================================
``ppocrv4_mobile_det``    det    PPLCNetV3 ×0.75 + RSEFPN(96, shortcut) + DBHead(k=50) — PP-OCRv4 mobile det
``mobilenetv3_db``        det    MobileNetV3-large ×0.5 + DBFPN(256) + DBHead(k=50) — the classic DB mobile
``ppocrv4_mobile_rec``    rec    PPLCNetV3 ×0.95 + SVTR neck (120, depth 2, kernel 1×3) + CTC — PP-OCRv4 rec
``svtr_tiny_rec``         rec    SVTR-Tiny backbone (pure transformer, fixed 48×320 input) + CTC
``ppocrv5_mobile_det``    det    PP-OCRv5 mobile det: the PP-OCRv4 mobile det architecture, new weights
``ppocrv5_mobile_rec``    rec    PP-OCRv5 mobile rec (PaddleOCR ``PP-OCRv5_mobile_rec.yml``, CTC branch)
========================  =====  ==========================================================================
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from paddle import nn

from training.models.heads import CTCOnlyHead
from training.models.ppocr_adapter import build_ppocr_model

__all__ = ["ARCHS", "build_model", "arch_task"]


def _ppocrv4_mobile_det(cfg: Mapping[str, Any]) -> nn.Layer:
    return build_ppocr_model({
        "model_type": "det", "algorithm": "DB", "Transform": None,
        "Backbone": {"name": "PPLCNetV3", "scale": 0.75, "det": True},
        "Neck": {"name": "RSEFPN", "out_channels": 96, "shortcut": True},
        "Head": {"name": "DBHead", "k": int(cfg.get("db_k", 50))},
    })


def _mobilenetv3_db(cfg: Mapping[str, Any]) -> nn.Layer:
    return build_ppocr_model({
        "model_type": "det", "algorithm": "DB", "Transform": None,
        "Backbone": {"name": "MobileNetV3", "scale": float(cfg.get("scale", 0.5)), "model_name": "large",
                     "disable_se": bool(cfg.get("disable_se", False))},
        "Neck": {"name": "DBFPN", "out_channels": int(cfg.get("neck_channels", 256))},
        "Head": {"name": "DBHead", "k": int(cfg.get("db_k", 50))},
    })


def _ppocrv4_mobile_rec(cfg: Mapping[str, Any]) -> nn.Layer:
    num_classes = int(cfg["num_classes"])
    model = build_ppocr_model({
        "model_type": "rec", "algorithm": "SVTR_LCNet", "Transform": None,
        "Backbone": {"name": "PPLCNetV3", "scale": 0.95},
        "Head": {"name": "CTCHead", "out_channels": num_classes},  # replaced below
    })
    neck = {"name": "svtr", "dims": 120, "depth": 2, "hidden_dims": 120, "kernel_size": [1, 3]}
    model.head = CTCOnlyHead(model.backbone.out_channels, num_classes, neck)
    return model


def _svtr_tiny_rec(cfg: Mapping[str, Any]) -> nn.Layer:
    width = int(cfg.get("fixed_width", 320))
    return build_ppocr_model({
        "model_type": "rec", "algorithm": "SVTR", "Transform": None,
        "Backbone": {"name": "SVTRNet", "img_size": [48, width], "out_char_num": width // 8, "out_channels": 192,
                     "patch_merging": "Conv", "embed_dim": [64, 128, 256], "depth": [3, 6, 3],
                     "num_heads": [2, 4, 8], "mixer": ["Local"] * 6 + ["Global"] * 6,
                     "local_mixer": [[7, 11], [7, 11], [7, 11]], "last_stage": True, "prenorm": False},
        "Neck": {"name": "SequenceEncoder", "encoder_type": "reshape"},
        "Head": {"name": "CTCHead", "out_channels": int(cfg["num_classes"])},
    })


def _ppocrv5_mobile_rec(cfg: Mapping[str, Any]) -> nn.Layer:
    """PP-OCRv5 mobile rec as its inference file stores it: PPLCNetV3 ×0.95, SVTR neck, CTC fc 120×classes.
    The NRTR guide head of the training config is not exported, so it is not built (GTC is not trained).

    Built without a placeholder head (unlike the v4 builder): a throw-away CTCHead would take the unique name
    ``linear_0`` and shift every SVTR-neck name against the official file, which is matched by those names."""
    num_classes = int(cfg["num_classes"])
    model = build_ppocr_model({
        "model_type": "rec", "algorithm": "SVTR_LCNet", "Transform": None,
        "Backbone": {"name": "PPLCNetV3", "scale": 0.95}, "Head": None,
    })
    neck = {"name": "svtr", "dims": 120, "depth": 2, "hidden_dims": 120, "kernel_size": [1, 3]}
    model.head = CTCOnlyHead(model.backbone.out_channels, num_classes, neck)
    model.use_head = True
    return model


ARCHS: dict[str, tuple[str, Callable[[Mapping[str, Any]], nn.Layer]]] = {
    "ppocrv4_mobile_det": ("det", _ppocrv4_mobile_det),
    "mobilenetv3_db": ("det", _mobilenetv3_db),
    "ppocrv4_mobile_rec": ("rec", _ppocrv4_mobile_rec),
    "svtr_tiny_rec": ("rec", _svtr_tiny_rec),
    "ppocrv5_mobile_det": ("det", _ppocrv4_mobile_det),
    "ppocrv5_mobile_rec": ("rec", _ppocrv5_mobile_rec),
}


def arch_task(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"unknown model.arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch][0]


def build_model(model_cfg: Mapping[str, Any]) -> nn.Layer:
    """Build the network named by ``model_cfg['arch']`` (rec archs need ``num_classes``).

    With ``backbone_form: deploy`` (default) the PP-OCRv4 learnable-rep layers are fused right away, the form
    the shipped weights are stored in; ``train`` keeps PaddleOCR's multi-branch training form."""
    from training.models.ppocr_adapter import to_deploy_form

    arch = model_cfg.get("arch")
    task = arch_task(arch)
    if task == "rec" and not model_cfg.get("num_classes"):
        raise ValueError(f"model.arch={arch} needs num_classes (charset size + 1 for the CTC blank)")
    model = ARCHS[arch][1](model_cfg)
    form = model_cfg.get("backbone_form", "deploy")
    if form not in ("deploy", "train"):
        raise ValueError(f"model.backbone_form must be 'deploy' or 'train', got {form!r}")
    if form == "deploy":
        to_deploy_form(model)
    return model

"""Exact graph rewrites that make PP-OCRv4's backbone friendlier to oneDNN INT8 (``quant.fold_affine``).

Why: PPLCNetV3 (PP-OCRv4 det and rec) follows every conv with a *learnable affine block* (LAB, ``s·x + t`` with
scalar ``s``/``t``) and every activation with another one. In the saved program these are
``elementwise_mul`` + ``elementwise_add`` ops that oneDNN runs in FP32, so every INT8 conv has to dequantize
its output, run the LAB (and hardswish) in FP32 and quantize again for the next conv — the INT8 gain is eaten
by the round trips (PP-OCRv4 det measured ≈1× on an AVX2 CPU, STACK.md item 6). Two folds are exact:

* the LAB right after a conv: ``s·(W∗x + b) + t = (s·W)∗x + (s·b + t)``; the conv is then followed directly by
  hardswish, which oneDNN fuses into the INT8 conv as a post-op;
* the activation's LAB in a block *without* SE, into the following 1×1 pointwise conv (no padding, so the
  constant ``t`` passes through exactly): ``W∗(s·a + t) + b = (s·W)∗a + (b + t·ΣW)``.

The activation LAB before a padded depthwise conv (or before an SE block) cannot be folded exactly (zero
padding would see ``t`` at the border) and stays.

Fold on the FP32 deploy-form model with the parent weights loaded, *before* QAT wraps it; the output is
unchanged to float rounding. The folded network has different state keys (no ``…lab.*``), which is why
``fold_affine`` is a structural QAT field recorded in checkpoints.
"""
from __future__ import annotations

import logging

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle
from paddle import nn

__all__ = ["fold_affine_blocks", "count_affine_blocks", "fold_affine_into_padded_dw"]

log = logging.getLogger(__name__)


def _is_lab(layer) -> bool:
    return type(layer).__name__ == "LearnableAffineBlock"


def _scalars(lab) -> tuple[float, float]:
    return float(lab.scale.numpy().reshape(-1)[0]), float(lab.bias.numpy().reshape(-1)[0])


def count_affine_blocks(model: nn.Layer) -> int:
    """Learnable affine blocks left in ``model`` (each one is an FP32 mul+add in the INT8 program)."""
    return sum(_is_lab(layer) for layer in model.sublayers())


@paddle.no_grad()
def _fold_input_affine(conv: nn.Conv2D, scale: float, shift: float) -> None:
    """``conv(s·a + t)`` → ``conv'(a)`` for an unpadded, ungrouped conv."""
    w = conv.weight
    if conv.bias is None:
        raise ValueError("cannot fold an input affine into a conv without bias")
    conv.bias.set_value(conv.bias + shift * w.sum(axis=[1, 2, 3]))
    conv.weight.set_value(w * scale)


@paddle.no_grad()
def _fold_output_affine(conv: nn.Conv2D, scale: float, shift: float) -> None:
    """``s·conv(x) + t`` → ``conv'(x)``."""
    conv.weight.set_value(conv.weight * scale)
    conv.bias.set_value(conv.bias * scale + shift)


def fold_affine_blocks(model: nn.Layer) -> list[str]:
    """Fold every exactly-foldable LAB of a deploy-form PP-OCRv4 model into its conv, in place.

    Returns the names of the removed LABs (empty for models without them, e.g. MobileNetV3-DB). Refuses a
    training-form backbone: its LAB follows a sum of branches, fuse them first (``to_deploy_form``)."""
    folded: list[str] = []
    layers = dict(model.named_sublayers())
    # 1) activation LAB of a dw conv → the following 1×1 pw conv (blocks without SE)
    for name, block in layers.items():
        if type(block).__name__ != "LCNetV3Block" or getattr(block, "use_se", True):
            continue
        dw, pw = block.dw_conv, block.pw_conv
        if not (getattr(dw, "is_repped", False) and getattr(pw, "is_repped", False)):
            raise ValueError(f"{name}: fold_affine needs the deploy form (model.backbone_form=deploy)")
        if dw.stride == 2 or not _is_lab(getattr(dw.act, "lab", None)):
            continue  # stride-2 layers have no activation (PaddleOCR skips it)
        conv = pw.reparam_conv
        if conv._kernel_size != [1, 1] or conv._groups != 1 or any(p != 0 for p in _padding(conv)):
            continue
        _fold_input_affine(conv, *_scalars(dw.act.lab))
        dw.act.lab = nn.Identity()
        folded.append(f"{name}.dw_conv.act.lab")
    # 2) the LAB right after each fused conv
    for name, layer in layers.items():
        if type(layer).__name__ != "LearnableRepLayer":
            continue
        if not getattr(layer, "is_repped", False):
            raise ValueError(f"{name}: fold_affine needs the deploy form (model.backbone_form=deploy)")
        if not _is_lab(getattr(layer, "lab", None)):
            continue
        _fold_output_affine(layer.reparam_conv, *_scalars(layer.lab))
        layer.lab = nn.Identity()
        folded.append(f"{name}.lab")
    if folded:
        log.info("fold_affine: %d learnable affine blocks folded into convs, %d left", len(folded),
                 count_affine_blocks(model))
    return folded


def _padding(conv: nn.Conv2D) -> list[int]:
    pad = conv._padding
    if isinstance(pad, int):
        return [pad]
    if isinstance(pad, str):
        return [0] if pad.upper() == "VALID" else [1]
    return [int(p) for p in (pad if not isinstance(pad[0], (list, tuple)) else [q for pair in pad for q in pair])]


# --------------------------------------------------------------------------------------------- padded (approximate)
def _backbone_blocks(model: nn.Layer) -> list[tuple[str, nn.Layer, bool]]:
    """PPLCNetV3 blocks in execution order as ``(name, block, output_is_a_tap)``: a det backbone hands the
    last block of stages 3–6 to the neck too, so that output must keep its value."""
    backbone = getattr(model, "backbone", None)
    out: list[tuple[str, nn.Layer, bool]] = []
    for stage in ("blocks2", "blocks3", "blocks4", "blocks5", "blocks6"):
        blocks = list(getattr(backbone, stage, None) or [])
        for i, block in enumerate(blocks):
            tap = bool(getattr(backbone, "det", False)) and stage != "blocks2" and i == len(blocks) - 1
            out.append((f"backbone.{stage}.{i}", block, tap))
    return out


def fold_affine_into_padded_dw(model: nn.Layer) -> list[str]:
    """Fold the activation LAB that feeds the *next* block's padded depthwise conv into that conv, in place
    (``quant.fold_affine_padded``; run after :func:`fold_affine_blocks`).

    Why: these are the LABs the exact fold must leave (PP-OCRv4 det: 10, rec: 12), and each one costs an INT8
    → FP32 → INT8 round trip per block in the oneDNN program (conv with FP32 output, FP32 mul and add, quantize)
    — about 40 % of the INT8 det time (``ONEDNN_VERBOSE``, RESULTS section 4). Folded, the pointwise conv feeds
    the depthwise conv in INT8 directly.

    Not exact: ``W∗pad0(s·a + t) = (s·W)∗pad0(a) + t·ΣW`` holds away from the border; on the ``k//2``-pixel
    border ring the zero padding now stands for ``t`` instead of 0. QAT fine-tunes the folded network, so the
    saved INT8 program and the dygraph fake-quant model still compute the same function; what it costs against
    the unfolded FP32 parent is the accuracy of record. Block outputs the det neck also reads are left alone."""
    blocks = _backbone_blocks(model)
    folded: list[str] = []
    for (name, block, tap), (next_name, nxt, _) in zip(blocks, blocks[1:]):
        lab = getattr(getattr(block.pw_conv, "act", None), "lab", None)
        if tap or not _is_lab(lab):
            continue
        conv = getattr(nxt.dw_conv, "reparam_conv", None)
        if conv is None or not getattr(nxt.dw_conv, "is_repped", False) or conv.bias is None:
            raise ValueError(f"{next_name}: fold_affine_padded needs the deploy form (model.backbone_form=deploy)")
        scale, shift = _scalars(lab)
        with paddle.no_grad():
            conv.bias.set_value(conv.bias + shift * conv.weight.sum(axis=[1, 2, 3]))
            conv.weight.set_value(conv.weight * scale)
        block.pw_conv.act.lab = nn.Identity()
        folded.append(f"{name}.pw_conv.act.lab")
    if folded:
        log.info("fold_affine_padded: %d activation affine blocks folded into the next depthwise conv "
                 "(approximate on the border ring)", len(folded))
    return folded

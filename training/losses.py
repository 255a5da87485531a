"""Losses, through the model adapter: DB loss for the detector, CTC for the recogniser.

The formulas are PaddleOCR's (``ppocr.losses``), so a model fine-tuned here optimises what the shipped weights
were trained on. These wrappers only translate our named batch fields into the positional layout those
classes expect, so the rest of the code never depends on that layout.
"""
from __future__ import annotations

from typing import Mapping

import paddle
from paddle import nn

from training.models.ppocr_adapter import ppocr_module

__all__ = ["DetLoss", "CTCRecLoss", "build_loss"]


class DetLoss(nn.Layer):
    """DB loss: α·BCE(shrink, OHEM 3:1) + β·L1(threshold) + Dice(binary); α=5, β=10 as in the DB paper."""

    def __init__(self, alpha: float = 5.0, beta: float = 10.0, ohem_ratio: float = 3.0):
        super().__init__()
        self.inner = ppocr_module("losses.det_db_loss").DBLoss(alpha=alpha, beta=beta, ohem_ratio=ohem_ratio,
                                                               balance_loss=True, main_loss_type="DiceLoss")

    def forward(self, outputs: Mapping[str, paddle.Tensor], batch: Mapping[str, paddle.Tensor]) -> dict:
        labels = [batch["image"], batch["threshold_map"], batch["threshold_mask"], batch["shrink_map"], batch["shrink_mask"]]
        losses = self.inner(outputs, labels)
        losses.pop("loss_cbn", None)
        return losses


class CTCRecLoss(nn.Layer):
    """CTC over the head's per-step logits (blank = 0); optional focal weighting."""

    def __init__(self, use_focal_loss: bool = False):
        super().__init__()
        self.inner = ppocr_module("losses.rec_ctc_loss").CTCLoss(use_focal_loss=use_focal_loss)

    def forward(self, outputs: paddle.Tensor, batch: Mapping[str, paddle.Tensor]) -> dict:
        return self.inner(outputs, [batch["image"], batch["label"], batch["length"]])


def build_loss(task: str, cfg: Mapping | None = None) -> nn.Layer:
    cfg = dict(cfg or {})
    if task == "det":
        return DetLoss(**cfg)
    if task == "rec":
        return CTCRecLoss(**cfg)
    raise ValueError(f"unknown task {task!r}")

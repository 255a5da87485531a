"""Recogniser heads we need beyond PaddleOCR's, and CTC head surgery for charset changes."""
from __future__ import annotations

import logging

import numpy as np
import paddle
from paddle import nn

from training.models.ppocr_adapter import ppocr_module

__all__ = ["CTCOnlyHead", "remap_ctc_head", "ctc_head_classes"]

log = logging.getLogger(__name__)


class CTCOnlyHead(nn.Layer):
    """PP-OCRv4's ``MultiHead`` minus the GTC (NRTR) branch.

    Parameter names (``head.ctc_encoder.*``, ``head.ctc_head.*``) are identical to MultiHead's, so the
    shipped weights load unchanged. PaddleOCR's MultiHead always runs the GTC branch in training and needs its
    targets; for CTC-only fine-tuning that branch is dead weight. ``use_guide`` must be False here: with it,
    the SVTR neck input is detached and a CTC-only loss would give the backbone no gradient (STACK.md trap 4).
    """

    def __init__(self, in_channels: int, num_classes: int, neck: dict, fc_decay: float = 1e-5):
        super().__init__()
        heads = ppocr_module("modeling.heads.rec_multi_head")
        neck = dict(neck)
        encoder_type = neck.pop("name")
        neck["use_guide"] = False
        self.ctc_encoder = heads.SequenceEncoder(in_channels=in_channels, encoder_type=encoder_type, **neck)
        self.ctc_head = heads.CTCHead(in_channels=self.ctc_encoder.out_channels, out_channels=num_classes,
                                      fc_decay=fc_decay)

    def forward(self, x, targets=None):
        return self.ctc_head(self.ctc_encoder(x), targets)


def _find_ctc_fc(model) -> tuple[str, nn.Linear]:
    for name, layer in model.named_sublayers():
        if name.endswith("ctc_head.fc") or name == "head.fc":
            return name, layer
    raise ValueError("model has no CTC fc layer (expected '...ctc_head.fc' or 'head.fc')")


def ctc_head_classes(model) -> int:
    """Output classes of the model's CTC head (blank + characters)."""
    return int(_find_ctc_fc(model)[1].weight.shape[1])


def remap_ctc_head(weight: np.ndarray, bias: np.ndarray, mapping: dict[int, int], num_classes: int,
                   init_weight: np.ndarray, init_bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copy rows of an old CTC fc (Paddle Linear weight is [in, out]) into a new one.

    ``mapping`` is new class id → old class id (from :meth:`Charset.mapping_from`); classes without an old
    counterpart start as the average trained class (``init_*`` give shapes and dtypes). This is what lets a
    charset grow by a few characters without throwing the trained head away."""
    if init_weight.shape[1] != num_classes:
        raise ValueError(f"fresh head has {init_weight.shape[1]} classes, expected {num_classes}")
    # New classes start as the *average* trained class (mean weight column and bias): their logit is then the
    # mean of all class logits on every frame, far below the winner, so the extended model decodes like the old
    # one until training moves the new rows. Random rows out-voted trained ones (accuracy on old characters fell
    # from 0.60 to 0.03 in our experiment), and a constant-logit row did too: logits are not centred.
    new_w = np.repeat(weight.mean(axis=1, keepdims=True), num_classes, axis=1).astype(init_weight.dtype)
    new_b = np.full_like(init_bias, float(bias.mean()))
    for new_id, old_id in mapping.items():
        new_w[:, new_id] = weight[:, old_id]
        new_b[new_id] = bias[old_id]
    return new_w, new_b


def fresh_param_like(param: paddle.Tensor) -> np.ndarray:
    return param.numpy().copy()

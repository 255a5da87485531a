"""CPU speed-ups that keep the math: a cheaper conv-bias add for Paddle 2.6 dygraph on CPU.

Measured in bench/RESULTS.md; ``OCR_CPU_TUNING=none`` turns it off (``datasets.runtime.cpu_tuning_enabled``).
"""
from __future__ import annotations

import types

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle

__all__ = ["fast_conv_bias"]


def _conv_bias_nc11_forward(self: paddle.nn.Conv2D, x: paddle.Tensor) -> paddle.Tensor:
    """``nn.Conv2D.forward`` with the bias added as ``[C, 1, 1]`` instead of Paddle's ``[1, C, 1, 1]``."""
    if not paddle.in_dynamic_mode():  # to_static / jit.save: trace the stock layer, exported programs unchanged
        return type(self).forward(self, x)
    out = paddle.nn.functional.conv._conv_nd(
        x, self.weight, bias=None, stride=self._stride, padding=self._updated_padding,
        padding_algorithm=self._padding_algorithm, dilation=self._dilation, groups=self._groups,
        data_format=self._data_format, channel_dim=self._channel_dim, op_type=self._op_type,
        use_cudnn=self._use_cudnn)
    return out + self.bias.reshape([-1, 1, 1])


def fast_conv_bias(model: paddle.nn.Layer) -> int:
    """Route every biased NCHW ``nn.Conv2D`` of ``model`` through a cheaper bias add (same values); returns how
    many layers were switched. Idempotent; parameters and ``state_dict`` are untouched.

    Why: in dygraph Paddle 2.6 adds a conv bias reshaped to ``[1, C, 1, 1]``, which its CPU elementwise kernels
    treat as a general broadcast: forward and backward of that add cost ~3× a ``[C, 1, 1]`` add (25+34 ms vs
    9+11 ms on 8×96×80×80). PP-OCRv4's deploy form has a biased conv in every fused rep layer (52 in det, 32
    in rec); with the other CPU speed-ups on, this saved 12–16 % of a training step here (bench/RESULTS.md)."""
    switched = 0
    for layer in model.sublayers(include_self=True):
        if (type(layer) is paddle.nn.Conv2D and layer.bias is not None and layer._data_format == "NCHW"
                and layer._padding_mode == "zeros" and "forward" not in layer.__dict__):
            layer.forward = types.MethodType(_conv_bias_nc11_forward, layer)
            switched += 1
    return switched

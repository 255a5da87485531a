"""INT8 export of a model with Linear layers agrees with its fake-quant model (issue 17, PP-OCRv4 rec PTQ).

The pattern that broke PP-OCRv4 rec: the SVTR neck's Linear layers, quantized per output channel. Paddle 2.6's
oneDNN INT8 passes take output channel c's weight scale from the c-th run of ``in`` consecutive elements of
the row-major [in, out] weight instead of from column c (so channels whose column max exceeds that run's max
are clipped, and an all-zero run gives scale inf: the channel outputs only its bias), and dequantize a square
[n, n] weight along the wrong axis. :func:`export.int8.save.linear_layers_to_fp32` stores the fake-quantized
weight in FP32 and drops the layer's input quantization, so the fc runs in FP32 with the weights fake quant
used.

The tiny net below makes both bugs bite: rows of its first weight differ by 1000× (an input feature with tiny
weights gives runs whose max is far below their columns' max), and its second Linear is square."""
from __future__ import annotations

import numpy as np
import paddle
import pytest
from paddle import nn

from training.quant import QuantConfig, calibrate_observers, quantize_model

IN, HID = 16, 48


class _TwoLinear(nn.Layer):
    """[N, T, 16] → Linear(16, 48) → GELU → Linear(48, 48): an SVTR attention/MLP projection in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(IN, HID)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(HID, HID)
        with paddle.no_grad():
            w = self.fc1.weight.numpy()
            w[::2] *= 1e-3  # every other input feature has tiny weights: whole 16-element runs quantize to 0
            self.fc1.weight.set_value(w)
            w2 = self.fc2.weight.numpy()
            w2 *= np.geomspace(0.05, 5.0, HID, dtype=np.float32)[:, None]  # square, rows of very different size
            self.fc2.weight.set_value(w2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _batches(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.standard_normal((2, 10, IN)).astype(np.float32) for _ in range(n)]


def _saved(tmp_path, monkeypatch=None):
    """(fake-quant output, INT8 output, save report) for the calibrated tiny net."""
    from export.int8.runtime import Int8Engine
    from export.int8.save import save_int8_inference

    paddle.seed(0)
    net = _TwoLinear()
    net.eval()
    qat, net = quantize_model(net, QuantConfig.from_mapping({"enabled": True, "skip": [], "fold_affine": False}))
    calibrate_observers(net, _batches(4))
    net.eval()
    report = save_int8_inference(qat, net, tmp_path / "inference",
                                 [paddle.static.InputSpec([None, None, IN], "float32", "x")])
    x = _batches(6)[-1]
    with paddle.no_grad():
        fake = net(paddle.to_tensor(x)).numpy()
    int8 = Int8Engine(tmp_path, num_threads=1).run(x)[0]
    return fake, int8, report


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean() / np.abs(b).mean())


def test_linear_layers_match_fake_quant_in_the_int8_runtime(tmp_path):
    fake, int8, report = _saved(tmp_path)
    assert report["program_rewrites"]["linear_fp32"] == 2
    # no channel may collapse to its bias or be clipped: compare each output channel's spread
    # measured 0.015 (the fc input is no longer quantized); 0.86 without the rewrite
    assert _rel(int8, fake) < 0.03, f"INT8 vs fake-quant mean relative |Δ| {_rel(int8, fake):.4f}"
    spread = np.abs(int8 - fake).mean(axis=(0, 1)) / (np.abs(fake).mean(axis=(0, 1)) + 1e-6)
    assert spread.max() < 0.1, f"worst channel {int(spread.argmax())}: relative |Δ| {spread.max():.3f}"


def test_the_tiny_net_reproduces_the_onednn_linear_bug(tmp_path, monkeypatch):
    """Without the rewrite the same net disagrees badly (measured: relative |Δ| 0.86 vs 0.015 with it), so the
    test above exercises the bug. If a Paddle upgrade fixes its passes this test fails: then the rewrite may go."""
    import export.int8.save as save

    monkeypatch.setattr(save, "linear_layers_to_fp32", lambda prefix: 0)
    fake, int8, _ = _saved(tmp_path)
    assert _rel(int8, fake) > 0.1, f"expected the unpatched INT8 program to be wrong, got {_rel(int8, fake):.4f}"

"""Per-layer quantization sensitivity (export/int8/sensitivity.py) on the real PP-OCRv4 recogniser.

A layer is broken on purpose so that only its *quantization* hurts: one hidden unit of an SVTR MLP gets a huge
activation (fc1 bias) that fc2 ignores in FP32 (its weight row is zero). fc2's per-tensor input scale then
spans that outlier, every ordinary activation rounds to zero, and fc2 quantized alone wrecks the output while
the FP32 output is unchanged. The tool must rank it first and keep it FP32 in the suggested skip list."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BROKEN = "head.ctc_encoder.encoder.svtr_block.0.mlp.fc2"


def _lines(line_image) -> list[np.ndarray]:
    from datasets.resize import rec_resize_norm

    texts = ["增值税发票 金额 ¥1234.56", "Total 88.00 USD", "开票日期 2024年05月18日", "发票代码 044031900111"]
    return [np.stack([rec_resize_norm(line_image(t), 48, 320) for t in texts]).astype(np.float32)]


def _break_fc2(model) -> None:
    import paddle

    by_name = dict(model.named_sublayers())
    fc1, fc2 = by_name[BROKEN.replace("fc2", "fc1")], by_name[BROKEN]
    bias = fc1.bias.numpy()
    bias[0] = 1e4
    fc1.bias.set_value(paddle.to_tensor(bias))
    weight = fc2.weight.numpy()  # Paddle Linear: [in, out]
    weight[0, :] = 0.0
    fc2.weight.set_value(paddle.to_tensor(weight))


# slow (≈ 55 s: one forward per quantizable layer of the real recogniser); the CLI test below stays in the default suite
@pytest.mark.slow
def test_a_layer_whose_quantization_breaks_the_output_ranks_first_and_is_skipped(line_image):
    from export.int8.sensitivity import analyse, output_loss, _outputs
    from export.jit_export import load_source_model

    model, *_ = load_source_model("rec", "ppocrv4_mobile")
    batches = _lines(line_image)
    before = _outputs(model, batches)
    _break_fc2(model)
    assert output_loss("rec", before, _outputs(model, batches))["loss"] < 1e-3  # FP32 (nearly) unchanged by the break

    result = analyse("rec", model, batches, max_skip=3)
    top = result.ranking[0]
    assert top["layer"] == BROKEN, result.ranking[:3]
    assert top["loss"] > 5 * result.ranking[1]["loss"] and top["flipped"] > 0  # measured: 0.135 vs 0.012
    assert result.suggested_skip[0] == BROKEN and len(result.suggested_skip) <= 3
    assert result.suggested["loss"] < result.all_quantized["loss"]
    assert len(result.ranking) == result.settings["num_layers"] and len(result.ranking) > 30
    # today's fixed list is measured too (it does not know about the broken layer)
    assert "head.ctc_head.fc" in result.fixed_list["layers"] and result.fixed_list["loss"] > result.suggested["loss"]


def test_cli_bad_data_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "export.int8.sensitivity", "rec", "--checkpoint", "ppocrv4_mobile",
                           "--data", f"icdar2015:{tmp_path / 'missing'}"], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("sensitivity failed:") and "missing" in last and "Traceback" not in proc.stderr

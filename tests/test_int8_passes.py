"""INT8 program passes (issue 17): exact element-wise rewrites of the saved program (export/int8/passes.py) and the
approximate fold of the activation affine blocks into the next padded depthwise conv (quant.fold_affine_padded).

Real computations on real models: PP-OCRv4 det with the shipped weights at small sizes, QAT-wrapped by
PaddleSlim, observers calibrated on a rendered page, saved through export.int8.save, run by oneDNN INT8. What is
asserted: outputs (rewritten vs not, INT8 vs the dygraph fake-quant model) and op counts of the program Paddle
Inference runs. No timings here (bench.int8 measures those).
"""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import json
import shutil
import warnings

import numpy as np
import paddle
import pytest

from training.quant import QuantConfig, QuantConfigError, calibrate_observers, load_parent, load_quant_config, quantize_model

DET_CFG = {"task": "det", "arch": "ppocrv4_mobile_det", "pretrained": "ppocrv4_mobile"}


def _det_page(size: tuple[int, int] = (160, 256)) -> np.ndarray:
    from export.samples import sample_det_batch

    return sample_det_batch(size).astype(np.float32)


def _randomise_labs(model: paddle.nn.Layer, seed: int = 0) -> None:
    """Fresh LABs are s=1, t=0 (a fold would be a no-op): give them real values."""
    rng = np.random.default_rng(seed)
    for layer in model.sublayers():
        if type(layer).__name__ == "LearnableAffineBlock":
            layer.scale.set_value(paddle.to_tensor(rng.uniform(0.5, 1.5, [1]).astype("float32")))
            layer.bias.set_value(paddle.to_tensor(rng.uniform(-0.3, 0.3, [1]).astype("float32")))


def _pretrained_det():
    from training.models import build_model

    paddle.seed(0)
    model = build_model(DET_CFG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_parent(model, "ppocrv4_mobile", DET_CFG)
    model.eval()
    return model


def _ops_of(model_dir) -> dict[str, int]:
    from export.int8.runtime import saved_program_report

    return saved_program_report(model_dir)["op_counts"]


# ------------------------------------------------------------------------------------------ exact rewrites
def test_passes_keep_outputs_and_remove_elementwise_ops(tmp_path):
    """On an FP32 PP-OCRv4 det program (every LAB still there, random LAB values) both rewrites fire, the
    element-wise op count drops by one per rewrite and the output is unchanged (native CPU kernels)."""
    from export.engine import InferenceEngine, RuntimeOptions
    from export.int8.passes import optimize_int8_program
    from export.int8.save import input_spec_for
    from export.program_rewrite import fuse_conv_bias
    from training.models import build_model

    paddle.seed(3)
    model = build_model({"arch": "ppocrv4_mobile_det"})
    _randomise_labs(model)
    model.eval()
    static = paddle.jit.to_static(model, input_spec=input_spec_for("det"), full_graph=True)
    paddle.jit.save(static, str(tmp_path / "inference"))
    fuse_conv_bias(tmp_path / "inference")
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 128)).astype(np.float32)
    before = InferenceEngine(tmp_path, RuntimeOptions(num_threads=1, enable_mkldnn=False)).run(x)[0]
    ops_before = _ops_of(tmp_path)

    counts = optimize_int8_program(tmp_path / "inference")
    ops_after = _ops_of(tmp_path)
    assert counts["affine_to_scale"] >= 40 and counts["se_residual_to_mul"] == 8, counts  # RSEFPN: 8 SE residuals
    assert ops_after["elementwise_add"] == ops_before["elementwise_add"] - counts["affine_to_scale"] - counts["se_residual_to_mul"]
    assert ops_after["elementwise_mul"] == ops_before["elementwise_mul"] - counts["affine_to_scale"]
    # the identity scales each save appends before the fetch are dropped; the last save adds exactly one back
    assert ops_before.get("scale", 0) >= 2 and counts["drop_identity_scales"] == ops_before["scale"]
    assert ops_after["scale"] == counts["affine_to_scale"] + counts["se_residual_to_mul"] + 1
    after = InferenceEngine(tmp_path, RuntimeOptions(num_threads=1, enable_mkldnn=False)).run(x)[0]
    np.testing.assert_allclose(after, before, atol=2e-5)
    again = optimize_int8_program(tmp_path / "inference")  # idempotent: only the fresh identity scale goes
    assert again == {"affine_to_scale": 0, "se_residual_to_mul": 0, "drop_identity_scales": 1}
    assert _ops_of(tmp_path)["scale"] == ops_after["scale"]


def test_unknown_pass_is_refused(tmp_path):
    from export.int8.passes import optimize_int8_program

    with pytest.raises(ValueError, match="unknown INT8 program pass"):
        optimize_int8_program(tmp_path / "inference", passes=("fold_everything",))


# ------------------------------------------------------------------------------------------ padded fold
def test_padded_fold_changes_only_the_border_ring():
    """Folding block i's activation LAB into block i+1's padded depthwise conv is exact inside the map; only the
    k//2-pixel border ring (where zero padding now stands for ``t``) differs."""
    from training.models import build_model
    from training.quant_fold import fold_affine_blocks, fold_affine_into_padded_dw

    paddle.seed(1)
    model = build_model({"arch": "ppocrv4_mobile_det"})
    _randomise_labs(model, seed=1)
    model.eval()
    fold_affine_blocks(model)
    first, second = model.backbone.blocks4[0], model.backbone.blocks4[1]  # stride 1, 3×3 dw in PP-OCRv4 det
    x = paddle.rand([1, first.dw_conv.in_channels, 12, 12])
    with paddle.no_grad():
        ref = second.dw_conv(first(x)).numpy()
        folded = fold_affine_into_padded_dw(model)
        got = second.dw_conv(first(x)).numpy()
    assert "backbone.blocks4.0.pw_conv.act.lab" in folded
    assert type(first.pw_conv.act.lab).__name__ == "Identity"
    pad = second.dw_conv.kernel_size // 2
    inner = (slice(None), slice(None), slice(pad, -pad), slice(pad, -pad))
    np.testing.assert_allclose(got[inner], ref[inner], atol=1e-4)
    assert np.abs(got - ref).max() > 1e-3  # the border really moved: the fold is not exact, and says so


def test_padded_fold_leaves_det_taps_and_needs_fold_affine():
    from training.models import build_model

    model = build_model({"arch": "ppocrv4_mobile_det"})
    _randomise_labs(model)
    with pytest.raises(QuantConfigError, match="needs quant.fold_affine=true"):
        quantize_model(model, QuantConfig.from_mapping({**load_quant_config("qat_int8").to_dict(),
                                                        "fold_affine": False, "fold_affine_padded": True}))
    _, wrapped = quantize_model(model, QuantConfig.from_mapping({**load_quant_config("qat_int8").to_dict(),
                                                                 "fold_affine_padded": True}))
    backbone = wrapped.backbone
    for stage in ("blocks3", "blocks4", "blocks5", "blocks6"):  # the neck reads these outputs: LAB kept
        last = list(getattr(backbone, stage))[-1]
        assert type(last.pw_conv.act.lab).__name__ == "LearnableAffineBlock", stage
    assert type(backbone.blocks3[0].pw_conv.act.lab).__name__ == "Identity"


# ------------------------------------------------------------------------------------------ INT8 end to end
@pytest.fixture(scope="module")
def det_int8_programs(tmp_path_factory):
    """PP-OCRv4 det (shipped weights) → QAT wrap → observers calibrated on a rendered page → saved three ways:
    without the passes, with them (the default save), and with the padded fold as well."""
    from export.int8.save import input_spec_for, save_int8_inference

    calib = [_det_page((160, 256)), _det_page((256, 160))]
    out: dict[str, object] = {}
    for name, overrides, optimize in (("plain", {}, False), ("passes", {}, True),
                                      ("padded", {"fold_affine_padded": True}, True)):
        model = _pretrained_det()
        qcfg = QuantConfig.from_mapping({**load_quant_config("qat_int8").to_dict(), **overrides})
        qat, model = quantize_model(model, qcfg)
        calibrate_observers(model, calib)
        model.eval()
        root = tmp_path_factory.mktemp(f"det-int8-{name}")
        info = save_int8_inference(qat, model, root / "inference", input_spec_for("det"), optimize=optimize)
        out[name] = {"model": model, "dir": root, "info": info}
    return out


@pytest.mark.slow
def test_int8_passes_cut_fp32_work_and_match_fake_quant(det_int8_programs):
    """The rewritten INT8 program: fewer FP32 element-wise ops and fewer FP32→INT8 quantize ops in what oneDNN
    runs, same INT8 conv count, output equal to the unrewritten INT8 program and within the parity check of the
    dygraph fake-quant model."""
    from export.int8.runtime import Int8Engine, optimized_op_report
    from export.int8.save import int8_parity

    plain, passes = det_int8_programs["plain"], det_int8_programs["passes"]
    rewrites = passes["info"]["program_rewrites"]
    assert rewrites["affine_to_scale"] > 0 and rewrites["se_residual_to_mul"] == 8, rewrites
    assert json.loads((passes["dir"] / "quant.json").read_text())["program_rewrites"] == rewrites
    r_plain, r_pass = optimized_op_report(plain["dir"]), optimized_op_report(passes["dir"])
    fp32_ew = lambda r: sum(n for t, n in r["fp32_ops_with_onednn_type"].items() if t.startswith("elementwise"))  # noqa: E731
    assert fp32_ew(r_pass) <= fp32_ew(r_plain) - rewrites["affine_to_scale"] - rewrites["se_residual_to_mul"]
    assert r_pass["convs"]["int8"] == r_plain["convs"]["int8"] > 50
    assert r_pass["quantize_ops"] <= r_plain["quantize_ops"]

    x = _det_page((320, 320))
    a = Int8Engine(plain["dir"], num_threads=1).run(x)[0]
    b = Int8Engine(passes["dir"], num_threads=1).run(x)[0]
    assert float(np.abs(a - b).max()) < 1e-3
    report = int8_parity("det", passes["model"], passes["dir"], x, num_threads=1)
    assert report["ok"], report


@pytest.mark.slow
def test_padded_fold_keeps_int8_between_blocks(det_int8_programs):
    """With quant.fold_affine_padded the pointwise conv feeds the next depthwise conv in INT8: fewer quantize
    ops and fewer INT8 convs with FP32 output; the INT8 program still matches its (folded) fake-quant model."""
    from export.int8.runtime import optimized_op_report
    from export.int8.save import int8_parity

    passes, padded = det_int8_programs["passes"], det_int8_programs["padded"]
    r_pass, r_pad = optimized_op_report(passes["dir"]), optimized_op_report(padded["dir"])
    assert r_pad["quantize_ops"] <= r_pass["quantize_ops"] - 8, (r_pad["quantize_ops"], r_pass["quantize_ops"])
    assert r_pad["convs"]["int8_fp32_output"] <= r_pass["convs"]["int8_fp32_output"] - 8
    assert padded["info"]["config"]["fold_affine_padded"] is True
    report = int8_parity("det", padded["model"], padded["dir"], _det_page((320, 320)), num_threads=1)
    assert report["ok"], report

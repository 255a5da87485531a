"""QAT INT8: config, skip list, tiny fine-tune → INT8 export → oneDNN INT8 prediction, checkpoint refusals.

The end-to-end test fine-tunes the shipped PP-OCRv4 rec (real text, so "close to the dygraph" means the same
decoded strings, not just small numbers) for a few steps at 48×160 on rendered lines.
"""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import json
import warnings
from pathlib import Path

import numpy as np
import paddle
import pytest

from datasets.charset import Charset
from training.quant import (
    QuantConfig,
    QuantConfigError,
    calibrate_observers,
    check_parent,
    check_resume,
    is_qat_state_dict,
    load_parent,
    load_quant_config,
    mark_skip_layers,
    prepare_qat,
    quant_block,
    quantize_model,
)

LINES = ["发票号码 12345678", "Total 88.00", "开票日期 2024年", "金额 ¥1234.56", "ABC-2024", "上海市 浦东新区"]
REC_H, REC_W = 48, 160


def _rec_batch(texts, charset: Charset):
    from export.samples import render_line
    from datasets.resize import rec_resize_norm

    images = np.stack([rec_resize_norm(render_line(t, REC_H), REC_H, REC_W) for t in texts]).astype(np.float32)
    ids = [charset.encode(t) for t in texts]
    labels = np.zeros((len(texts), 25), np.int64)
    for i, row in enumerate(ids):
        labels[i, : len(row)] = row
    return images, labels, np.array([len(r) for r in ids], np.int64)


def _save_ckpt(root: Path, *, arch: str, weights: dict, quant: dict | None = None, charset: Charset | None = None) -> Path:
    from training.trainer.checkpoint import save_checkpoint

    extra = {}
    if quant is not None:
        extra["quant"] = quant
    if charset is not None:
        extra["charset"] = charset.to_dict()
    model_cfg = {"task": "rec" if arch.endswith("rec") else "det", "arch": arch, "backbone_form": "deploy"}
    state = {"step": 1, "epoch": 0, "batch_in_epoch": 1, "config": {"model": model_cfg}, "extra": extra}
    return save_checkpoint(root, "latest", model=weights, state=state)


# ------------------------------------------------------------------------------------------------ config
def test_configs_load_and_validate():
    int8, pact = load_quant_config("qat_int8"), load_quant_config("qat_pact")
    assert int8.enabled and not int8.use_pact and pact.use_pact and pact.skip == int8.skip
    assert int8.slim_config()["weight_quantize_type"] == "channel_wise_abs_max"
    assert "activation_preprocess_type" in pact.slim_config()
    assert QuantConfig.from_mapping({"enabled": False}).enabled is False  # conf/quant/none.yaml
    with pytest.raises(QuantConfigError, match="unknown key"):
        QuantConfig.from_mapping({"enabled": True, "skp": ["x"]})
    with pytest.raises(QuantConfigError, match="8/8 bits"):
        QuantConfig.from_mapping({"enabled": True, "weight_bits": 4})
    with pytest.raises(QuantConfigError, match="moving_average_abs_max only"):
        QuantConfig.from_mapping({"enabled": True, "activation_quantize_type": "range_abs_max"})


def test_hydra_composes_quant_group():
    from training.cli import precheck_overrides

    cfg = precheck_overrides("rec", ["quant=qat_pact", "quant.skip=[head.ctc_head.fc]"])
    qcfg = QuantConfig.from_mapping(cfg.quant)
    assert qcfg.use_pact and qcfg.skip == ("head.ctc_head.fc",) and qcfg.name == "qat_pact"


@pytest.mark.parametrize("overrides, frozen", [
    (["quant=qat_int8"], True), ([], False), (["quant=qat_int8", "trainer.freeze_bn=false"], False),
    (["trainer.freeze_bn=true"], True)])
def test_freeze_bn_defaults_to_on_for_qat_runs_only(overrides, frozen):
    from training.cli import precheck_overrides
    from training.runner import resolve_freeze_bn
    from training.trainer import TrainerConfig

    cfg = precheck_overrides("det", overrides)
    assert resolve_freeze_bn(cfg) is frozen
    assert TrainerConfig.from_mapping(cfg.trainer).freeze_bn is frozen  # written back: saved config shows it


def test_skip_patterns_and_aliases():
    from training.models import build_model

    det = build_model({"arch": "mobilenetv3_db"})
    assert mark_skip_layers(det, ["@first_conv", "@ctc_fc"]) == ["backbone.conv.conv"]  # alias may match nothing
    assert det.backbone.conv.conv.skip_quant is True
    with pytest.raises(QuantConfigError, match="matches no quantizable layer"):
        mark_skip_layers(det, ["backbone.conv1"])  # the PP-OCRv4 name: a typo for this model
    head = mark_skip_layers(build_model({"arch": "mobilenetv3_db"}), ["head.binarize"])
    assert head == ["head.binarize.conv1"]  # Conv2DTranspose is not a quantizable type by default


def test_fold_affine_is_exact():
    from training.models import build_model
    from training.quant_fold import count_affine_blocks, fold_affine_blocks

    paddle.seed(1)
    model = build_model({"arch": "ppocrv4_mobile_det"})
    rng = np.random.default_rng(0)
    for layer in model.sublayers():  # fresh LABs are s=1, t=0: make the fold do real work
        if type(layer).__name__ == "LearnableAffineBlock":
            layer.scale.set_value(paddle.to_tensor(rng.uniform(0.5, 1.5, [1]).astype("float32")))
            layer.bias.set_value(paddle.to_tensor(rng.uniform(-0.3, 0.3, [1]).astype("float32")))
    model.eval()
    x = paddle.rand([1, 3, 96, 96])
    before = model(x)["maps"].numpy()
    folded = fold_affine_blocks(model)
    after = model(x)["maps"].numpy()
    assert len(folded) > 30 and count_affine_blocks(model) < 20
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_fuse_conv_bias_keeps_outputs(tmp_path):
    from export.engine import InferenceEngine, RuntimeOptions
    from training.models import build_model
    from export.int8.save import input_spec_for
    from export.program_rewrite import fuse_conv_bias
    from export.int8.runtime import saved_program_report

    paddle.seed(0)
    model = build_model({"arch": "mobilenetv3_db", "scale": 0.35, "neck_channels": 32})
    model.eval()
    static = paddle.jit.to_static(model, input_spec=input_spec_for("det"), full_graph=True)
    paddle.jit.save(static, str(tmp_path / "inference"))
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    before = InferenceEngine(tmp_path, RuntimeOptions(num_threads=1, enable_mkldnn=False)).run(x)[0]
    reshapes = saved_program_report(tmp_path)["op_counts"].get("reshape2", 0)
    assert fuse_conv_bias(tmp_path / "inference") > 0
    assert saved_program_report(tmp_path)["op_counts"].get("reshape2", 0) < reshapes
    after = InferenceEngine(tmp_path, RuntimeOptions(num_threads=1, enable_mkldnn=False)).run(x)[0]
    np.testing.assert_allclose(after, before, atol=1e-6)


# ------------------------------------------------------------------------------------------------ QAT end to end
@pytest.fixture(scope="module")
def qat_rec(tmp_path_factory):
    """PP-OCRv4 rec parent → QAT (first conv and CTC fc kept FP32) → calibrate → 3 fine-tune steps → INT8 dir."""
    from training.losses import build_loss
    from training.models import build_model
    from export.int8.save import input_spec_for, save_int8_inference

    paddle.seed(0)
    charset = Charset.default()
    cfg = {"task": "rec", "arch": "ppocrv4_mobile_rec", "num_classes": charset.num_classes, "pretrained": "ppocrv4_mobile"}
    model = build_model(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, parent = load_parent(model, "ppocrv4_mobile", cfg, charset)
    qcfg = load_quant_config("qat_int8")
    qat, model = quantize_model(model, qcfg)
    images, labels, lengths = _rec_batch(LINES, charset)
    calibrate_observers(model, [images])
    loss_fn = build_loss("rec")
    opt = paddle.optimizer.AdamW(learning_rate=1e-5, parameters=model.parameters())
    model.train()
    losses = []
    for _ in range(3):
        out = model(paddle.to_tensor(images))
        loss = loss_fn(out, {"image": paddle.to_tensor(images), "label": paddle.to_tensor(labels),
                             "length": paddle.to_tensor(lengths)})["loss"]
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    model.eval()
    out_dir = tmp_path_factory.mktemp("rec-int8")
    info = save_int8_inference(qat, model, out_dir / "inference", input_spec_for("rec"))
    return {"model": model, "qat": qat, "qcfg": qcfg, "charset": charset, "cfg": cfg, "dir": out_dir, "info": info,
            "images": images, "losses": losses, "opt": opt, "loss_fn": loss_fn, "labels": labels,
            "lengths": lengths, "parent": parent}


def test_tiny_qat_finetune_exports_and_runs_int8(qat_rec):
    from training.postprocess import ctc_greedy_decode
    from export.int8.runtime import Int8Engine, is_int8_model_dir, optimized_op_report

    assert all(np.isfinite(qat_rec["losses"]))
    model, images, charset = qat_rec["model"], qat_rec["images"], qat_rec["charset"]
    with paddle.no_grad():
        ref = model(paddle.to_tensor(images)).numpy()
    assert is_int8_model_dir(qat_rec["dir"])
    got = Int8Engine(qat_rec["dir"], num_threads=2).run(images)[0]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).mean()) < 1e-3  # softmax over 6625 classes: per-entry mean |Δ|
    texts_ref = [t for t, _ in ctc_greedy_decode(ref, charset)]
    texts_int8 = [t for t, _ in ctc_greedy_decode(got, charset)]
    assert sum(a == b for a, b in zip(texts_ref, texts_int8)) >= len(LINES) - 1, (texts_ref, texts_int8)
    assert sum(a.replace(" ", "") == b.replace(" ", "") for a, b in zip(texts_ref, LINES)) >= 4, texts_ref
    report = optimized_op_report(qat_rec["dir"], "int8")  # really INT8 kernels, not fake quant in FP32
    assert report["convs"]["int8"] >= 30 and report["op_counts"].get("quantize_linear", 0) == 0


def test_skipped_layers_have_no_fake_quant_in_saved_program(qat_rec):
    from export.int8.runtime import saved_program_report

    info = qat_rec["info"]
    skipped = set(info["skipped_layers"])
    assert {"backbone.conv1.conv", "head.ctc_head.fc"} <= skipped  # @first_conv, @ctc_fc; @backbone_se:
    assert {n for n in skipped if ".se." in n} == {f"backbone.blocks6.{i}.se.conv{j}" for i in (0, 1) for j in (1, 2)}
    layers = saved_program_report(qat_rec["dir"])["layers"]
    for name, entry in info["layers"].items():
        seen = layers[entry["param"]]
        if entry["quantized"] and seen["op"] == "matmul_v2":  # Linear: FP32 with its fake-quantized weight
            assert not seen["weight_quantized"] and not seen["input_quantized"], name  # (linear_layers_to_fp32)
        elif entry["quantized"]:
            assert seen["weight_quantized"] and seen["input_quantized"], name
        else:
            assert not seen["weight_quantized"] and not seen["input_quantized"], name
    sidecar = json.loads((qat_rec["dir"] / "quant.json").read_text())
    assert sidecar["precision"] == "int8" and sidecar["program_rewrites"]["conv_bias_fused"] > 0


def test_training_model_still_trains_after_save(qat_rec):
    """A train-mode step moves BN statistics and the moving-average activation scales; the module-scoped model
    is restored afterwards so later tests export the model the fixture made, not one this test nudged."""
    model, images = qat_rec["model"], qat_rec["images"]
    snapshot = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    model.train()
    out = model(paddle.to_tensor(images))
    loss = qat_rec["loss_fn"](out, {"image": paddle.to_tensor(images), "label": paddle.to_tensor(qat_rec["labels"]),
                                    "length": paddle.to_tensor(qat_rec["lengths"])})["loss"]
    loss.backward()
    qat_rec["opt"].clear_grad()
    model.eval()
    model.set_state_dict(snapshot)
    assert np.isfinite(float(loss))


def test_export_qat_checkpoint_writes_inference_yml(qat_rec, tmp_path):
    from export.inference_yml import read_inference_yml
    from export.int8.save import export_qat_checkpoint, is_qat_checkpoint

    block = quant_block(qat_rec["qcfg"], qat_rec["model"], parent=qat_rec["parent"])
    ckpt = _save_ckpt(tmp_path / "ckpt", arch="ppocrv4_mobile_rec", weights=qat_rec["model"].state_dict(),
                      quant=block, charset=qat_rec["charset"])
    assert is_qat_checkpoint(ckpt)
    report = export_qat_checkpoint("rec", ckpt, tmp_path / "export")
    assert report["ok"], report
    spec = read_inference_yml(tmp_path / "export", "rec")
    assert spec.own["quantization"]["precision"] == "int8" and spec.charset.sha256 == qat_rec["charset"].sha256


# ------------------------------------------------------------------------------------------------ refusals
def test_resume_precision_mismatch_is_refused(tmp_path):
    qcfg = load_quant_config("qat_int8")
    qat_weights = {"head.fc._layer.weight": np.zeros((2, 2), np.float32),
                   "head.fc._layer._fake_quant_input._scale": np.ones(1, np.float32)}
    qat_ckpt = _save_ckpt(tmp_path / "qat", arch="ppocrv4_mobile_rec", weights=qat_weights,
                          quant={"enabled": True, "config": qcfg.to_dict()})
    fp32_ckpt = _save_ckpt(tmp_path / "fp32", arch="ppocrv4_mobile_rec", weights={"w": np.zeros(2, np.float32)})
    with pytest.raises(QuantConfigError, match="QAT \\(INT8\\) checkpoint, but this run is FP32"):
        check_resume(qat_ckpt, QuantConfig())
    with pytest.raises(QuantConfigError, match="is an FP32 checkpoint, but this run is QAT"):
        check_resume(fp32_ckpt, qcfg)
    with pytest.raises(QuantConfigError, match="skip"):
        check_resume(qat_ckpt, QuantConfig.from_mapping({**qcfg.to_dict(), "skip": []}))
    assert check_resume(qat_ckpt, qcfg)["enabled"] is True
    assert check_resume(fp32_ckpt, QuantConfig()) is None
    assert check_resume("auto", qcfg, run_dir=tmp_path / "nothing-here") is None
    # a QAT checkpoint without the block is still recognised by its weights
    bare = _save_ckpt(tmp_path / "bare", arch="ppocrv4_mobile_rec", weights=qat_weights)
    with pytest.raises(QuantConfigError, match="QAT"):
        check_resume(bare, QuantConfig())
    with pytest.raises(QuantConfigError, match="QAT"):
        prepare_qat(paddle.nn.Linear(2, 2), {"enabled": False}, model_cfg={}, resume=str(bare))
    assert is_qat_state_dict(qat_weights) and not is_qat_state_dict({"w": 1})


def test_parent_mismatch_is_refused(tmp_path):
    other_arch = _save_ckpt(tmp_path / "det", arch="mobilenetv3_db", weights={"w": np.zeros(2, np.float32)})
    with pytest.raises(QuantConfigError, match="model.arch=mobilenetv3_db.*model.arch=ppocrv4_mobile_det"):
        check_parent(other_arch, {"arch": "ppocrv4_mobile_det"})
    small = Charset(tuple("0123456789"), False, "test")
    rec = _save_ckpt(tmp_path / "rec", arch="ppocrv4_mobile_rec", weights={"w": np.zeros(2, np.float32)},
                     charset=small)
    with pytest.raises(QuantConfigError, match="charset"):
        check_parent(rec, {"arch": "ppocrv4_mobile_rec"}, Charset(tuple("0123456789ab"), False, "test"))
    assert check_parent(rec, {"arch": "ppocrv4_mobile_rec"}, small)["charset_sha256"] == small.sha256
    qat = _save_ckpt(tmp_path / "qat", arch="ppocrv4_mobile_rec", weights={"w": np.zeros(2, np.float32)},
                     quant={"enabled": True, "config": {"enabled": True}})
    with pytest.raises(QuantConfigError, match="QAT checkpoint"):
        check_parent(qat, {"arch": "ppocrv4_mobile_rec"})
    with pytest.raises(QuantConfigError, match="needs FP32 parent"):
        check_parent(None, {"arch": "ppocrv4_mobile_rec"})


def test_parent_weights_of_another_architecture_are_refused(tmp_path):
    from training.models import build_model

    det = build_model({"arch": "mobilenetv3_db"})
    paddle.save(det.state_dict(), str(tmp_path / "mv3.pdparams"))
    model = build_model({"arch": "ppocrv4_mobile_det"})
    with pytest.raises(QuantConfigError, match="do not fit model.arch=ppocrv4_mobile_det"):
        load_parent(model, tmp_path / "mv3.pdparams", {"arch": "ppocrv4_mobile_det"})


def test_quantize_refuses_double_wrapping_and_disabled_config():
    from training.models import build_model

    model = build_model({"arch": "mobilenetv3_db", "scale": 0.35, "neck_channels": 32})
    with pytest.raises(QuantConfigError, match="enabled=false"):
        quantize_model(model, QuantConfig())
    _, model = quantize_model(model, load_quant_config("qat_int8"))
    with pytest.raises(QuantConfigError, match="already QAT-wrapped"):
        quantize_model(model, load_quant_config("qat_int8"))
    with pytest.raises(QuantConfigError, match="before quantize_model"):
        load_parent(model, "ppocrv4_mobile", {"arch": "mobilenetv3_db"})


# ------------------------------------------------------------------------------------------------ evaluation of record
# slow (≈ 35 s); the after-training INT8 report of a det QAT run (tests/test_train_e2e.py) stays in the default
# suite and goes through the same compare_int8_fp32
@pytest.mark.slow
def test_compare_int8_fp32_reports_both_sides(qat_rec, tmp_path):
    from datasets.imageio import write_image
    from datasets.ppocr_label import write_ppocr_rec_label
    from datasets.sample import RecSample
    from export.jit_export import export_model
    from export.samples import render_line
    from export.int8.evaluate import compare_int8_fp32, tracking_metrics

    samples = [RecSample(write_image(tmp_path / "lines" / f"{i}.jpg", render_line(t)), t) for i, t in enumerate(LINES)]
    label = write_ppocr_rec_label(samples, tmp_path / "lines" / "label.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model("rec", "ppocrv4_mobile", tmp_path / "fp32")
    result = compare_int8_fp32("rec", qat_rec["dir"], tmp_path / "fp32", f"ppocr-rec:{label}", num_threads=2,
                               batches=(1, 2), repeat=2, warmup=1)
    assert result["num_samples"] == len(LINES)
    assert result["int8"]["runtime"]["precision"] == "int8"  # evaluated with oneDNN INT8, not fake quant
    assert result["fp32"]["acc"] >= 0.5 and abs(result["delta"]["acc"]) <= 1 / len(LINES) + 1e-9
    assert set(result["int8"]["latency_ms"]) == {"batch_1", "batch_2"} and result["size_ratio"] < 0.7
    flat = tracking_metrics(result)
    assert {"int8.acc", "fp32.acc", "delta.acc", "speedup.batch_2", "size_mb.int8"} <= set(flat)
    with pytest.raises(ValueError, match="not an INT8 model directory"):
        compare_int8_fp32("rec", tmp_path / "fp32", qat_rec["dir"], f"ppocr-rec:{label}")

"""INT8 file size: the compacted INT8 export (export/int8/compact.py) on the shipped PP-OCRv4 weights.

One QAT-wrapped model (activation observers calibrated on rendered text, no training: the files' bytes and the
INT8-vs-INT8 agreement do not need a fine-tune) is saved twice through the normal save path — ``compact`` on and
off — so the two programs differ only by the compaction. Asserted: bytes per tensor and dtypes in the saved
parameters, the ratio to the FP32 export of the same weights, outputs and decoded strings of the two INT8
programs under the oneDNN INT8 runtime, and that plain (non-INT8) Paddle Inference configs still run the files.
"""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import paddle
import pytest

from datasets.charset import Charset

LINES = ["发票号码 12345678", "Total 88.00", "开票日期 2024年05月18日", "金额合计 ¥1234.56", "ORD-2027-14874",
         "上海市 浦东新区"]
TARGET_RATIO = 3.5


def _persistable_tensors(model_dir: Path) -> dict[str, np.ndarray]:
    """Every persistable tensor of a saved program, as stored (dtype and bytes as in ``.pdiparams``)."""
    paddle.enable_static()
    try:
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            exe = paddle.static.Executor(paddle.CPUPlace())
            program, _, _ = paddle.static.load_inference_model(str(model_dir / "inference"), exe)
            return {v.name: np.array(scope.find_var(v.name).get_tensor()) for v in program.list_vars()
                    if v.persistable and v.name not in ("feed", "fetch")}
    finally:
        paddle.disable_static()


def _total_bytes(model_dir: Path) -> int:
    return sum((model_dir / f"inference{s}").stat().st_size for s in (".pdmodel", ".pdiparams"))


def _weights_by_op(model_dir: Path) -> dict[str, str]:
    """Weight variable → the compute op that reads it (through a dequantize_linear or directly)."""
    from export.int8.runtime import _program_ops

    ops = _program_ops((model_dir / "inference.pdmodel").read_bytes())
    deq = {op["outputs"]["Y"][0]: op["inputs"]["X"][0] for op in ops if op["type"] == "dequantize_linear"}
    slots = {"conv2d": "Filter", "depthwise_conv2d": "Filter", "conv2d_transpose": "Filter", "matmul_v2": "Y"}
    out = {}
    for op in ops:
        slot = slots.get(op["type"])
        if slot and op["inputs"].get(slot):
            w = op["inputs"][slot][0]
            out[deq.get(w, w)] = op["type"]
    return out


def _build(task: str, tmp: Path) -> dict:
    """FP32 export + INT8 saved with and without compaction, from one calibrated QAT model."""
    from training.models import build_model, load_pretrained
    from training.quant import calibrate_observers, load_quant_config, quantize_model
    from export.int8.save import input_spec_for, save_int8_inference
    from export.parity import sample_batch
    from export.samples import render_line, sample_det_batch
    from datasets.resize import rec_resize_norm

    paddle.seed(0)
    charset = Charset.default() if task == "rec" else None
    cfg = {"task": task, "arch": f"ppocrv4_mobile_{task}"}
    if charset is not None:
        cfg["num_classes"] = charset.num_classes
    model = build_model(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_pretrained(model, "ppocrv4_mobile", cfg, charset)
    model.eval()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    fp32 = build_model(cfg)
    fp32.set_state_dict(weights)
    fp32.eval()
    static = paddle.jit.to_static(fp32, input_spec=input_spec_for(task), full_graph=True)
    paddle.jit.save(static, str(tmp / "fp32" / "inference"))

    if task == "rec":  # calibrate on the parity crops, compare on other lines
        batch = np.stack([rec_resize_norm(render_line(t, 48), 48, 320) for t in LINES]).astype(np.float32)
        calib = [sample_batch("rec").astype(np.float32)] * 3
    else:
        batch = sample_det_batch((320, 640)).astype(np.float32)
        calib = [batch, sample_det_batch((640, 640)).astype(np.float32)]
    qcfg = load_quant_config("qat_int8")
    assert qcfg.compact, "conf/quant/qat_int8.yaml ships compact: true"
    qat, qmodel = quantize_model(model, qcfg)
    calibrate_observers(qmodel, calib)
    qmodel.eval()
    plain = save_int8_inference(qat, qmodel, tmp / "plain" / "inference", input_spec_for(task), compact=False)
    compact = save_int8_inference(qat, qmodel, tmp / "compact" / "inference", input_spec_for(task))
    return {"dir": tmp, "batch": batch, "charset": charset, "plain": plain, "compact": compact}


@pytest.fixture(scope="module")
def rec_dirs(tmp_path_factory):
    return _build("rec", tmp_path_factory.mktemp("rec-size"))


@pytest.fixture(scope="module")
def det_dirs(tmp_path_factory):
    return _build("det", tmp_path_factory.mktemp("det-size"))


def _run_int8(model_dir: Path, batch: np.ndarray) -> np.ndarray:
    from export.int8.runtime import Int8Engine

    return Int8Engine(model_dir, num_threads=2).run(batch)[0]


def _texts(out: np.ndarray, charset: Charset) -> list[str]:
    from training.postprocess import ctc_greedy_decode

    return [t for t, _ in ctc_greedy_decode(out, charset)]


def _assert_weight_storage(model_dir: Path, tensors: dict[str, np.ndarray]) -> dict[str, tuple[str, tuple]]:
    """Every conv/linear weight is stored INT8 (QAT-quantized or weight-only) except conv-transposes (the oneDNN
    pass does not dequantize them at load) and weights too small to gain (the first conv); returns those."""
    from export.int8.runtime import saved_program_report

    kept = {}
    for name, entry in saved_program_report(model_dir)["layers"].items():
        if name not in tensors:
            continue  # attention matmuls: both inputs are activations
        a = tensors[name]
        if entry["weight_quantized"] or entry["weight_only_int8"]:
            assert a.dtype == np.int8 and a.nbytes == a.size, name
        else:
            assert a.dtype == np.float32, name
            # square Linear weights (SVTR proj) stay FP32: oneDNN would dequantize them on the wrong axis
            # (export.int8.save.linear_layers_to_fp32)
            square = entry["op"] == "matmul_v2" and a.ndim == 2 and a.shape[0] == a.shape[1]
            assert entry["op"] == "conv2d_transpose" or square or a.size <= 16 * 3 * 3 * 3, (name, a.shape)
            kept[name] = (entry["op"], a.shape)
    return kept


# ------------------------------------------------------------------------------------------------------- rec
def test_rec_compact_is_3_5x_smaller_with_int8_tensors(rec_dirs):
    d = rec_dirs["dir"]
    fp32, plain, compact = _total_bytes(d / "fp32"), _total_bytes(d / "plain"), _total_bytes(d / "compact")
    assert fp32 / compact >= TARGET_RATIO, (fp32, plain, compact)
    assert fp32 / plain < 2.5  # what compaction is for: the plain program keeps the CTC fc in FP32
    assert rec_dirs["compact"]["sizes"]["total"] == compact  # the sidecar reports the files as written

    tensors = _persistable_tensors(d / "compact")
    by_op = {n: op for n, op in _weights_by_op(d / "compact").items() if n in tensors}  # not attention matmuls
    fc = [n for n, op in by_op.items() if op == "matmul_v2" and tensors[n].shape == (120, 6625)]
    assert len(fc) == 1 and tensors[fc[0]].dtype == np.int8 and tensors[fc[0]].nbytes == 120 * 6625
    scale = tensors[f"{fc[0]}@wo_scale"]
    assert scale.dtype == np.float32 and scale.shape == (6625,)  # one scale per class (output column)
    _assert_weight_storage(d / "compact", tensors)
    fp32_bytes = sum(a.nbytes for a in tensors.values() if a.dtype == np.float32)
    assert fp32_bytes < 0.15 * sum(a.nbytes for a in tensors.values())  # biases, BN/LN, scales
    assert sum(a.nbytes for a in tensors.values() if a.dtype == np.int32) < 8192  # zero points shared

    report = rec_dirs["compact"]["program_rewrites"]["compact"]
    assert fc[0] in report["weight_only"]["layers"] and report["zero_points_removed"] > 50
    assert "compact" not in rec_dirs["plain"]["program_rewrites"]
    assert json.loads((d / "compact" / "quant.json").read_text())["config"]["compact"] is True


def test_rec_compact_outputs_match_plain_int8(rec_dirs):
    batch, charset, d = rec_dirs["batch"], rec_dirs["charset"], rec_dirs["dir"]
    ref = _run_int8(d / "plain", batch)
    got = _run_int8(d / "compact", batch)
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).mean()) < 1e-3  # softmax over 6625 classes
    texts_ref, texts = _texts(ref, charset), _texts(got, charset)
    assert sum(a == b for a, b in zip(texts_ref, texts)) >= len(LINES) - 1, (texts_ref, texts)
    assert sum(a.replace(" ", "") == b.replace(" ", "") for a, b in zip(texts_ref, LINES)) >= 4, texts_ref


def test_rec_weight_only_ctc_fc_keeps_decoded_strings(rec_dirs, tmp_path):
    """The CTC classifier alone (the 2.3 MB that matters) stored INT8: decoded strings identical."""
    from export.int8.compact import compact_int8_program

    batch, charset = rec_dirs["batch"], rec_dirs["charset"]
    shutil.copytree(rec_dirs["dir"] / "plain", tmp_path / "fc")
    report = compact_int8_program(tmp_path / "fc" / "inference", weight_only=("matmul_v2",))
    layers = report["weight_only"]["layers"]
    shapes = [v["shape"] for v in layers.values()]
    # besides the CTC fc: the SVTR Linear weights, stored FP32 by export.int8.save.linear_layers_to_fp32
    assert [120, 6625] in shapes and all(s == [120, 6625] or max(s) <= 360 for s in shapes), shapes
    assert report["sizes_before"]["total"] - report["sizes_after"]["total"] > 2_300_000
    ref, got = _run_int8(rec_dirs["dir"] / "plain", batch), _run_int8(tmp_path / "fc", batch)
    assert _texts(got, charset) == _texts(ref, charset)
    assert float(np.abs(got - ref).max()) < 0.2


def test_compact_plain_runtime_and_idempotent(rec_dirs, tmp_path):
    """Without the INT8 passes (a plain FP32 config, as other loaders use) the weight-only dequantize runs as
    an op and gives the same result as the uncompacted program; compacting twice changes nothing more."""
    from export.engine import InferenceEngine, RuntimeOptions
    from export.int8.compact import compact_int8_program

    batch, charset, d = rec_dirs["batch"][:2], rec_dirs["charset"], rec_dirs["dir"]
    opts = RuntimeOptions(num_threads=2, enable_mkldnn=False)
    ref = InferenceEngine(d / "plain", opts).run(batch)[0]
    got = InferenceEngine(d / "compact", opts).run(batch)[0]
    assert float(np.abs(got - ref).mean()) < 1e-3
    texts_ref, texts = _texts(ref, charset), _texts(got, charset)
    assert sum(a == b for a, b in zip(texts_ref, texts)) >= len(texts) - 1, (texts_ref, texts)

    shutil.copytree(d / "compact", tmp_path / "again")
    again = compact_int8_program(tmp_path / "again" / "inference")
    assert again["weight_only"]["layers"] == {} and again["zero_points_removed"] == 0
    before, after = again["sizes_before"], again["sizes_after"]
    assert after[".pdiparams"] == before[".pdiparams"]
    # each save appends one identity output scale named by Paddle's process-wide unique-name counter
    # (save_infer_model/scale_N.tmp_0), so the program may differ by the digits of N, nothing more
    assert abs(after[".pdmodel"] - before[".pdmodel"]) <= 8, (before, after)


def test_compact_refuses_missing_program(tmp_path):
    from export.int8.compact import compact_int8_program

    with pytest.raises(FileNotFoundError, match=r"inference\.pdmodel: no such file"):
        compact_int8_program(tmp_path / "inference")
    with pytest.raises(ValueError, match="conv2d_transpose"):
        (tmp_path / "inference.pdmodel").write_bytes(b"")
        (tmp_path / "inference.pdiparams").write_bytes(b"")
        compact_int8_program(tmp_path / "inference", weight_only=("conv2d_transpose",))


# ------------------------------------------------------------------------------------------------------- det
@pytest.mark.slow
def test_det_compact_is_3_5x_smaller_and_agrees(det_dirs):
    d, batch = det_dirs["dir"], det_dirs["batch"]
    fp32, compact = _total_bytes(d / "fp32"), _total_bytes(d / "compact")
    assert fp32 / compact >= TARGET_RATIO, (fp32, _total_bytes(d / "plain"), compact)

    tensors = _persistable_tensors(d / "compact")
    kept = _assert_weight_storage(d / "compact", tensors)
    assert {op for op, _ in kept.values()} == {"conv2d_transpose", "conv2d"}  # DB head transposes, first conv
    se = det_dirs["compact"]["program_rewrites"]["compact"]["weight_only"]["layers"]
    assert len(se) == 4 and all(v["op"] == "conv2d" for v in se.values())  # the backbone SE convs

    ref, got = _run_int8(d / "plain", batch), _run_int8(d / "compact", batch)
    assert float(np.abs(got - ref).mean()) < 0.005
    assert float(((ref > 0.3) == (got > 0.3)).mean()) > 0.995

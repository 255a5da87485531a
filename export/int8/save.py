"""Saving a QAT model as an INT8 inference directory, from a live model or from a QAT checkpoint.

Why a copy is saved, not the training model: ``save_quantized_model`` converts the layer it is given with
``paddle.jit.to_static`` in place, and a converted layer may fail when called again in dygraph (STACK.md
trap 3) — the trainer still needs it. A deep copy (``eval()``) is converted instead; the fake-quant scales
and weights are the same tensors' values.

The saved program is PaddleSlim's ONNX-style QDQ format: weights stored as INT8 with
``dequantize_linear``, activations wrapped in ``quantize_linear``/``dequantize_linear``. It needs
:func:`export.int8.runtime.int8_inference_config` to run as INT8. A ``quant.json`` sidecar records the
precision, the config and which layers were kept FP32, so any loader can tell an INT8 directory apart.

Example::

    files = save_int8_inference(qat, model, "out/int8/inference", input_spec_for("det"))
    result = export_qat_checkpoint("det", "runs/det/x/checkpoints/best", "exports/det-int8")
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np
import paddle

from training.quant import (
    QuantConfig,
    QuantConfigError,
    build_qat_model,
    checkpoint_quant_block,
    is_qat_state_dict,
    quantizable_layers,
)
from training.models import arch_task

from export.inference_yml import write_inference_yml
from export.int8.runtime import QUANT_SIDECAR, Int8Engine, model_size_bytes
from export.parity import sample_batch
from export.int8.passes import optimize_int8_program
from export.int8.compact import compact_int8_program
from export.program_rewrite import fuse_conv_bias, open_inference_program

__all__ = ["save_int8_inference", "linear_layers_to_fp32", "input_spec_for", "load_qat_checkpoint", "is_qat_checkpoint",
           "export_qat_checkpoint", "int8_parity"]

log = logging.getLogger(__name__)


def input_spec_for(task: str, height: int = 48):
    """Dynamic input spec: det any N/H/W, rec any N/W at the trained height (as the FP32 export)."""
    from paddle.static import InputSpec

    shape = [None, 3, None, None] if task == "det" else [None, 3, int(height), None]
    return [InputSpec(shape=shape, dtype="float32", name="x")]


def _layer_params(model: paddle.nn.Layer) -> dict[str, dict[str, Any]]:
    """Layer name → weight variable name and whether it was wrapped, for the sidecar (and the tests that look
    for fake-quant ops around a skipped layer in the saved program)."""
    info = getattr(model, "_ocr_quant_info", None) or {}
    by_name = dict(model.named_sublayers())
    out: dict[str, dict[str, Any]] = {}
    for names, quantized in ((info.get("quantized_layers", []), True), (info.get("skipped_layers", []), False)):
        for name in names:
            layer = by_name.get(name)
            while layer is not None and getattr(layer, "weight", None) is None:
                layer = getattr(layer, "_layer", None)  # MAOutputScaleLayer → QuantizedConv2D (holds .weight)
            if layer is not None:
                out[name] = {"param": layer.weight.name, "quantized": quantized}
    return out


def save_int8_inference(qat_obj: Any, model: paddle.nn.Layer, out_prefix: str | os.PathLike,
                        input_spec: Sequence[Any], *, extra: Mapping[str, Any] | None = None,
                        fix_conv_bias: bool = True, optimize: bool = True,
                        compact: bool | None = None) -> dict[str, Any]:
    """Save the QAT ``model`` as an INT8 inference program at ``out_prefix`` (``.pdmodel/.pdiparams``).

    ``fix_conv_bias`` rewrites the conv bias adds so oneDNN fuses bias and activation into the INT8 convs
    (:mod:`export.program_rewrite`; numerically identical, 1.6× on PP-OCRv4 det with ``fold_affine``).
    ``optimize`` runs the exact element-wise rewrites of :mod:`export.int8.passes` (LAB → one ``scale`` op, SE
    residual ``x + x·g`` → ``x·(g+1)``) so fewer FP32 passes sit between the INT8 convs.
    ``compact`` (default: the config's ``compact``) stores the FP32-kept layers' weights as per-channel INT8
    and drops redundant tensors and debug attributes (:mod:`export.int8.compact`; ≥ 3.5× smaller than FP32).

    Writes ``quant.json`` beside it (precision, config, kept-FP32 layers, layer → weight variable names).
    The training model is left untouched and stays usable. Returns the sidecar content plus file sizes."""
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        frozen = copy.deepcopy(model)
    finally:
        if was_training:
            model.train()
    frozen.eval()
    qcfg = QuantConfig.from_mapping(getattr(qat_obj, "_ocr_qcfg", None) or _qcfg_from_slim(qat_obj))
    layers = _layer_params(frozen)
    # PACT: PaddleSlim re-quantizes its pre-wrap copy ``_model`` (without PACT) to save, in place — keep a
    # pristine copy so a second save does not wrap an already wrapped network.
    pristine = copy.deepcopy(qat_obj._model) if getattr(qat_obj, "_model", None) is not None else None
    try:
        with _known_harmless_save_messages():
            qat_obj.save_quantized_model(frozen, str(out_prefix), input_spec=list(input_spec))
    except Exception as exc:
        raise QuantConfigError(f"saving the INT8 model to {out_prefix} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if not paddle.in_dynamic_mode():  # PaddleSlim's PACT path leaves static mode on
            paddle.disable_static()
        if pristine is not None:
            qat_obj._model = pristine
    rewrites = {"linear_fp32": linear_layers_to_fp32(out_prefix),
                "conv_bias_fused": fuse_conv_bias(out_prefix) if fix_conv_bias else 0}
    if optimize:
        rewrites.update(optimize_int8_program(out_prefix))
    if qcfg.compact if compact is None else compact:
        rewrites["compact"] = compact_int8_program(out_prefix)
    info = getattr(model, "_ocr_quant_info", {}) or {}
    sidecar = {
        "precision": "int8",
        "format": "paddleslim-qdq-onnx",
        "runtime": "paddle-inference-onednn-int8 (export.int8.runtime.int8_inference_config)",
        "config": qcfg.to_dict(),
        "skipped_layers": list(info.get("skipped_layers", [n for n, v in layers.items() if not v["quantized"]])),
        "layers": layers,
        "program_rewrites": rewrites,
        "paddle": paddle.__version__,
        **dict(extra or {}),
    }
    (out_prefix.parent / QUANT_SIDECAR).write_text(json.dumps(sidecar, indent=1, ensure_ascii=False, default=str),
                                                   encoding="utf-8")
    sizes = model_size_bytes(out_prefix.parent) if out_prefix.name == "inference" else {}
    return {**sidecar, "sizes": sizes}


#: ops whose weight input ``Y`` is a Linear layer's [in, out] matrix in the saved program
_LINEAR_OPS = ("matmul_v2", "matmul", "mul")


def linear_layers_to_fp32(prefix: str | os.PathLike) -> int:
    """Make every QAT-quantized Linear layer of the saved program compute in FP32 with its fake-quantized
    weight; returns how many. Convs are left as they are.

    Why: Paddle 2.6's oneDNN INT8 passes mishandle a per-output-channel quantized [in, out] Linear weight
    (bench/RESULTS.md §4, PTQ). ``compute_propagate_scales_mkldnn_pass`` takes output channel *c*'s weight scale
    from the *c*-th run of ``in`` consecutive elements of the row-major matrix, not from column *c*: on
    PP-OCRv4 rec about half of each fc's channels were clipped (up to 15×) and 6 qkv channels had an all-zero
    run, scale ``inf``, so they output only the bias. And ``quant_dequant_mkldnn_pass`` dequantizes a *square*
    [n, n] weight along the input axis. The INT8 program then dropped characters the fake-quant model read
    (parity agreement 0.33). Here the weight is stored already dequantized (q · scale / 127, what fake quant
    multiplies by) and the layer's input quantize/dequantize pair is removed, so oneDNN has no input scale and
    runs the fc in FP32. ``compact`` can still store the non-square ones as weight-only INT8."""
    from paddle.base import core

    with open_inference_program(prefix) as loaded:
        block, scope = loaded.block, loaded.scope
        producer = {name: op for op in block.ops for name in op.output_arg_names}
        readers: dict[str, int] = {}
        for op in block.ops:
            for name in op.input_arg_names:
                readers[name] = readers.get(name, 0) + 1
        done = 0
        for op in list(block.ops):
            if op.type not in _LINEAR_OPS or not op.input("Y"):
                continue
            deq = producer.get(op.input("Y")[0])
            if deq is None or deq.type != "dequantize_linear":
                continue
            weight = deq.input("X")[0]
            var = block._find_var_recursive(weight)
            if var is None or not var.persistable or readers.get(deq.output("Y")[0], 0) != 1:
                continue
            q = np.array(scope.find_var(weight).get_tensor()).astype(np.float32)
            scale = np.array(scope.find_var(deq.input("Scale")[0]).get_tensor()).astype(np.float32)
            shape = [1] * q.ndim
            shape[int(deq.attr("quant_axis"))] = -1
            scope.find_var(weight).get_tensor().set((q * scale.reshape(shape) / 127.0).astype(np.float32),
                                                    paddle.CPUPlace())
            block.var(weight).desc.set_dtype(core.VarDesc.VarType.FP32)
            op._rename_input(deq.output("Y")[0], weight)
            block._remove_op(block.ops.index(deq))
            x = op.input("X")[0]
            act_deq = producer.get(x)
            act_q = None
            if act_deq is not None and act_deq.type == "dequantize_linear":
                act_q = producer.get(act_deq.input("X")[0])
            if act_q is not None and act_q.type == "quantize_linear":
                op._rename_input(x, act_q.input("X")[0])
                if readers.get(x, 0) == 1 and readers.get(act_deq.input("X")[0], 0) == 1:
                    block._remove_op(block.ops.index(act_deq))
                    block._remove_op(block.ops.index(act_q))
            done += 1
        if done:
            loaded.save(prefix)
    return done


def _qcfg_from_slim(qat_obj: Any) -> dict[str, Any]:
    cfg = dict(getattr(qat_obj, "config", {}) or {})
    return {"enabled": True, "weight_quantize_type": cfg.get("weight_quantize_type", "channel_wise_abs_max"),
            "activation_quantize_type": cfg.get("activation_quantize_type", "moving_average_abs_max"),
            "weight_bits": cfg.get("weight_bits", 8), "activation_bits": cfg.get("activation_bits", 8),
            "onnx_format": cfg.get("onnx_format", True),
            "use_pact": cfg.get("activation_preprocess_type") == "PACT",
            "quantizable_layer_type": cfg.get("quantizable_layer_type", ["Conv2D", "Linear"])}


# --------------------------------------------------------------------------------------------- checkpoints
def is_qat_checkpoint(path: str | os.PathLike) -> bool:
    """True for one of our checkpoints written while the model was QAT-wrapped (export's routing test)."""
    from training.quant import _checkpoint_is_qat, read_checkpoint_state

    found = read_checkpoint_state(path)
    if found is None:
        return False
    return _checkpoint_is_qat(*found)[0]


def load_qat_checkpoint(path: str | os.PathLike):
    """Rebuild a QAT checkpoint's wrapped model with its weights; returns
    ``(qat_obj, model (eval), model_cfg, charset, quant block, checkpoint state)``."""
    from datasets.charset import Charset
    from training.quant import _state_model_cfg
    from training.trainer.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, weights_only=True)
    block = checkpoint_quant_block(ckpt.state)
    if block is None:
        if is_qat_state_dict(ckpt.model):
            raise QuantConfigError(f"{ckpt.path}: QAT weights without a quant block in state.json; cannot tell "
                                   "which layers were kept FP32 — re-save it from the QAT run")
        raise QuantConfigError(f"{ckpt.path}: an FP32 checkpoint; export it with `python -m export` as usual")
    model_cfg = _state_model_cfg(ckpt.state)
    if model_cfg is None:
        raise QuantConfigError(f"{ckpt.path}: state.json holds no resolved model config (config.model.arch)")
    charset = None
    charset_data = (ckpt.state.get("extra") or {}).get("charset") or ckpt.state.get("charset")
    if charset_data is not None:
        charset = Charset.from_dict(dict(charset_data))
        model_cfg["num_classes"] = charset.num_classes
    qat, model = build_qat_model(model_cfg, block, ckpt.model)
    model.eval()
    return qat, model, model_cfg, charset, block, ckpt.state


# --------------------------------------------------------------------------------------------- parity
def int8_parity(task: str, model: paddle.nn.Layer, model_dir: str | os.PathLike, batch: np.ndarray, *,
                charset=None, num_threads: int | None = None, mean_tol: float = 0.02,
                min_agreement: float = 0.8) -> dict[str, Any]:
    """QAT dygraph (fake quant, FP32 math) vs Paddle Inference oneDNN INT8 on ``batch``.

    INT8 kernels are not bit-exact with fake quantization (rounding of requantized intermediates, fused
    activations), so the check is statistical — mean |Δ| — plus the decisions users see: det boxes matched
    1:1 at IoU ≥ 0.9, rec decoded texts identical, as a fraction."""
    from training.postprocess import DBPostProcess, ctc_greedy_decode

    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(batch))
    ref = np.asarray((out["maps"] if isinstance(out, dict) else out).numpy())
    got = Int8Engine(model_dir, num_threads=num_threads).run(batch)[0]
    report: dict[str, Any] = {"shape": list(ref.shape), "mean_tol": mean_tol, "min_agreement": min_agreement}
    if ref.shape != got.shape:
        return {**report, "ok": False, "error": f"shapes differ: dygraph {ref.shape} vs INT8 {got.shape}"}
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    report.update({"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())})
    if task == "det":
        post = DBPostProcess()
        agree = []
        for a, b in zip(ref[:, 0], got[:, 0]):
            na, nb = len(post(a, a.shape)), len(post(b, b.shape))
            agree.append(1.0 if na == nb else min(na, nb) / max(na, nb, 1))
            report.setdefault("boxes", []).append([na, nb])
        report["agreement"] = float(np.mean(agree))
        report["binary_agreement"] = float(((ref > 0.3) == (got > 0.3)).mean())
    else:
        from datasets.charset import Charset

        cs = charset or Charset.default()
        ta = [t for t, _ in ctc_greedy_decode(ref, cs)]
        tb = [t for t, _ in ctc_greedy_decode(got, cs)]
        report.update({"texts_dygraph": ta, "texts_int8": tb,
                       "agreement": float(np.mean([x == y for x, y in zip(ta, tb)])) if ta else 1.0})
    report["ok"] = bool(report["mean_abs_diff"] <= mean_tol and report["agreement"] >= min_agreement)
    return report


@contextlib.contextmanager
def _known_harmless_save_messages():
    """PaddleSlim's save converts with ``to_static`` without ``full_graph`` (Paddle warns that the input spec has
    no effect there; the saved program is checked by parity anyway) and reloads it the pre-2.5 way (Paddle logs a
    deprecation). Neither is something a user can act on, so both are silenced here, where they arise."""
    io_logger = logging.getLogger("paddle.static.io")
    level = io_logger.level
    io_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="full_graph=False don't support input_spec")
            yield
    finally:
        io_logger.setLevel(level)


# --------------------------------------------------------------------------------------------- export
def export_qat_checkpoint(task: str, checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *,
                          post_params: Mapping[str, Any] | None = None, limit_side_len: int = 736,
                          limit_type: str = "min", num_threads: int | None = None,
                          max_side_limit: int | None = None, max_upscale: float | None = None) -> dict[str, Any]:
    """QAT checkpoint → INT8 inference directory with ``inference.yml`` (serving pre/post-process, charset,
    ``quantization`` section) and ``parity.json`` (dygraph QAT vs oneDNN INT8).

    ``inference.yml`` is written with export's own writer; this function is what ``python -m export`` calls
    for QAT checkpoints. Returns the parity report with ``files``."""
    qat, model, model_cfg, charset, block, state = load_qat_checkpoint(checkpoint)
    ckpt_task = model_cfg.get("task") or arch_task(str(model_cfg.get("arch")))
    if ckpt_task != task:
        raise QuantConfigError(f"{checkpoint}: a {ckpt_task} checkpoint ({model_cfg.get('arch')}) cannot be exported as {task}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    height = int(((model_cfg.get("input") or {}).get("height")) or 48)
    provenance = {"source": "qat_checkpoint", "checkpoint": str(Path(checkpoint).resolve()), "step": state.get("step"),
                  "tracking_run_id": state.get("tracking_run_id"), "parent": block.get("parent")}
    sidecar = save_int8_inference(qat, model, out_dir / "inference", input_spec_for(task, height),
                                  extra={"provenance": provenance})
    quantization = {"precision": "int8", "runtime": "onednn_int8", "config": block.get("config"),
                    "skipped_layers": block.get("skipped_layers", []), "parent": block.get("parent")}
    extra = {"arch": model_cfg.get("arch"), "model_cfg": json.loads(json.dumps(model_cfg, default=str)),
             "provenance": json.loads(json.dumps(provenance, default=str)), "paddle_version": paddle.__version__,
             "quantization": json.loads(json.dumps(quantization, default=str))}
    if task == "det":
        write_inference_yml(out_dir, "det", model_name=f"{model_cfg.get('arch')}_int8", post_params=post_params,
                            limit_side_len=limit_side_len, limit_type=limit_type, max_side_limit=max_side_limit,
                            max_upscale=max_upscale, extra=extra)
    else:
        min_width = int(((model_cfg.get("input") or {}).get("min_width")) or 320)
        write_inference_yml(out_dir, "rec", model_name=f"{model_cfg.get('arch')}_int8", charset=charset,
                            image_shape=[3, height, min_width], extra=extra)
    report = int8_parity(task, model, out_dir, sample_batch(task, height=height), charset=charset,
                         num_threads=num_threads)
    report["sizes"] = sidecar["sizes"]
    (out_dir / "parity.json").write_text(json.dumps({"task": task, "precision": "int8", **report}, indent=1,
                                                    ensure_ascii=False, default=str), encoding="utf-8")
    report["files"] = sorted(p.name for p in out_dir.iterdir())
    report["out_dir"] = str(out_dir)
    return report

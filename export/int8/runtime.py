"""Running a saved QAT model as real INT8 on CPU (Paddle Inference + oneDNN), and checking that it does.

Why a separate config: a QAT model in ONNX format holds ``quantize_linear``/``dequantize_linear`` pairs
around FP32 weights stored as INT8. Run with the plain FP32 config (even with oneDNN) those ops execute as
written — fake quantization in FP32, 1.5–9× *slower* than the FP32 parent (STACK.md item 6). Only
``enable_mkldnn_int8()`` switches on the ``quant_dequant_mkldnn_pass`` → ``compute_propagate_scales`` →
``cpu_quantize_placement/cpu_quantize/cpu_quantize_squash`` passes that fold the scales into INT8 oneDNN
kernels (``fused_conv2d`` with ``mkldnn_data_type=int8``) and drop the quant/dequant round trips.

``optimized_op_report`` reads the program Paddle actually runs (``switch_ir_debug`` dumps) and counts op
types and INT8 vs FP32 kernels — how the bench explains where INT8 does or does not pay.

Example::

    engine = Int8Engine(model_dir, num_threads=2)       # same .run(batch) as export.engine.InferenceEngine
    (maps,) = engine.run(batch)
    int8_inference_config(model_dir, 2)                 # the paddle.inference.Config, for other callers
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

from export.inference_config import PredictorRunner, inference_config

import numpy as np

__all__ = ["QUANT_SIDECAR", "int8_inference_config", "is_int8_model_dir", "Int8Engine", "Int8RuntimeOptions",
           "optimized_op_report", "saved_program_report", "model_size_bytes"]

#: written beside a saved INT8 model by :func:`export.int8.save.save_int8_inference`
QUANT_SIDECAR = "quant.json"


def is_int8_model_dir(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir`` holds a QAT INT8 model: our ``quant.json`` sidecar, or ``inference.yml`` whose
    own section says ``quantization.precision: int8``."""
    model_dir = Path(model_dir)
    sidecar = model_dir / QUANT_SIDECAR
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text(encoding="utf-8")).get("precision") == "int8"
        except (OSError, json.JSONDecodeError):
            return False
    yml = model_dir / "inference.yml"
    if yml.is_file():
        import yaml

        try:
            doc = yaml.safe_load(yml.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            return False
        for section in doc.values():
            if isinstance(section, dict) and isinstance(section.get("quantization"), dict):
                return section["quantization"].get("precision") == "int8"
    return False


#: op types oneDNN may run in INT8: the ones QAT wrapped (convs, matmuls). Paddle's default (empty set = all it
#: can) also runs pool2d/concat/nearest_interp in INT8 with *propagated* scales that training never simulated:
#: on PP-OCRv4 det that cost 0.4 hmean points for a 3–5 % speed gain (QAT run of 40 steps, 50 synthetic images).
#: ``None`` restores Paddle's default.
INT8_OP_TYPES: frozenset[str] | None = frozenset({"conv2d", "depthwise_conv2d", "fused_conv2d", "matmul", "matmul_v2",
                                                  "fused_matmul", "fc"})


def int8_inference_config(model_dir: str | os.PathLike, num_threads: int | None = None, *,
                          mkldnn_cache: int = 10, ir_debug: bool = False, op_types=None):
    """``paddle.inference.Config`` that runs a QAT model with oneDNN INT8 kernels on CPU.

    Built on :func:`export.inference_config.inference_config` (threads, oneDNN, memory optimisation, and the
    ``self_attention_fuse_pass`` removal that avoids SIGILL for SVTR on AVX2-only CPUs). ``enable_mkldnn_int8``
    rebuilds part of the pass list, so the SVTR pass is deleted again afterwards. ``mkldnn_cache`` bounds the
    per-shape primitive cache (detectors see many input sizes). ``op_types`` overrides :data:`INT8_OP_TYPES`
    (an empty set lets Paddle quantize every op it can)."""
    config = inference_config(model_dir, use_gpu=False, num_threads=num_threads, enable_mkldnn=True,
                                      mkldnn_cache=mkldnn_cache, ir_optim=True)
    types = INT8_OP_TYPES if op_types is None else op_types
    config.enable_mkldnn_int8(set(types or ()))
    config.delete_pass("self_attention_fuse_pass")
    if ir_debug:
        config.switch_ir_debug(True)
    return config


@dataclass(frozen=True)
class Int8RuntimeOptions:
    """Mirrors ``export.engine.RuntimeOptions.describe()`` so evaluation reports look the same."""

    num_threads: int | None = None
    mkldnn_cache: int = 10

    def describe(self) -> dict[str, Any]:
        info = asdict(self)
        info.update({"use_gpu": False, "enable_mkldnn": True, "precision": "int8",
                     "num_threads": self.num_threads or os.cpu_count() or 1})
        return info


class Int8Engine:
    """A Paddle Inference predictor for a QAT INT8 directory, with ``InferenceEngine``'s interface
    (``run(batch) -> [outputs]``, ``options.describe()``, ``input_names``/``output_names``)."""

    def __init__(self, model_dir: str | os.PathLike, runtime_opts: Any = None, *, num_threads: int | None = None,
                 mkldnn_cache: int = 10, quiet: bool = True) -> None:
        from paddle import inference

        self.shrink_memory = False
        if runtime_opts is not None:  # an export.engine.RuntimeOptions (or anything with these attributes)
            num_threads = getattr(runtime_opts, "num_threads", num_threads)
            mkldnn_cache = getattr(runtime_opts, "mkldnn_cache", mkldnn_cache)
            self.shrink_memory = bool(getattr(runtime_opts, "shrink_memory", False))
        self.model_dir = Path(model_dir)
        self.options = Int8RuntimeOptions(num_threads=num_threads, mkldnn_cache=mkldnn_cache)
        with _native_output_silenced(quiet):  # the INT8 passes print a 30-line summary (C++, fd 2)
            predictor = inference.create_predictor(
                int8_inference_config(self.model_dir, num_threads, mkldnn_cache=mkldnn_cache))
        self._runner = PredictorRunner(predictor, self.model_dir, shrink_memory=self.shrink_memory)
        self._predictor = predictor
        self.input_names, self.output_names = self._runner.input_names, self._runner.output_names

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._runner.run(batch)


@contextlib.contextmanager
def _native_output_silenced(enabled: bool = True):
    """Send file descriptor 2 to /dev/null while the predictor is built: the oneDNN INT8 passes print a
    ~30-line "quantized N ops" summary from C++ (bypassing ``sys.stderr``) for every predictor. Failures still
    raise Python exceptions with their message."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded runners): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def model_size_bytes(model_dir: str | os.PathLike) -> dict[str, int]:
    """Bytes of ``inference.pdmodel`` and ``inference.pdiparams`` (QAT stores conv/linear weights as INT8)."""
    model_dir = Path(model_dir)
    sizes = {name: (model_dir / name).stat().st_size for name in ("inference.pdmodel", "inference.pdiparams")
             if (model_dir / name).is_file()}
    sizes["total"] = sum(sizes.values())
    return sizes


# --------------------------------------------------------------------------------------------- inspection
def _program_ops(pdmodel_bytes: bytes) -> list[dict[str, Any]]:
    from paddle.base import core

    desc = core.ProgramDesc(pdmodel_bytes)
    block = desc.block(0)
    ops = []
    for i in range(block.op_size()):
        op = block.op(i)
        entry: dict[str, Any] = {"type": op.type(), "inputs": {k: op.input(k) for k in op.input_names()},
                                 "outputs": {k: op.output(k) for k in op.output_names()}}
        for attr in ("mkldnn_data_type", "fuse_activation", "force_fp32_output", "fuse_residual_connection"):
            if op.has_attr(attr):
                entry[attr] = op.attr(attr)
        ops.append(entry)
    return ops


def saved_program_report(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Per conv/linear op of a *saved* program: whether its weight and its input pass through
    ``dequantize_linear`` (i.e. were quantized). Keyed by the weight's variable name; used by the tests to
    prove a skipped layer has no fake-quant ops around it. A skipped layer whose weight is only *stored* INT8
    (``weight_only_int8``, :mod:`export.int8.compact`) counts as not quantized: it computes in FP32."""
    from export.int8.compact import WEIGHT_ONLY_SUFFIX

    ops = _program_ops((Path(model_dir) / "inference.pdmodel").read_bytes())
    producer = {name: op["type"] for op in ops for names in op["outputs"].values() for name in names}
    weight_slot = {"conv2d": "Filter", "depthwise_conv2d": "Filter", "conv2d_transpose": "Filter",
                   "matmul_v2": "Y", "matmul": "Y", "mul": "Y"}
    dequant_src = {op["outputs"]["Y"][0]: op["inputs"]["X"][0] for op in ops
                   if op["type"] == "dequantize_linear" and op["outputs"].get("Y")}
    layers: dict[str, dict[str, Any]] = {}
    for op in ops:
        slot = weight_slot.get(op["type"])
        if slot is None or not op["inputs"].get(slot):
            continue
        w = op["inputs"][slot][0]
        x_slot = "Input" if "Input" in op["inputs"] else "X"
        x = op["inputs"][x_slot][0]
        weight_only = w.endswith(WEIGHT_ONLY_SUFFIX)  # stored INT8, computed FP32 (export.int8.compact)
        w_quant = producer.get(w) == "dequantize_linear" and not weight_only
        weight_name = dequant_src.get(w, w)
        layers[weight_name] = {"op": op["type"], "weight_quantized": w_quant, "weight_only_int8": weight_only,
                               "input_quantized": producer.get(x) == "dequantize_linear"}
    counts = Counter(op["type"] for op in ops)
    return {"layers": layers, "op_counts": dict(counts)}


_DUMP_SCRIPT = r"""
import sys
sys.path[:0] = {paths!r}
import datasets.runtime  # noqa: F401 -- zlib before paddle
from paddle import inference
from export.int8.runtime import int8_inference_config
from export.inference_config import inference_config
mode = {mode!r}
if mode == "int8":
    config = int8_inference_config({model_dir!r}, 1, ir_debug=True)
else:
    config = inference_config({model_dir!r}, num_threads=1, enable_mkldnn=(mode == "fp32_onednn"))
    config.switch_ir_debug(True)
inference.create_predictor(config)
"""


def optimized_op_report(model_dir: str | os.PathLike, mode: str = "int8") -> dict[str, Any]:
    """Op types of the program Paddle Inference really runs for ``model_dir`` (``mode``: ``int8``,
    ``fp32_onednn``, ``fp32``), with INT8 vs FP32 oneDNN kernels counted.

    ``switch_ir_debug`` writes one ``<pass>.pdmodel`` per pass into the working directory, so the predictor is
    created in a child process inside a temp dir (keeps the caller's cwd clean and the dump isolated). The
    last pass's dump is the optimised program."""
    model_dir = Path(model_dir).resolve()
    repo_root = str(Path(__file__).resolve().parents[2])
    script = _DUMP_SCRIPT.format(paths=[repo_root], mode=mode, model_dir=str(model_dir))
    with tempfile.TemporaryDirectory(prefix="ir-debug-") as tmp:
        proc = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"creating the predictor for {model_dir} failed: {proc.stderr.strip()[-800:]}")
        dumps = sorted(Path(tmp).glob("*.pdmodel"), key=lambda p: p.stat().st_mtime_ns)
        if not dumps:
            raise RuntimeError(f"no IR dump was written for {model_dir} (switch_ir_debug produced nothing)")
        ops = _program_ops(dumps[-1].read_bytes())
        last_pass = dumps[-1].stem
    counts = Counter(op["type"] for op in ops)
    kinds = Counter((op["type"], op.get("mkldnn_data_type", "")) for op in ops if "mkldnn_data_type" in op)
    int8_ops = sum(n for (t, d), n in kinds.items() if d == "int8")
    fp32_compute = {t: n for (t, d), n in kinds.items() if d != "int8" and t not in ("feed", "fetch")}
    convs = [op for op in ops if op["type"] in ("fused_conv2d", "conv2d", "depthwise_conv2d", "conv2d_transpose")]
    return {
        "mode": mode, "last_pass": last_pass, "num_ops": len(ops), "op_counts": dict(counts.most_common()),
        "int8_ops": int8_ops, "fp32_ops_with_onednn_type": fp32_compute,
        "quantize_ops": counts.get("quantize", 0), "dequantize_ops": counts.get("dequantize", 0),
        "requantize_ops": counts.get("requantize", 0),
        "convs": {"total": len(convs), "int8": sum(op.get("mkldnn_data_type") == "int8" for op in convs),
                  "int8_fp32_output": sum(bool(op.get("force_fp32_output")) for op in convs
                                          if op.get("mkldnn_data_type") == "int8"),
                  "fused_activation": dict(Counter(op.get("fuse_activation") or "none" for op in convs))},
    }

"""Making a saved INT8 program smaller: weight-only INT8 for the layers that stay FP32, one shared zero point,
no debug attributes.

Why: after QAT the INT8 files were only 2.7× (PP-OCRv4 det) and 1.9× (rec) smaller than FP32, because the layers
kept FP32 for accuracy or speed (the first conv, the SE convs, the CTC classifier — 3.2 MB of the rec's 5.8 MB)
are stored as FP32, every ``quantize_linear``/``dequantize_linear`` carries its own all-zero INT32 zero-point
tensor, and each op keeps its Python call stack as an attribute.

Weight-only INT8 stores such a weight as INT8 with one abs-max scale per output channel and puts a
``dequantize_linear`` in front of its op; the activations stay FP32, so the op's arithmetic is unchanged apart
from the weight rounding. What Paddle Inference 2.6 does with it (measured, ``bench/RESULTS.md`` §4):

* INT8 config (:func:`export.int8.runtime.int8_inference_config`): ``quant_dequant_mkldnn_pass`` removes every
  ``dequantize_linear`` and turns the INT8 weights of ``conv2d``/``depthwise_conv2d``/``mul``/``matmul``/
  ``matmul_v2`` back into FP32 tensors once, at load; the op is marked ``skip_quant`` (its input has no
  quantize op) and runs in FP32 exactly as before. So only those op types are compacted — a
  ``conv2d_transpose`` weight would stay INT8 and be read as FP32.
* plain FP32 configs run the ``dequantize_linear`` as an op on every call.

The pass's load-time conversion picks the scale axis by size (dim 0 if it matches, else dim 1), so a square
``[n, n]`` matmul weight (scales along dim 1) would be scaled along the wrong axis: those are left FP32.

Example::

    report = compact_int8_program("out/int8/inference")    # rewrites .pdmodel/.pdiparams in place
    report["weight_only"]["layers"]   # weight name -> {"op", "shape", "axis", "bytes_saved"}
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

from export.program_rewrite import open_inference_program

__all__ = ["compact_int8_program", "WEIGHT_ONLY_OPS", "WEIGHT_ONLY_SUFFIX", "DEBUG_ATTRS", "MIN_SAVED_BYTES"]

#: op type -> (weight input slot, per-channel axis of the stored weight): the ops whose INT8 weights
#: ``quant_dequant_mkldnn_pass`` converts back to FP32 at load (conv filters are [out, in, kh, kw]; Paddle
#: Linear weights are [in, out])
WEIGHT_ONLY_OPS: dict[str, tuple[str, int]] = {
    "conv2d": ("Filter", 0), "depthwise_conv2d": ("Filter", 0),
    "matmul_v2": ("Y", 1), "matmul": ("Y", 1), "mul": ("Y", 1),
}
#: name suffix of the FP32 output of an inserted weight-only ``dequantize_linear`` (how readers tell a
#: weight-only layer from a QAT-quantized one, see :func:`export.int8.runtime.saved_program_report`)
WEIGHT_ONLY_SUFFIX = "@weight_only"
#: op attributes inference does not read (call stacks and name scopes for error messages and viewers, the
#: training role, an empty device); absent, they take their defaults when the program is loaded
DEBUG_ATTRS = ("op_callstack", "op_namescope", "op_role_var", "op_role", "op_device")
_ZERO_POINT_OPS = ("quantize_linear", "dequantize_linear")
_SHORT = re.compile(r"t[0-9a-f]+")  # names given by an earlier compaction
#: a weight-only layer must save at least this much: the first conv (16×3×3×3, 1.2 kB to gain) reads the raw
#: image, and rounding its weights alone changed 5.5 % of PP-OCRv4 rec's decoded lines (vs ≈ 2 % per SE pair)
MIN_SAVED_BYTES = 4096


def compact_int8_program(prefix: str | os.PathLike, *, weight_only: bool | Iterable[str] = True,
                         share_zero_points: bool = True, strip_debug: bool = True) -> dict[str, Any]:
    """Rewrite ``prefix.pdmodel``/``.pdiparams`` (a saved QDQ INT8 program) in place to be smaller.

    ``weight_only``: every FP32 weight of a :data:`WEIGHT_ONLY_OPS` op whose INT8 storage saves bytes is
    stored INT8 per channel behind a ``dequantize_linear`` (an iterable of op types limits it to those, e.g.
    ``("matmul_v2",)`` for the CTC classifier alone). ``share_zero_points``: all-zero zero-point
    tensors of the same shape become one. ``strip_debug``: :data:`DEBUG_ATTRS` and the identity output scales
    are dropped and intermediates get short names. Returns what was changed and the file sizes before/after;
    the files are replaced only after the new ones are written. Compacting twice changes nothing more."""
    prefix = Path(prefix)
    for suffix in (".pdmodel", ".pdiparams"):
        if not (prefix.parent / f"{prefix.name}{suffix}").is_file():
            raise FileNotFoundError(f"{prefix}{suffix}: no such file (compact_int8_program needs a saved INT8 program)")
    op_types = set(WEIGHT_ONLY_OPS) if weight_only is True else set(weight_only or ())
    unknown = sorted(op_types - set(WEIGHT_ONLY_OPS))
    if unknown:
        raise ValueError(f"weight_only op types {unknown}: only {sorted(WEIGHT_ONLY_OPS)} are dequantized at load")
    before = _sizes(prefix)
    with open_inference_program(prefix) as loaded:
        block, scope, feed_names = loaded.block, loaded.scope, loaded.feed_names
        report: dict[str, Any] = {}
        if op_types:
            report["weight_only"] = _weight_only(block, scope, op_types)
        if share_zero_points:
            report["zero_points_removed"] = _share_zero_points(block, scope)
        fetch_names = [v.name for v in loaded.fetch_vars]
        if strip_debug:
            report["identity_scales_removed"] = _drop_output_scales(block, fetch_names)
            report["names_shortened"] = _short_names(block, set(feed_names) | set(fetch_names))
        loaded.program._sync_with_cpp()
        report["debug_attrs_removed"] = _save_replacing(prefix, loaded.program, [block.var(n) for n in feed_names],
                                                        [block.var(n) for n in fetch_names], loaded.exe,
                                                        strip_debug=strip_debug)
    report["sizes_before"], report["sizes_after"] = before, _sizes(prefix)
    return report


# --------------------------------------------------------------------------------------------- weight-only
def _weight_only(block, scope, op_types: set[str]) -> dict[str, Any]:
    """Store eligible FP32 weights as per-channel INT8 behind a ``dequantize_linear``; returns what was done
    and what was left FP32 (with the reason)."""
    consumers: dict[str, list] = {}
    producers: set[str] = set()
    for op in block.ops:
        for name in op.input_arg_names:
            consumers.setdefault(name, []).append(op)
        producers.update(op.output_arg_names)
    done: dict[str, dict[str, Any]] = {}
    kept: dict[str, str] = {}
    for op in list(block.ops):
        spec = WEIGHT_ONLY_OPS.get(op.type) if op.type in op_types else None
        if spec is None or not op.input(spec[0]):
            continue
        slot, axis = spec
        name = op.input(slot)[0]
        if name in done or name in kept:
            continue
        var = block._find_var_recursive(name)
        if var is None or not var.persistable or name in producers:
            continue  # an activation, or already behind a dequantize_linear (QAT-quantized)
        why = _ineligible(op, name, var, consumers.get(name, []), scope, axis)
        if why:
            kept[name] = why
            continue
        done[name] = _quantize_weight(block, scope, name, axis, consumers[name])
        done[name]["op"] = op.type
    return {"layers": done, "kept_fp32": kept,
            "bytes_saved": int(sum(v["bytes_saved"] for v in done.values()))}


def _ineligible(op, name: str, var, users: list, scope, axis: int) -> str | None:
    """Why ``name`` must stay FP32, or None."""
    from paddle.base import core

    if var.dtype != core.VarDesc.VarType.FP32:
        return f"dtype {var.dtype}"
    if any(u.type not in WEIGHT_ONLY_OPS for u in users):
        return "also read by " + ",".join(sorted({u.type for u in users if u.type not in WEIGHT_ONLY_OPS}))
    if op.type in ("matmul_v2", "matmul", "mul"):
        if any(op.has_attr(a) and op.attr(a) for a in ("trans_y", "transpose_Y")):
            return "transposed weight"
    shape = list(var.shape)
    if len(shape) < 2:
        return "not a matrix/filter"
    if axis == 1 and shape[0] == shape[1]:
        return "square matmul weight (the oneDNN load-time dequantization would scale the wrong axis)"
    saved = 3 * int(np.prod(shape)) - 4 * shape[axis]  # FP32 → INT8, plus a 4-byte scale per channel
    if saved < MIN_SAVED_BYTES:
        return f"too small to gain ({saved} bytes)"
    if scope.find_var(name) is None:
        return "no value"
    return None


def _quantize_weight(block, scope, name: str, axis: int, users: list) -> dict[str, Any]:
    """Replace the FP32 tensor ``name`` by INT8 + per-channel abs-max scale; the users read the dequantized copy.

    Rounding matches ``dequantize_linear`` (value = q · scale / 127) and the oneDNN pass's conversion."""
    import paddle
    from paddle.base import core

    tensor = scope.find_var(name).get_tensor()
    w = np.array(tensor).astype(np.float32)
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    scale = np.abs(w).max(axis=reduce_axes).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    safe = np.where(scale > 0, scale, 1.0).reshape(shape)
    q = np.clip(np.round(w / safe * 127.0), -127, 127).astype(np.int8)
    place = paddle.CPUPlace()
    tensor.set(q, place)
    block.var(name).desc.set_dtype(core.VarDesc.VarType.INT8)
    scale_name, zero_name, out_name = f"{name}@wo_scale", f"{name}@wo_zero_point", f"{name}{WEIGHT_ONLY_SUFFIX}"
    # a one-element zero point: Paddle 2.6 quantizes symmetrically and ignores its values; the outputs were
    # bit-identical to a per-channel one under the INT8, oneDNN FP32 and plain configs (the CTC fc's was 26 kB)
    channels = int(w.shape[axis])
    block.create_var(name=scale_name, shape=[channels], dtype="float32", persistable=True)
    block.create_var(name=zero_name, shape=[1], dtype="int32", persistable=True)  # shared later, see above
    block.create_var(name=out_name, shape=list(w.shape), dtype="float32", persistable=False)
    scope.var(scale_name).get_tensor().set(scale, place)
    scope.var(zero_name).get_tensor().set(np.zeros(1, np.int32), place)
    first = min(block.ops.index(u) for u in users)
    block._insert_op(first, type="dequantize_linear",
                     inputs={"X": [name], "Scale": [scale_name], "ZeroPoint": [zero_name]},
                     outputs={"Y": [out_name]}, attrs={"quant_axis": axis, "bit_length": 8})
    for u in users:
        u._rename_input(name, out_name)
    err = np.abs(q.astype(np.float32) * safe / 127.0 - w)
    return {"shape": list(w.shape), "axis": axis, "bytes_saved": int(w.nbytes - q.nbytes - 4 * channels),
            "max_abs_err": float(err.max()), "rel_err": float(err.mean() / max(float(np.abs(w).mean()), 1e-12))}


# --------------------------------------------------------------------------------------------- zero points
def _share_zero_points(block, scope) -> int:
    """Point every all-zero ``ZeroPoint`` input of the same shape/dtype at one tensor; returns how many
    tensors were dropped. (Paddle 2.6 supports symmetric quantization only: the values are all zero.)"""
    canonical: dict[tuple, str] = {}
    target: dict[str, str] = {}
    for op in block.ops:
        if op.type not in _ZERO_POINT_OPS or not op.input("ZeroPoint"):
            continue
        name = op.input("ZeroPoint")[0]
        found = scope.find_var(name)
        if name in target or found is None:
            continue
        value = np.array(found.get_tensor())
        if value.size and np.any(value != 0):
            continue
        target[name] = canonical.setdefault((str(value.dtype), tuple(value.shape)), name)
    renamed = {old: new for old, new in target.items() if old != new}
    for op in block.ops:
        for old in set(op.input_arg_names) & set(renamed):
            op._rename_input(old, renamed[old])
    for old in renamed:
        block._remove_var(old)
    return len(renamed)


def _short_names(block, keep: set[str]) -> int:
    """Rename the non-persistable intermediates (``conv2d_350.tmp_1.quantized.dequantized`` …) to short
    names; each is stored three times (var desc, producer, consumer). Kept: ``keep`` (feed/fetch names, which
    predictors show) and the weight-only outputs (their suffix marks the layer as weight-only INT8)."""
    taken = {v.name for v in block.vars.values()}
    index = renamed = 0
    for name in sorted(taken):
        var = block.var(name)
        if (var.persistable or name in keep or name in ("feed", "fetch") or name.endswith(WEIGHT_ONLY_SUFFIX)
                or _SHORT.fullmatch(name)):
            continue
        short = f"t{index:x}"
        while short in taken:
            index += 1
            short = f"t{index:x}"
        block._rename_var(name, short)
        taken.add(short)
        renamed += 1
        index += 1
    return renamed


def _drop_output_scales(block, fetch_names: list[str]) -> int:
    """Remove the identity ``scale`` ops (×1 + 0) in front of the outputs: every load/save round trip of a
    program (PaddleSlim's save, each rewrite) appends one, and saving adds a single fresh one back.
    ``fetch_names`` is updated in place to the vars the outputs really come from."""
    removed = 0
    for idx in reversed(range(len(block.ops))):
        op = block.ops[idx]
        if op.type != "scale" or (op.input("ScaleTensor") if "ScaleTensor" in op.input_names else []):
            continue
        if float(op.attr("scale")) != 1.0 or float(op.attr("bias")) != 0.0:
            continue
        src, dst = op.input("X")[0], op.output("Out")[0]
        if dst not in fetch_names or any(dst in o.input_arg_names for o in block.ops if o is not op and o.type != "fetch"):
            continue
        for other in block.ops:
            if other.type == "fetch" and dst in other.input_arg_names:
                other._rename_input(dst, src)
        block._remove_op(idx)
        fetch_names[fetch_names.index(dst)] = src
        removed += 1
    return removed


def _strip_debug_attrs(pdmodel: Path) -> int:
    """Drop :data:`DEBUG_ATTRS` from every op of a saved ``.pdmodel``, in place. Done on the serialized
    program because saving re-adds them (``op_device`` to every op, call stacks to the feed/fetch ops)."""
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc.FromString(pdmodel.read_bytes())
    removed = 0
    for block in desc.blocks:
        for op in block.ops:
            drop = [a for a in op.attrs if a.name in DEBUG_ATTRS and not (a.name == "op_device" and a.s)]
            for attr in drop:
                op.attrs.remove(attr)
            removed += len(drop)
    pdmodel.write_bytes(desc.SerializeToString())
    return removed


# --------------------------------------------------------------------------------------------- files
def _sizes(prefix: Path) -> dict[str, int]:
    out = {s: (prefix.parent / f"{prefix.name}{s}").stat().st_size for s in (".pdmodel", ".pdiparams")
           if (prefix.parent / f"{prefix.name}{s}").is_file()}
    out["total"] = sum(out.values())
    return out


def _save_replacing(prefix: Path, program, feed_vars, fetch_vars, exe, *, strip_debug: bool) -> int:
    """Save beside the originals, then move the new files over them (a failed save leaves the old pair).
    Returns the number of debug attributes removed."""
    import paddle

    tmp = Path(tempfile.mkdtemp(prefix=".compact-", dir=prefix.parent))
    try:
        paddle.static.save_inference_model(str(tmp / prefix.name), feed_vars, fetch_vars, exe, program=program)
        removed = _strip_debug_attrs(tmp / f"{prefix.name}.pdmodel") if strip_debug else 0
        for suffix in (".pdiparams", ".pdmodel"):
            os.replace(tmp / f"{prefix.name}{suffix}", prefix.parent / f"{prefix.name}{suffix}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return removed

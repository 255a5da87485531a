"""Exact rewrites of a saved INT8 (QDQ) program that cut the FP32 element-wise work oneDNN cannot quantize.

Why: after the conv-bias rewrite (:mod:`export.program_rewrite`) and the affine folds (:mod:`training.quant_fold`),
what keeps PP-OCRv4's INT8 programs from running faster is FP32 element-wise work between INT8 convs: Paddle
2.6's ``cpu_quantize_pass`` quantizes ``elementwise_add/mul`` only when *both* inputs are tensors with scales, so
a learnable affine block (``x·s`` then ``+t`` with 1-element parameters) and the neck's SE residual
(``x + x·g``) stay FP32, each op a full pass over the feature map. Measured with ``ONEDNN_VERBOSE`` on the det
INT8 program: FP32 ``binary_add``/``binary_mul`` were ~30 % of the time, FP32→INT8 reorders ~15 %.

Three rewrites, all the same arithmetic:

* ``affine_to_scale``: ``elementwise_add(elementwise_mul(x, s), t)`` with 1-element persistable ``s``, ``t`` →
  one ``scale`` op (``s·x + t``): one pass over ``x`` instead of two;
* ``se_residual_to_mul``: ``x + x·g`` (``g`` a per-channel gate ``[N, C, 1, 1]``) → ``x·(g + 1)``, the ``+1`` on
  the tiny gate: one pass instead of two;
* ``drop_identity_scales``: the chain of ``scale(·, 1, 0)`` ops each save appends before the fetch, one per save.

Rounding may differ in the last bit (a fused multiply-add, ``x·(1+g)`` instead of ``x + x·g``). The parity
check against the dygraph fake-quant model runs after these rewrites, as before.

Example::

    counts = optimize_int8_program("out/int8/inference")   # {"affine_to_scale": 15, "se_residual_to_mul": 8, …}
"""
from __future__ import annotations

import os
from typing import Any

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

from export.program_rewrite import open_inference_program

__all__ = ["optimize_int8_program", "affine_to_scale", "se_residual_to_mul", "PASSES"]


def _consumers(block) -> dict[str, list]:
    out: dict[str, list] = {}
    for op in block.ops:
        for name in op.input_arg_names:
            out.setdefault(name, []).append(op)
    return out


def _producers(block) -> dict[str, Any]:
    return {name: op for op in block.ops for name in op.output_arg_names}


def _scalar_param(block, scope, name: str) -> float | None:
    """The value of a 1-element persistable variable, else None."""
    var = block._find_var_recursive(name)
    if var is None or not var.persistable:
        return None
    found = scope.find_var(name)
    if found is None:
        return None
    value = np.asarray(found.get_tensor())
    return float(value.reshape(-1)[0]) if value.size == 1 else None


def _only_add_reader(consumers: dict[str, list], name: str) -> Any | None:
    """The ``elementwise_add`` that is the sole reader of ``name``, else None (a rewrite that fuses the producer
    into that add must not change what any other reader sees)."""
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].type == "elementwise_add" else None


def _index(block, op) -> int:
    return next(i for i, o in enumerate(block.ops) if o is op)


def affine_to_scale(block, scope) -> int:
    """``(x·s) + t`` with scalar parameters → ``scale(x, s, t)``. Returns the number rewritten."""
    consumers = _consumers(block)
    done = 0
    for mul in [op for op in block.ops if op.type == "elementwise_mul"]:
        xs, ys = mul.input("X")[0], mul.input("Y")[0]
        s, x = _scalar_param(block, scope, xs), ys
        if s is None:
            s, x = _scalar_param(block, scope, ys), xs
        if s is None or _scalar_param(block, scope, x) is not None:
            continue
        out = mul.output("Out")[0]
        add = _only_add_reader(consumers, out)
        if add is None:
            continue
        other = add.input("Y")[0] if add.input("X")[0] == out else add.input("X")[0]
        t = _scalar_param(block, scope, other)
        if t is None:
            continue
        idx = _index(block, mul)
        block._insert_op(idx, type="scale", inputs={"X": [x]}, outputs={"Out": [add.output("Out")[0]]},
                         attrs={"scale": s, "bias": t, "bias_after_scale": True})
        block._remove_op(_index(block, add))
        block._remove_op(_index(block, mul))
        done += 1
    return done


def se_residual_to_mul(block, scope) -> int:
    """``x + x·g`` with a per-channel gate ``g`` ([N, C, 1, 1]) → ``x·(g + 1)``. Returns the number rewritten."""
    consumers = _consumers(block)
    done = 0
    for mul in [op for op in block.ops if op.type == "elementwise_mul"]:
        x, g = mul.input("X")[0], mul.input("Y")[0]
        gvar, xvar = block._find_var_recursive(g), block._find_var_recursive(x)
        if gvar is None or xvar is None or gvar.persistable or xvar.persistable:
            continue
        gshape, xshape = list(gvar.shape), list(xvar.shape)
        if len(gshape) != 4 or gshape[2:] != [1, 1] or len(xshape) != 4 or mul.attr("axis") not in (-1, 0):
            continue
        out = mul.output("Out")[0]
        add = _only_add_reader(consumers, out)
        if add is None:
            continue
        if sorted([add.input("X")[0], add.input("Y")[0]]) != sorted([x, out]) or add.attr("axis") not in (-1, 0):
            continue
        gate = block.create_var(name=f"{g}.plus_one", shape=gvar.shape, dtype=gvar.dtype)
        idx = _index(block, mul)
        block._insert_op(idx, type="scale", inputs={"X": [g]}, outputs={"Out": [gate.name]},
                         attrs={"scale": 1.0, "bias": 1.0, "bias_after_scale": True})
        block._insert_op(idx + 1, type="elementwise_mul", inputs={"X": [x], "Y": [gate.name]},
                         outputs={"Out": [add.output("Out")[0]]}, attrs={"axis": -1})
        block._remove_op(_index(block, add))
        block._remove_op(_index(block, mul))
        done += 1
    return done


def drop_identity_scales(block, scope) -> int:
    """Remove ``scale(x, 1, 0)`` ops whose input comes from a single-output op: the producer writes the scale's
    output directly. ``save_inference_model`` appends one such op before every fetch on *each* save, so a
    program saved, rewritten and saved again carries a chain of them on the full output (three on the rec's
    [N, 40, 6625] softmax: 3 % of its INT8 time); the final save adds exactly one back."""
    consumers = _consumers(block)
    producers = _producers(block)
    done = 0
    for op in [o for o in block.ops if o.type == "scale"]:
        if op.attr("scale") != 1.0 or op.attr("bias") != 0.0 or op.input("ScaleTensor"):
            continue
        src, dst = op.input("X")[0], op.output("Out")[0]
        if src == dst:  # in place (a second save writes the same name again): nothing to rewire
            block._remove_op(_index(block, op))
            done += 1
            continue
        producer = producers.get(src)
        if producer is None or producer.type in ("feed",) or len(consumers.get(src, [])) != 1:
            continue
        src_var, dst_var = block._find_var_recursive(src), block._find_var_recursive(dst)
        if len(producer.output_arg_names) != 1 or src_var is None or dst_var is None or src_var.persistable \
                or dst_var.persistable:
            continue
        producer._rename_output(src, dst)
        block._remove_op(_index(block, op))
        producers[dst] = producer
        consumers = _consumers(block)
        done += 1
    return done


#: name → rewrite, in the order they run
PASSES = {"affine_to_scale": affine_to_scale, "se_residual_to_mul": se_residual_to_mul,
          "drop_identity_scales": drop_identity_scales}


def optimize_int8_program(prefix: str | os.PathLike, passes: tuple[str, ...] | None = None) -> dict[str, int]:
    """Apply :data:`PASSES` (or the named subset) to ``prefix.pdmodel``/``.pdiparams`` in place.

    Returns how many places each pass rewrote; the files are saved again only when something changed
    (``save_inference_model`` writes to the same prefix)."""
    chosen = tuple(PASSES) if passes is None else tuple(passes)
    unknown = [p for p in chosen if p not in PASSES]
    if unknown:
        raise ValueError(f"unknown INT8 program pass(es) {unknown}; choose from {sorted(PASSES)}")
    with open_inference_program(prefix) as loaded:
        counts = {name: PASSES[name](loaded.block, loaded.scope) for name in chosen}
        if any(counts.values()):
            loaded.save(prefix)
    return counts

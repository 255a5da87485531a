"""Inference directory → ``model.onnx`` (paddle2onnx 1.3.1) + ONNX Runtime parity on the export's sample batch.

Why check again: paddle2onnx rewrites ops (e.g. DB neck upsampling, SVTR attention reshapes); a conversion that
"succeeds" can still change outputs. The same rule as the Paddle export applies: max |Δ| ≤ tolerance against
the dygraph reference and identical decisions (boxes / decoded texts). When an op blocks conversion, the error
names it, so the fix can go where it belongs (the model adapter, e.g. interpolate by size instead of scale).

Example::

    report = export_onnx(out_dir, "det", sample, reference)   # writes out_dir/model.onnx
"""
from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from datasets.charset import Charset

__all__ = ["ONNX_FILE", "OPSET", "convert_to_onnx", "onnx_session", "export_onnx"]

ONNX_FILE = "model.onnx"
OPSET = 14


def convert_to_onnx(model_dir: str | os.PathLike, opset: int = OPSET) -> Path:
    """Convert ``model_dir/inference.pdmodel`` to ``model_dir/model.onnx``; RuntimeError naming unsupported ops."""
    import paddle2onnx

    model_dir = Path(model_dir)
    out = model_dir / ONNX_FILE
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            paddle2onnx.export(str(model_dir / "inference.pdmodel"), str(model_dir / "inference.pdiparams"),
                               save_file=str(out), opset_version=opset, auto_upgrade_opset=True, verbose=False,
                               enable_onnx_checker=True, enable_optimize=True)
    except Exception as exc:
        ops = sorted(set(re.findall(r"Oops, there are \d+ operators not supported.*?\n(.*)", log.getvalue())))
        raise RuntimeError(f"paddle2onnx failed for {model_dir}: {exc}. {' '.join(ops)} {log.getvalue()[-800:]}") from exc
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"paddle2onnx wrote no model for {model_dir}: {log.getvalue()[-800:]}")
    return out


def onnx_session(path: str | os.PathLike, num_threads: int | None = None, spinning: bool = True):
    """An ONNX Runtime CPU session (``num_threads`` None = ORT's default). ``spinning=False`` stops its idle
    worker threads from busy-waiting after a run (they otherwise steal CPU from whatever runs next, e.g. in a
    benchmark that alternates runtimes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if num_threads:
        opts.intra_op_num_threads = int(num_threads)
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def export_onnx(model_dir: str | os.PathLike, task: str, batch: np.ndarray, reference: np.ndarray, *,
                charset: Charset | None = None, tolerance: float = 1e-3) -> dict[str, Any]:
    """Convert and check; returns a report (``ok`` False with ``error`` when conversion or the check fails)."""
    from export.parity import compare_outputs

    try:
        path = convert_to_onnx(model_dir)
        session = onnx_session(path)
        name = session.get_inputs()[0].name
        out = session.run(None, {name: batch.astype(np.float32)})[0]
    except Exception as exc:  # report, don't hide: the caller fails the export
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    import onnxruntime
    import paddle2onnx

    report = compare_outputs(task, reference, out, charset, tolerance)
    report.update({"file": ONNX_FILE, "opset": OPSET, "paddle2onnx": paddle2onnx.__version__,
                   "onnxruntime": onnxruntime.__version__,
                   "input": {"name": name, "shape": [str(d) for d in session.get_inputs()[0].shape]}})
    return report

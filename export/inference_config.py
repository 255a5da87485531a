"""The Paddle Inference configuration and the predictor runner every exported model runs through.

Why one module: the runtime choices for a saved program (CPU threads, oneDNN on/off, GPU, and the
``self_attention_fuse_pass`` removal that avoids SIGILL for SVTR recognizers on AVX2-only CPUs, Paddle#60477)
must be made the same way for serving, evaluation, parity checks and benchmarks. The FP32 engine
(:mod:`export.engine`) and the INT8 engine (:mod:`export.int8.runtime`) differ only in the config they build
here; both run it with :class:`PredictorRunner`.

Example::

    config = inference_config(model_dir, num_threads=2, enable_mkldnn=False)
    runner = PredictorRunner(paddle.inference.create_predictor(config), model_dir)
    (probs,) = runner.run(batch)        # batch: N×3×H×W float32
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

__all__ = ["inference_config", "PredictorRunner"]


def inference_config(
    model_dir: str | os.PathLike,
    *,
    use_gpu: bool = False,
    gpu_mem_mb: int = 500,
    gpu_id: int = 0,
    num_threads: int | None = None,
    enable_mkldnn: bool = True,
    mkldnn_cache: int = 10,
    ir_optim: bool = True,
):
    """Build a ``paddle.inference.Config`` for ``model_dir`` (``inference.pdmodel`` + ``.pdiparams``).

    On CPU the ``self_attention_fuse_pass`` is always deleted (SIGILL on AVX2-only CPUs), and
    ``enable_mkldnn=False`` really turns oneDNN off (a fresh 2.6 ``Config`` has it on already)."""
    from paddle import inference

    model_dir = Path(model_dir)
    model_file, params_file = model_dir / "inference.pdmodel", model_dir / "inference.pdiparams"
    for path in (model_file, params_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; an inference directory needs inference.pdmodel and inference.pdiparams")
    config = inference.Config(str(model_file), str(params_file))
    if use_gpu:
        config.enable_use_gpu(gpu_mem_mb, gpu_id)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(num_threads or os.cpu_count() or 1)
        if enable_mkldnn:
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(mkldnn_cache)
        else:  # Paddle 2.6 CPU builds turn oneDNN on by default: "off" has to be said
            config.disable_mkldnn()
        config.delete_pass("self_attention_fuse_pass")
    config.switch_ir_optim(ir_optim)
    config.enable_memory_optim()
    config.disable_glog_info()
    config.switch_use_feed_fetch_ops(False)
    config.switch_specify_input_names(True)
    return config


class PredictorRunner:
    """One-input Paddle Inference predictor with its handles bound once (binding them per call costs latency
    at batch 1); shared by the FP32 and INT8 engines."""

    def __init__(self, predictor: Any, model_dir: str | os.PathLike, shrink_memory: bool = False) -> None:
        self._predictor = predictor
        self.input_names = list(predictor.get_input_names())
        self.output_names = list(predictor.get_output_names())
        if len(self.input_names) != 1:
            raise ValueError(f"{model_dir}: expected one input tensor, the model has {self.input_names}")
        self._input = predictor.get_input_handle(self.input_names[0])
        self._outputs = [predictor.get_output_handle(n) for n in self.output_names]
        self.shrink_memory = shrink_memory

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run on one N×C×H×W float32 batch; returns every output as a numpy array."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self._predictor.run()
        outputs = [out.copy_to_cpu() for out in self._outputs]
        if self.shrink_memory:  # only on request: it costs latency on every call
            self._predictor.try_shrink_memory()
        return outputs

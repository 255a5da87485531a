"""One Paddle Inference program, ready to run on numpy arrays.

Every predictor (det, cls, rec) and the parity check go through :class:`InferenceEngine`, so the runtime choices
(CPU threads, oneDNN on/off, GPU, the ``self_attention_fuse_pass`` removal that avoids SIGILL for SVTR on
AVX2-only CPUs) are made in exactly one way — :func:`export.inference_config.inference_config` — for serving,
evaluation and benchmarks alike.

Example::

    engine = InferenceEngine(model_dir, RuntimeOptions(num_threads=2, enable_mkldnn=False))
    (probs,) = engine.run(batch)        # batch: N×3×H×W float32
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

from export.inference_config import PredictorRunner, inference_config
from export.int8.runtime import Int8Engine, is_int8_model_dir

__all__ = ["RuntimeOptions", "InferenceEngine", "create_engine", "gpu_available"]


def gpu_available() -> bool:
    """True when this Paddle build has CUDA and sees at least one device."""
    import paddle

    if not paddle.device.is_compiled_with_cuda():
        return False
    try:
        return paddle.device.cuda.device_count() > 0
    except Exception:  # pragma: no cover - driver problems mean "no GPU" here
        return False


@dataclass(frozen=True)
class RuntimeOptions:
    """How a predictor runs. ``use_gpu=None`` picks the GPU when one is usable, else the CPU.

    ``enable_mkldnn`` (oneDNN) and ``num_threads`` only matter on CPU; ``num_threads=None`` uses every core."""

    use_gpu: bool | None = False
    num_threads: int | None = None
    enable_mkldnn: bool = True
    gpu_mem_mb: int = 500
    gpu_id: int = 0
    mkldnn_cache: int = 10
    shrink_memory: bool = False  # release the memory pool after each run (lower RSS for varying sizes, slower)

    @classmethod
    def from_mapping(cls, opts: Mapping[str, Any] | None) -> "RuntimeOptions":
        """Build from a config section, ignoring keys that are not runtime options."""
        opts = dict(opts or {})
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in opts.items() if k in names})

    def resolved_gpu(self) -> bool:
        if self.use_gpu is None:
            return gpu_available()
        if self.use_gpu and not gpu_available():
            raise RuntimeError("use_gpu=True but this Paddle build has no CUDA device "
                               "(paddle.device.is_compiled_with_cuda() is False or no GPU is visible)")
        return bool(self.use_gpu)

    def describe(self) -> dict:
        """Plain dict for logs/reports (threads resolved to the real count)."""
        info = asdict(self)
        info["use_gpu"] = self.resolved_gpu()
        info["num_threads"] = self.num_threads or os.cpu_count() or 1
        return info


class InferenceEngine:
    """A Paddle Inference predictor for one model directory (not thread-safe: one per thread)."""

    def __init__(self, model_dir: str | os.PathLike, runtime_opts: RuntimeOptions | None = None) -> None:
        from paddle import inference

        self.model_dir = Path(model_dir)
        self.options = runtime_opts or RuntimeOptions()
        use_gpu = self.options.resolved_gpu()
        config = inference_config(
            self.model_dir, use_gpu=use_gpu, gpu_mem_mb=self.options.gpu_mem_mb, gpu_id=self.options.gpu_id,
            num_threads=self.options.num_threads, enable_mkldnn=self.options.enable_mkldnn,
            mkldnn_cache=self.options.mkldnn_cache,
        )
        self._runner = PredictorRunner(inference.create_predictor(config), self.model_dir,
                                               shrink_memory=self.options.shrink_memory)
        self._predictor = self._runner._predictor
        self.input_names, self.output_names = self._runner.input_names, self._runner.output_names

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the program on one N×C×H×W float32 batch; returns every output as a numpy array."""
        return self._runner.run(batch)


def create_engine(model_dir: str | os.PathLike, runtime_opts: RuntimeOptions | None = None):
    """The engine a directory needs: QAT INT8 directories (:func:`export.int8.runtime.is_int8_model_dir`) run
    with the oneDNN INT8 config on CPU (run as FP32 they execute fake quantization, 1.5–9× slower, and are not
    what is deployed); everything else gets :class:`InferenceEngine`. Both expose ``run(batch)``, ``options``
    and ``input_names``/``output_names``."""
    opts = runtime_opts or RuntimeOptions()
    if not opts.resolved_gpu():
        if is_int8_model_dir(model_dir):
            return Int8Engine(model_dir, opts)
    return InferenceEngine(model_dir, opts)

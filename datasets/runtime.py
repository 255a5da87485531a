"""Process start-up for every entry point: import this module before Paddle.

Why it exists:
* ``libpaddle.so`` exports zlib 1.2.8 symbols. On Pythons where zlib is a shared extension module (pyenv
  builds), importing Paddle before zlib makes later zlib users (gzip, pyclipper, mlflow, albumentations)
  crash or fail with ``inconsistent stream state``. Loading zlib first binds the right symbols.
* CPU thread counts must be fixed before numerical libraries start their pools.
* Paddle Inference's ``self_attention_fuse_pass`` raises SIGILL for SVTR recognizers on AVX2-only CPUs
  (Paddle#60477), so every CPU inference config built here deletes it.
"""
from __future__ import annotations

import zlib  # noqa: F401  -- must be loaded before paddle (see module docstring)
import gzip  # noqa: F401
import os
import sys
from pathlib import Path

# Paddle's C++ side logs every executor start at INFO through glog; keep warnings and errors only.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("FLAGS_call_stack_level", "1")

__all__ = ["configure_threads", "inference_config", "ensure_ppocr_on_path"]


def configure_threads(num_threads: int | None = None) -> int:
    """Fix intra-op thread counts for OpenMP/MKL before Paddle starts its pools.

    Defaults to 1 (``OCR_NUM_THREADS`` overrides): Paddle's dygraph training gains nothing from more
    OpenMP threads on these models (depthwise convs dominate), warns otherwise, and data-parallel ranks and
    DataLoader workers would oversubscribe the cores. Inference sets its own count per predictor."""
    if num_threads is None:
        num_threads = int(os.environ.get("OCR_NUM_THREADS", "1"))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(num_threads))
    try:
        import cv2

        cv2.setNumThreads(max(1, num_threads))
    except ImportError:  # pragma: no cover - cv2 is a hard dependency
        pass
    return num_threads


_PPOCR_ROOT: Path | None = None


def ensure_ppocr_on_path() -> Path:
    """Put ``unstructured_paddleocr``'s folder on ``sys.path``.

    Its modules import each other as top-level ``ppocr.…``; doing it here keeps that quirk in one place.
    """
    global _PPOCR_ROOT
    if _PPOCR_ROOT is not None:
        return _PPOCR_ROOT
    import importlib.util

    # find_spec, not import: the package's own __init__ pulls in its whole app (python-docx, …) that we
    # neither need nor install.
    spec = importlib.util.find_spec("unstructured_paddleocr")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "unstructured-paddleocr is not installed; run `bash scripts/setup.sh` (it installs it with --no-deps)"
        )
    root = Path(list(spec.submodule_search_locations)[0]).resolve()
    if str(root) not in sys.path:
        sys.path.append(str(root))
    _PPOCR_ROOT = root
    return root


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

    On CPU the ``self_attention_fuse_pass`` is always deleted (SIGILL on AVX2-only CPUs)."""
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
        config.delete_pass("self_attention_fuse_pass")
    config.switch_ir_optim(ir_optim)
    config.enable_memory_optim()
    config.disable_glog_info()
    config.switch_use_feed_fetch_ops(False)
    config.switch_specify_input_names(True)
    return config


configure_threads()

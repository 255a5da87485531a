"""Process start-up only, for every entry point: import this module before Paddle.

It holds what must happen once per process before numerical libraries load, and nothing else (the Paddle
Inference config and predictor runner live in :mod:`export.inference_config`). Why it exists:
* ``libpaddle.so`` exports zlib 1.2.8 symbols. On Pythons where zlib is a shared extension module (pyenv
  builds), importing Paddle before zlib makes later zlib users (gzip, pyclipper, mlflow, albumentations)
  crash or fail with ``inconsistent stream state``. Loading zlib first binds the right symbols.
* CPU thread counts must be fixed before numerical libraries start their pools.
* ``unstructured_paddleocr``'s modules import each other as top-level ``ppocr.…``
  (:func:`ensure_ppocr_on_path`).
* Paddle's MKL runs its slow generic kernels on AMD CPUs unless told otherwise (:func:`_mkl_amd_dispatch`),
  which must also happen before Paddle is imported.
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

__all__ = ["configure_threads", "ensure_ppocr_on_path", "cpu_tuning_enabled", "keep_freed_memory"]


def cpu_tuning_enabled(name: str) -> bool:
    """Whether the CPU speed-up ``name`` (``mkl``, ``malloc``, ``conv_bias``) is on.

    ``OCR_CPU_TUNING`` = ``all`` (default) | ``none`` | a comma list such as ``mkl,malloc``. Each one keeps
    the numbers the same up to float rounding; the switch exists so ``bench.train_step`` can measure them
    one by one in the same run, and as an escape hatch."""
    value = os.environ.get("OCR_CPU_TUNING", "all").strip().lower()
    if value in ("", "all", "1", "true", "on"):
        return True
    if value in ("none", "0", "false", "off"):
        return False
    return name in {v.strip() for v in value.split(",")}


#: True when :func:`_mkl_amd_dispatch` set ``MKL_DEBUG_CPU_TYPE`` (child processes inherit it).
MKL_DISPATCH_SET_HERE = False


def _mkl_amd_dispatch() -> None:
    """On AMD CPUs let Paddle's MKL (mklml 2019) use its AVX2 kernels.

    Why: that MKL picks its code path by CPU vendor and runs generic SSE kernels on AMD. On the AMD EPYC this
    was measured on, ``MKL_DEBUG_CPU_TYPE=5`` made a 1024³ sgemm 2.6× and a 3×3 conv (im2col + sgemm) 2.3×
    faster, and a PP-OCRv4 training step 18–21 % cheaper (bench/RESULTS.md); results agree to float32
    rounding. It must be set before Paddle loads MKL, hence here. Never set on Intel CPUs (it would cap an
    AVX-512 machine at AVX2); a value the user set is kept."""
    global MKL_DISPATCH_SET_HERE
    if "MKL_DEBUG_CPU_TYPE" in os.environ or not cpu_tuning_enabled("mkl"):
        return
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    if "AuthenticAMD" in line:
                        os.environ["MKL_DEBUG_CPU_TYPE"] = "5"
                        MKL_DISPATCH_SET_HERE = True
                    return
    except OSError:  # not Linux: nothing to do
        return


def keep_freed_memory() -> bool:
    """Make glibc keep freed tensor memory in the process instead of returning it to the kernel.

    Why: Paddle's CPU allocator hands big activation buffers (> 32 MB at det 640² batch 8) to glibc, which
    serves them with ``mmap`` and gives them back with ``munmap`` on free, so every training step page-faults
    gigabytes afresh (~500 k minor faults and ~15 % of a det step's CPU time in the kernel, measured). Raising
    the mmap and trim thresholds lets freed blocks be reused; peak RSS stays about the same (it is reached
    every step anyway; measured +0.5–1.1 GB at det 640² batch 8, a little less at rec). Training only: called
    by the trainer. Returns whether it was applied (glibc only)."""
    if not cpu_tuning_enabled("malloc") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        limit = 2**31 - 1  # mallopt takes an int
        return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))
    except (OSError, AttributeError):  # musl or no libc.so.6
        return False


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


_mkl_amd_dispatch()
configure_threads()


"""Evaluation/inference pre-processing, defined once.

Training-time evaluation (``training``) and serving (``export``) both call these functions, so the metric a
run reports is the metric of the model a user deploys. The conventions are PaddleOCR's for PP-OCRv4 so that
its users' numbers carry over: det images stay BGR, side limited then rounded to a multiple of 32, ImageNet
mean/std; rec lines are resized to height 48 keeping the aspect ratio, scaled to [-1, 1] and right-padded.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "DET_MEAN", "DET_STD", "LIMIT_TYPES", "DET_RESIZE_DEFAULTS", "effective_max_side_limit", "effective_max_upscale",
    "det_resize_for_eval",
    "normalize_det", "det_preprocess",
    "rec_width_for", "rec_batch_width", "rec_resize_norm", "rec_preprocess_batch",
]

DET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
DET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LIMIT_TYPES = ("max", "min", "resize_long")

#: The det resize policy training evaluates with and an exported model serves with, chosen by measurement
#: (``python -m bench.resize_policy``, bench/RESULTS.md section 8): the short side is brought up to 736 px
#: (RapidOCR's rule; small photos need it) and the long side capped at 2048 px (A4 at 300 dpi stays accurate at
#: less than half the cost of full resolution). PaddleOCR 2.x's ``max 960`` lost 9-29 hmean points on small
#: photos and A4 pages there. ``max_upscale`` bounds how far the short-side rule may enlarge: a 30-px-high word
#: or line crop brought to 736 px (×25) comes out of the detector in overlapping fragments, so characters are read
#: twice or lost; at most ×4 it reads as one line (``python -m bench.vs_tools``, bench/RESULTS.md section 10), and
#: only images with a short side under 184 px are affected.
DET_RESIZE_DEFAULTS: dict = {"limit_side_len": 736, "limit_type": "min", "max_side_limit": 2048, "max_upscale": 4.0}


def effective_max_side_limit(limit_type: str, max_side_limit: int | None) -> int | None:
    """The long-side cap actually applied: an explicit value (0 = none); unset, a ``min`` policy gets the
    default cap (it upscales, so it needs one) and ``max``/``resize_long`` none (their limit bounds the side).

    0 is for code (benchmarks measuring "no cap"); the user-facing keys (``eval_resize.max_side_limit``, export's
    ``pre.max_side_limit``) take an integer >= 32 or null, because the value is written into ``inference.yml``
    where PaddleOCR 3.x / PaddleX would read a 0 cap as "shrink to nothing"."""
    if max_side_limit is not None:
        return int(max_side_limit) or None
    return DET_RESIZE_DEFAULTS["max_side_limit"] if limit_type == "min" else None


def effective_max_upscale(limit_type: str, max_upscale: float | None) -> float | None:
    """The largest enlargement actually allowed: an explicit value (0 = no bound, for code such as benchmarks);
    unset, a ``min`` policy gets the default bound and ``max``/``resize_long`` none (``max`` never enlarges;
    ``resize_long`` asks for an exact long side)."""
    if max_upscale is not None:
        return float(max_upscale) or None
    return DET_RESIZE_DEFAULTS["max_upscale"] if limit_type == "min" else None


def _det_scale(h: int, w: int, limit_side_len: int, limit_type: str, max_side_limit: int | None = None,
               max_upscale: float | None = None) -> float:
    if limit_type == "max":
        scale = min(1.0, limit_side_len / max(h, w))
    elif limit_type == "min":
        scale = max(1.0, limit_side_len / min(h, w))
    elif limit_type == "resize_long":
        scale = limit_side_len / max(h, w)
    else:
        raise ValueError(f"limit_type must be one of {LIMIT_TYPES}, got {limit_type!r}")
    upscale = effective_max_upscale(limit_type, max_upscale)
    if upscale and scale > upscale:
        scale = upscale
    max_side_limit = effective_max_side_limit(limit_type, max_side_limit)
    if max_side_limit and max(h, w) * scale > max_side_limit:
        # PaddleOCR 3.x's guard: a min-side policy never upscales past this, and it also shrinks huge scans
        scale = max_side_limit / max(h, w)
    return scale


def det_resize_for_eval(
    image: np.ndarray, limit_side_len: int = 736, limit_type: str = "min", max_side_limit: int | None = None,
    max_upscale: float | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize so the limited side obeys ``limit_side_len`` and both sides are multiples of 32 (the DB
    network downsamples by 32). ``max_side_limit`` (PaddleOCR 3.x's key) bounds the long side after that, so a
    min-side policy cannot blow a tall page up; see :func:`effective_max_side_limit` for None and 0. Returns
    the image and ``(ratio_h, ratio_w)`` = resized / original. ``max_upscale`` bounds the enlargement (see
    :func:`effective_max_upscale`)."""
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"cannot resize an empty image of shape {image.shape}")
    scale = _det_scale(h, w, limit_side_len, limit_type, max_side_limit, max_upscale)
    new_h = max(int(round(int(h * scale) / 32) * 32), 32)
    new_w = max(int(round(int(w * scale) / 32) * 32), 32)
    resized = cv2.resize(image, (new_w, new_h)) if (new_h, new_w) != (h, w) else image
    return resized, (new_h / h, new_w / w)


def normalize_det(image: np.ndarray) -> np.ndarray:
    """HWC uint8 BGR → CHW float32 with ImageNet mean/std (applied in BGR order, as PaddleOCR does)."""
    out = (image.astype(np.float32) / 255.0 - DET_MEAN) / DET_STD
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def det_preprocess(
    image: np.ndarray, limit_side_len: int = 736, limit_type: str = "min", max_side_limit: int | None = None,
    max_upscale: float | None = None,
) -> tuple[np.ndarray, tuple[int, int, float, float]]:
    """One image → (1×3×H×W float32 tensor data, (src_h, src_w, ratio_h, ratio_w))."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    resized, (ratio_h, ratio_w) = det_resize_for_eval(image, limit_side_len, limit_type, max_side_limit, max_upscale)
    return normalize_det(resized)[None], (image.shape[0], image.shape[1], ratio_h, ratio_w)


def rec_width_for(image: np.ndarray, height: int = 48, max_width: int | None = None) -> int:
    """Width a line image gets at ``height`` keeping its aspect ratio (capped at ``max_width``)."""
    h, w = image.shape[:2]
    width = int(math.ceil(height * w / max(h, 1)))
    return max(1, min(width, max_width) if max_width else width)


def rec_batch_width(images: Sequence[np.ndarray], height: int = 48, min_width: int = 320,
                    max_width: int | None = None) -> int:
    """Padded width for a batch: wide enough for its widest line (PaddleOCR's max_wh_ratio rule), never
    below ``min_width``, so long lines are not squashed."""
    ratio = max((im.shape[1] / max(im.shape[0], 1) for im in images), default=min_width / height)
    width = max(min_width, int(height * ratio))  # int(), not ceil: PaddleOCR's rule, so batches pad identically
    return min(width, max_width) if max_width else width


def rec_resize_norm(image: np.ndarray, height: int = 48, width: int = 320) -> np.ndarray:
    """Line image → 3×height×width float32 in [-1, 1], aspect kept, right-padded with 0."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    resized_w = rec_width_for(image, height, width)
    resized = cv2.resize(image, (resized_w, height)).astype(np.float32)
    resized = (resized / 255.0 - 0.5) / 0.5
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :resized_w] = resized.transpose(2, 0, 1)
    return out


def rec_preprocess_batch(images: Sequence[np.ndarray], height: int = 48, min_width: int = 320,
                         max_width: int | None = None) -> np.ndarray:
    """Several line images → one N×3×height×W batch at their common padded width."""
    width = rec_batch_width(images, height, min_width, max_width)
    return np.stack([rec_resize_norm(im, height, width) for im in images])

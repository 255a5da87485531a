"""The OCR pipeline a user deploys: det → perspective crop → (angle cls) → rec → reading-ordered JSON.

Mirrors PaddleOCR 2.10's ``TextSystem``: boxes in ``sorted_boxes`` reading order, each quad cut out with a
perspective warp (tall crops, i.e. vertical lines, turned 90°: :func:`datasets.crops.crop_polygon`), the optional
0°/180° classifier, batched recognition, and results whose score is below ``drop_score`` (0.5) dropped.

Example::

    ocr = OCRPipeline()                                   # pretrained PP-OCRv4 det + rec
    for item in ocr.predict_paths(["a.jpg", "broken.jpg"]):
        print(item)   # {"image": "a.jpg", "results": [{"points", "text", "score"}…]}
                      # {"image": "broken.jpg", "error": {"code": "IMAGE_UNREADABLE", "message": …}}
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

from export.engine import RuntimeOptions
from export.imagecheck import ImageCheckConfig, ImageCheckError, ImageChecker
from export.predictors import ClsPredictor, DetPredictor, RecPredictor
from export.reading_order import reading_order

__all__ = ["OCRPipeline", "DEFAULT_DROP_SCORE"]

DEFAULT_DROP_SCORE = 0.5
PathLike = str | os.PathLike


class OCRPipeline:
    """det → crop → optional cls → rec on Paddle Inference.

    ``det_dir``/``rec_dir`` default to the pretrained PP-OCRv4 models; the classifier runs when ``cls_dir`` is
    given or ``use_cls`` is true (then the pretrained mobile v2 cls). ``limit_side_len``/``limit_type``/``max_side_limit``/
    ``max_upscale`` override the det model's resize policy (its ``inference.yml``; 0 = no cap / no bound). ``runtime_opts`` (a
    :class:`RuntimeOptions` or a mapping of its fields) applies to all three models; ``image_check`` configures
    the bad-image pre-check of :meth:`predict_paths`."""

    def __init__(self, det_dir: PathLike | None = None, rec_dir: PathLike | None = None,
                 cls_dir: PathLike | None = None, *, use_cls: bool = False, drop_score: float = DEFAULT_DROP_SCORE,
                 det_post: Mapping[str, Any] | None = None, limit_side_len: int | None = None,
                 limit_type: str | None = None, rec_batch_size: int = 6, cls_thresh: float | None = None,
                 line_tol: float = 10.0, runtime_opts: RuntimeOptions | Mapping[str, Any] | None = None,
                 image_check: ImageCheckConfig | None = None, max_side_limit: int | None = None,
                 max_upscale: float | None = None) -> None:
        runtime_opts = runtime_opts if isinstance(runtime_opts, RuntimeOptions) else RuntimeOptions.from_mapping(runtime_opts)
        self.det = DetPredictor(det_dir, det_post, limit_side_len, limit_type, runtime_opts,
                                max_side_limit=max_side_limit, max_upscale=max_upscale)
        self.rec = RecPredictor(rec_dir, batch_size=rec_batch_size, runtime_opts=runtime_opts)
        self.cls = ClsPredictor(cls_dir, cls_thresh, runtime_opts=runtime_opts) if (cls_dir or use_cls) else None
        self.drop_score = float(drop_score)
        self.line_tol = float(line_tol)
        self.checker = ImageChecker(image_check)
        self.runtime_opts = runtime_opts

    def params(self) -> dict[str, Any]:
        """Everything that shapes the output, for logs and reports."""
        return {"det": {"model_dir": str(self.det.model_dir), **self.det.params()},
                "rec": {"model_dir": str(self.rec.model_dir), **self.rec.params()},
                "cls": None if self.cls is None else {"model_dir": str(self.cls.model_dir), "thresh": self.cls.thresh},
                "drop_score": self.drop_score, "line_tol": self.line_tol,
                "image_check": self.checker.config.to_dict(), "runtime": self.runtime_opts.describe()}

    def predict_image(self, image: np.ndarray) -> list[dict[str, Any]]:
        """OCR one decoded BGR image (no pre-check: that belongs to files, see :meth:`predict_paths`).

        Returns ``[{"points": [[x, y], …], "text": str, "score": float}, …]`` in reading order."""
        from datasets.crops import crop_polygon

        if image is None or image.size == 0:
            raise ValueError("empty image")
        if image.ndim == 2 or image.shape[2] != 3:
            import cv2

            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_BGRA2BGR)
        boxes = self.det.predict(image)
        if not boxes:
            return []
        boxes = [boxes[i] for i in reading_order([b for b, _ in boxes], self.line_tol)]
        kept, crops = [], []
        for points, score in boxes:
            try:
                crops.append(crop_polygon(image, points.copy()))
            except ValueError:  # a degenerate quad (zero area) has nothing to read
                continue
            kept.append((points, score))
        boxes = kept
        if not crops:
            return []
        if self.cls is not None:
            crops, _ = self.cls.predict(crops)
        texts = self.rec.predict(crops)
        results = []
        for (points, _), (text, score) in zip(boxes, texts):
            if score < self.drop_score:
                continue
            results.append({"points": [[int(round(float(x))), int(round(float(y)))] for x, y in points],
                            "text": text, "score": float(score)})
        return results

    def predict_path(self, path: PathLike) -> dict[str, Any]:
        """One file → ``{"image", "results"}`` or ``{"image", "error": {"code", "message"}}``; never raises for
        a bad image."""
        entry: dict[str, Any] = {"image": str(path)}
        try:
            image = self.checker.load(path)
        except ImageCheckError as exc:
            entry["error"] = exc.to_dict()
            return entry
        start = time.perf_counter()
        entry["results"] = self.predict_image(image)
        entry["elapsed_ms"] = round((time.perf_counter() - start) * 1000.0, 1)
        return entry

    def predict_paths(self, paths: Sequence[PathLike]) -> list[dict[str, Any]]:
        """Every file in order; a bad image gives an error entry and the rest still run."""
        return [self.predict_path(Path(p)) for p in paths]

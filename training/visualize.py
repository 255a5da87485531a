"""Pictures people would rather see than read: detections drawn over the ground truth, and the text lines a
recogniser read worst with what it should have read."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["draw_detections", "draw_worst_lines"]


def draw_detections(image: np.ndarray, predictions: Sequence[tuple[np.ndarray, float]],
                    ground_truth: Sequence[np.ndarray] = (), ignored: Sequence[bool] = ()) -> np.ndarray:
    """BGR copy of ``image`` with true polygons in green (don't-care in grey) and predictions in red."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for i, points in enumerate(ground_truth):
        colour = (160, 160, 160) if (i < len(ignored) and ignored[i]) else (0, 200, 0)
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], True, colour, thickness + 1)
    for points, score in predictions:
        pts = np.round(points).astype(np.int32)
        cv2.polylines(canvas, [pts], True, (0, 0, 255), thickness)
        cv2.putText(canvas, f"{score:.2f}", tuple(int(v) for v in pts[0]), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, (0, 0, 255), 1, cv2.LINE_AA)
    return canvas


def _font(size: int):
    """Noto Sans CJK (shipped as a package, so CJK truths and predictions render offline); PIL's default
    bitmap font when it is missing, so a picture never fails a run."""
    from PIL import ImageFont

    try:
        from datasets.fonts import default_cjk_font

        spec = default_cjk_font()
        return ImageFont.truetype(str(spec.path), size, index=spec.index)
    except Exception:  # noqa: BLE001
        return ImageFont.load_default()


def draw_worst_lines(lines: Sequence[tuple[np.ndarray, str, str]], width: int = 720, line_height: int = 48,
                     font_size: int = 18) -> np.ndarray:
    """One RGB picture of rec eval lines, one row each: the line image (BGR in, scaled to ``line_height``),
    then ``truth`` in green and ``pred`` in red. Rows are drawn in the order given (worst first)."""
    from PIL import Image, ImageDraw

    pad = 6
    text_h = font_size + 6
    row_h = line_height + 2 * text_h + 2 * pad
    canvas = Image.new("RGB", (width, max(1, len(lines)) * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    for row, (image, truth, pred) in enumerate(lines):
        top = row * row_h
        h, w = image.shape[:2]
        scale = min(line_height / max(1, h), (width - 2 * pad) / max(1, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = image[:, :, ::-1] if image.ndim == 3 else np.stack([image] * 3, axis=-1)
        canvas.paste(Image.fromarray(np.ascontiguousarray(rgb)).resize(size), (pad, top + pad))
        draw.text((pad, top + pad + line_height + 2), f"truth: {truth}", fill=(0, 140, 0), font=font)
        draw.text((pad, top + pad + line_height + 2 + text_h), f"pred:  {pred}", fill=(200, 0, 0), font=font)
        draw.line([(0, top + row_h - 1), (width, top + row_h - 1)], fill=(200, 200, 200))
    return np.asarray(canvas)

"""Deterministic rendered text images: the sample batch of the export parity check, and test/bench inputs.

Why rendered rather than random tensors: parity on noise says little about the decisions that matter (box
agreement, decoded text); a real page of Chinese + Latin text exercises the DB map and CTC peaks the way
users' images do, offline and reproducibly. Font: Noto Sans CJK SC via :func:`datasets.fonts.default_cjk_font`.

Example::

    page, lines = render_page(["增值税发票 No.12345678", "金额 ¥1234.56"])
    line = render_line("合计 Total 88.00", height=48)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from datasets.fonts import default_cjk_font

__all__ = ["DEFAULT_LINES", "render_line", "render_page", "sample_det_batch", "sample_rec_crops"]

#: invoice-style lines (all characters in ppocr_keys_v1 and in Noto Sans CJK SC)
DEFAULT_LINES: tuple[str, ...] = (
    "增值税专用发票",
    "发票代码 3100213130",
    "开票日期 2024年05月18日",
    "购买方 上海科技有限公司",
    "金额合计 ¥1234.56",
    "Total Amount 88.00",
)


def render_line(text: str, height: int = 48, font_size: int | None = None, pad: int = 8) -> np.ndarray:
    """One text line, black on white, as a BGR uint8 array sized to the text."""
    font = default_cjk_font().load(font_size or max(8, int(height * 0.7)))
    left, top, right, bottom = font.getbbox(text)
    width = max(1, right - left) + 2 * pad
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad - left, (height - (bottom - top)) // 2 - top), text, font=font, fill="black")
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


def render_page(lines: Sequence[str] = DEFAULT_LINES, font_size: int = 32, width: int = 800,
                margin: int = 40, spacing: int = 28, columns: Sequence[int] | None = None
                ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Lines drawn top to bottom on a white page. Returns (BGR image, [(text, 4×2 box of the ink)])."""
    font = default_cjk_font().load(font_size)
    boxes: list[tuple[str, np.ndarray]] = []
    line_h = font_size + spacing
    height = 2 * margin + line_h * len(lines)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(lines):
        x = margin + (columns[i] if columns else 0)
        y = margin + i * line_h
        draw.text((x, y), text, font=font, fill=(20, 20, 20))
        l, t, r, b = draw.textbbox((x, y), text, font=font)
        boxes.append((text, np.array([[l, t], [r, t], [r, b], [l, b]], dtype=np.float32)))
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1]), boxes


def sample_det_batch(size: tuple[int, int] = (320, 640)) -> np.ndarray:
    """A 1×3×H×W det input (normalised like serving) of a rendered page, resized to ``size`` (h, w)."""
    import cv2

    from datasets.resize import normalize_det

    page, _ = render_page()
    return normalize_det(cv2.resize(page, (size[1], size[0])))[None]


def sample_rec_crops(texts: Sequence[str] = DEFAULT_LINES, height: int = 48) -> list[np.ndarray]:
    """Rendered line images of ``texts`` (for the rec parity batch)."""
    return [render_line(t, height) for t in texts]

"""Shared fixtures: rendered text images (real CJK glyphs from the Noto font the setup installs)."""
from __future__ import annotations

import datasets  # noqa: F401  -- start-up fix before paddle

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.FreeTypeFont:
    path = Path(str(resources.files("noto_cjk_sans_otc") / "NotoSansCJK-Regular.ttc"))
    return ImageFont.truetype(str(path), size, index=2)  # face 2 = Simplified Chinese


def render_line(text: str, height: int = 48, pad: int = 8) -> np.ndarray:
    """Black text on white, BGR uint8, tight around the line (a word crop like a detector would give)."""
    font = _font(int(height * 0.7))
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 2 * pad, height), "white")
    ImageDraw.Draw(image).text((pad - left, (height - (bottom - top)) // 2 - top), text, font=font, fill="black")
    return np.array(image)[:, :, ::-1].copy()


def render_page(lines: list[str], size: tuple[int, int] = (640, 480), font_size: int = 32) -> tuple[np.ndarray, list[np.ndarray]]:
    """Lines of text on a white page; returns the BGR image and each line's box as a 4×2 polygon."""
    width, height = size
    font = _font(font_size)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    boxes = []
    y = 30
    for text in lines:
        left, top, right, bottom = draw.textbbox((40, y), text, font=font)
        draw.text((40, y), text, font=font, fill="black")
        boxes.append(np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float32))
        y += int(font_size * 2.2)
    return np.array(image)[:, :, ::-1].copy(), boxes


@pytest.fixture(scope="session")
def line_image():
    return render_line


@pytest.fixture(scope="session")
def page_image():
    return render_page

"""Offline synthetic OCR data with real CJK glyphs and exact polygons.

Why: tests, the demo and CI need labelled Chinese/English images without downloading anything, and
fine-tuning experiments need a controlled "shifted" distribution. Every line is drawn with a font that has
all its glyphs (fontTools cmap check, :mod:`datasets.fonts`), its label polygon is the ink box of the
rendered line mapped through the *same* 3×3 matrix that warps the glyphs (so rotation, italic shear and
perspective never make the label drift), and everything derives from ``numpy.random.Generator([seed, i])``
so the same seed gives byte-identical labels and image ``i`` does not depend on ``--num``.

Usage::

    python -m datasets.synth --out data/synth --num 50 --format icdar2015 --lang mixed --seed 0
    python -m datasets.synth --out data/rec --num 500 --rec --shift      # rec crops + label.txt
    python -m datasets.synth --out data/hard --num 200 --rec --text random-rare --seed 5   # charset-extension hard set

    from datasets.synth import generate_det_dataset, generate_rec_dataset
    root = generate_det_dataset("data/synth", 50, "rctw17", lang="ch", seed=1)
    label_file = generate_rec_dataset("data/rec", 200, seed=1)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from datasets.fonts import FontSpec, available_fonts
from datasets.sample import RecSample, TextInstance
from datasets.synth_text import LANGS, TEXT_MODES, make_text, random_rare_text

__all__ = [
    "SynthImage", "FORMATS", "render_det_image", "render_rec_line", "generate_det_dataset", "generate_rec_dataset",
    "main",
]

FORMATS = ("icdar2015", "rctw17")


# ---------------------------------------------------------------------------------------------- styles
@dataclass(frozen=True)
class _Style:
    """Knobs that define a distribution; ``shifted`` differs from ``default`` in text, weight, slant,
    colour and background so a model fine-tuned on one sees a measurable shift on the other."""

    bold_prob: float
    bold_div: float  # stroke width = size / bold_div
    italic_prob: float
    italic_range: tuple[float, float]
    backgrounds: tuple[str, ...]
    ink: str  # "any" (contrast-driven random colours) | "stamp" (blue/red/purple inks)
    line_angle: float  # degrees, per line (scene only)
    image_angle: float  # degrees, whole image
    perspective: float  # corner jitter, fraction of the image side
    blur_prob: float
    noise_prob: float
    jpeg_prob: float


_STYLES = {
    "default": _Style(0.15, 25.0, 0.05, (0.05, 0.15), ("solid", "gradient", "texture", "paper"), "any",
                      6.0, 6.0, 0.04, 0.25, 0.4, 0.4),
    "shifted": _Style(1.0, 16.0, 0.9, (0.18, 0.32), ("tinted", "ruled"), "stamp", 2.0, 3.0, 0.03, 0.35, 0.5, 0.5),
}


@dataclass
class SynthImage:
    """A rendered image (BGR uint8), its instances, and the text-alpha layer (float32 0..1) that tests use to
    check that every drawn pixel is inside a polygon."""

    image: np.ndarray
    instances: list[TextInstance]
    ink: np.ndarray


@dataclass
class _Line:
    text: str
    mask: np.ndarray  # uint8 alpha of the rendered line (patch)
    corners: np.ndarray  # 4×2 ink-box corners in patch coordinates (pixel-area edges)


# ---------------------------------------------------------------------------------------------- pieces
def _rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(stream), int(index)])


def _background(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """BGR uint8 background of the named kind."""
    if kind == "solid":
        img = np.empty((h, w, 3), np.float32)
        img[:] = rng.integers(0, 256, 3)
    elif kind == "gradient":
        c0, c1 = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
        theta = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(theta) + yy * math.sin(theta)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        img = c0 + (c1 - c0) * t[..., None]
    elif kind == "texture":
        cells = (max(2, h // int(rng.integers(16, 64))), max(2, w // int(rng.integers(16, 64))))
        low = rng.uniform(0, 255, (cells[0], cells[1], 3)).astype(np.float32)
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        base = rng.integers(0, 256, 3).astype(np.float32)
        img = base + (img - 128.0) * rng.uniform(0.2, 0.6)
    elif kind in ("paper", "tinted", "ruled"):
        if kind == "paper":
            base = np.array([rng.uniform(200, 240), rng.uniform(215, 245), rng.uniform(225, 252)], np.float32)
        else:  # pale pink / green / blue / yellow forms
            tint = [(225, 215, 245), (215, 240, 220), (245, 228, 210), (205, 240, 245)][int(rng.integers(4))]
            base = np.array(tint, np.float32) + rng.uniform(-8, 8, 3).astype(np.float32)
        low = cv2.resize(rng.uniform(-1, 1, (max(2, h // 60), max(2, w // 60))).astype(np.float32), (w, h),
                         interpolation=cv2.INTER_CUBIC)
        img = base + (low * rng.uniform(4, 12))[..., None]
        img += rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(2, 6)
        if kind == "ruled":
            rule = tuple(float(c) for c in rng.uniform(60, 170, 3))
            step = int(rng.integers(28, 60))
            y0 = int(rng.integers(5, step))
            for y in range(y0, h, step):
                cv2.line(img, (0, y), (w - 1, y), rule, 1)
            for x in rng.integers(0, w, int(rng.integers(1, 4))):
                cv2.line(img, (int(x), 0), (int(x), h - 1), rule, 1)
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    return np.clip(img, 0, 255).astype(np.uint8)


def _luma(bgr: np.ndarray) -> float:
    b, g, r = (float(v) for v in bgr)
    return 0.114 * b + 0.587 * g + 0.299 * r


def _ink_colour(rng: np.random.Generator, bg_mean: np.ndarray, ink: str) -> np.ndarray:
    """A text colour with enough luminance contrast against ``bg_mean`` (≥ 90 of 255) to be legible."""
    bg_l = _luma(bg_mean)
    if ink == "stamp":
        palette = [(150, 50, 10), (40, 30, 180), (120, 30, 110), (90, 60, 20), (30, 30, 30)]
        colour = np.array(palette[int(rng.integers(len(palette)))], np.float32) + rng.uniform(-15, 15, 3)
        if abs(_luma(colour) - bg_l) >= 90:
            return np.clip(colour, 0, 255).astype(np.float32)
    for _ in range(12):
        colour = rng.uniform(0, 255, 3)
        if abs(_luma(colour) - bg_l) >= 90:
            return colour.astype(np.float32)
    return np.full(3, 0.0 if bg_l > 127 else 255.0, np.float32)


def _render_line(text: str, font: FontSpec, size: int, stroke: int) -> _Line | None:
    """Draw ``text`` as an alpha mask; corners = the ink box's pixel-area edges (exact, from the mask)."""
    pil_font = font.load(size)
    left, top, right, bottom = pil_font.getbbox(text, stroke_width=stroke)
    pad = 2 + stroke
    w, h = int(right - left) + 2 * pad, int(bottom - top) + 2 * pad
    if w <= 2 * pad or h <= 2 * pad:
        return None
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).text((pad - left, pad - top), text, font=pil_font, fill=255, stroke_width=stroke, stroke_fill=255)
    box = mask.getbbox()
    if box is None:
        return None
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64) - 0.5
    return _Line(text, np.asarray(mask), corners)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    homo = np.hstack([pts, np.ones((len(pts), 1))]) @ m.T
    return homo[:, :2] / homo[:, 2:3]


def _line_matrix(center: tuple[float, float], patch_hw: tuple[int, int], angle_deg: float, shear: float) -> np.ndarray:
    """Patch → flat-layout matrix: move the patch centre to the origin, slant (italic: top leans right),
    rotate, then move to ``center``."""
    ph, pw = patch_hw
    to_origin = np.array([[1, 0, -pw / 2.0], [0, 1, -ph / 2.0], [0, 0, 1]], np.float64)
    slant = np.array([[1, -shear, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], np.float64)
    move = np.array([[1, 0, center[0]], [0, 1, center[1]], [0, 0, 1]], np.float64)
    return move @ rot @ slant @ to_origin


def _image_homography(rng: np.random.Generator, w: int, h: int, angle_deg: float, persp: float) -> np.ndarray:
    """Whole-image rotation about the centre plus corner jitter (a mild camera perspective)."""
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    a = math.radians(rng.uniform(-angle_deg, angle_deg))
    c = np.array([w / 2.0, h / 2.0])
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = (src - c) @ rot.T + c + rng.uniform(-persp, persp, (4, 2)) * np.array([w, h])
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32)).astype(np.float64)


def _composite(canvas: np.ndarray, ink_layer: np.ndarray, line: _Line, m: np.ndarray, colour: np.ndarray,
               box: tuple[int, int, int, int]) -> None:
    """Warp the line's alpha into ``box`` of the canvas with matrix ``m`` (patch → canvas) and blend."""
    x0, y0, x1, y1 = box
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    alpha = cv2.warpPerspective(line.mask, shift @ m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32) / 255.0
    region = canvas[y0:y1, x0:x1]
    region[:] = region * (1.0 - alpha[..., None]) + colour * alpha[..., None]
    np.maximum(ink_layer[y0:y1, x0:x1], alpha, out=ink_layer[y0:y1, x0:x1])


def _degrade(rng: np.random.Generator, img: np.ndarray, style: _Style) -> np.ndarray:
    """Blur, sensor noise and a JPEG round trip, each with the style's probability."""
    if rng.random() < style.blur_prob:
        if rng.random() < 0.7:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.1))
        else:
            k = int(rng.integers(3, 6))
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
            kernel = cv2.warpAffine(kernel, rot, (k, k))
            img = cv2.filter2D(img, -1, kernel / max(float(kernel.sum()), 1e-6))
    if rng.random() < style.noise_prob:
        noise = rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(2, 9)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < style.jpeg_prob:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 90))])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


def _choose_font(rng: np.random.Generator, text: str, fonts: list[FontSpec]) -> FontSpec | None:
    candidates = [f for f in fonts if f.covers(text)]
    return candidates[int(rng.integers(len(candidates)))] if candidates else None


def _fonts(system_fonts: bool) -> list[FontSpec]:
    return available_fonts(include_system=system_fonts)


# ---------------------------------------------------------------------------------------------- det images
def render_det_image(
    rng: np.random.Generator,
    image_size: tuple[int, int] = (640, 480),
    lang: str = "mixed",
    kind: str = "scene",
    shift: bool = False,
    fonts: list[FontSpec] | None = None,
    num_lines: int | None = None,
    ignore_prob: float = 0.0,
) -> SynthImage:
    """Render one labelled image of ``image_size`` = (width, height).

    Lines are placed one by one in a flat layout (random positions and small angles for ``scene``, rows for
    ``invoice``), mapped into the image with a per-image homography, and kept only when their warped quad is
    inside the image and does not touch an earlier line, so labels never overlap or leave the frame."""
    if lang not in LANGS or kind not in ("scene", "invoice"):
        raise ValueError(f"lang must be one of {LANGS} and kind one of ('scene', 'invoice'); got {lang!r}, {kind!r}")
    style = _STYLES["shifted" if shift else "default"]
    text_kind = "shifted" if shift else kind
    fonts = fonts if fonts is not None else _fonts(False)
    w, h = int(image_size[0]), int(image_size[1])
    bg_kind = style.backgrounds[int(rng.integers(len(style.backgrounds)))]
    if kind == "invoice" and not shift:
        bg_kind = ("paper", "ruled", "tinted")[int(rng.integers(3))]
    canvas = _background(rng, h, w, bg_kind).astype(np.float32)
    ink = np.zeros((h, w), np.float32)
    occupied = np.zeros((h, w), np.uint8)
    homography = _image_homography(rng, w, h, style.image_angle if kind == "scene" else style.image_angle / 3,
                                   style.perspective)
    target = num_lines if num_lines is not None else int(rng.integers(3, 11) if kind == "scene" else rng.integers(6, 15))
    max_size = max(12, min(72, h // 6))
    row_y = float(rng.uniform(0.04, 0.1) * h)
    instances: list[TextInstance] = []
    for _attempt in range(target * 6):
        if len(instances) >= target:
            break
        text = make_text(rng, lang, text_kind, max_chars=24)
        font = _choose_font(rng, text, fonts)
        if font is None:
            continue
        size = int(rng.integers(12, max_size + 1)) if kind == "scene" else int(rng.integers(14, min(40, max_size) + 1))
        size -= size % 2  # a small set of sizes keeps the font cache hot
        stroke = max(1, round(size / style.bold_div)) if rng.random() < style.bold_prob else 0
        line = _render_line(text, font, size, stroke)
        if line is None:
            continue
        ph, pw = line.mask.shape
        shear = rng.uniform(*style.italic_range) if rng.random() < style.italic_prob else 0.0
        if kind == "scene":
            angle = rng.uniform(-style.line_angle, style.line_angle) if rng.random() < 0.5 else 0.0
            center = (rng.uniform(pw / 2, max(pw / 2 + 1, w - pw / 2)), rng.uniform(ph / 2, max(ph / 2 + 1, h - ph / 2)))
        else:
            if row_y + ph > h:
                break
            angle = 0.0
            left = rng.uniform(0.03, 0.1) * w if rng.random() < 0.7 else rng.uniform(0.35, 0.55) * w
            center = (left + pw / 2, row_y + ph / 2)
            row_y += ph * rng.uniform(1.2, 1.9)
        m = homography @ _line_matrix(center, (ph, pw), angle, shear)
        quad = _apply(m, line.corners)
        if quad[:, 0].min() < 1 or quad[:, 1].min() < 1 or quad[:, 0].max() > w - 2 or quad[:, 1].max() > h - 2:
            continue
        bx0, by0 = int(max(0, math.floor(quad[:, 0].min()) - 3)), int(max(0, math.floor(quad[:, 1].min()) - 3))
        bx1, by1 = int(min(w, math.ceil(quad[:, 0].max()) + 4)), int(min(h, math.ceil(quad[:, 1].max()) + 4))
        footprint = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
        pts = np.round((quad - [bx0, by0]) * 4).astype(np.int32)  # 2 fractional bits
        cv2.fillPoly(footprint, [pts], 1, shift=2)
        cv2.polylines(footprint, [pts], True, 1, thickness=5, shift=2)  # keep a small gap between lines
        if (occupied[by0:by1, bx0:bx1] & footprint).any():
            continue
        occupied[by0:by1, bx0:bx1] |= footprint
        colour = _ink_colour(rng, canvas[by0:by1, bx0:bx1].reshape(-1, 3).mean(0), style.ink)
        _composite(canvas, ink, line, m, colour, (bx0, by0, bx1, by1))
        ignore = bool(ignore_prob > 0 and rng.random() < ignore_prob)
        instances.append(TextInstance(quad.astype(np.float32), text, ignore))
    image = _degrade(rng, np.clip(canvas, 0, 255).astype(np.uint8), style)
    return SynthImage(image, instances, ink)


# ---------------------------------------------------------------------------------------------- rec lines
def render_rec_line(
    rng: np.random.Generator,
    lang: str = "mixed",
    kind: str = "scene",
    shift: bool = False,
    fonts: list[FontSpec] | None = None,
    max_chars: int = 16,
    insert_chars: str = "",
    text_mode: str = "corpus",
) -> tuple[np.ndarray, str]:
    """One text-line crop (BGR uint8) and its transcription, with loose margins, a small tilt and the
    style's degradations, as a recogniser sees crops cut from detections.

    ``insert_chars``: put 1-2 of these characters at random places in every line — training lines for
    characters a charset is being extended with (``model.charset.extra_chars``). ``text_mode``: ``corpus``
    (words for ``lang`` × ``kind``) or ``random-rare`` (3-8 random characters of
    :func:`datasets.synth_text.rare_pool`, no word context; ``lang``, ``kind`` and ``max_chars`` are unused)."""
    if text_mode not in TEXT_MODES:
        raise ValueError(f"text mode must be one of {TEXT_MODES}, got {text_mode!r}")
    style = _STYLES["shifted" if shift else "default"]
    text_kind = "shifted" if shift else kind
    fonts = fonts if fonts is not None else _fonts(False)
    for _ in range(50):
        text = random_rare_text(rng) if text_mode == "random-rare" else make_text(rng, lang, text_kind, max_chars=max_chars)
        if insert_chars:
            text = _insert_chars(rng, text, insert_chars)
        font = _choose_font(rng, text, fonts)
        if font is None:
            continue
        size = int(rng.integers(16, 41))
        size -= size % 2
        stroke = max(1, round(size / style.bold_div)) if rng.random() < style.bold_prob else 0
        line = _render_line(text, font, size, stroke)
        if line is not None:
            break
    else:  # pragma: no cover - only with a font list that covers nothing
        raise RuntimeError("could not render a text line with the given fonts")
    ph, pw = line.mask.shape
    shear = rng.uniform(*style.italic_range) if rng.random() < style.italic_prob else 0.0
    m = _line_matrix((0.0, 0.0), (ph, pw), rng.uniform(-2.0, 2.0), shear)
    quad = _apply(m, line.corners)
    ink_h = quad[:, 1].max() - quad[:, 1].min()
    mx0, mx1 = (rng.uniform(0.05, 0.5, 2) * ink_h)
    my0, my1 = (rng.uniform(0.05, 0.3, 2) * ink_h)
    x_min, y_min = quad[:, 0].min() - mx0, quad[:, 1].min() - my0
    m = np.array([[1, 0, -x_min], [0, 1, -y_min], [0, 0, 1]], np.float64) @ m
    w = int(math.ceil(quad[:, 0].max() - x_min + mx1))
    h = int(math.ceil(quad[:, 1].max() - y_min + my1))
    bg_kind = style.backgrounds[int(rng.integers(len(style.backgrounds)))]
    canvas = _background(rng, h, w, "paper" if bg_kind == "ruled" else bg_kind).astype(np.float32)
    colour = _ink_colour(rng, canvas.reshape(-1, 3).mean(0), style.ink)
    _composite(canvas, np.zeros((h, w), np.float32), line, m, colour, (0, 0, w, h))
    return _degrade(rng, np.clip(canvas, 0, 255).astype(np.uint8), style), text


def _insert_chars(rng: np.random.Generator, text: str, pool: str) -> str:
    chars = list(text)
    for _ in range(int(rng.integers(1, 3))):
        chars.insert(int(rng.integers(0, len(chars) + 1)), pool[int(rng.integers(len(pool)))])
    return "".join(chars)


# ---------------------------------------------------------------------------------------------- datasets
def _writer(fmt: str):
    if fmt == "icdar2015":
        from datasets.icdar2015 import write_icdar2015_sample

        return write_icdar2015_sample, "img_{}"
    if fmt == "rctw17":
        from datasets.rctw17 import write_rctw17_sample

        return write_rctw17_sample, "image_{}"
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def generate_det_dataset(
    out_dir: str | Path,
    num: int,
    fmt: str = "icdar2015",
    lang: str = "mixed",
    seed: int = 0,
    image_size: tuple[int, int] = (640, 480),
    kind: str = "scene",
    shift: bool = False,
    system_fonts: bool = False,
    ignore_prob: float = 0.0,
) -> Path:
    """Write ``num`` labelled images (``image_size`` = width, height) in ``fmt`` under ``out_dir``; returns it.

    Image ``i`` uses the generator ``[seed, 0, i]``, so a run is reproducible and a larger ``num`` extends a
    smaller one. ``system_fonts`` adds DejaVu / WenQuanYi when installed (more variety, but the output then
    depends on the machine's fonts; off by default)."""
    write, stem = _writer(fmt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fonts = _fonts(system_fonts)
    for i in range(num):
        synth = render_det_image(_rng_for(seed, i, 0), image_size, lang, kind, shift, fonts, ignore_prob=ignore_prob)
        write(out, stem.format(i + 1), synth.image, synth.instances)
    return out


def generate_rec_dataset(
    out_dir: str | Path,
    num: int,
    seed: int = 0,
    lang: str = "mixed",
    kind: str = "scene",
    shift: bool = False,
    system_fonts: bool = False,
    max_chars: int = 16,
    label_name: str = "label.txt",
    insert_chars: str = "",
    text_mode: str = "corpus",
) -> Path:
    """Write ``num`` line crops to ``out_dir/images/`` and a PaddleOCR rec label file
    (``images/rec_000001.jpg<TAB>text`` per line); returns the label file's path. ``insert_chars`` and
    ``text_mode``: see :func:`render_rec_line`; a character no font covers is an error (it could never be
    rendered), and so is an unknown text mode (before anything is written)."""
    if text_mode not in TEXT_MODES:
        raise ValueError(f"--text must be one of {', '.join(TEXT_MODES)}, got {text_mode!r}")
    from datasets.imageio import write_image
    from datasets.ppocr_label import write_ppocr_rec_label

    out = Path(out_dir)
    fonts = _fonts(system_fonts)
    uncovered = [ch for ch in dict.fromkeys(insert_chars) if not any(f.covers(ch) for f in fonts)]
    if uncovered:
        raise ValueError(f"--insert-chars: no font renders {', '.join(f'{c!r} (U+{ord(c):04X})' for c in uncovered)}")
    samples = []
    for i in range(num):
        image, text = render_rec_line(_rng_for(seed, i, 1), lang, kind, shift, fonts, max_chars, insert_chars,
                                      text_mode)
        samples.append(RecSample(write_image(out / "images" / f"rec_{i + 1:06d}.jpg", image), text))
    return write_ppocr_rec_label(samples, out / label_name, root=out)


# ---------------------------------------------------------------------------------------------- CLI
def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    if w < 64 or h < 64:
        raise argparse.ArgumentTypeError("size must be at least 64x64")
    return w, h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--num", required=True, type=int, help="number of images (or lines with --rec)")
    parser.add_argument("--format", default="icdar2015", choices=FORMATS, help="det label format")
    parser.add_argument("--lang", default="mixed", choices=LANGS)
    parser.add_argument("--kind", default="scene", choices=("scene", "invoice"))
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--size", default=(640, 480), type=_parse_size, help="image WIDTHxHEIGHT (det)")
    parser.add_argument("--rec", action="store_true", help="write line crops + PaddleOCR rec label.txt instead")
    parser.add_argument("--shift", action="store_true",
                        help="shifted distribution: amounts/dates/codes, bold italic stamp-coloured text on forms")
    parser.add_argument("--system-fonts", action="store_true", help="also use DejaVu/WenQuanYi if installed")
    parser.add_argument("--ignore-prob", default=0.0, type=float, help="fraction of lines labelled don't-care")
    parser.add_argument("--insert-chars", default="", metavar="CHARS",
                        help="with --rec: 1-2 of these characters in every line (data for a charset extension)")
    parser.add_argument("--text", default="corpus", choices=TEXT_MODES,
                        help="with --rec: line text from the word corpus (default), or random-rare: 3-8 random "
                             "characters from a fixed pool of 3,000 dictionary characters the corpus never uses "
                             "(the charset-extension hard set; --lang/--kind do not apply)")
    args = parser.parse_args(argv)
    if args.num < 0:
        parser.error("--num must be >= 0")
    if args.insert_chars and not args.rec:
        parser.error("--insert-chars needs --rec (it makes recogniser lines)")
    if args.text != "corpus" and not args.rec:
        parser.error(f"--text {args.text} needs --rec (it makes recogniser lines)")
    start = time.perf_counter()
    try:
        if args.rec:
            try:
                path = generate_rec_dataset(args.out, args.num, args.seed, args.lang, args.kind, args.shift,
                                            args.system_fonts, insert_chars=args.insert_chars, text_mode=args.text)
            except ValueError as exc:
                parser.error(str(exc))
        else:
            path = generate_det_dataset(args.out, args.num, args.format, args.lang, args.seed, args.size, args.kind,
                                        args.shift, args.system_fonts, args.ignore_prob)
    except OSError as exc:  # unwritable or full --out
        from datasets.errors import one_line

        what = "cannot write the synthetic set: " if exc.filename is not None else ""  # else e.g. no fonts
        print(f"error: {what}{one_line(exc)}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"out": str(path), "num": args.num, "mode": "rec" if args.rec else args.format,
                      "seconds": round(elapsed, 3)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

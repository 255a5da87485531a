"""Fonts for synthetic text, each with the set of code points it can really draw.

Why a coverage check: a font without a glyph draws "tofu" (an empty box) or nothing, and the label would
then claim text that is not in the image. Every font here carries its cmap (read with fontTools), and the
generator asks :meth:`FontSpec.covers` before it draws a string with it.

Sources, in order:

* ``noto-cjk-sans-otc`` (PyPI, OFL-1.1; installed by ``scripts/setup.sh``): Noto Sans CJK SC (face 2) and
  Noto Sans Mono CJK SC (face 7) of ``NotoSansCJK-Regular.ttc``. Required: the only CJK source we can rely on.
* Optional system fonts, for variety when present: Debian ``fonts-wqy-microhei`` (CJK) and DejaVu
  (Latin/digits only; the coverage check keeps it away from Chinese text).

Example::

    from datasets.fonts import available_fonts
    fonts = [f for f in available_fonts() if f.covers("增值税发票 ¥1,234.56")]
    pil_font = fonts[0].load(32)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

from PIL import ImageFont

__all__ = ["FontSpec", "FontNotFoundError", "noto_cjk_path", "default_cjk_font", "available_fonts", "fonts_covering"]

_NOTO_FILE = "NotoSansCJK-Regular.ttc"
#: face index → name inside NotoSansCJK-Regular.ttc (JP 0, KR 1, SC 2, TC 3, HK 4, Mono JP..HK 5..9)
_NOTO_FACES = {2: "Noto Sans CJK SC", 7: "Noto Sans Mono CJK SC"}

#: optional system fonts: (path, face index, name, has CJK)
_SYSTEM_FONTS: tuple[tuple[str, int, str, bool], ...] = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0, "WenQuanYi Micro Hei", True),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 0, "DejaVu Sans", False),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 0, "DejaVu Sans Bold", False),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", 0, "DejaVu Serif", False),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 0, "DejaVu Sans Mono", False),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf", 0, "DejaVu Sans Condensed", False),
)


class FontNotFoundError(FileNotFoundError):
    """The required CJK font is missing; the message says how to install it."""


@dataclass(frozen=True)
class FontSpec:
    """A font face on disk (``path`` + ``index`` inside a collection) and what it is good for."""

    path: Path
    index: int
    name: str
    cjk: bool

    @property
    def codepoints(self) -> frozenset[int]:
        """Code points with a glyph in this face (cached per face, ~0.1 s for the Noto collection)."""
        return _cmap(str(self.path), self.index)

    def covers(self, text: str) -> bool:
        """True when every non-space character of ``text`` has a glyph in this face."""
        cps = self.codepoints
        return all(ord(ch) in cps for ch in text if not ch.isspace())

    def missing(self, text: str) -> list[str]:
        """Characters of ``text`` this face cannot draw (in order, deduplicated)."""
        cps = self.codepoints
        return list(dict.fromkeys(ch for ch in text if not ch.isspace() and ord(ch) not in cps))

    def load(self, size: int) -> ImageFont.FreeTypeFont:
        """A Pillow font at ``size`` px (cached: opening the 19 MB collection costs milliseconds each time)."""
        return _load(str(self.path), self.index, int(size))


@functools.lru_cache(maxsize=None)
def _cmap(path: str, index: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    font = TTFont(path, fontNumber=index, lazy=True) if path.lower().endswith((".ttc", ".otc")) else TTFont(path, lazy=True)
    try:
        return frozenset(font.getBestCmap() or {})
    finally:
        font.close()


@functools.lru_cache(maxsize=512)
def _load(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=index)


def noto_cjk_path() -> Path:
    """Path of ``NotoSansCJK-Regular.ttc`` from the ``noto-cjk-sans-otc`` package.

    Found through the package's import spec rather than a hard-coded site-packages path, so it works in any
    venv. Raises :class:`FontNotFoundError` telling how to install it."""
    spec = importlib_util.find_spec("noto_cjk_sans_otc")
    hint = "run `bash scripts/setup.sh` (it installs the PyPI package noto-cjk-sans-otc, OFL-1.1)"
    if spec is None or not spec.submodule_search_locations:
        raise FontNotFoundError(f"the CJK font package noto-cjk-sans-otc is not installed; {hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _NOTO_FILE
        if path.is_file():
            return path
    raise FontNotFoundError(f"{_NOTO_FILE} not found in noto_cjk_sans_otc ({list(spec.submodule_search_locations)}); {hint}")


def default_cjk_font() -> FontSpec:
    """Noto Sans CJK SC (Simplified Chinese, face 2): covers 6619/6623 of ppocr_keys_v1 plus Latin."""
    return FontSpec(noto_cjk_path(), 2, _NOTO_FACES[2], True)


@functools.lru_cache(maxsize=4)
def _available(include_system: bool) -> tuple[FontSpec, ...]:
    path = noto_cjk_path()
    fonts = [FontSpec(path, index, name, True) for index, name in _NOTO_FACES.items()]
    if include_system:
        fonts += [FontSpec(Path(p), i, name, cjk) for p, i, name, cjk in _SYSTEM_FONTS if Path(p).is_file()]
    return tuple(fonts)


def available_fonts(include_system: bool = True) -> list[FontSpec]:
    """The Noto CJK faces (always) plus the optional system fonts that exist on this machine.

    The order is fixed (not the file system's), so generation with a seed is reproducible on a given
    machine; a machine with more fonts installed draws from a larger pool."""
    return list(_available(include_system))


def fonts_covering(text: str, fonts: list[FontSpec] | None = None) -> list[FontSpec]:
    """The fonts (default: :func:`available_fonts`) that can draw every character of ``text``."""
    return [f for f in (fonts if fonts is not None else available_fonts()) if f.covers(text)]

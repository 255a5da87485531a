"""Bad-image pre-check for serving: one error code per image instead of a crash or silent garbage.

Codes (stable strings, part of ``export.predict``'s JSON):

* ``IMAGE_UNREADABLE`` — missing file, not an image, truncated, empty (0 bytes) or zero width/height;
* ``IMAGE_TOO_LARGE`` — more pixels than ``max_pixels`` (checked from the header, before decoding, so a
  decompression bomb never reaches memory);
* ``IMAGE_QUALITY_POOR`` — under/over-exposed (fraction of near-black / near-white pixels) or blurred
  (variance of the Laplacian). Both are measured on the grey image scaled to the detector's working size
  (longest side ≤ 960), because that is the resolution the model sees: a large photo that is soft at full
  size can still be sharp enough there.

Defaults are deliberately lenient (a blank page or a Gaussian blur of σ ≥ 3 on 32-px text is rejected; a
single word on a white page is not) and every threshold can be changed or the quality check switched off.

Example::

    checker = ImageChecker(ImageCheckConfig(max_pixels=40_000_000))
    image = checker.load("scan.jpg")          # BGR uint8, or raises ImageCheckError(code, message)
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.imageio import decode_image, flatten_alpha

__all__ = [
    "IMAGE_UNREADABLE", "IMAGE_TOO_LARGE", "IMAGE_QUALITY_POOR", "ImageCheckConfig", "ImageCheckError",
    "ImageChecker", "image_quality",
]

IMAGE_UNREADABLE = "IMAGE_UNREADABLE"
IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
IMAGE_QUALITY_POOR = "IMAGE_QUALITY_POOR"

_QUALITY_SIDE = 960  # measure at the detector's default working size


@dataclass(frozen=True)
class ImageCheckConfig:
    """Limits of the pre-check. ``max_pixels=None`` disables the size limit; ``quality_check=False`` the
    blur/exposure check. Sharpness is the Laplacian variance of the grey image at ≤ 960 px; a pixel is
    near-black at ≤ ``dark_level`` and near-white at ≥ ``bright_level``."""

    max_pixels: int | None = 50_000_000
    quality_check: bool = True
    min_sharpness: float = 5.0
    dark_level: int = 15
    bright_level: int = 250
    max_dark_fraction: float = 0.95
    max_bright_fraction: float = 0.999

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImageCheckError(Exception):
    """An image failed the pre-check; ``code`` is one of the module's codes."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.details = code, message, dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


def image_quality(image: np.ndarray, dark_level: int = 15, bright_level: int = 250) -> dict[str, float]:
    """``{"sharpness", "dark_fraction", "bright_fraction"}`` of a BGR/grey image at ≤ 960 px."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    scale = _QUALITY_SIDE / max(grey.shape[:2])
    if scale < 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if grey.dtype != np.uint8:
        grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return {
        "sharpness": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        "dark_fraction": float(np.mean(grey <= dark_level)),
        "bright_fraction": float(np.mean(grey >= bright_level)),
    }


class ImageChecker:
    """Applies :class:`ImageCheckConfig` to files (:meth:`load`) or decoded arrays (:meth:`check_array`)."""

    def __init__(self, config: ImageCheckConfig | None = None) -> None:
        self.config = config or ImageCheckConfig()

    # ------------------------------------------------------------------ files
    @staticmethod
    def _pil_open(data: bytes, name: Path, full: bool) -> tuple[int, int]:
        """Header size; with ``full`` also decode every pixel (what finds a truncated JPEG/PNG, which OpenCV
        would silently grey-fill)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    size = im.size
                    if full:
                        im.load()
                    return size
        except Image.DecompressionBombError as exc:
            raise ImageCheckError(IMAGE_TOO_LARGE, f"{name}: too large to decode safely ({exc})") from None
        except UnidentifiedImageError:
            raise ImageCheckError(IMAGE_UNREADABLE, f"{name}: not a recognised image format ({len(data)} bytes)") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageCheckError(IMAGE_UNREADABLE, f"{name}: image is truncated or corrupt ({exc})") from None

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Read ``path`` as BGR uint8 after the size, integrity and quality checks."""
        path = Path(path)
        if not path.is_file():
            raise ImageCheckError(IMAGE_UNREADABLE, f"{path}: " + ("file not found" if not path.exists() else "not a regular file"))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageCheckError(IMAGE_UNREADABLE, f"{path}: cannot read file ({exc})") from None
        if not data:
            raise ImageCheckError(IMAGE_UNREADABLE, f"{path}: file is empty (0 bytes)")
        width, height = self._pil_open(data, path, full=False)
        if width <= 0 or height <= 0:
            raise ImageCheckError(IMAGE_UNREADABLE, f"{path}: image has zero size ({width}x{height})")
        self._check_pixels(path, width, height)  # before decoding: a huge image never reaches memory
        self._pil_open(data, path, full=True)
        try:
            image = decode_image(data, path)
        except Exception as exc:  # DatasetError and anything cv2 may raise
            raise ImageCheckError(IMAGE_UNREADABLE, f"{path}: {getattr(exc, 'message', exc)}") from None
        return self.check_array(image, name=str(path))

    def _check_pixels(self, name: Any, width: int, height: int) -> None:
        limit = self.config.max_pixels
        if limit is not None and width * height > limit:
            raise ImageCheckError(IMAGE_TOO_LARGE, f"{name}: {width}x{height} = {width * height} pixels exceeds the "
                                  f"limit of {limit}", {"width": width, "height": height, "max_pixels": limit})

    # ------------------------------------------------------------------ arrays
    def check_array(self, image: np.ndarray | None, name: str = "<array>") -> np.ndarray:
        """Validate a decoded image (size, then quality); returns it unchanged, except that a BGRA array is
        flattened onto white first (as :func:`datasets.imageio.decode_image` does for files), so the check and
        the model see what a viewer shows rather than the colour hidden under transparent pixels."""
        if image is None or not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0 \
                or min(image.shape[:2]) == 0:
            shape = None if image is None else getattr(image, "shape", None)
            raise ImageCheckError(IMAGE_UNREADABLE, f"{name}: not a usable image (shape {shape})")
        if image.dtype == np.uint8:
            image = flatten_alpha(image)
        self._check_pixels(name, image.shape[1], image.shape[0])
        cfg = self.config
        if not cfg.quality_check:
            return image
        q = image_quality(image, cfg.dark_level, cfg.bright_level)
        details = {k: round(v, 5) for k, v in q.items()}
        if q["dark_fraction"] > cfg.max_dark_fraction:
            raise ImageCheckError(IMAGE_QUALITY_POOR, f"{name}: under-exposed: {q['dark_fraction']:.1%} of pixels are "
                                  f"near-black (limit {cfg.max_dark_fraction:.1%})", details)
        if q["bright_fraction"] > cfg.max_bright_fraction:
            raise ImageCheckError(IMAGE_QUALITY_POOR, f"{name}: over-exposed or blank: {q['bright_fraction']:.2%} of "
                                  f"pixels are near-white (limit {cfg.max_bright_fraction:.2%})", details)
        if q["sharpness"] < cfg.min_sharpness:
            raise ImageCheckError(IMAGE_QUALITY_POOR, f"{name}: blurred or blank: sharpness (variance of Laplacian) "
                                  f"{q['sharpness']:.2f} < {cfg.min_sharpness}", details)
        return image

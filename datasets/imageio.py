"""Image file I/O with errors that name the file.

Why not ``cv2.imread``: it returns ``None`` for every failure (missing, not an image, non-ASCII path on some
platforms) and happily decodes a truncated JPEG into a half-grey picture. Here:

* :func:`read_image` decodes the bytes with ``cv2.imdecode`` (any path works) into BGR uint8 and raises
  :class:`~datasets.errors.DatasetError` naming the file when it is missing, empty or undecodable;
* :func:`image_size` reads only the header (PIL), for validating labels against image bounds quickly;
* :func:`verify_image` / :func:`inspect_image` fully decode with PIL to catch truncated files, which is what
  ``datasets.check`` runs on every image.

Transparency: an image with an alpha channel (PNG, WebP, TIFF; also palette/grey PNGs with ``tRNS``) is
flattened onto white. Decoders drop alpha and keep the colour under it, which for "text drawn only in the alpha
channel" (icons, exported vector graphics) is uniformly black: the quality check would call it under-exposed
and the model would see nothing. White is what every viewer shows behind such a file.

Orientation: ``cv2.imdecode`` applies the EXIF orientation tag (and PaddleOCR decodes the same way), so label
coordinates refer to the *rotated* image. :func:`image_size` therefore reports the EXIF-rotated size too.

Usage::

    image = read_image("train/img_1.jpg")          # HxWx3 uint8, BGR
    width, height = image_size("train/img_1.jpg")
    problem = verify_image("train/img_1.jpg")      # None when the image is fine
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.atomic import write_bytes_atomic
from datasets.errors import MISSING_IMAGE, TRUNCATED_IMAGE, UNREADABLE_IMAGE, DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "read_image",
    "decode_image",
    "write_image",
    "image_size",
    "verify_image",
    "inspect_image",
    "find_image",
    "is_image_file",
    "flatten_alpha",
]

#: extensions treated as images when pairing label files with images (compared case-insensitively)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: PIL formats that OpenCV's imdecode also reads; anything else is double-checked with cv2 in deep mode
_CV2_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF", "WEBP", "PPM", "JPEG2000"})

#: EXIF orientations that swap width and height (transpose, rotate 90/270, transverse)
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """What ``datasets.check`` needs to know about one image file, gathered from a single read.

    ``problem``/``kind`` are set (and ``width``/``height`` may be 0) when the file is unusable."""

    path: Path
    nbytes: int
    width: int = 0
    height: int = 0
    sha256: str | None = None
    problem: str | None = None
    kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DatasetError(path, None, "image file not found" if not path.exists() else "not a regular file",
                           MISSING_IMAGE, key=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, None, f"cannot read image file: {exc.strerror or exc}", UNREADABLE_IMAGE,
                           key=str(path)) from None
    if not data:
        raise DatasetError(path, None, "image file is empty (0 bytes)", UNREADABLE_IMAGE, key=str(path))
    return data


def _may_have_alpha(data: bytes) -> bool:
    """Cheap look at the header: could this file carry transparency? (Only then is it decoded twice.)"""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 25:
        idat = data.find(b"IDAT")
        return data[25] in (4, 6) or b"tRNS" in data[: idat if idat > 0 else len(data)]
    return (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or data[:4] in (b"II*\x00", b"MM\x00*")


def _composite_on_white(bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``bgr`` (uint8) over a white background with ``alpha`` (any unsigned integer dtype) as coverage."""
    if alpha.dtype != np.uint8:
        alpha = (alpha.astype(np.float32) * (255.0 / np.iinfo(alpha.dtype).max)).round().astype(np.uint8)
    if alpha.min() == 255:
        return bgr
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    return (bgr.astype(np.float32) * a + 255.0 * (1.0 - a)).round().astype(np.uint8)


def flatten_alpha(image: np.ndarray) -> np.ndarray:
    """A BGRA (or grey+alpha) uint8 array flattened onto white as BGR; other arrays are returned as they are."""
    if image.ndim == 3 and image.shape[2] == 4:
        return _composite_on_white(np.ascontiguousarray(image[:, :, :3]), image[:, :, 3])
    if image.ndim == 3 and image.shape[2] == 2:
        grey = cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
        return _composite_on_white(grey, image[:, :, 1])
    return image


def decode_image(data: bytes, name: str | PathLike[str] = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes into BGR uint8 (EXIF orientation applied, transparency flattened onto
    white); ``name`` is used in errors."""
    if not data:
        raise DatasetError(name, None, "image data is empty (0 bytes)", UNREADABLE_IMAGE)
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise DatasetError(name, None, f"cannot decode image ({len(data)} bytes; not an image or truncated)",
                           UNREADABLE_IMAGE)
    if _may_have_alpha(data):
        raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        # the colour decode converted bit depth and palette already; take only the alpha from the raw one
        # (same size unless EXIF rotated the colour decode, which alpha files practically never carry)
        if raw is not None and raw.ndim == 3 and raw.shape[2] == 4 and raw.shape[:2] == image.shape[:2]:
            image = _composite_on_white(image, raw[:, :, 3])
    return image


def read_image(path: str | PathLike[str]) -> np.ndarray:
    """Read an image file as HxWx3 BGR uint8 (grey, alpha and 16-bit inputs are converted).

    Raises :class:`DatasetError` naming the file when it is missing, empty or cannot be decoded. A truncated
    JPEG may still decode (libjpeg fills the rest with grey); :func:`verify_image` is the check for that."""
    path = Path(path)
    data = _read_bytes(path)
    try:
        return decode_image(data, path)
    except DatasetError as exc:
        raise DatasetError(path, None, exc.message, exc.kind, key=str(path)) from None


def write_image(path: str | PathLike[str], image: np.ndarray, quality: int = 95) -> Path:
    """Encode ``image`` (BGR or grey uint8) by the path's extension and write it; works for non-ASCII paths
    (``cv2.imwrite`` does not everywhere). Creates the parent folder; the write is atomic (temp file + rename),
    and an unwritable path raises ``OSError`` naming it."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot encode a {image.shape} {image.dtype} image as {ext}")
    write_bytes_atomic(path, buffer.tobytes(), sync=False)
    return path


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block must not hide the size; decoders ignore it too
        orientation = None
    if orientation in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    return width, height


def image_size(path: str | PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of the image as :func:`read_image` would return it, from the header only."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, None, "image file not found", MISSING_IMAGE, key=str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return _oriented_size(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(path, None, f"cannot read image header: {exc}", UNREADABLE_IMAGE, key=str(path)) from None


def _check_bytes(data: bytes, deep: bool) -> tuple[int, int, str | None, str | None]:
    """Return ``(width, height, problem, kind)`` for encoded image bytes."""
    if not data:
        return 0, 0, "image file is empty (0 bytes)", UNREADABLE_IMAGE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            if deep:
                with Image.open(io.BytesIO(data)) as image:
                    image.verify()  # structure and checksums (PNG CRCs); must come right after open
            with Image.open(io.BytesIO(data)) as image:
                width, height = _oriented_size(image)
                fmt = image.format
                if width <= 0 or height <= 0:
                    return width, height, f"image has zero size ({width}x{height})", UNREADABLE_IMAGE
                if deep:
                    image.load()  # full decode: this is what finds a truncated JPEG or PNG
        except UnidentifiedImageError:
            return 0, 0, f"not a recognised image format ({len(data)} bytes)", UNREADABLE_IMAGE
        except Image.DecompressionBombError as exc:
            return 0, 0, f"image too large to decode safely: {exc}", UNREADABLE_IMAGE
        except (OSError, SyntaxError, ValueError) as exc:
            return 0, 0, f"image is truncated or corrupt: {exc}", _kind_of(exc)
    if deep and fmt not in _CV2_FORMATS:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            return width, height, f"{fmt} image that OpenCV (the training decoder) cannot read", UNREADABLE_IMAGE
    return width, height, None, None


def _kind_of(exc: Exception) -> str:
    text = str(exc).lower()
    return TRUNCATED_IMAGE if ("truncat" in text or "premature" in text or "end of" in text) else UNREADABLE_IMAGE


def verify_image(path: str | PathLike[str]) -> str | None:
    """Describe what is wrong with an image file (missing, empty, not an image, truncated, corrupt), or
    return None when it fully decodes."""
    return inspect_image(path, deep=True).problem


def inspect_image(path: str | PathLike[str], *, deep: bool = True) -> ImageInfo:
    """Read an image file once: size (EXIF-rotated), sha256 of the bytes, and any problem.

    ``deep=False`` checks only the header (fast, misses truncation). Never raises for a bad image: the
    problem is returned in :attr:`ImageInfo.problem`, so a checker can go on."""
    path = Path(path)
    if not path.is_file():
        problem = "image file not found" if not path.exists() else "not a regular file"
        return ImageInfo(path, 0, problem=problem, kind=MISSING_IMAGE)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageInfo(path, 0, problem=f"cannot read file: {exc}", kind=UNREADABLE_IMAGE)
    width, height, problem, kind = _check_bytes(data, deep)
    return ImageInfo(path, len(data), width, height, hashlib.sha256(data).hexdigest(), problem, kind)


def is_image_file(path: str | PathLike[str]) -> bool:
    """Whether ``path`` has an image extension (case-insensitive); does not touch the file."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_image(directory: str | PathLike[str], stem: str, candidates: dict[str, Path] | None = None) -> Path | None:
    """The image called ``stem`` + an image extension in ``directory`` (``.jpg`` first), or None.

    ``candidates`` (lower-cased stem → path, built once per folder) avoids a stat per extension when pairing
    thousands of files."""
    if candidates is not None:
        return candidates.get(stem.lower())
    directory = Path(directory)
    for ext in IMAGE_EXTENSIONS:
        for suffix in (ext, ext.upper()):
            path = directory / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None

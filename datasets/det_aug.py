"""Detection augmentation: albumentations pipelines built from a config mapping (``conf/aug/det_*.yaml``).

Why this shape: text polygons must move with the pixels exactly, so every geometric step is an
albumentations transform with the polygon vertices passed as keypoints
(``KeypointParams(format="xy", remove_invisible=False)``: a vertex pushed outside is kept, so a polygon never
loses a corner). The only decision made here by hand is *where* to crop: a crop must not cut through a text
line (a half word labelled as a whole one teaches the detector to split words), so the crop edges are drawn
from rows/columns that no text box touches, then applied with ``A.Crop``. No flips: mirrored glyphs are not text.

Order (each step optional in the config): random scale/rotate/shear (``A.Affine``, ``fit_output`` so nothing
is cut) and perspective (``A.Perspective``) → text-safe crop → fit into ``size × size`` (``A.LongestMaxSize`` +
``A.PadIfNeeded``, top-left) → colour jitter, blur, noise, JPEG.

Usage::

    aug = build_det_aug(yaml.safe_load(open("conf/aug/det_default.yaml")))
    out = aug(image, [quad, ...], [False, ...], np.random.default_rng([seed, epoch, index]))
    out.image  # 640×640×3 uint8; out.polygons / out.ignores in the new pixel frame
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import albumentations as A
import cv2
import numpy as np

from datasets.aug_config import merge_config, plain, symmetric_range as _pair

__all__ = ["DetAugResult", "DetAugment", "build_det_aug", "choose_text_safe_crop"]

_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "size": 640,
    "geometric": {"p": 1.0, "scale": [0.5, 2.0], "rotate": [-10, 10], "shear": [-5, 5],
                  "perspective_p": 0.3, "perspective_scale": [0.02, 0.06]},
    "crop": {"p": 1.0, "min_side_ratio": 0.1, "max_tries": 50, "min_texts": 1},
    "color": {"p": 0.5, "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.03},
    "blur": {"p": 0.15, "sigma": [0.3, 1.2]},
    "noise": {"p": 0.15, "std": [0.01, 0.05]},
    "jpeg": {"p": 0.1, "quality": [40, 90]},
}


@dataclass
class DetAugResult:
    """Augmented image (H×W×3 uint8) and its polygons (float32 N×2 each) with their ignore flags."""

    image: np.ndarray
    polygons: list[np.ndarray]
    ignores: list[bool]


def _free_cuts(occupied: np.ndarray) -> np.ndarray:
    """Cut positions 0..n (between pixels) that no text box covers."""
    n = len(occupied)
    cuts = np.ones(n + 1, bool)
    cuts[1:n] = ~(occupied[:-1] & occupied[1:])
    return np.flatnonzero(cuts)


def choose_text_safe_crop(
    shape: tuple[int, int],
    polygons: Sequence[np.ndarray],
    rng: np.random.Generator,
    min_side_ratio: float = 0.1,
    max_tries: int = 50,
    min_texts: int = 1,
    ignores: Sequence[bool] | None = None,
) -> tuple[int, int, int, int]:
    """A crop ``(x0, y0, x1, y1)`` whose edges cross no polygon's bounding box.

    Rows/columns covered by any box are forbidden cut positions; two allowed positions per axis are drawn at
    random (each side ≥ ``min_side_ratio`` of the image). A box is then either wholly inside or wholly outside
    the crop. A crop must contain at least ``min_texts`` non-ignored texts (when the image has that many);
    after ``max_tries`` the whole image is returned."""
    h, w = shape
    occ_x, occ_y = np.zeros(w, bool), np.zeros(h, bool)
    boxes = []
    for points in polygons:
        p = np.asarray(points, np.float64).reshape(-1, 2)
        bx0, by0 = int(np.clip(np.floor(p[:, 0].min()), 0, w)), int(np.clip(np.floor(p[:, 1].min()), 0, h))
        bx1, by1 = int(np.clip(np.ceil(p[:, 0].max()), 0, w)), int(np.clip(np.ceil(p[:, 1].max()), 0, h))
        occ_x[bx0:bx1 + 1] = True
        occ_y[by0:by1 + 1] = True
        boxes.append((bx0, by0, bx1, by1))
    xs, ys = _free_cuts(occ_x), _free_cuts(occ_y)
    cared = [b for b, ig in zip(boxes, ignores if ignores is not None else [False] * len(boxes)) if not ig]
    need = min(min_texts, len(cared))
    min_w, min_h = max(1, int(min_side_ratio * w)), max(1, int(min_side_ratio * h))
    for _ in range(max_tries):
        x0, x1 = np.sort(rng.choice(xs, 2))
        y0, y1 = np.sort(rng.choice(ys, 2))
        if x1 - x0 < min_w or y1 - y0 < min_h:
            continue
        inside = sum(1 for bx0, by0, bx1, by1 in cared if bx0 >= x0 and bx1 <= x1 and by0 >= y0 and by1 <= y1)
        if inside >= need:
            return int(x0), int(y0), int(x1), int(y1)
    return 0, 0, w, h


class DetAugment:
    """Callable det pipeline; see :func:`build_det_aug`. Deterministic given the ``rng`` passed per call
    (the albumentations composes are re-seeded from it), so worker assignment never changes a sample."""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg
        self.size = int(cfg["size"])
        kp = A.KeypointParams(format="xy", remove_invisible=False)
        geo = cfg.get("geometric") if cfg.get("enabled", True) else None
        self._geometric = None
        if geo:
            steps = [A.Affine(scale=tuple(geo["scale"]), rotate=_pair(geo["rotate"]), shear=_pair(geo["shear"]),
                              fit_output=True, keep_ratio=True, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)]
            if geo.get("perspective_p", 0) > 0:
                steps.append(A.Perspective(scale=tuple(geo["perspective_scale"]), fit_output=True,
                                           border_mode=cv2.BORDER_CONSTANT, fill=0, p=float(geo["perspective_p"])))
            self._geometric = A.Compose(steps, keypoint_params=kp, p=float(geo.get("p", 1.0)))
        self._crop_cfg = cfg.get("crop") if cfg.get("enabled", True) else None
        pixel: list[A.BasicTransform] = []
        if cfg.get("enabled", True):
            if cfg.get("color"):
                c = cfg["color"]
                pixel.append(A.ColorJitter(brightness=c["brightness"], contrast=c["contrast"],
                                           saturation=c["saturation"], hue=c["hue"], p=float(c["p"])))
            if cfg.get("blur"):
                pixel.append(A.GaussianBlur(sigma_limit=tuple(cfg["blur"]["sigma"]), blur_limit=0, p=float(cfg["blur"]["p"])))
            if cfg.get("noise"):
                pixel.append(A.GaussNoise(std_range=tuple(cfg["noise"]["std"]), p=float(cfg["noise"]["p"])))
            if cfg.get("jpeg"):
                pixel.append(A.ImageCompression(quality_range=tuple(int(q) for q in cfg["jpeg"]["quality"]),
                                                p=float(cfg["jpeg"]["p"])))
        self._pixel = A.Compose(pixel) if pixel else None
        self._fit = A.Compose([
            A.LongestMaxSize(max_size=self.size, interpolation=cv2.INTER_LINEAR, p=1.0),
            A.PadIfNeeded(min_height=self.size, min_width=self.size, position="top_left",
                          border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
        ], keypoint_params=kp)
        self._kp = kp

    def __call__(self, image: np.ndarray, polygons: Sequence[np.ndarray], ignores: Sequence[bool],
                 rng: np.random.Generator) -> DetAugResult:
        polys = [np.asarray(p, np.float32).reshape(-1, 2) for p in polygons]
        ignores = [bool(i) for i in ignores]
        counts = [len(p) for p in polys]
        keypoints = np.concatenate(polys) if polys else np.zeros((0, 2), np.float32)

        if self._geometric is not None:
            self._geometric.set_random_seed(int(rng.integers(2**31)))
            out = self._geometric(image=image, keypoints=keypoints)
            image, keypoints = out["image"], out["keypoints"]
        if self._crop_cfg and rng.random() < float(self._crop_cfg.get("p", 1.0)):
            x0, y0, x1, y1 = choose_text_safe_crop(image.shape[:2], _split(keypoints, counts), rng,
                                                   float(self._crop_cfg["min_side_ratio"]),
                                                   int(self._crop_cfg["max_tries"]), int(self._crop_cfg["min_texts"]),
                                                   ignores)
            if (x0, y0, x1, y1) != (0, 0, image.shape[1], image.shape[0]):
                out = A.Compose([A.Crop(x_min=x0, y_min=y0, x_max=x1, y_max=y1, p=1.0)],
                                keypoint_params=self._kp)(image=image, keypoints=keypoints)
                image, keypoints = out["image"], out["keypoints"]
        polys, ignores = _keep_visible(_split(keypoints, counts), ignores, image.shape[:2])
        counts = [len(p) for p in polys]
        keypoints = np.concatenate(polys) if polys else np.zeros((0, 2), np.float32)
        self._fit.set_random_seed(int(rng.integers(2**31)))
        out = self._fit(image=image, keypoints=keypoints)
        image = out["image"]
        if self._pixel is not None:
            self._pixel.set_random_seed(int(rng.integers(2**31)))
            image = self._pixel(image=image)["image"]
        return DetAugResult(image, _split(out["keypoints"], counts), ignores)


def _split(keypoints: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    """Flat keypoint array → one array per polygon (``counts`` vertices each)."""
    kps = np.asarray(keypoints, np.float32).reshape(-1, 2)
    return [p.copy() for p in np.split(kps, np.cumsum(counts)[:-1])] if counts else []


def _keep_visible(polys: list[np.ndarray], ignores: list[bool], shape: tuple[int, int]) -> tuple[list[np.ndarray], list[bool]]:
    """Drop polygons wholly outside the frame; a polygon cut by the frame edge becomes don't-care (its
    label no longer matches the visible ink) and is clipped to the frame."""
    h, w = shape
    kept, flags = [], []
    for p, ignore in zip(polys, ignores):
        inside_x = (p[:, 0] >= -0.5) & (p[:, 0] <= w - 0.5)
        inside_y = (p[:, 1] >= -0.5) & (p[:, 1] <= h - 0.5)
        if p[:, 0].max() < 0 or p[:, 1].max() < 0 or p[:, 0].min() > w - 1 or p[:, 1].min() > h - 1:
            continue
        cut = not bool((inside_x & inside_y).all())
        clipped = np.stack([np.clip(p[:, 0], 0, w - 1), np.clip(p[:, 1], 0, h - 1)], axis=1).astype(np.float32)
        kept.append(clipped)
        flags.append(ignore or cut)
    return kept, flags


def build_det_aug(cfg: Mapping[str, Any] | None = None, **overrides: Any) -> DetAugment:
    """Build the det pipeline from a config mapping (``conf/aug/det_default.yaml``) and/or keyword args
    (what ``hydra.utils.instantiate`` passes). Unknown keys raise ``KeyError``; a section set to ``None``
    is off; ``enabled: false`` (``conf/aug/none.yaml``) keeps only the resize/pad to ``size``."""
    merged = plain(dict(cfg or {}))
    merged.update(plain(overrides))
    return DetAugment(merge_config(_DEFAULTS, merged, "det"))

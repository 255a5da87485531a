"""Recognition augmentation: TIA-like geometric distortions plus photometric noise, from a config mapping
(``conf/aug/rec_default.yaml``), followed by the shared resize/normalise of :mod:`datasets.resize`.

Why these transforms: PaddleOCR's TIA (text image augmentation) bends, stretches and tilts the line locally;
albumentations' ``GridDistortion`` / ``ElasticTransform`` / ``Perspective`` / small ``Affine`` produce the
same kinds of deformation without hand-written warps. Borders are replicated so no black wedges appear at
the ends of a line (a recogniser would learn to read them as characters). Resizing is *not* done here:
:func:`datasets.resize.rec_resize_norm` (height 48, aspect kept, right-padded) is the one policy shared with
serving, and the width is chosen per batch by the loader.

Usage::

    aug = build_rec_aug(yaml.safe_load(open("conf/aug/rec_default.yaml")))
    line = aug(line_bgr, np.random.default_rng([seed, epoch, index]))   # same size class, uint8 BGR
    chw = rec_resize_norm(line, 48, 320)
"""
from __future__ import annotations

from typing import Any, Mapping

import albumentations as A
import cv2
import numpy as np

from datasets.aug_config import merge_config, plain, symmetric_range as _pair

__all__ = ["RecAugment", "build_rec_aug"]

_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "distort": {"p": 0.4, "grid_steps": 5, "grid_limit": 0.15, "elastic_alpha": 8.0, "elastic_sigma": 6.0,
                "perspective_scale": [0.02, 0.06], "rotate": [-3, 3], "shear": [-10, 10], "scale": [0.9, 1.05]},
    "blur": {"p": 0.2, "sigma": [0.3, 1.0]},
    "motion_blur": {"p": 0.05, "limit": [3, 5]},
    "noise": {"p": 0.2, "std": [0.01, 0.06]},
    "color": {"p": 0.4, "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05},
    "invert": {"p": 0.0},
    "jpeg": {"p": 0.1, "quality": [40, 90]},
}


class RecAugment:
    """Callable rec pipeline: ``(BGR uint8 line, rng) → BGR uint8 line``; deterministic given ``rng``."""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg
        steps: list[A.BasicTransform] = []
        if cfg.get("enabled", True):
            d = cfg.get("distort")
            if d:
                border = {"border_mode": cv2.BORDER_REPLICATE}
                steps.append(A.OneOf([
                    A.GridDistortion(num_steps=int(d["grid_steps"]), distort_limit=_pair(d["grid_limit"]), p=1.0, **border),
                    A.ElasticTransform(alpha=float(d["elastic_alpha"]), sigma=float(d["elastic_sigma"]), p=1.0, **border),
                    A.Perspective(scale=tuple(d["perspective_scale"]), keep_size=True, fit_output=True, p=1.0, **border),
                    A.Affine(rotate=_pair(d["rotate"]), shear={"x": _pair(d["shear"]), "y": (0.0, 0.0)},
                             scale=tuple(d["scale"]), fit_output=True, p=1.0, **border),
                ], p=float(d["p"])))
            if cfg.get("blur"):
                steps.append(A.GaussianBlur(sigma_limit=tuple(cfg["blur"]["sigma"]), blur_limit=0, p=float(cfg["blur"]["p"])))
            if cfg.get("motion_blur"):
                steps.append(A.MotionBlur(blur_limit=tuple(int(v) for v in cfg["motion_blur"]["limit"]),
                                          p=float(cfg["motion_blur"]["p"])))
            if cfg.get("noise"):
                steps.append(A.GaussNoise(std_range=tuple(cfg["noise"]["std"]), p=float(cfg["noise"]["p"])))
            if cfg.get("color"):
                c = cfg["color"]
                steps.append(A.ColorJitter(brightness=c["brightness"], contrast=c["contrast"],
                                           saturation=c["saturation"], hue=c["hue"], p=float(c["p"])))
            if cfg.get("invert") and float(cfg["invert"]["p"]) > 0:
                steps.append(A.InvertImg(p=float(cfg["invert"]["p"])))
            if cfg.get("jpeg"):
                steps.append(A.ImageCompression(quality_range=tuple(int(q) for q in cfg["jpeg"]["quality"]),
                                                p=float(cfg["jpeg"]["p"])))
        self._compose = A.Compose(steps) if steps else None

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self._compose is None:
            return image
        if image.shape[0] < 4 or image.shape[1] < 4:  # distortion grids need a few pixels
            return image
        self._compose.set_random_seed(int(rng.integers(2**31)))
        return self._compose(image=image)["image"]


def build_rec_aug(cfg: Mapping[str, Any] | None = None, **overrides: Any) -> RecAugment:
    """Build the rec pipeline from a config mapping and/or keyword args (Hydra ``instantiate``). Unknown keys
    raise ``KeyError``; a section set to ``None`` is off; ``enabled: false`` makes it the identity."""
    merged = plain(dict(cfg or {}))
    merged.update(plain(overrides))
    return RecAugment(merge_config(_DEFAULTS, merged, "rec"))

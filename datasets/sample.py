"""Canonical sample types: every reader (ICDAR2015, RCTW-17, PaddleOCR label files, synthetic) yields these,
so validation, augmentation, training and export never look at a file format."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TextInstance", "DetSample", "RecSample", "IGNORE_TEXTS"]

#: transcriptions that mean "don't care" in ICDAR2015 / PaddleOCR det labels
IGNORE_TEXTS = frozenset({"###", "*"})


@dataclass
class TextInstance:
    """One text region: polygon ``points`` (N×2 float32, image pixels), its transcription, and whether it is
    a don't-care region (``###``, RCTW ``difficult=1``) that detection must neither reward nor punish."""

    points: np.ndarray
    text: str
    ignore: bool = False

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)


@dataclass
class DetSample:
    """An image with its text instances; ``source``/``line`` point at the label that produced it."""

    image_path: Path
    instances: list[TextInstance] = field(default_factory=list)
    source: Path | None = None
    line: int | None = None


@dataclass
class RecSample:
    """A text-line image (or a region of one, ``points``) and its transcription."""

    image_path: Path
    text: str
    source: Path | None = None
    line: int | None = None
    points: np.ndarray | None = None

"""Recognition training sets cut from detection labels: perspective-rectified crops + a PaddleOCR rec label file.

Usage::

    python -m datasets.crops icdar2015 data/icdar2015 --out data/icdar2015_rec
    # -> data/icdar2015_rec/crops/000000_img_1_000.jpg ..., data/icdar2015_rec/label.txt

    crop = crop_polygon(image, [[10, 10], [110, 12], [109, 42], [9, 40]])   # used by export's det→rec path

:func:`crop_polygon` is the one crop used both here (training data) and by the serving pipeline, so the
recognizer trains on exactly the kind of crop it will see. It behaves like PaddleOCR's
``get_rotate_crop_image``: the quad is ordered clockwise from its top-left corner, output width is the longer
of the two horizontal edges and height the longer of the two vertical ones, the warp is
``cv2.warpPerspective`` with ``INTER_CUBIC`` and ``BORDER_REPLICATE``, and a crop at least 1.5× taller than
wide (a vertical text line) is rotated 90° counter-clockwise. Polygons with more or fewer than 4 points are
first reduced to their minimum-area rectangle (PaddleOCR's ``poly`` box type does the same), or to their
axis-aligned bounding rectangle with ``polygon_mode="bbox"``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from datasets.errors import DatasetError, ValidationIssue, one_line
from datasets.formats import FORMATS, get_format, read_det
from datasets.imageio import read_image, write_image
from datasets.ppocr_label import write_ppocr_rec_label
from datasets.sample import DetSample, RecSample

__all__ = ["order_quad", "polygon_to_quad", "crop_polygon", "CropResult", "write_crops", "main",
           "VERTICAL_RATIO"]

#: a crop with height / width at or above this is a vertical line and is rotated 90°
VERTICAL_RATIO = 1.5


def order_quad(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Order 4 points clockwise (on screen, y down) starting at the top-left: ``[tl, tr, br, bl]`` float32.

    Points are first put in cyclic order by their angle around the centroid (so a label whose corners were
    clicked in a crossed order still gives a proper quad); the start is the upper of the two leftmost points,
    the rule PaddleOCR's DB post-processing uses, so boxes coming out of the detector are left unchanged."""
    quad = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if quad.shape != (4, 2):
        raise ValueError(f"order_quad needs 4 points, got {len(quad)}")
    center = quad.mean(axis=0)
    angles = np.arctan2(quad[:, 1] - center[1], quad[:, 0] - center[0])
    cyclic = quad[np.argsort(angles, kind="stable")]
    by_x = np.lexsort((cyclic[:, 1], cyclic[:, 0]))
    first, second = int(by_x[0]), int(by_x[1])
    start = first if cyclic[first, 1] <= cyclic[second, 1] else second
    return np.roll(cyclic, -start, axis=0)


def polygon_to_quad(points: np.ndarray | Sequence[Sequence[float]], polygon_mode: str = "minarea") -> np.ndarray:
    """4 ordered corners for any polygon of at least 3 points: quads as they are, other polygons by their
    minimum-area rectangle (``"minarea"``) or axis-aligned bounding rectangle (``"bbox"``)."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(pts)}")
    if len(pts) == 4:
        return order_quad(pts)
    if polygon_mode == "minarea":
        return order_quad(cv2.boxPoints(cv2.minAreaRect(pts)))
    if polygon_mode == "bbox":
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
    raise ValueError(f"polygon_mode must be 'minarea' or 'bbox', got {polygon_mode!r}")


def crop_polygon(image: np.ndarray, points: np.ndarray | Sequence[Sequence[float]], *,
                 polygon_mode: str = "minarea") -> np.ndarray:
    """Cut the text region ``points`` out of ``image`` as an upright, rectified text-line image.

    See the module docstring for the exact geometry (it matches PaddleOCR's ``get_rotate_crop_image``).
    Raises ValueError for a region that has no area (a crop of width or height 0)."""
    quad = polygon_to_quad(points, polygon_mode)
    if abs(cv2.contourArea(quad)) < 1e-6:
        raise ValueError(f"text region has zero area: {quad.tolist()}")
    top_left, top_right, bottom_right, bottom_left = quad
    width = int(max(np.linalg.norm(top_left - top_right), np.linalg.norm(bottom_right - bottom_left)))
    height = int(max(np.linalg.norm(top_left - bottom_left), np.linalg.norm(top_right - bottom_right)))
    if width < 1 or height < 1:
        raise ValueError(f"text region is thinner than a pixel ({width}x{height}): {quad.tolist()}")
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE,
                               flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= VERTICAL_RATIO:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


@dataclass
class CropResult:
    """What :func:`write_crops` produced: the label file, the crops, and why regions were skipped."""

    label_file: Path
    samples: list[RecSample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"label_file": str(self.label_file), "num_crops": len(self.samples),
                "num_skipped": len(self.skipped), "skipped": self.skipped}


def _safe_stem(path: Path) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in path.stem)[:60]


def write_crops(samples: Sequence[DetSample], out_dir: str | PathLike[str], *, ext: str = ".jpg",
                polygon_mode: str = "minarea", label_name: str = "label.txt") -> CropResult:
    """Crop every non-ignored region with a transcription into ``out_dir/crops/`` and write
    ``out_dir/{label_name}`` (``crops/NAME<TAB>text``, relative to ``out_dir``).

    Regions that cannot become a rec sample (no area, text with a TAB or line break) and unreadable images are
    skipped and listed in :attr:`CropResult.skipped` with their file and line."""
    out_dir = Path(out_dir)
    crops_dir = out_dir / "crops"
    result = CropResult(out_dir / label_name)
    for index, sample in enumerate(samples):
        regions = [(k, inst) for k, inst in enumerate(sample.instances) if not inst.ignore and inst.text.strip()]
        if not regions:
            continue
        try:
            image = read_image(sample.image_path)
        except DatasetError as exc:
            result.skipped.append(str(exc))
            continue
        for k, instance in regions:
            where = f"{sample.source or sample.image_path}:{getattr(instance, 'line', None) or sample.line or '?'}"
            if any(ch in instance.text for ch in "\t\r\n"):
                result.skipped.append(f"{where}: transcription has a TAB or line break")
                continue
            try:
                crop = crop_polygon(image, instance.points, polygon_mode=polygon_mode)
            except ValueError as exc:
                result.skipped.append(f"{where}: {exc}")
                continue
            path = write_image(crops_dir / f"{index:06d}_{_safe_stem(sample.image_path)}_{k:03d}{ext}", crop)
            result.samples.append(RecSample(path, instance.text, source=sample.source,
                                            line=getattr(instance, "line", None) or sample.line))
    write_ppocr_rec_label(result.samples, result.label_file, root=out_dir)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.crops", description=__doc__.split("\n\n")[0])
    parser.add_argument("format", choices=[name for name, spec in FORMATS.items() if spec.task == "det"])
    parser.add_argument("path", type=Path, help="dataset folder or label file")
    parser.add_argument("--out", type=Path, required=True, help="output folder (crops/ + label.txt)")
    parser.add_argument("--root", type=Path, default=None, help="image root for ppocr-det label files")
    parser.add_argument("--ext", default=".jpg", choices=[".jpg", ".png"], help="crop image format")
    parser.add_argument("--polygon-mode", default="minarea", choices=["minarea", "bbox"],
                        help="how polygons with != 4 points are reduced to a quad")
    parser.add_argument("--skip-errors", action="store_true",
                        help="read leniently: crop the valid samples and list the problems (default: stop at the "
                             "first problem; run `python -m datasets.check` for the full list)")
    args = parser.parse_args(argv)
    issues: list[ValidationIssue] | None = [] if args.skip_errors else None
    try:
        root = args.root if get_format(args.format).uses_root else None
        samples = read_det(args.format, args.path, issues=issues, root=root)
    except (DatasetError, OSError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1 if isinstance(exc, DatasetError) else 2
    if issues:
        bad = {issue.key for issue in issues if issue.is_error and issue.key}
        samples = [s for s in samples if str(s.image_path) not in bad]
        for issue in issues:
            print(f"skipped: {issue}", file=sys.stderr)
    try:
        result = write_crops(samples, args.out, ext=args.ext, polygon_mode=args.polygon_mode)
    except OSError as exc:  # unwritable or full output folder
        print(f"error: cannot write the crops: {one_line(exc)}", file=sys.stderr)
        return 1
    for reason in result.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    summary = result.to_dict()
    summary["num_skipped"] += len(issues or [])
    print(f"{summary['num_crops']} crops from {len(samples)} images -> {result.label_file}")
    summary.pop("skipped")
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

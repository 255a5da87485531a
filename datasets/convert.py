"""Convert any supported dataset to PaddleOCR label files, so users keep their PaddleOCR tools.

Usage::

    python -m datasets.convert icdar2015 data/icdar2015 --out data/icdar2015_ppocr          # det label file
    python -m datasets.convert rctw17 data/rctw17 --out data/rctw_rec --to ppocr-rec         # crops + rec labels
    python -m datasets.convert icdar2015 data/icdar2015 --out out --copy-images             # self-contained copy

    convert("rctw17", "data/rctw17", "out")  # -> {"label_file": "out/label.txt", "num_samples": …, …}

Det formats become a PaddleOCR det label file (``###`` for ignored regions); any format becomes a rec label
file (det formats through :func:`datasets.crops.write_crops`). Image paths in the written label file are
relative to ``--out`` (so PaddleOCR's ``data_dir`` is ``--out``); ``--copy-images`` copies the images under
``--out/images/`` to make the output self-contained.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from os import PathLike
from pathlib import Path
from typing import Any, Sequence

from datasets.crops import write_crops
from datasets.errors import DatasetError, ValidationIssue, one_line
from datasets.formats import FORMATS, get_format, read_samples
from datasets.ppocr_label import write_ppocr_det_label, write_ppocr_rec_label
from datasets.sample import DetSample, RecSample

__all__ = ["TARGETS", "convert", "main"]

TARGETS = ("ppocr-det", "ppocr-rec")


def _copy_images(samples: list, out_dir: Path) -> list:
    """Copy images under ``out_dir/images/`` keeping their paths relative to the images' common folder."""
    if not samples:
        return samples
    sources = {Path(s.image_path).resolve() for s in samples}
    common = Path(os.path.commonpath(sorted(str(p.parent) for p in sources)))
    copied = {}
    for source in sources:
        target = out_dir / "images" / source.relative_to(common)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied[source] = target
    out = []
    for sample in samples:
        target = copied[Path(sample.image_path).resolve()]
        if isinstance(sample, DetSample):
            out.append(DetSample(target, sample.instances, sample.source, sample.line))
        else:
            out.append(RecSample(target, sample.text, sample.source, sample.line, sample.points))
    return out


def convert(fmt: str, path: str | PathLike[str], out_dir: str | PathLike[str], *, to: str | None = None,
            root: str | PathLike[str] | None = None, copy_images: bool = False,
            issues: list[ValidationIssue] | None = None, label_name: str = "label.txt") -> dict[str, Any]:
    """Convert ``fmt:path`` into ``to`` (default: ``ppocr-det`` for det formats, ``ppocr-rec`` for rec) under
    ``out_dir``; returns a summary. Reads strictly unless ``issues`` is given (then bad samples are dropped
    and the problems are left in ``issues``)."""
    spec = get_format(fmt)
    to = to or ("ppocr-det" if spec.task == "det" else "ppocr-rec")
    if to not in TARGETS:
        raise ValueError(f"can convert to {', '.join(TARGETS)}, not {to!r}")
    if to == "ppocr-det" and spec.task != "det":
        raise ValueError(f"{fmt} holds text-line images without boxes; it cannot become a detection label file")
    out_dir = Path(out_dir)
    samples = read_samples(fmt, path, issues=issues, root=root if spec.uses_root else None)
    if issues:
        bad = {issue.key for issue in issues if issue.is_error and issue.key}
        samples = [s for s in samples if str(s.image_path) not in bad]
    if copy_images:
        samples = _copy_images(samples, out_dir)
    summary: dict[str, Any] = {"format": fmt, "to": to, "num_samples": len(samples),
                               "num_problems": len(issues or [])}
    if to == "ppocr-det":
        summary["label_file"] = str(write_ppocr_det_label(samples, out_dir / label_name, root=out_dir))
    elif spec.task == "det":
        result = write_crops(samples, out_dir, label_name=label_name)
        summary.update(label_file=str(result.label_file), num_samples=len(result.samples),
                       num_skipped=len(result.skipped))
    else:
        summary["label_file"] = str(write_ppocr_rec_label(samples, out_dir / label_name, root=out_dir))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("format", choices=list(FORMATS))
    parser.add_argument("path", type=Path, help="dataset folder or label file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--to", choices=TARGETS, default=None,
                        help="target format (default: ppocr-det for det inputs, ppocr-rec for rec inputs)")
    parser.add_argument("--root", type=Path, default=None, help="image root for ppocr-* inputs")
    parser.add_argument("--copy-images", action="store_true", help="copy images under OUT/images/")
    parser.add_argument("--label-name", default="label.txt", help="name of the written label file")
    parser.add_argument("--skip-errors", action="store_true",
                        help="drop bad samples instead of stopping at the first problem")
    args = parser.parse_args(argv)
    issues: list[ValidationIssue] | None = [] if args.skip_errors else None
    try:
        summary = convert(args.format, args.path, args.out, to=args.to, root=args.root,
                          copy_images=args.copy_images, issues=issues, label_name=args.label_name)
    except DatasetError as exc:
        from datasets.check import check_command

        hint = check_command(args.format, args.path, root=args.root)
        print(f"error: {exc} (run `{hint}` for the full list, or pass --skip-errors)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    for issue in issues or []:
        print(f"skipped: {issue}", file=sys.stderr)
    print(f"{summary['num_samples']} samples -> {summary['label_file']}")
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

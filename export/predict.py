"""``python -m export.predict``: OCR images with exported (or the pretrained) models; JSON per image.

Each image prints one JSON line, ``{"image": PATH, "results": [{"points", "text", "score"}…]}`` or, for a bad
image, ``{"image": PATH, "error": {"code", "message"}}``; the others still run. ``--out FILE`` also writes the
whole list as one JSON array. Exit status: 0 when every image succeeded, 3 when any image failed, 1 when the
models cannot be loaded, 2 for usage errors.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_IMAGE_FAILED", "EXIT_SETUP"]

EXIT_OK, EXIT_SETUP, EXIT_USAGE, EXIT_IMAGE_FAILED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    from export.imagecheck import ImageCheckConfig

    defaults = ImageCheckConfig()
    p = argparse.ArgumentParser(
        prog="python -m export.predict",
        description="Run det → crop → (cls) → rec on images; prints one JSON line per image.",
        epilog="exit status: 0 = every image succeeded; 3 = at least one image failed (its entry has an "
               "\"error\" with a code such as IMAGE_UNREADABLE, IMAGE_TOO_LARGE or IMAGE_QUALITY_POOR); "
               "1 = models could not be loaded; 2 = usage error.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--det", metavar="DIR", help="det inference dir (default: pretrained PP-OCRv4 det)")
    p.add_argument("--rec", metavar="DIR", help="rec inference dir (default: pretrained PP-OCRv4 rec)")
    cls = p.add_mutually_exclusive_group()
    cls.add_argument("--cls", metavar="DIR", help="angle classifier inference dir (enables it)")
    cls.add_argument("--use-cls", action="store_true", help="enable the pretrained mobile v2 angle classifier")
    p.add_argument("--out", metavar="FILE", help="also write all results as one JSON array")
    p.add_argument("--drop-score", type=float, default=0.5, help="drop lines scoring below this (default 0.5)")
    p.add_argument("--max-pixels", type=int, default=defaults.max_pixels,
                   help=f"IMAGE_TOO_LARGE above this many pixels; 0 disables (default {defaults.max_pixels})")
    p.add_argument("--no-quality-check", action="store_true", help="skip the blur/exposure pre-check")
    p.add_argument("--min-sharpness", type=float, default=defaults.min_sharpness,
                   help=f"blur limit: variance of Laplacian at ≤960 px (default {defaults.min_sharpness})")
    p.add_argument("--limit-side-len", type=int, help="det side limit (default from inference.yml, else 736 min-side)")
    p.add_argument("--limit-type", choices=["max", "min", "resize_long"], help="det limit type (default from inference.yml, else min)")
    p.add_argument("--max-upscale", type=float,
                   help="det: largest enlargement of a small image, >= 1, 0 = none (default from inference.yml, "
                        "else 4 for min-side)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--no-mkldnn", action="store_true", help="disable oneDNN on CPU")
    p.add_argument("--gpu", action="store_true", help="run on the GPU (needs a CUDA build of Paddle)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_upscale is not None and args.max_upscale != 0 and args.max_upscale < 1:
        parser.error(f"--max-upscale {args.max_upscale}: must be >= 1 (or 0 for no bound)")
    from export.engine import RuntimeOptions
    from export.imagecheck import ImageCheckConfig
    from export.pipeline import OCRPipeline

    check = ImageCheckConfig(max_pixels=args.max_pixels or None, quality_check=not args.no_quality_check,
                             min_sharpness=args.min_sharpness)
    runtime_opts = RuntimeOptions(use_gpu=args.gpu, num_threads=args.threads, enable_mkldnn=not args.no_mkldnn)
    try:
        ocr = OCRPipeline(args.det, args.rec, args.cls, use_cls=args.use_cls, drop_score=args.drop_score,
                          limit_side_len=args.limit_side_len, limit_type=args.limit_type,
                          max_upscale=args.max_upscale, runtime_opts=runtime_opts, image_check=check)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: cannot load the models: {exc}", file=sys.stderr)
        return EXIT_SETUP
    entries = []
    for path in args.images:
        entry = ocr.predict_path(path)
        entries.append(entry)
        print(json.dumps(entry, ensure_ascii=False), flush=True)
    if args.out:
        from datasets.atomic import write_text_atomic
        from datasets.errors import one_line

        try:
            write_text_atomic(args.out, json.dumps(entries, ensure_ascii=False, indent=1))
        except OSError as exc:
            print(f"error: cannot write --out: {one_line(exc)}", file=sys.stderr)
            return EXIT_SETUP
    failed = [e["image"] for e in entries if "error" in e]
    if failed:
        print(f"{len(failed)}/{len(entries)} image(s) failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_IMAGE_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

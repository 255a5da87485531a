"""``python -m export det|rec --checkpoint PATH|ppocrv4_mobile --out DIR [--onnx] [--config KEY=VALUE …]``

Writes an inference directory (``inference.pdmodel/.pdiparams``, ``inference.yml``, ``charset.txt`` for rec,
``parity.json``, and ``model.onnx`` with ``--onnx``). Exit status: 0 exported and parity held; 1 export or parity
failed (message on stderr, report in DIR/parity.json); 2 usage error, or ``--out`` already holds an export
(``--overwrite`` replaces it atomically) or anything else (never replaced).

``--config`` keys: ``post.<DBPostProcess param>`` (det: thresh, box_thresh, unclip_ratio, max_candidates,
use_dilation, score_mode, box_type), ``pre.limit_side_len``, ``pre.limit_type``, ``model.<key>`` (model config
override), ``tolerance``.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

__all__ = ["main", "parse_overrides"]


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["post.box_thresh=0.5", "tolerance=1e-4"]`` → ``{"post": {"box_thresh": 0.5}, "": {"tolerance": 1e-4}}``."""
    import yaml

    out: dict[str, dict[str, Any]] = {"post": {}, "pre": {}, "model": {}, "": {}}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config {item!r}: expected KEY=VALUE")
        group, dot, name = key.partition(".")
        if not dot:
            group, name = "", key
        if group not in out or (group == "" and name != "tolerance"):
            raise ValueError(f"--config {item!r}: unknown key; use post.*, pre.limit_side_len, pre.limit_type, "
                             "model.* or tolerance")
        out[group][name] = yaml.safe_load(raw)
    return out


def _is_qat_checkpoint(path: str) -> bool:
    try:
        from export.int8.save import is_qat_checkpoint
    except ImportError:  # pragma: no cover
        return False
    try:
        return bool(is_qat_checkpoint(path))
    except Exception:  # not a readable checkpoint: the FP32 path reports it properly
        return False


def _export_qat(args: argparse.Namespace, overrides: dict[str, dict[str, Any]]) -> int:
    """QAT checkpoints become INT8 directories through :func:`export.int8.save.export_qat_checkpoint`
    (its own parity rule: INT8 kernels are not bit-exact with fake quantization)."""
    from export.int8.save import export_qat_checkpoint

    if args.onnx:
        print("export failed: --onnx is not supported for QAT INT8 checkpoints (ONNX Runtime's int8 path lost "
              "accuracy here; see STACK.md)", file=sys.stderr)
        return 1
    pre = overrides["pre"]
    from export.inference_yml import DET_PRE_DEFAULTS
    from export.outdir import publish, staged

    replacing = Path(args.out).is_dir() and any(Path(args.out).iterdir())
    try:
        with staged(args.out) as tmp:
            report = export_qat_checkpoint(args.task, args.checkpoint, tmp, post_params=overrides["post"] or None,
                                           limit_side_len=int(pre.get("limit_side_len", DET_PRE_DEFAULTS["limit_side_len"])),
                                           limit_type=str(pre.get("limit_type", DET_PRE_DEFAULTS["limit_type"])))
            if report.get("ok") or not replacing:
                publish(tmp, args.out)
    except Exception as exc:  # noqa: BLE001 -- one clear line for any failure
        print(f"export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not report.get("ok"):
        where = f"the previous export in {args.out} is unchanged" if replacing else f"see {args.out}/parity.json"
        print(f"export failed: INT8 parity check failed; {where}", file=sys.stderr)
        return 1
    print(f"exported {args.task} INT8 to {args.out}: {', '.join(report.get('files', []))}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="exit status: 0 exported and parity held; 1 export or parity failed; 2 usage")
    p.add_argument("task", choices=["det", "rec"])
    p.add_argument("--checkpoint", required=True, help="checkpoint dir (RUN/checkpoints/best) or ppocrv4_mobile")
    p.add_argument("--out", required=True, help="output inference directory")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx and check ONNX Runtime parity")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in --out (built beside it, swapped in atomically)")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="overrides (see above)")
    args = p.parse_args(argv)
    try:
        overrides = parse_overrides(args.config)
    except ValueError as exc:
        p.error(str(exc))
    from export.outdir import OutDirError, check_out_dir

    try:  # before anything loads: a refusal costs nothing
        check_out_dir(args.out, args.overwrite)
    except OutDirError as exc:
        print(f"export refused: {exc}", file=sys.stderr)
        return 2
    from export.jit_export import DEFAULT_TOLERANCE, ExportError, export_model
    from export.parity import summary

    pre = overrides["pre"]
    if args.checkpoint != "ppocrv4_mobile" and _is_qat_checkpoint(args.checkpoint):
        return _export_qat(args, overrides)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Skip loading for")  # fresh DB-threshold branch: not exported
            result = export_model(
                args.task, args.checkpoint, args.out, post_params=overrides["post"] or None,
                limit_side_len=pre.get("limit_side_len"), limit_type=pre.get("limit_type"),
                model_overrides=overrides["model"] or None, onnx=args.onnx,
                tolerance=float(overrides[""].get("tolerance", DEFAULT_TOLERANCE)), overwrite=args.overwrite)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an unwritable or full --out: name the place and the space left
        from training.trainer.checkpoint import free_space

        print(f"export failed: cannot write {exc.filename or args.out}: {exc.strerror or exc}; "
              f"{free_space(Path(args.out).resolve().parent)} free on that disk", file=sys.stderr)
        return 1
    print(f"exported {args.task} ({result.model_cfg.get('arch')}) to {result.out_dir}: {', '.join(result.files)}")
    print(f"parity ok: {summary(result.parity)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

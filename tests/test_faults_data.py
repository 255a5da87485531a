"""Bad data and bad paths through the documented commands (issue 14 classes 8, 10, 11; issue 15 data traps).

Every case runs the command as a subprocess, as a user would, and asserts the exit code and that stderr is a
few lines naming the file (never a traceback). Hint commands printed by an error are run as printed."""
from __future__ import annotations

import datasets  # noqa: F401  -- start-up fix before anything else

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.imageio import write_image
from datasets.synth import generate_rec_dataset

ROOT = Path(__file__).resolve().parents[1]
RARE = "\U00020000"          # CJK extension B: not in ppocr_keys_v1, so outside the default charset
HINT = re.compile(r"`(python -m [^`]+)`")


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The error line of a failed command: no traceback, at most a few stderr lines, naming ``needles``."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert errors, proc.stderr
    assert len(lines) <= 4, proc.stderr
    line = errors[-1]
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def _run_hint(message: str) -> subprocess.CompletedProcess:
    """Run the ``python -m …`` command quoted in an error message exactly as printed (python → this venv)."""
    match = HINT.search(message)
    assert match, f"no hint command in: {message}"
    argv = shlex.split(match.group(1))
    assert argv[:2] == ["python", "-m"]
    return _run(*argv[2:])


@pytest.fixture(scope="module")
def rec_data(tmp_path_factory) -> Path:
    """``train/train.txt`` and ``test/test.txt``: PaddleOCR rec label files as ``data=ppocr`` expects them."""
    base = tmp_path_factory.mktemp("rec")
    for split, num, seed in (("train", 4, 1), ("test", 4, 2)):
        label = generate_rec_dataset(base / split, num, seed=seed, lang="en")
        shutil.copy(label, base / split / f"{split}.txt")
    return base


def _copy_split(rec_data: Path, tmp_path: Path, name: str = "test") -> Path:
    out = tmp_path / name
    shutil.copytree(rec_data / "test", out)
    return out


# ------------------------------------------------------------------------------ datasets.check: no samples
def test_check_empty_folder_is_an_error(tmp_path):
    proc = _run("datasets.check", "icdar2015", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout.splitlines()[-1])
    assert data["num_errors"] == 1 and data["error_kinds"] == {"no_samples": 1}
    assert "0 image file(s) and 0 label file(s)" in data["errors"][0]["message"]
    assert "no errors" not in proc.stdout


@pytest.mark.parametrize("fmt", ["icdar2015", "rctw17"])
def test_check_unpaired_files_are_counted_and_named(tmp_path, fmt):
    images_only, labels_only = tmp_path / "images_only", tmp_path / "labels_only"
    for n in (1, 2):
        write_image(images_only / "images" / f"img_{n}.jpg", np.full((32, 64, 3), 200, np.uint8))
    (labels_only / "gts").mkdir(parents=True)
    (labels_only / "gts" / "gt_img_1.txt").write_text("1,1,20,1,20,20,1,20,abc\n", encoding="utf-8")
    proc = _run("datasets.check", fmt, str(images_only))
    assert proc.returncode == 1
    message = json.loads(proc.stdout.splitlines()[-1])["errors"][-1]["message"]
    assert "2 image file(s)" in message and "img_1.jpg" in message and "0 label file(s)" in message
    proc = _run("datasets.check", fmt, str(labels_only))
    assert proc.returncode == 1
    message = json.loads(proc.stdout.splitlines()[-1])["errors"][-1]["message"]
    assert "0 image file(s)" in message and "1 label file(s)" in message and "gt_img_1.txt" in message


# ------------------------------------------------------------------------------ files users hand us
def test_non_utf8_dict_is_one_line_naming_file_and_line(rec_data, tmp_path):
    bad_dict = tmp_path / "keys.txt"
    bad_dict.write_bytes("a\nb\n".encode() + "中\n".encode("gbk"))
    proc = _run("datasets.check", "ppocr-rec", str(rec_data / "test" / "test.txt"), "--charset", str(bad_dict))
    assert proc.returncode == 2
    _one_line_error(proc, f"{bad_dict}:3", "UTF-8")
    proc = _run("datasets.check", "ppocr-rec", str(rec_data / "test" / "test.txt"), "--charset", str(tmp_path))
    assert proc.returncode == 2
    _one_line_error(proc, str(tmp_path), "must be a file")


def test_label_file_that_is_a_folder_and_unwritable_outputs(rec_data, tmp_path):
    proc = _run("datasets.check", "ppocr-rec", str(rec_data / "test"))
    assert proc.returncode == 2
    _one_line_error(proc, str(rec_data / "test"), "is a folder")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    label = str(rec_data / "test" / "test.txt")
    proc = _run("datasets.check", "ppocr-rec", label, "--json", str(blocker / "r.json"))
    assert proc.returncode == 2
    _one_line_error(proc, str(blocker / "r.json"))
    proc = _run("datasets.crops", "icdar2015", str(tmp_path / "nothing"), "--out", str(tmp_path / "crops"))
    assert proc.returncode == 2
    _one_line_error(proc, str(tmp_path / "nothing"), "not found")
    det = tmp_path / "det"
    write_image(det / "images" / "img_1.jpg", np.full((40, 80, 3), 200, np.uint8))
    (det / "gts").mkdir()
    (det / "gts" / "gt_img_1.txt").write_text("1,1,60,1,60,30,1,30,abc\n", encoding="utf-8")
    proc = _run("datasets.crops", "icdar2015", str(det), "--out", str(blocker / "crops"))
    assert proc.returncode == 1
    _one_line_error(proc, str(blocker))
    proc = _run("datasets.synth", "--out", str(blocker / "synth"), "--num", "1", "--rec")
    assert proc.returncode == 1
    _one_line_error(proc, str(blocker))


def test_export_evaluate_corrupt_image_and_unwritable_json_are_one_line(rec_data, tmp_path):
    from export.pretrained import pretrained_model_dir

    model = str(pretrained_model_dir("rec"))
    data = _copy_split(rec_data, tmp_path)
    label = data / "test.txt"
    first_image = data / label.read_text(encoding="utf-8").splitlines()[0].split("\t")[0]
    first_image.write_bytes(b"definitely not a JPEG")
    proc = _run("export.evaluate", "rec", "--model", model, "--data", f"ppocr-rec:{label}")
    assert proc.returncode == 1
    _one_line_error(proc, str(first_image), "not a recognised image")

    rows = label.read_text(encoding="utf-8").splitlines()
    label.write_text("\n".join(rows[1:]) + "\n", encoding="utf-8")      # drop the garbage one
    second = data / rows[1].split("\t")[0]
    raw = second.read_bytes()
    second.write_bytes(raw[: len(raw) // 2])                             # OpenCV would grey-fill this silently
    proc = _run("export.evaluate", "rec", "--model", model, "--data", f"ppocr-rec:{label}")
    assert proc.returncode == 1
    _one_line_error(proc, str(second), "truncated")

    good = rec_data / "test" / "test.txt"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = _run("export.evaluate", "rec", "--model", model, "--data", f"ppocr-rec:{good}",
                "--json", str(blocker / "r.json"))
    assert proc.returncode == 1
    _one_line_error(proc, str(blocker / "r.json"))


# ------------------------------------------------------------------------------ data=ppocr, hints, charset
def _rec_eval(train: Path, eval_dir: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run("training.rec", "data=ppocr", f"data.train.root={train}", f"data.eval.root={eval_dir}",
                "mode=eval", "tracking=none", f"hydra.run.dir={run_dir}", *extra)


def test_rec_data_ppocr_follows_the_task(rec_data, tmp_path):
    proc = _rec_eval(rec_data / "train", rec_data / "test", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["num"] == 4 and result["acc"] > 0.5


def test_training_hint_runs_as_printed_and_reports_the_same_problem(rec_data, tmp_path):
    data = _copy_split(rec_data, tmp_path)
    with (data / "test.txt").open("a", encoding="utf-8") as fh:
        fh.write("images/missing.jpg\tHELLO\n")
    proc = _rec_eval(rec_data / "train", data, tmp_path / "run")
    assert proc.returncode != 0
    line = _one_line_error(proc, f"{data / 'test.txt'}:5", "image not found")
    hint = _run_hint(line)
    assert hint.returncode == 1, hint.stderr           # ran (not a usage error) and found the error
    report = json.loads(hint.stdout.splitlines()[-1])
    assert [(e["file"], e["line"]) for e in report["errors"]] == [(str(data / "test.txt"), 5)]


def test_check_and_training_agree_on_out_of_charset_labels(rec_data, tmp_path):
    data = _copy_split(rec_data, tmp_path)
    label = data / "test.txt"
    rows = label.read_text(encoding="utf-8").splitlines()
    path, _text = rows[1].split("\t")
    rows[1] = f"{path}\tAB{RARE}C"
    label.write_text("\n".join(rows) + "\n", encoding="utf-8")

    proc = _rec_eval(rec_data / "train", data, tmp_path / "run")
    assert proc.returncode != 0
    line = _one_line_error(proc, f"{label}:2", "outside the charset", "data.on_error=skip")
    check = _run_hint(line)
    assert check.returncode == 1                        # the check refuses the same data ...
    summary = json.loads(check.stdout.splitlines()[-1])["oov_summary"]
    assert summary and summary in line                  # ... with the same sentence
    # skip stays opt-in and drops exactly that line
    proc = _rec_eval(rec_data / "train", data, tmp_path / "run2", "data.on_error=skip")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["num"] == 3
    # adding the character (as the message says) makes both accept it
    check = _run("datasets.check", "ppocr-rec", str(label), "--charset", "default", "--extra-chars", RARE)
    assert check.returncode == 0, check.stdout[-2000:]


def test_duplicate_crops_with_the_same_label_are_a_counted_warning(rec_data, tmp_path):
    data = _copy_split(rec_data, tmp_path)
    label = data / "test.txt"
    rows = label.read_text(encoding="utf-8").splitlines()
    label.write_text("\n".join(rows + [rows[0]]) + "\n", encoding="utf-8")       # the same word cut twice
    proc = _run("datasets.check", "ppocr-rec", str(label))
    assert proc.returncode == 0, proc.stdout[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["num_duplicates"] == 1 and report["num_warnings"] == 1
    path, text = rows[0].split("\t")
    label.write_text("\n".join(rows + [f"{path}\t{text}X"]) + "\n", encoding="utf-8")   # ... read differently
    proc = _run("datasets.check", "ppocr-rec", str(label))
    assert proc.returncode == 1
    (error,) = json.loads(proc.stdout.splitlines()[-1])["errors"]
    assert error["kind"] == "duplicate_entry" and "different label" in error["message"] and error["line"] == 5


def test_convert_hint_runs_as_printed(rec_data, tmp_path):
    data = _copy_split(rec_data, tmp_path)
    label = data / "test.txt"
    with label.open("a", encoding="utf-8") as fh:
        fh.write("images/missing.jpg\n")                                   # no TAB: malformed line 5
    proc = _run("datasets.convert", "ppocr-rec", str(label), "--root", str(data), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    line = _one_line_error(proc, f"{label}:5")
    hint = _run_hint(line)
    assert hint.returncode == 1, hint.stderr
    assert [e["line"] for e in json.loads(hint.stdout.splitlines()[-1])["errors"]] == [5]


def test_identical_crop_files_with_the_same_text_are_a_warning(rec_data, tmp_path):
    data = _copy_split(rec_data, tmp_path)
    label = data / "test.txt"
    rows = label.read_text(encoding="utf-8").splitlines()
    path, text = rows[0].split("\t")
    shutil.copy(data / path, data / "images" / "copy.jpg")
    label.write_text("\n".join(rows + [f"images/copy.jpg\t{text}"]) + "\n", encoding="utf-8")
    proc = _run("datasets.check", "ppocr-rec", str(label))
    assert proc.returncode == 0, proc.stdout[-2000:]
    (warning,) = json.loads(proc.stdout.splitlines()[-1])["warnings"]
    assert warning["kind"] == "duplicate_image" and "same label" in warning["message"]


def test_predict_unwritable_out_is_one_line(rec_data, tmp_path):
    from datasets.imageio import read_image

    page = np.full((200, 320, 3), 255, np.uint8)
    line = read_image(next((rec_data / "test" / "images").iterdir()))
    page[80:80 + line.shape[0], 20:20 + line.shape[1]] = line
    image = write_image(tmp_path / "page.png", page)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = _run("export.predict", str(image), "--out", str(blocker / "out.json"))
    assert proc.returncode == 1
    _one_line_error(proc, str(blocker / "out.json"), "not a folder")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["image"] == str(image)   # results still printed

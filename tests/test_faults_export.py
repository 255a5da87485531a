"""``python -m export`` under faults (issue #14): an --out that already holds an export or something else,
atomic replacement with --overwrite, and damaged checkpoint files as one line naming the file."""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export import outdir
from export.outdir import OutDirError, check_out_dir, publish, staged

ROOT = Path(__file__).resolve().parent.parent


def _hashes(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(Path(path).rglob("*")) if f.is_file()}


def _fake_export(path: Path, tag: str) -> Path:
    """Files laid out like an export (what check_out_dir recognises); enough to test refusal and swap."""
    path.mkdir(parents=True)
    (path / "inference.yml").write_text(f"Global:\n  model_name: {tag}\n")
    (path / "inference.pdiparams").write_bytes(os.urandom(256))
    return path


def _export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and "WARNING" not in line]


# ---------------------------------------------------------------------------------------------- out dir rules
def test_out_dir_rules(tmp_path):
    check_out_dir(tmp_path / "new", overwrite=False)  # absent: fine
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", overwrite=False)  # empty: fine
    old = _fake_export(tmp_path / "old", "det")
    with pytest.raises(OutDirError, match="--overwrite"):
        check_out_dir(old, overwrite=False)
    check_out_dir(old, overwrite=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(OutDirError, match="not an inference export"):
        check_out_dir(tmp_path / "home", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutDirError, match="is a file"):
        check_out_dir(tmp_path / "file", overwrite=True)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_publish_swaps_a_complete_export_in(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(outdir, "_exchange", lambda a, b: False)
    out = _fake_export(tmp_path / "out", "det")
    with staged(out) as tmp:
        (tmp / "inference.yml").write_text("Global:\n  model_name: rec\n")
        publish(tmp, out)
    assert sorted(p.name for p in out.iterdir()) == ["inference.yml"] and "rec" in (out / "inference.yml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


def test_publish_failure_keeps_the_previous_export(tmp_path, monkeypatch):
    monkeypatch.setattr(outdir, "_exchange", lambda a, b: False)
    out = _fake_export(tmp_path / "out", "det")
    before = _hashes(out)
    real_rename = os.rename
    calls = {"n": 0}

    def failing_second_rename(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(outdir.os, "rename", failing_second_rename)
    with pytest.raises(OSError):
        with staged(out) as tmp:
            (tmp / "inference.yml").write_text("new")
            publish(tmp, out)
    assert _hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------------------------------------- the command
def test_cli_refuses_an_existing_export_and_changes_nothing(tmp_path):
    out = _fake_export(tmp_path / "det", "PP-OCRv4_mobile_det")
    before = _hashes(out)
    proc = _export("rec", "--checkpoint", "ppocrv4_mobile", "--out", str(out))
    assert proc.returncode == 2
    lines = _lines(proc.stderr)
    assert len(lines) == 1 and str(out) in lines[0] and "--overwrite" in lines[0], proc.stderr
    assert _hashes(out) == before


def test_cli_never_replaces_a_directory_that_is_not_an_export(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    proc = _export("det", "--checkpoint", "ppocrv4_mobile", "--out", str(home), "--overwrite")
    assert proc.returncode == 2 and "not an inference export" in proc.stderr
    assert (home / "thesis.tex").read_text() == "years of work" and len(list(home.iterdir())) == 1


def _checkpoint(tmp_path: Path) -> Path:
    """A checkpoint in our format with a det model config (tensors need not fit: loading fails first)."""
    import paddle

    from training.trainer.checkpoint import save_checkpoint

    root = tmp_path / "checkpoints"
    save_checkpoint(root, "best", model={"w": paddle.to_tensor(np.ones((64, 64), "float32"))},
                    state={"step": 3, "epoch": 0, "batch_in_epoch": 3,
                           "config": {"model": {"task": "det", "arch": "ppocrv4_mobile_det"}}})
    return (root / "best").resolve()


@pytest.mark.parametrize("name, damage", [("model.pdparams", "truncate"), ("state.json", "garbage"),
                                          ("state.json", "delete")])
def test_cli_damaged_checkpoint_file_is_one_line(tmp_path, name, damage):
    ckpt = _checkpoint(tmp_path)
    path = ckpt / name
    if damage == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(100)
    elif damage == "garbage":
        path.write_bytes(b'{"step": 3, "form')
    else:
        path.unlink()
    out = tmp_path / "out"
    proc = _export("det", "--checkpoint", str(ckpt), "--out", str(out))
    assert proc.returncode == 1
    lines = _lines(proc.stderr)
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]


@pytest.mark.slow
def test_cli_overwrite_replaces_the_export_atomically(tmp_path):
    out = _fake_export(tmp_path / "exports" / "det", "PP-OCRv4_mobile_rec")
    proc = _export("det", "--checkpoint", "ppocrv4_mobile", "--out", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert {"inference.pdmodel", "inference.pdiparams", "inference.yml", "parity.json"} <= set(names)
    assert "PP-OCRv4_mobile_det" in (out / "inference.yml").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["det"]  # no staging or old copy left behind


def _file_size_limit(limit: int):
    def apply() -> None:  # a disk that fills up: writes past `limit` bytes fail (works as root, unlike chmod)
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_cli_full_disk_during_overwrite_keeps_the_previous_export(tmp_path):
    out = _fake_export(tmp_path / "exports" / "det", "PP-OCRv4_mobile_det")
    before = _hashes(out)
    proc = subprocess.run([sys.executable, "-m", "export", "det", "--checkpoint", "ppocrv4_mobile", "--out", str(out),
                           "--overwrite"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          preexec_fn=_file_size_limit(1 << 20), env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 1
    lines = _lines(proc.stderr)
    assert len(lines) == 1 and "disk may be full" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert _hashes(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["det"]

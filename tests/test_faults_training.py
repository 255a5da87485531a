"""Training under faults (issue #14): damaged or missing checkpoints, re-used run dirs, damaged files inside
a checkpoint, full and read-only disks, and progress without a terminal (issue #15).

What is asserted each time: the exit code or exception, one line naming the file/key, and — for the
data-loss classes — that the earlier checkpoints are still there, byte for byte, and load. The fast tests use
the trainer on a 2-layer MLP; the ``slow`` ones drive ``python -m training.det`` as users do.
"""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import errno
import hashlib
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddle.io import DataLoader, TensorDataset

from datasets.loaders import SeededBatchSampler
from training.trainer import (
    CheckpointError,
    CheckpointWriteError,
    RunDirError,
    Trainer,
    check_run_dir,
    load_checkpoint,
    seed_everything,
)
from training.trainer import checkpoint as ckpt_mod
from training.trainer.progress import format_eta

ROOT = Path(__file__).resolve().parent.parent
X = np.random.RandomState(1).randn(32, 6).astype("float32")
Y = (X @ np.random.RandomState(2).randn(6, 1)).astype("float32")
BASE = dict(max_steps=6, eval_every=2, save_every=1, log_every=1, progress_bar=False, summary=False)
OPTIM = dict(name="adamw", lr=0.01, warmup_steps=1)
CKPT_FILES = ("state.json", "model.pdparams", "optimizer.pdopt", "trainer.pkl")


def _model_loader(seed: int = 0):
    seed_everything(seed)
    model = paddle.nn.Sequential(paddle.nn.Linear(6, 8), paddle.nn.ReLU(), paddle.nn.Linear(8, 1))
    ds = TensorDataset([paddle.to_tensor(X), paddle.to_tensor(Y)])
    return model, DataLoader(ds, batch_sampler=SeededBatchSampler(len(ds), 4, shuffle=True, seed=seed))


def _mse(outputs, batch):
    return {"loss": paddle.nn.functional.mse_loss(outputs, batch[1])}


def _eval(model):
    return {"neg_mse": -float(paddle.nn.functional.mse_loss(model(paddle.to_tensor(X)), paddle.to_tensor(Y)))}


def _trainer(run_dir: Path, **cfg) -> Trainer:
    model, loader = _model_loader()
    return Trainer(model, _mse, loader, {**BASE, **cfg}, OPTIM, run_dir, eval_fn=_eval, main_metric="neg_mse")


def _hashes(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (links followed), keyed by relative path."""
    out = {}
    for f in sorted(Path(path).rglob("*")):
        if f.is_file():
            out[str(f.relative_to(path))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def finished(tmp_path) -> Path:
    """A finished 6-step run (eval every 2 steps, a checkpoint every step) in ``tmp_path/run``."""
    run_dir = tmp_path / "run"
    _trainer(run_dir).fit()
    return run_dir


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


# ---------------------------------------------------------------------------------------------- data loss
def test_rerun_without_resume_is_refused_and_changes_nothing(finished):
    before = _hashes(finished)
    with pytest.raises(RunDirError) as err:
        _trainer(finished)
    line = _one_line(err.value)
    assert "trainer.resume=auto" in line and "trainer.overwrite=true" in line and str(finished) in line
    with pytest.raises(RunDirError):
        check_run_dir(finished, {"resume": None})  # the CLI's pre-flight says the same before loading anything
    assert _hashes(finished) == before


def test_overwrite_true_replaces_the_previous_run(finished):
    old_best = (finished / "checkpoints" / "best").resolve()
    summary = _trainer(finished, overwrite=True, max_steps=2).fit()
    assert summary["steps"] == 2 and summary["resumed_from"] is None
    assert not old_best.exists()  # told to: the superseded checkpoint is gone
    assert load_checkpoint(finished / "checkpoints" / "best").step == 2


@pytest.mark.parametrize("damage", ["state.json removed", "target deleted", "optimizer.pdopt truncated"])
def test_resume_auto_falls_back_to_the_newest_intact_checkpoint(finished, damage, caplog):
    root = finished / "checkpoints"
    latest = (root / "latest").resolve()
    best = (root / "best").resolve()
    best_before = _hashes(best)
    history_before = (finished / "history.json").read_text()
    if damage == "state.json removed":
        (latest / "state.json").unlink()
    elif damage == "target deleted":
        shutil.rmtree(latest)
    else:
        with open(latest / "optimizer.pdopt", "r+b") as fh:
            fh.truncate(100)
    with caplog.at_level(logging.WARNING, logger="training.trainer"):
        trainer = _trainer(finished, resume="auto", max_steps=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "resume=auto" in r.message]
    assert len(warnings) == 1 and "resuming from" in warnings[0] and str(root / "best") in warnings[0]
    assert trainer.step == load_checkpoint(best).step == 6  # best was written at the last eval, step 6
    trainer.fit()
    assert _hashes(best) == best_before  # the previous best is untouched
    if damage != "target deleted":
        assert latest.is_dir()  # a damaged checkpoint is never cleaned up
    kept = sorted(finished.glob("history.before-resume-s*.json"))
    assert len(kept) == 1 and kept[0].read_text() == history_before


def test_resume_auto_with_nothing_intact_is_refused_and_deletes_nothing(finished):
    for entry in (finished / "checkpoints").iterdir():
        if entry.is_dir() and not entry.is_symlink():
            (entry / "state.json").unlink()
    before = _hashes(finished)
    with pytest.raises(RunDirError) as err:
        _trainer(finished, resume="auto")
    line = _one_line(err.value)
    assert "no intact checkpoint" in line and "state.json is missing" in line and "trainer.overwrite=true" in line
    assert _hashes(finished) == before


# ---------------------------------------------------------------------------------------------- damaged files
@pytest.mark.parametrize("name", CKPT_FILES)
@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_every_damaged_checkpoint_file_is_one_line_naming_it(finished, name, how):
    ckpt = (finished / "checkpoints" / "latest").resolve()
    path = ckpt / name
    if how == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(max(1, path.stat().st_size // 2))
    else:
        path.write_bytes(b"\xff\xfe not a checkpoint file \x00" * 3)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ckpt)
    line = _one_line(err.value)
    assert str(path) in line, line
    if name != "state.json":  # weights-only loading (export, evaluation) reads just model.pdparams + state.json
        with pytest.raises(CheckpointError, match=name):
            _trainer(finished.parent / "other", resume=str(ckpt))


def test_checkpoint_of_the_wrong_model_is_one_line(finished, tmp_path):
    seed_everything(0)
    other = paddle.nn.Sequential(paddle.nn.Linear(6, 3), paddle.nn.ReLU(), paddle.nn.Linear(3, 1))
    loader = _model_loader()[1]
    with pytest.raises(CheckpointError, match="do not fit the model"):
        Trainer(other, _mse, loader, {**BASE, "resume": str(finished / "checkpoints" / "latest")}, OPTIM,
                tmp_path / "b")


# ---------------------------------------------------------------------------------------------- full / read-only disk
def test_full_disk_is_one_line_and_the_previous_checkpoint_stays_loadable(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _trainer(run_dir, max_steps=2).fit()
    latest_before = _hashes((run_dir / "checkpoints" / "latest").resolve())
    real_save = ckpt_mod.paddle.save

    def full_disk(obj, path, *a, **k):
        if str(path).endswith("optimizer.pdopt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ckpt_mod.paddle, "save", full_disk)
    trainer = _trainer(run_dir, resume="auto", max_steps=4)
    with pytest.raises(CheckpointWriteError) as err:
        trainer.fit()
    line = _one_line(err.value)
    assert "No space left on device" in line and "free on that disk" in line and "optimizer.pdopt" in line
    assert "is unchanged" in line
    monkeypatch.undo()
    latest = run_dir / "checkpoints" / "latest"
    assert load_checkpoint(latest).step == 2 and _hashes(latest.resolve()) == latest_before
    assert not [e for e in (run_dir / "checkpoints").iterdir() if e.name.startswith(".tmp-")]


def test_read_only_run_dir_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod does not stop root from writing (the full-disk tests cover the path)")
    run_dir = tmp_path / "run"
    _trainer(run_dir, max_steps=2).fit()
    before = _hashes(run_dir)
    os.chmod(run_dir / "checkpoints", 0o555)
    try:
        with pytest.raises(CheckpointWriteError) as err:
            check_run_dir(run_dir, {"resume": "auto"})
        assert "Permission denied" in _one_line(err.value)
    finally:
        os.chmod(run_dir / "checkpoints", 0o755)
    assert _hashes(run_dir) == before


# ---------------------------------------------------------------------------------------------- progress
def test_progress_lines_on_stderr_without_a_terminal(tmp_path, capfd):
    logging.getLogger().setLevel(logging.WARNING)  # what importing paddle.distributed does to the root logger
    _trainer(tmp_path / "run", max_steps=4, eval_every=2, log_every=2).fit()
    out, err = capfd.readouterr()
    steps = [line for line in err.splitlines() if "[training.progress][INFO] - step " in line]
    assert [line.split(" step ")[1].split()[0] for line in steps] == ["2/4", "4/4"]
    assert all(key in steps[0] for key in ("loss", "lr", "samples/s", "ETA"))
    assert sum("eval @ step" in line for line in err.splitlines()) == 2
    assert "step 2/4" not in out  # stdout carries results only
    assert format_eta(3725) == "1:02:05" and format_eta(float("nan")) == "?"


# ---------------------------------------------------------------------------------------------- the command line
def _train(run_dir: Path, *overrides: str, preexec=None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "training.det", "+experiment=smoke", "tracking=none", f"hydra.run.dir={run_dir}",
            "data.train.num=4", "data.eval.num=2", "data.train.image_size=[320,240]",
            "data.eval.image_size=[320,240]", "aug.size=320", "eval_resize.limit_side_len=320",
            "trainer.max_steps=3", "trainer.save_every=1", "trainer.eval_every=2", *overrides]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, preexec_fn=preexec,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _error_lines(stderr: str) -> list[str]:
    """stderr without log lines (warnings, progress): what is left must be the one error line."""
    return [line for line in stderr.splitlines() if line.strip() and "][WARNING]" not in line and "][INFO]" not in line]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    proc = _train(run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst, symlinks=True)
    return dst


@pytest.mark.slow
def test_cli_progress_lines_and_refused_rerun(cli_run, tmp_path):
    run_dir, proc = cli_run
    assert "step 3/3" in proc.stderr and "ETA" in proc.stderr and "eval @ step 2" in proc.stderr
    json.loads(proc.stdout.strip().splitlines()[-1])
    run = _copy(run_dir, tmp_path)
    before = _hashes(run / "checkpoints")
    again = _train(run)
    assert again.returncode == 2
    lines = _error_lines(again.stderr)
    assert len(lines) == 1 and "holds a previous run" in lines[0] and "trainer.overwrite=true" in lines[0], again.stderr
    assert _hashes(run / "checkpoints") == before and "Traceback" not in again.stderr


@pytest.mark.slow
def test_cli_resume_auto_after_latest_lost_its_state(cli_run, tmp_path):
    run = _copy(cli_run[0], tmp_path)
    best_before = _hashes((run / "checkpoints" / "best").resolve())
    (run / "checkpoints" / "latest" / "state.json").unlink()
    proc = _train(run, "trainer.resume=auto", "trainer.max_steps=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [line for line in proc.stderr.splitlines() if "trainer.resume=auto" in line]
    assert len(warned) == 1 and "state.json is missing" in warned[0] and "resuming from" in warned[0]
    assert _hashes((run / "checkpoints" / "best").resolve()) == best_before
    assert load_checkpoint(run / "checkpoints" / "best").step == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["trainer.pkl", "optimizer.pdopt", "state.json"])
def test_cli_damaged_file_in_an_explicit_resume_is_one_line(cli_run, tmp_path, name):
    run = _copy(cli_run[0], tmp_path)
    ckpt = (run / "checkpoints" / "latest").resolve()
    with open(ckpt / name, "r+b") as fh:
        fh.truncate(20)
    proc = _train(tmp_path / "new", f"trainer.resume={ckpt}")
    assert proc.returncode == 2
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and str(ckpt / name) in lines[0] and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_cli_damaged_pretrained_checkpoint_is_one_line(cli_run, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree((cli_run[0] / "checkpoints" / "best").resolve(), ckpt)
    with open(ckpt / "model.pdparams", "r+b") as fh:
        fh.truncate(1000)
    proc = _train(tmp_path / "new", f"model.pretrained={ckpt}")
    assert proc.returncode == 2
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and "model.pdparams" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def _file_size_limit(limit: int):
    def apply() -> None:  # a disk that fills up: writes past `limit` bytes fail with EFBIG (works as root too)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_cli_disk_full_while_saving_is_one_line_and_latest_stays(cli_run, tmp_path):
    run = _copy(cli_run[0], tmp_path)
    latest = run / "checkpoints" / "latest"
    before = _hashes(latest.resolve())
    limit = (latest / "model.pdparams").stat().st_size + 1024  # the weights fit, the optimizer state does not
    proc = _train(run, "trainer.resume=auto", "trainer.max_steps=4", preexec=_file_size_limit(limit))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1 and "cannot write checkpoint" in lines[0] and "free on that disk" in lines[0], proc.stderr
    assert "File too large" in lines[0] and ".pdopt" in lines[0]  # EFBIG from the file-size limit, file named
    assert "Traceback" not in proc.stderr
    assert load_checkpoint(latest).step == 3 and _hashes(latest.resolve()) == before


def test_cli_unwritable_run_dir_is_one_line_before_hydra_writes(tmp_path):
    """Hydra writes .hydra/ into the run dir before our code runs; a full (or read-only) disk there is our one
    line, not Hydra's traceback. A file-size limit of 10 bytes stands in for the full disk (root ignores chmod)."""
    proc = subprocess.run([sys.executable, "-m", "training.det", "+experiment=smoke", "tracking=none",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, preexec_fn=_file_size_limit(10))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(tmp_path / "run") in lines[0] and "File too large" in lines[0], proc.stderr
    assert "free on that disk" in lines[0] and not list((tmp_path / "run").iterdir())

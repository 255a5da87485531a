"""End to end through the Hydra config tree (compose API) and the command line: tiny budgets, real training."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from training.cli import CONF_DIR

ROOT = Path(__file__).resolve().parent.parent


def _cfg(name: str, tmp_path: Path, *overrides: str):
    base = [
        "+experiment=smoke", f"paths.runs={tmp_path / 'runs'}", f"paths.cache={tmp_path / 'cache'}",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"+run_dir={tmp_path / 'run'}",
        "trainer.max_steps=2", "trainer.eval_every=2", "data.train.num=4", "data.eval.num=2",
        "data.train.image_size=[320,240]", "data.eval.image_size=[320,240]", "trainer.progress_bar=false",
    ]
    if name == "det":
        base += ["aug.size=320", "eval_resize.limit_side_len=320"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=base + list(overrides))


def _mlflow_run(tmp_path: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_det_smoke_trains_checkpoints_and_tracks(tmp_path, capsys):
    from training.runner import run

    result = run(_cfg("det", tmp_path))
    assert result["status"] == "completed" and result["steps"] == 2
    run_dir = tmp_path / "run"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.json").is_file()
    assert (run_dir / "checkpoints" / "best" / "model.pdparams").is_file()
    assert (run_dir / "checkpoints" / "latest" / "state.json").is_file()
    assert 0.0 <= result["final"]["hmean"] <= 1.0
    client, mlrun = _mlflow_run(tmp_path, "ocr-det")
    assert mlrun.data.params["model.arch"] == "ppocrv4_mobile_det"
    assert "eval/hmean" in mlrun.data.metrics or "hmean" in " ".join(mlrun.data.metrics)
    assert mlrun.data.tags["data.train.digest"] and mlrun.data.tags["task"] == "det"
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert "eval_images" in artifacts
    assert len(mlrun.inputs.dataset_inputs) == 2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["task"] == "det"


def test_rec_smoke_trains_and_records_charset(tmp_path):
    from datasets.charset import Charset
    from training.runner import run

    result = run(_cfg("rec", tmp_path))
    assert result["status"] == "completed"
    state = json.loads((tmp_path / "run" / "checkpoints" / "best" / "state.json").read_text())
    assert state["extra"]["charset"]["sha256"] == Charset.default().sha256
    _, mlrun = _mlflow_run(tmp_path, "ocr-rec")
    assert mlrun.data.tags["charset.sha256"] == Charset.default().sha256


def test_rec_eval_mode_prints_metric_json(tmp_path, capsys):
    from training.runner import run

    run(_cfg("rec", tmp_path, "mode=eval", "data.eval.num=6"))
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) >= {"acc", "norm_edit_dis"}
    assert last["acc"] >= 0.5  # pretrained PP-OCRv4 reads clean synthetic lines


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def test_cfg_job_prints_resolved_config():
    proc = _cli("-m", "training.det", "+experiment=rctw", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "arch: ppocrv4_mobile_det" in proc.stdout and "format: rctw17" in proc.stdout


@pytest.mark.parametrize("args, expected", [
    (["training.det", "trainer.no_such_key=1"], "config error"),
    (["training.det", "+experiment=rctw"], "data.eval.root, data.train.root must be set"),
    (["training.rec", "model=rec/nope"], "config error"),
])
def test_config_errors_are_one_line(args, expected):
    proc = _cli("-m", *args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_task_comes_from_the_entry_point(tmp_path):
    """det/rec is decided once (the root config's ``task``); a model of the other task is one config line."""
    from training.cli import precheck_overrides
    from training.runner import task_for

    assert task_for(precheck_overrides("det", [])).name == "det"
    assert task_for(precheck_overrides("rec", [])).name == "rec"
    proc = _cli("-m", "training.det", "model=rec/ppocrv4_mobile", "tracking=none", f"paths.runs={tmp_path}",
                f"hydra.run.dir={tmp_path / 'run'}")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "model.task=rec" in lines[0], proc.stderr


def test_extend_charset_preset_composes_for_rec():
    from training.cli import precheck_overrides
    from training.rec_task import charset_from_cfg

    cfg = precheck_overrides("rec", ["+experiment=extend_charset", "model.charset.extra_chars='毖恫'",
                                     "data.train.root=/d", "data.eval.root=/d"])
    assert cfg.data.train.format == cfg.data.eval.format == "ppocr-rec"
    assert cfg.optim.lr == 3e-4 and cfg.optim.warmup_steps == 20 and cfg.trainer.max_steps == 300
    charset = charset_from_cfg(cfg.model)
    assert charset.contains("毖") and charset.contains("恫") and charset.contains("增")


def test_missing_data_dir_is_one_line(tmp_path):
    proc = _cli("-m", "training.det", "+experiment=rctw", f"data.train.root={tmp_path}/nope",
                f"data.eval.root={tmp_path}/nope", "tracking=none", f"paths.runs={tmp_path}")
    assert proc.returncode == 2
    assert "not found" in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr


def test_det_qat_through_the_entry_config_and_fp32_resume_is_refused(tmp_path):
    from training.cli import UserError
    from training.runner import run

    result = run(_cfg("det", tmp_path, "quant=qat_int8", "registry.int8_report.repeat=1",
                      "registry.int8_report.det_size=320"))
    assert result["status"] == "completed"
    state = json.loads((tmp_path / "run" / "checkpoints" / "latest" / "state.json").read_text())
    assert state["extra"]["quant"]["skipped_layers"]  # the choice of FP32 layers is recorded
    # the after-training step exported INT8 and evaluated it next to its FP32 parent (pretrained here)
    assert json.loads((tmp_path / "run" / "export" / "parity.json").read_text())["precision"] == "int8"
    report = json.loads((tmp_path / "run" / "int8" / "int8_vs_fp32.json").read_text())
    assert report["int8"]["runtime"]["precision"] == "int8" and result["int8"]["report"]
    assert (tmp_path / "run" / "int8" / "fp32_parent" / "inference.pdiparams").is_file()
    with pytest.raises(UserError, match="QAT"):
        run(_cfg("det", tmp_path, "trainer.resume=auto"))


def test_extended_charset_with_a_mostly_warmup_schedule_is_warned(caplog):
    from training.cli import precheck_overrides
    from training.rec_task import warn_short_schedule

    with caplog.at_level("WARNING"):
        warn_short_schedule(precheck_overrides("rec", ["trainer.max_steps=120", "optim.warmup_steps=100"]))
    assert "warmup_steps=100 is 83% of trainer.max_steps=120" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_short_schedule(precheck_overrides("rec", ["+experiment=extend_charset", "data.train.root=/d",
                                                        "data.eval.root=/d"]))
    assert "warmup_steps" not in caplog.text

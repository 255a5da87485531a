"""The links between training and the registry (issue #13), driven through the documented commands.

Each test reproduces one link that was broken: QAT + ``registry.register=true`` (INT8 export, registered as
quantized with its FP32 parent), a registry parent for QAT (``model.pretrained=models:/…``), a requested
step that fails (exit 1, one line naming it, the trained run complete), and ``mode=eval`` without training
data. Tiny budgets: 2 steps on 4 synthetic images, eval on 2.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parent.parent

#: like tests/test_train_e2e._cfg, as command-line overrides
_TINY = ["+experiment=smoke", "trainer.max_steps=2", "trainer.eval_every=2", "data.train.num=4", "data.eval.num=2",
         "data.train.image_size=[320,240]", "data.eval.image_size=[320,240]", "trainer.progress_bar=false"]
_TINY_DET = ["aug.size=320", "eval_resize.limit_side_len=320"]
#: a quick INT8 report: both batch sizes, few timed repeats
_QUICK_REPORT = ["registry.int8_report.repeat=2", "registry.int8_report.warmup=1", "registry.int8_report.det_size=320"]


def _env(tmp_path: Path) -> dict[str, str]:
    """Everything a run writes stays under ``tmp_path`` (the commands run there: MLflow's artifact root
    ``./mlruns`` of a SQLite store is relative to the working directory)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "OCR_CACHE_DIR": str(tmp_path / "ocr-cache")}


def _train(task: str, tmp_path: Path, run: str, *overrides: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """``python -m training.<task>`` with the tiny budget, run dir ``tmp_path/run``, one SQLite store."""
    args = [sys.executable, "-m", f"training.{task}", *_TINY, *(_TINY_DET if task == "det" else []),
            f"paths.runs={tmp_path / 'runs'}", f"paths.cache={tmp_path / 'cache'}",
            f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"hydra.run.dir={tmp_path / run}", *overrides]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=_env(tmp_path), timeout=timeout)


def _result(proc: subprocess.CompletedProcess) -> dict:
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no stdout; stderr:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def _ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return _result(proc)


def _last_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


# ------------------------------------------------------------------------------------------ link 5
@pytest.mark.parametrize("task", ["det", "rec"])
def test_eval_mode_needs_only_eval_data(task, tmp_path):
    """``mode=eval`` with a real-format experiment whose ``data.train.root`` is unset (``???``)."""
    data = tmp_path / "eval"
    synth = subprocess.run([sys.executable, "-m", "datasets.synth", "--out", str(data), "--num", "2", "--format",
                            "icdar2015", "--size", "320x240", "--seed", "3"], cwd=tmp_path, capture_output=True,
                           text=True, env=_env(tmp_path), timeout=300)
    assert synth.returncode == 0, synth.stderr
    proc = subprocess.run([sys.executable, "-m", f"training.{task}", "+experiment=icdar2015", "mode=eval",
                           f"data.eval.root={data}", "tracking=none", f"paths.runs={tmp_path / 'runs'}",
                           f"paths.cache={tmp_path / 'cache'}", "eval_resize.limit_side_len=320"],
                          cwd=tmp_path, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    result = _ok(proc)
    main = "hmean" if task == "det" else "acc"
    assert 0.0 <= result[main] <= 1.0 and result["eval_digest"], result


# ------------------------------------------------------------------------------------------ link 3
@pytest.mark.slow
def test_a_requested_step_that_fails_ends_non_zero_with_one_line(tmp_path):
    """Registration asked for and impossible (the recogniser to bundle does not exist), and an INT8 report
    without an FP32 parent model: exit 1, one line naming the step, the trained run complete on disk."""
    proc = _train("det", tmp_path, "run", "registry.register=true", f"registry.det_bundle_rec={tmp_path / 'nope'}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = _last_line(proc.stderr)
    assert last.startswith("error: register failed") and "nope" in last, last
    assert sum("error:" in line for line in proc.stderr.splitlines()) == 1, proc.stderr[-3000:]
    result = _result(proc)
    assert result["failed_step"] == "register" and result["status"] == "completed"
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoints" / "best" / "model.pdparams").is_file()
    assert (run_dir / "export" / "inference.pdmodel").is_file()  # the steps before it are kept
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlrun = client.get_run(result["tracking_run_id"])
    assert mlrun.info.status == "FINISHED" and mlrun.data.tags["after_training.failed_step"] == "register"
    assert not client.search_registered_models()

    # the INT8 report of a QAT run (on by default) with a parent that has no FP32 model to compare with
    weights = run_dir / "checkpoints" / "best" / "model.pdparams"
    qat = _train("det", tmp_path, "qat", "quant=qat_int8", f"model.pretrained={weights}", *_QUICK_REPORT)
    assert qat.returncode == 1 and "Traceback" not in qat.stderr, qat.stderr[-3000:]
    last = _last_line(qat.stderr)
    assert last.startswith("error: int8_report failed") and "int8_report.enabled=false" in last, last
    assert _result(qat)["failed_step"] == "int8_report"
    assert (tmp_path / "qat" / "export" / "inference.pdmodel").is_file()  # the INT8 export before it is kept


# ------------------------------------------------------------------------------------------ links 1 and 2
def _check_int8_report(proc: subprocess.CompletedProcess, run_dir: Path, result: dict, client: MlflowClient) -> None:
    """The INT8-vs-FP32 table on stderr, the JSON on disk and the numbers in the MLflow run."""
    assert "INT8 vs FP32 parent" in proc.stderr and "latency batch 8" in proc.stderr, proc.stderr[-3000:]
    report = json.loads((run_dir / "int8" / "int8_vs_fp32.json").read_text())
    assert report["int8"]["runtime"]["precision"] == "int8"
    assert set(report["speedup"]) == {"batch_1", "batch_8"} and report["size_ratio"] < 1.0
    metrics = client.get_run(result["tracking_run_id"]).data.metrics
    assert "speedup.batch_8" in metrics and "size_mb.int8" in metrics


@pytest.mark.slow
def test_det_qat_from_a_local_parent_registers_int8_tagged_with_its_fp32_parent(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    fp32 = _ok(_train("det", tmp_path, "fp32", "registry.register=true"))
    assert fp32["registry"]["version"] == "1"
    proc = _train("det", tmp_path, "qat", "quant=qat_int8", f"model.pretrained={tmp_path / 'fp32/checkpoints/best'}",
                  "registry.register=true", *_QUICK_REPORT)
    result = _ok(proc)
    assert result["registry"]["version"] == "2", result
    v2 = client.get_model_version("ocr-det", "2")
    assert v2.tags["quantized"] == "yes" and v2.tags["fp32_parent_version"] == "1"
    assert 0.0 <= float(v2.tags["metric.hmean"]) <= 1.0
    export = tmp_path / "qat" / "export"
    assert json.loads((export / "parity.json").read_text())["precision"] == "int8"
    _check_int8_report(proc, tmp_path / "qat", result, client)


@pytest.mark.slow
def test_rec_qat_from_a_registry_parent_reports_int8_and_registers(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # The INT8 export's parity check (QAT dygraph vs oneDNN INT8 on rendered invoice lines, ≥ 5 of 6 equal)
    # held here only for invoice training lines and a QAT lr of 1e-5: at the default 1e-4, two AdamW steps
    # moved the weights enough that INT8 read 0 of 6 lines like the dygraph model (export refused, exit 1).
    lines = ["data.train.kind=invoice", "data.eval.kind=invoice"]
    fp32 = _ok(_train("rec", tmp_path, "fp32", "registry.register=true", *lines))
    assert fp32["registry"]["version"] == "1"
    proc = _train("rec", tmp_path, "qat", "quant=qat_int8", "model.pretrained=models:/ocr-rec/1", "optim.lr=1e-5",
                  "registry.register=true", *lines, *_QUICK_REPORT)
    result = _ok(proc)
    _check_int8_report(proc, tmp_path / "qat", result, client)
    report = json.loads((tmp_path / "qat" / "int8" / "int8_vs_fp32.json").read_text())
    # the FP32 side is the registered parent, through the copy the run downloaded
    assert report["parent"]["registry_version"] == "1"
    assert Path(report["fp32"]["dir"]).is_relative_to(tmp_path / "ocr-cache")
    v2 = client.get_model_version("ocr-rec", "2")
    assert v2.tags["quantized"] == "yes" and v2.tags["fp32_parent_version"] == "1"

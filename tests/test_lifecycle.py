"""The whole lifecycle on tiny budgets: train (det) → export → register → promote → train again → register →
gated promotion → rollback → history — and training-time eval agreeing with the exported model's metric."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from tests.test_train_e2e import _cfg

ROOT = Path(__file__).resolve().parent.parent


def _registry(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "registry", "--tracking-uri", f"sqlite:///{db}", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=600)


def test_train_export_register_promote_rollback(tmp_path, monkeypatch):
    from training.runner import run

    monkeypatch.chdir(tmp_path)  # MLflow's artifact root ./mlruns of a SQLite store: keep it out of the checkout
    db = tmp_path / "mlflow.db"
    first = run(_cfg("det", tmp_path, "registry.register=true", f"++run_dir={tmp_path / 'run1'}", "seed=1"))
    assert first["registry"]["version"] == "1", first
    client = MlflowClient(f"sqlite:///{db}")
    v1 = client.get_model_version("ocr-det", "1")
    # the model of record is the exported one, evaluated through the serving code: same number as training eval
    assert abs(float(v1.tags["metric.hmean"]) - first["best_metric"]) < 0.02
    assert v1.tags["source_run_id"] == first["tracking_run_id"]
    assert (Path(first["registry"]["export_dir"]) / "parity.json").is_file()

    assert _registry(db, "promote", "ocr-det", "1").returncode == 0
    second = run(_cfg("det", tmp_path, "registry.register=true", f"++run_dir={tmp_path / 'run2'}", "seed=2",
                      "postprocess.box_thresh=0.97"))  # a stricter post-process: fewer boxes, the gate must judge it
    assert second["registry"]["version"] == "2"
    promote = _registry(db, "promote", "ocr-det", "2")
    assert promote.returncode in (0, 2), promote.stderr
    if promote.returncode == 2:  # refused: one line naming the gate, then a forced promotion with a reason
        assert len(promote.stderr.strip().splitlines()) == 1 and "gate" in promote.stderr.lower()
        assert _registry(db, "promote", "ocr-det", "2", "--force", "--reason", "lifecycle test").returncode == 0
    assert str(client.get_model_version_by_alias("ocr-det", "champion").version) == "2"
    assert _registry(db, "rollback", "ocr-det").returncode == 0
    assert str(client.get_model_version_by_alias("ocr-det", "champion").version) == "1"
    history = _registry(db, "history", "ocr-det", "--json")
    events = json.loads(history.stdout.strip().splitlines()[-1])
    assert len(events) >= 3

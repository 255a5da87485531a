"""MLflow tracking through the Tracker seam, against a throw-away sqlite store: what a training run logs
can be read back with MlflowClient; a dead server or a failing call never stops training."""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from training.tracking import MlflowTracker, NullTracker, build_tracker, default_tags, flatten_config
from training.trainer import Trainer

from test_trainer import BASE, OPTIM, make, mse, neg_mse_eval  # tiny model + data shared with the trainer tests


@pytest.fixture()
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_flatten_config_and_limits():
    flat = flatten_config({"optim": {"lr": 0.001, "betas": [0.9, 0.999], "name": "adamw"},
                           "model": {"pretrained": None, "frozen": True, "extra": {}},
                           "long": "x" * 900}, max_length=500)
    assert flat["optim.lr"] == "0.001" and flat["optim.betas"] == "[0.9, 0.999]" and flat["optim.name"] == "adamw"
    assert flat["model.pretrained"] == "null" and flat["model.frozen"] == "true" and flat["model.extra"] == "{}"
    assert len(flat["long"]) == 500 and flat["long"].endswith("...")
    tags = default_tags()
    assert tags["lib.paddlepaddle"] == "2.6.2" and "git.sha" in tags and "lib.mlflow" in tags


def test_build_tracker_from_config(store, monkeypatch):
    assert isinstance(build_tracker({"backend": "none"}), NullTracker)
    tracker = build_tracker({"backend": "mlflow", "experiment": None, "tracking_uri": store[0]},
                            default_experiment="ocr-det")
    assert isinstance(tracker, MlflowTracker) and tracker.experiment == "ocr-det"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert build_tracker({"experiment": "x"}).tracking_uri == "sqlite:///elsewhere.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert build_tracker({"experiment": "x"}).tracking_uri == "sqlite:///mlflow.db"
    with pytest.raises(ValueError, match="unknown"):
        build_tracker({"experimnet": "x"})


def test_training_run_is_readable_from_mlflow(tmp_path, store):
    uri, artifacts = store
    tracker = MlflowTracker("ocr-test", tracking_uri=uri, artifact_location=artifacts)
    model, loader = make()
    resolved = {"optim": OPTIM, "trainer": {**BASE, "max_steps": 6}, "note": "y" * 800}
    trainer = Trainer(model, mse, loader, {**BASE, "max_steps": 6, "eval_every": 3, "log_every": 2}, OPTIM,
                      tmp_path / "run", tracker, eval_fn=neg_mse_eval, main_metric="neg_mse",
                      resolved_config=resolved, run_name="tiny")
    run_id = trainer.start_tracking()
    tracker.set_tags({"data.digest": "abc123", "charset.sha256": "f00d"})
    tracker.log_dataset_input("synth-train", digest="d" * 64, num=48, source=str(tmp_path / "data"), context="training")
    tracker.log_dataset_input("synth-eval", digest="e" * 16, num=12, source="synthetic:seed=3", context="eval")
    summary = trainer.fit()
    assert summary["tracking_run_id"] == run_id and not tracker.failed

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert run.data.params["optim.lr"] == "0.01" and run.data.params["trainer.max_steps"] == "6"
    assert len(run.data.params["note"]) == 500
    assert run.data.tags["data.digest"] == "abc123" and run.data.tags["lib.paddlepaddle"] == "2.6.2"
    assert run.data.tags["main_metric"] == "neg_mse" and run.data.tags["status"] == "completed"
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [2, 4, 6]
    evals = client.get_metric_history(run_id, "eval/neg_mse")
    assert [m.step for m in evals] == [3, 6]
    assert evals[-1].value == pytest.approx(summary["final_metrics"]["neg_mse"])
    assert client.get_metric_history(run_id, "eval/best_neg_mse")[-1].value == pytest.approx(summary["best_metric"])
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert inputs["synth-train"].dataset.digest == "d" * 36  # MLflow's digest field holds 36 characters
    assert run.data.tags["data.training.synth-train.digest"] == "d" * 64  # the full digest is a tag
    assert json.loads(inputs["synth-train"].dataset.profile) == {"num_samples": 48}
    assert {t.key: t.value for t in inputs["synth-eval"].tags}["mlflow.data.context"] == "eval"
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "metrics.json", "history.json", "curves.png", "checkpoints"} <= names
    best_files = {Path(a.path).name for a in client.list_artifacts(run_id, "checkpoints/best")}
    assert {"model.pdparams", "state.json"} <= best_files  # trainer.log_checkpoint: weights (the default)
    assert not best_files & {"optimizer.pdopt", "trainer.pkl"}  # resume state stays in the run dir


def test_resume_continues_the_same_mlflow_run(tmp_path, store):
    uri, artifacts = store
    cfg = {**BASE, "max_steps": 4, "eval_every": 2, "log_every": 1}
    model, loader = make()
    first = Trainer(model, mse, loader, {**cfg, "max_steps": 4}, OPTIM, tmp_path / "run",
                    MlflowTracker("ocr-test", tracking_uri=uri, artifact_location=artifacts),
                    eval_fn=neg_mse_eval, main_metric="neg_mse", resolved_config={"max_steps": 4})
    run_id = first.fit()["tracking_run_id"]
    model, loader = make()
    second = Trainer(model, mse, loader, {**cfg, "max_steps": 6, "resume": "auto"}, OPTIM, tmp_path / "run",
                     MlflowTracker("ocr-test", tracking_uri=uri), eval_fn=neg_mse_eval, main_metric="neg_mse",
                     resolved_config={"max_steps": 6})
    assert second.fit()["tracking_run_id"] == run_id
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.params["max_steps"] == "4"  # MLflow params are immutable; the change is recorded
    assert run.data.tags["params_changed_on_resume"] == "max_steps"
    steps = [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, "train/loss")]
    assert steps[-1] == 6 and run.info.status == "FINISHED"


def test_unreachable_server_training_continues_with_one_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    tracker = build_tracker({"backend": "mlflow"}, default_experiment="ocr-det")
    model, loader = make()
    trainer = Trainer(model, mse, loader, {**BASE, "max_steps": 4, "eval_every": 2}, OPTIM, tmp_path,
                      tracker, eval_fn=neg_mse_eval, main_metric="neg_mse", resolved_config={"a": 1})
    summary = trainer.fit()
    assert summary["steps"] == 4 and summary["tracking_run_id"] is None and tracker.failed
    err = capsys.readouterr().err
    assert err.count("[tracking] ERROR") == 1 and "127.0.0.1" in err and "training continues" in err
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"
    assert (tmp_path / "checkpoints" / "best" / "model.pdparams").is_file()


def test_failure_in_the_middle_switches_tracking_off_once(tmp_path, store, capsys, monkeypatch):
    uri, artifacts = store
    tracker = MlflowTracker("ocr-test", tracking_uri=uri, artifact_location=artifacts)
    model, loader = make()
    trainer = Trainer(model, mse, loader, {**BASE, "max_steps": 6, "log_every": 1}, OPTIM, tmp_path / "run",
                      tracker, eval_fn=neg_mse_eval, main_metric="neg_mse")
    run_id = trainer.start_tracking()
    calls = {"n": 0}
    real = tracker._client.log_batch

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("server went away (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(tracker._client, "log_batch", flaky)
    summary = trainer.fit()
    assert summary["steps"] == 6 and tracker.failed
    assert capsys.readouterr().err.count("[tracking] ERROR") == 1
    logged = [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, "train/loss")]
    assert logged == [1, 2]  # what was logged before the failure stays; nothing after it was attempted
    assert calls["n"] == 3


def test_figures_and_images(tmp_path, store):
    uri, artifacts = store
    tracker = MlflowTracker("ocr-test", tracking_uri=uri, artifact_location=artifacts)
    run_id = tracker.start(run_name="pics")
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    tracker.log_figure(fig, "eval/curve.png")
    tracker.log_image(np.zeros((8, 8, 3), dtype=np.uint8), "eval/sample_0.png")
    tracker.log_dict({"a": 1}, "extra/info.json")
    tracker.end()
    paths = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run_id, "eval")}
    assert paths == {"eval/curve.png", "eval/sample_0.png"}
    assert not tracker.failed and not tracker.active


def test_seeded_runs_get_distinct_descriptive_names(store):
    """MLflow drew its random names from the RNG the run had just seeded: every run was capable-auk-759."""
    import random

    from training.tracking import default_run_name

    uri, artifacts = store
    names = []
    for _ in range(3):
        random.seed(42)
        tracker = MlflowTracker("ocr-det", tracking_uri=uri, artifact_location=artifacts)
        run_id = tracker.start()
        names.append(MlflowClient(tracking_uri=uri).get_run(run_id).info.run_name)
        tracker.end()
    assert len(set(names)) == 3, names
    assert all(name.startswith("det-") for name in names), names
    assert default_run_name("rec").startswith("rec-") and default_run_name("det", kind="sweep").startswith("det-sweep-")
    tracker = MlflowTracker("ocr-det", tracking_uri=uri, artifact_location=artifacts, run_name="my-baseline")
    run_id = tracker.start()
    assert MlflowClient(tracking_uri=uri).get_run(run_id).info.run_name == "my-baseline"
    tracker.end()


def test_eval_curves_keep_counts_off_the_rate_axis(tmp_path):
    """num_gt (hundreds) on hmean's axis flattened hmean into a line at zero."""
    from training.trainer.history import History, _split_rates

    history = History()
    for step in (1, 2, 3):
        history.add_train(step, {"loss": 1.0 / step, "lr": 1e-3})
        history.add_eval(step, {"precision": 0.5, "recall": 0.2 * step, "hmean": 0.25 * step, "num_gt": 120.0,
                                "num_det": 90.0 + step})
    assert _split_rates(history.eval) == (["precision", "recall", "hmean"], ["num_gt", "num_det"])
    assert history.plot(tmp_path / "curves.png", "hmean").stat().st_size > 1000

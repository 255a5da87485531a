"""The trainer on tiny models: exact resume, EMA, gradient accumulation, NaN stop, early stopping, AMP on
CPU, eval reduction. Each run is tens of steps of a 2-layer MLP on random tensors."""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import json
import logging
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddle.io import DataLoader, TensorDataset

from datasets.loaders import SeededBatchSampler

from training.trainer import (
    ModelEMA,
    NonFiniteLossError,
    Trainer,
    TrainerConfig,
    load_checkpoint,
    seed_everything,
)

N_SAMPLES = 48
X = np.random.RandomState(1).randn(N_SAMPLES, 6).astype("float32")
Y = (X @ np.random.RandomState(2).randn(6, 1) + 0.1).astype("float32")


class MLP(paddle.nn.Layer):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = paddle.nn.Linear(6, 16)
        self.drop = paddle.nn.Dropout(dropout)
        self.fc2 = paddle.nn.Linear(16, 1)

    def forward(self, x):
        return self.fc2(self.drop(paddle.nn.functional.relu(self.fc1(x))))


def make(seed: int = 0, dropout: float = 0.0, batch_size: int = 4, shuffle: bool = True,
         init_seed: int | None = None):
    seed_everything(seed if init_seed is None else init_seed)
    model = MLP(dropout)
    seed_everything(seed)
    ds = TensorDataset([paddle.to_tensor(X), paddle.to_tensor(Y)])
    loader = DataLoader(ds, batch_sampler=SeededBatchSampler(len(ds), batch_size, shuffle=shuffle, seed=seed))
    return model, loader


def mse(outputs, batch):
    loss = paddle.nn.functional.mse_loss(outputs, batch[1])
    return {"loss": loss, "loss_abs": paddle.abs(outputs - batch[1]).mean()}


def neg_mse_eval(model):
    pred = model(paddle.to_tensor(X))
    return {"neg_mse": -float(paddle.nn.functional.mse_loss(pred, paddle.to_tensor(Y))), "n": float(N_SAMPLES)}


def weights(model) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


BASE = dict(max_steps=14, eval_every=4, save_every=3, log_every=2, progress_bar=False, summary=False)
OPTIM = dict(name="adamw", lr=0.01, warmup_steps=3, weight_decay=0.01)


def run(tmp: Path, trainer_cfg: dict, optim: dict | None = None, model_loader=None, **kw) -> tuple[Trainer, dict]:
    model, loader = model_loader or make()
    trainer = Trainer(model, mse, loader, {**BASE, **trainer_cfg}, optim or OPTIM, tmp, eval_fn=neg_mse_eval,
                      main_metric="neg_mse", resolved_config={"trainer": trainer_cfg}, extra_state={"charset": "x"},
                      **kw)
    return trainer, trainer.fit()


class Crash(Exception):
    pass


def test_resume_matches_uninterrupted_run_bitwise(tmp_path):
    cfg = dict(accum_steps=2, ema=True, ema_decay=0.9)
    ref_trainer, ref = run(tmp_path / "ref", cfg, model_loader=make(dropout=0.2))

    # same run, crashing in the middle of step 8 (after checkpoints at steps 3, 4 (eval), 6)
    model, loader = make(dropout=0.2)
    calls = {"n": 0}

    def crashing_loss(outputs, batch):
        calls["n"] += 1
        if calls["n"] == 2 * 7 + 1:  # first micro-batch of step 8
            raise Crash()
        return mse(outputs, batch)

    t1 = Trainer(model, crashing_loss, loader, {**BASE, **cfg}, OPTIM, tmp_path / "run", eval_fn=neg_mse_eval,
                 main_metric="neg_mse")
    with pytest.raises(Crash):
        t1.fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "latest").step == 6
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"

    model2, loader2 = make(init_seed=99, dropout=0.2)  # other init and RNG: all must come from the checkpoint
    t2 = Trainer(model2, mse, loader2, {**BASE, **cfg, "resume": "auto"}, OPTIM, tmp_path / "run",
                 eval_fn=neg_mse_eval, main_metric="neg_mse")
    assert t2.step == 6 and t2.best_step == 4 and t2.resumed_from is not None
    resumed = t2.fit()
    assert resumed["steps"] == ref["steps"] == 14
    assert resumed["best_metric"] == ref["best_metric"] and resumed["best_step"] == ref["best_step"]
    assert resumed["final_metrics"] == ref["final_metrics"]
    for key, value in weights(ref_trainer.model).items():
        np.testing.assert_array_equal(value, weights(t2.model)[key], err_msg=key)
    for key, value in ref_trainer.ema.shadow.items():
        np.testing.assert_array_equal(value.numpy(), t2.ema.shadow[key].numpy(), err_msg=f"ema {key}")
    assert [r["step"] for r in t2.history.eval] == [4, 8, 12, 14]
    assert t2.history.eval == ref_trainer.history.eval


def test_resume_keeps_best_metric_and_explicit_path(tmp_path):
    trainer, summary = run(tmp_path / "a", {"max_steps": 8})
    best = summary["best_metric"]
    model, loader = make()
    t2 = Trainer(model, mse, loader, {**BASE, "max_steps": 8, "resume": str(tmp_path / "a" / "checkpoints" / "latest")},
                 OPTIM, tmp_path / "b", eval_fn=neg_mse_eval, main_metric="neg_mse")
    assert t2.best_value == best and t2.step == 8
    again = t2.fit()  # nothing left to do: no new steps, no new eval, best unchanged
    assert again["steps"] == 8 and again["best_metric"] == best
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        Trainer(*make(), mse, {**BASE, "resume": str(tmp_path / "missing")}, OPTIM, tmp_path / "c")


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path):
    model, loader = make()
    trainer = Trainer(model, mse, loader, {**BASE, "resume": "auto", "max_steps": 2}, OPTIM, tmp_path)
    assert trainer.step == 0 and trainer.resumed_from is None
    assert trainer.fit()["steps"] == 2


def test_ema_math_and_swap():
    paddle.seed(0)
    layer = paddle.nn.Linear(2, 1)
    w0 = layer.weight.numpy().copy()
    ema = ModelEMA(layer, decay=0.9, warmup=False)
    layer.weight.set_value(w0 + 1.0)
    ema.update(layer)
    np.testing.assert_allclose(ema.shadow["weight"].numpy(), 0.9 * w0 + 0.1 * (w0 + 1.0), rtol=1e-6)
    layer.weight.set_value(w0 + 3.0)
    ema.update(layer)
    expected = 0.9 * (0.9 * w0 + 0.1 * (w0 + 1.0)) + 0.1 * (w0 + 3.0)
    np.testing.assert_allclose(ema.shadow["weight"].numpy(), expected, rtol=1e-6)
    with ema.apply_to(layer):
        np.testing.assert_allclose(layer.weight.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(layer.weight.numpy(), w0 + 3.0)  # raw weights are back

    warm = ModelEMA(layer, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)  # (1+0)/(10+0)
    warm.num_updates = 10_000
    assert warm.current_decay() == pytest.approx(0.999)
    state = ema.state_dict()
    other = ModelEMA(layer, decay=0.5)
    other.set_state_dict(state)
    assert other.decay == 0.9 and other.num_updates == 2
    np.testing.assert_array_equal(other.shadow["weight"].numpy(), ema.shadow["weight"].numpy())


def test_ema_weights_are_evaluated_and_exported(tmp_path):
    trainer, summary = run(tmp_path, {"ema": True, "ema_decay": 0.9, "max_steps": 6, "eval_every": 0})
    ck = load_checkpoint(tmp_path / "checkpoints" / "latest")
    assert ck.state["weights"]["model.pdparams"] == "ema"
    np.testing.assert_array_equal(ck.model["fc1.weight"].numpy(), trainer.ema.shadow["fc1.weight"].numpy())
    np.testing.assert_array_equal(ck.training_weights["fc1.weight"].numpy(), trainer.model.fc1.weight.numpy())
    with trainer.ema.apply_to(trainer.model):
        assert summary["final_metrics"]["neg_mse"] == pytest.approx(neg_mse_eval(trainer.model)["neg_mse"], rel=1e-6)


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_accumulation_equals_larger_batch(tmp_path, optim):
    cfg = dict(max_steps=5, eval_every=0, eval_at_end=False)
    opt = {**OPTIM, "name": optim, "grad_clip": 1.0}
    accumulated, _ = run(tmp_path / "acc", {**cfg, "accum_steps": 4}, opt, model_loader=make(batch_size=2, shuffle=False))
    big, _ = run(tmp_path / "big", cfg, opt, model_loader=make(batch_size=8, shuffle=False))
    assert accumulated.samples_seen == big.samples_seen == 40
    for key, value in weights(big.model).items():
        np.testing.assert_allclose(weights(accumulated.model)[key], value, atol=1e-5, rtol=0, err_msg=key)
    moved = weights(big.model)["fc1.weight"] - weights(make()[0])["fc1.weight"]
    assert np.abs(moved).max() > 1e-3  # the comparison is not trivially true


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, loader = make()
    calls = {"n": 0}

    def nan_at_step_5(outputs, batch):
        calls["n"] += 1
        losses = mse(outputs, batch)
        if calls["n"] == 5:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    trainer = Trainer(model, nan_at_step_5, loader, {**BASE, "save_every": 2, "eval_every": 0}, OPTIM, tmp_path)
    with pytest.raises(NonFiniteLossError, match="step 5") as info:
        trainer.fit()
    err = info.value
    assert err.step == 5 and np.isnan(err.losses["loss"])
    assert err.checkpoint is not None and load_checkpoint(err.checkpoint).step == 4
    assert trainer.step == 4  # the bad step was never applied
    for key, value in load_checkpoint(tmp_path).model.items():
        assert np.isfinite(value.numpy()).all()
        np.testing.assert_array_equal(value.numpy(), trainer.model.state_dict()[key].numpy())
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "nonfinite_loss"


def test_early_stopping_after_patience(tmp_path):
    values = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    model, loader = make()
    trainer = Trainer(model, mse, loader, {**BASE, "max_steps": 40, "eval_every": 2, "early_stop_patience": 2},
                      OPTIM, tmp_path, eval_fn=lambda m: {"acc": next(values)}, main_metric="acc")
    summary = trainer.fit()
    assert summary["status"] == "early_stopped"
    assert summary["steps"] == 8 and summary["best_metric"] == 0.6 and summary["best_step"] == 4
    best = load_checkpoint(tmp_path / "checkpoints" / "best")
    assert best.step == 4 and best.state["best"] == {"value": 0.6, "step": 4}
    latest = load_checkpoint(tmp_path)
    assert latest.step == 8 and latest.state["bad_evals"] == 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "early_stopped" and [e["acc"] for e in metrics["eval_history"]] == [0.5, 0.6, 0.55, 0.58]
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_amp_is_a_clean_noop_on_cpu(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="training.trainer")
    plain, _ = run(tmp_path / "fp32", {"max_steps": 5})
    amp, summary = run(tmp_path / "amp", {"max_steps": 5, "amp": True, "amp_level": "O2", "amp_dtype": "bfloat16"})
    assert paddle.device.get_device() == "cpu"
    assert summary["amp"] is False and amp.scaler is None
    notes = [r for r in caplog.records if "AMP is a no-op" in r.getMessage()]
    assert len(notes) == 1
    for key, value in weights(plain.model).items():
        np.testing.assert_array_equal(value, weights(amp.model)[key])


class CountMetric:
    """The reducible form of an eval result: additive state + compute."""

    def __init__(self, correct: int, total: int) -> None:
        self.correct, self.total = correct, total

    def state(self):
        return {"correct": np.array([self.correct], dtype=np.int64), "total": np.array([self.total], dtype=np.int64)}

    def compute(self, state):
        return {"acc": float(state["correct"][0] / state["total"][0]), "total": float(state["total"][0])}


def test_reducible_eval_result_and_summary_fields(tmp_path):
    model, loader = make()
    trainer = Trainer(model, mse, loader, {**BASE, "max_steps": 4, "eval_every": 2}, OPTIM, tmp_path,
                      eval_fn=lambda m: CountMetric(3, 4), main_metric="acc")
    summary = trainer.fit()
    assert summary["final_metrics"] == {"acc": 0.75, "total": 4.0}
    for key in ("status", "best_metric", "best_step", "steps", "epochs", "samples", "train_time_s",
                "reader_time_s", "compute_time_s", "eval_time_s", "samples_per_s", "best_checkpoint",
                "latest_checkpoint", "tracking_run_id"):
        assert key in summary
    assert summary["train_time_s"] > 0 and summary["samples"] == 16
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == [2, 4] and "loss_abs" in history["train"][0]


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        TrainerConfig.from_mapping({"max_step": 3})
    with pytest.raises(ValueError, match="max_steps or trainer.epochs"):
        TrainerConfig.from_mapping({})
    model, loader = make()
    with pytest.raises(ValueError, match="main_metric"):
        Trainer(model, mse, loader, {"max_steps": 1}, OPTIM, tmp_path, eval_fn=neg_mse_eval)
    with pytest.raises(TypeError):
        Trainer(model, mse, loader, {"max_steps": 1}, OPTIM, tmp_path, extra_state={"x": object()})


def test_epochs_budget_and_epoch_eval(tmp_path):
    model, loader = make(batch_size=8)  # 6 batches per epoch
    trainer = Trainer(model, mse, loader, {**BASE, "max_steps": None, "epochs": 2, "eval_every": 0,
                                          "eval_every_epochs": 1, "accum_steps": 4}, OPTIM, tmp_path,
                      eval_fn=neg_mse_eval, main_metric="neg_mse")
    assert trainer.total_steps == 3  # 12 micro-batches / 4
    summary = trainer.fit()
    assert summary["steps"] == 3 and summary["epochs"] == 2
    assert [r["step"] for r in trainer.history.eval] == [1, 3]  # after epoch 1 (step 1) and epoch 2 (step 3)


class BNNet(paddle.nn.Layer):
    """MLP with a batch-norm layer of each Paddle API (legacy ``nn.BatchNorm`` is what PP-OCR models use)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = paddle.nn.Linear(6, 16)
        self.bn_new = paddle.nn.BatchNorm1D(16)
        self.bn_legacy = paddle.nn.BatchNorm(16)
        self.fc2 = paddle.nn.Linear(16, 1)

    def forward(self, x):
        return self.fc2(paddle.nn.functional.relu(self.bn_legacy(self.bn_new(self.fc1(x)))))


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_bn_keeps_running_statistics_and_trains_the_rest(tmp_path, freeze):
    seed_everything(0)
    model = BNNet()
    _, loader = make()
    before = weights(model)
    trainer = Trainer(model, mse, loader, {**BASE, "max_steps": 6, "eval_every": 3, "freeze_bn": freeze}, OPTIM,
                      tmp_path, eval_fn=neg_mse_eval, main_metric="neg_mse")
    trainer.fit()
    after = weights(model)
    stats = [k for k in before if k.endswith(("_mean", "_variance"))]
    assert len(stats) == 4
    moved = {k: not np.array_equal(before[k], after[k]) for k in stats}
    assert all(moved.values()) is not freeze and any(moved.values()) is not freeze, moved
    # BN scale/shift and the linear layers train either way (frozen statistics, not frozen parameters)
    assert not np.array_equal(before["bn_new.weight"], after["bn_new.weight"])
    assert not np.array_equal(before["fc1.weight"], after["fc1.weight"])


def test_lr_mult_scales_the_step_of_matching_parameters_only(tmp_path):
    sgd = dict(name="sgd", lr=0.01, momentum=0.0, weight_decay=0.0, warmup_steps=0, scheduler="constant",
               grad_clip=None)

    def one_step(lr_mult):
        model, loader = make(shuffle=False)
        before = weights(model)
        Trainer(model, mse, loader, {**BASE, "max_steps": 1, "eval_every": 0, "eval_at_end": False},
                {**sgd, "lr_mult": lr_mult}, tmp_path / str(len(lr_mult)), main_metric="loss").fit()
        return {k: weights(model)[k] - before[k] for k in before}

    plain, boosted = one_step({}), one_step({"fc2.*": 10.0})
    np.testing.assert_allclose(boosted["fc2.weight"], 10 * plain["fc2.weight"], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(boosted["fc2.bias"], 10 * plain["fc2.bias"], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(boosted["fc1.weight"], plain["fc1.weight"], rtol=1e-6, atol=1e-9)


def test_lr_mult_pattern_that_matches_nothing_is_an_error(tmp_path):
    model, loader = make()
    with pytest.raises(ValueError, match="match no trainable parameter"):
        Trainer(model, mse, loader, BASE, {**OPTIM, "lr_mult": {"head.fc.*": 10}}, tmp_path, main_metric="loss")


@pytest.mark.parametrize("mode, expected", [
    ("weights", {"model.pdparams", "state.json"}),
    ("full", {"model.pdparams", "state.json", "optimizer.pdopt", "trainer.pkl"}),
    ("none", set()),
])
def test_log_checkpoint_uploads_what_it_says(tmp_path, mode, expected):
    from mlflow import MlflowClient

    from training.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker("ocr-test", tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"))
    trainer, summary = run(tmp_path / "run", {"max_steps": 4, "log_checkpoint": mode}, tracker=tracker)
    uploaded = {Path(a.path).name for a in MlflowClient(uri).list_artifacts(summary["tracking_run_id"], "checkpoints/best")}
    assert uploaded == expected
    assert (tmp_path / "run" / "checkpoints" / "best" / "optimizer.pdopt").is_file()  # resume state stays local
    with pytest.raises(ValueError, match="log_checkpoint"):
        TrainerConfig.from_mapping({"max_steps": 1, "log_checkpoint": "all"})

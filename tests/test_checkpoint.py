"""Checkpoints: round trip of every piece of state, atomic publication, crash safety, name-stable optimizer
state and the lr schedule. Tiny models on random tensors; a few seconds in all."""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import json
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import paddle
import pytest

from training.trainer import checkpoint as ckpt_mod
from training.trainer.checkpoint import (
    capture_rng_state,
    find_resume,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    save_checkpoint,
)
from training.trainer.optim import (
    OptimConfig,
    WarmupCosineLR,
    build_optimizer,
    load_optimizer_state,
    optimizer_state,
)

ROOT = Path(__file__).resolve().parents[1]


def _mlp(seed: int = 0) -> paddle.nn.Layer:
    paddle.seed(seed)
    return paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.ReLU(), paddle.nn.Linear(8, 2))


def _train_steps(model, optimizer, scheduler, n: int, seed: int = 1) -> None:
    rng = np.random.RandomState(seed)
    for _ in range(n):
        x = paddle.to_tensor(rng.randn(5, 4).astype("float32"))
        loss = (model(x) ** 2).mean()
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        scheduler.step()


def _weights(model) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _save(root: Path, model, optimizer, step: int, name: str = "latest", best: float | None = None) -> Path:
    return save_checkpoint(
        root, name,
        model=model.state_dict(),
        optimizer=optimizer_state(optimizer, model),
        state={"step": step, "epoch": 0, "batch_in_epoch": step, "best": {"value": best, "step": step},
               "extra": {"charset": "ab"}},
        trainer={"rng": capture_rng_state()},
    )


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_round_trip_restores_weights_optimizer_schedule_and_continues_identically(tmp_path, name):
    cfg = OptimConfig.from_mapping({"name": name, "lr": 0.05, "warmup_steps": 2, "weight_decay": 0.01})
    model = _mlp()
    opt, sched = build_optimizer(cfg, model, total_steps=20)
    _train_steps(model, opt, sched, 5)
    path = _save(tmp_path, model, opt, step=5, best=0.7)

    # Build other layers first so Paddle's generated tensor names differ from the first model's.
    _ = [paddle.nn.Linear(3, 3) for _ in range(3)]
    model2 = _mlp(seed=123)
    opt2, sched2 = build_optimizer(cfg, model2, total_steps=20)
    assert [p.name for p in model2.parameters()] != [p.name for p in model.parameters()]
    ck = load_checkpoint(path)
    model2.set_state_dict(ck.training_weights)
    load_optimizer_state(opt2, model2, ck.optimizer)
    assert sched2.last_epoch == sched.last_epoch and sched2() == sched()
    assert ck.step == 5 and ck.state["best"] == {"value": 0.7, "step": 5} and ck.state["extra"] == {"charset": "ab"}

    _train_steps(model, opt, sched, 3, seed=9)
    _train_steps(model2, opt2, sched2, 3, seed=9)
    for key, value in _weights(model).items():
        np.testing.assert_array_equal(value, _weights(model2)[key])


def test_optimizer_state_mismatch_is_a_clear_error(tmp_path):
    model = _mlp()
    opt, sched = build_optimizer({"name": "adamw"}, model, total_steps=4)
    _train_steps(model, opt, sched, 1)
    state = optimizer_state(opt, model)
    model2 = _mlp()
    sgd, _ = build_optimizer({"name": "sgd"}, model2, total_steps=4)
    with pytest.raises(ValueError, match="AdamW"):
        load_optimizer_state(sgd, model2, state)
    bigger = paddle.nn.Sequential(paddle.nn.Linear(4, 9), paddle.nn.ReLU(), paddle.nn.Linear(9, 2))
    opt3, _ = build_optimizer({"name": "adamw"}, bigger, total_steps=4)
    with pytest.raises(ValueError, match="shape"):
        load_optimizer_state(opt3, bigger, state)


def test_rng_state_round_trip_through_pickle():
    import pickle

    state = pickle.loads(pickle.dumps(capture_rng_state()))  # stored pickled in trainer.pkl
    expected = (random.random(), np.random.rand(3))
    random.random(), np.random.rand(3)
    restore_rng_state(state)
    assert random.random() == expected[0]
    np.testing.assert_array_equal(np.random.rand(3), expected[1])


def test_layout_symlink_and_cleanup(tmp_path):
    run_dir = tmp_path / "run"
    root = run_dir / "checkpoints"
    assert find_resume(run_dir) is None
    model = _mlp()
    opt, sched = build_optimizer({}, model, total_steps=10)
    p1 = _save(root, model, opt, step=1)
    assert p1 == root / "latest" and p1.is_symlink()
    assert sorted(f.name for f in p1.iterdir()) == ["model.pdparams", "optimizer.pdopt", "state.json", "trainer.pkl"]
    _train_steps(model, opt, sched, 1)
    _save(root, model, opt, step=2)
    _save(root, model, opt, step=2, name="best")
    entries = sorted(e.name for e in root.iterdir())
    assert len(entries) == 4 and "latest" in entries and "best" in entries  # the step-1 directory is gone
    assert find_resume(run_dir) == root / "latest"
    assert load_checkpoint(run_dir).step == 2  # a run dir means its latest
    weights = load_model_weights(root / "best")
    np.testing.assert_array_equal(weights["0.weight"].numpy(), model[0].weight.numpy())


def test_crash_during_write_keeps_previous_latest(tmp_path, monkeypatch):
    model = _mlp()
    opt, sched = build_optimizer({}, model, total_steps=10)
    _save(tmp_path, model, opt, step=1)
    before = _weights(model)
    _train_steps(model, opt, sched, 2)

    real_save = paddle.save

    def failing_save(obj, path, *a, **k):
        if str(path).endswith("optimizer.pdopt"):
            raise OSError("disk full (simulated)")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ckpt_mod.paddle, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        _save(tmp_path, model, opt, step=3)
    monkeypatch.setattr(ckpt_mod.paddle, "save", real_save)
    ck = load_checkpoint(tmp_path / "latest")
    assert ck.step == 1
    np.testing.assert_array_equal(ck.model["0.weight"].numpy(), before["0.weight"])
    assert not [e for e in tmp_path.iterdir() if e.name.startswith(".tmp-")]

    # crash after the new directory is complete but before the symlink swap (the commit point)
    def failing_replace(src, dst):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(ckpt_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="power cut"):
        _save(tmp_path, model, opt, step=4)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "latest").step == 1
    _save(tmp_path, model, opt, step=5)  # the next save removes the orphans
    assert load_checkpoint(tmp_path / "latest").step == 5
    assert sorted(e.name.split("-")[0] for e in tmp_path.iterdir()) == ["latest", "latest"]


def test_kill_9_mid_write_leaves_latest_loadable(tmp_path):
    """A real hard kill (os._exit in the middle of writing the optimizer file) in a child process."""
    script = textwrap.dedent(
        f"""
        import training, os, sys
        import paddle
        from training.trainer import checkpoint as c
        from training.trainer.optim import build_optimizer, optimizer_state
        paddle.seed(0)
        m = paddle.nn.Linear(3, 2)
        opt, _ = build_optimizer({{}}, m, total_steps=5)
        root = sys.argv[1]
        c.save_checkpoint(root, "latest", model=m.state_dict(), optimizer=optimizer_state(opt, m),
                          state={{"step": 1, "epoch": 0, "batch_in_epoch": 1}})
        real = paddle.save
        def dying(obj, path, *a, **k):
            if str(path).endswith("optimizer.pdopt"):
                with open(path, "wb") as fh:
                    fh.write(b"half")
                os._exit(9)
            return real(obj, path, *a, **k)
        c.paddle.save = dying
        c.save_checkpoint(root, "latest", model=m.state_dict(), optimizer=optimizer_state(opt, m),
                          state={{"step": 2, "epoch": 0, "batch_in_epoch": 2}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "checkpoints")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert find_resume(tmp_path) is not None
    ck = load_checkpoint(find_resume(tmp_path))
    assert ck.step == 1 and ck.optimizer is not None
    assert any(e.name.startswith(".tmp-") for e in (tmp_path / "checkpoints").iterdir())  # the half write


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_checkpoint(tmp_path / "nope")
    assert find_resume(tmp_path) is None


def test_state_must_be_json(tmp_path):
    model = _mlp()
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path, "latest", model=model.state_dict(), state={"step": 1, "bad": object()})
    assert not (tmp_path / "latest").exists()


def test_warmup_cosine_schedule_closed_form():
    sched = WarmupCosineLR(0.1, total_steps=10, warmup_steps=4, min_lr_ratio=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(sched())
        sched.step()
    np.testing.assert_allclose(lrs[:4], [0.025, 0.05, 0.075, 0.1], rtol=1e-12)
    assert lrs[4] == pytest.approx(0.1)
    assert lrs[7] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert lrs[10] == pytest.approx(0.01) and lrs[11] == pytest.approx(0.01)
    restored = WarmupCosineLR(0.1, total_steps=10, warmup_steps=4, min_lr_ratio=0.1)
    restored.set_state_dict(json.loads(json.dumps(WarmupCosineLR(0.1, 10, 4, min_lr_ratio=0.1).state_dict())))
    assert restored() == pytest.approx(0.025)


def test_adamw_skips_decay_on_1d_params_and_unknown_keys_fail():
    model = _mlp()
    opt, _ = build_optimizer({"name": "adamw", "weight_decay": 0.5}, model, total_steps=5)
    bias, weight = model[0].bias.name, model[0].weight.name
    assert opt._apply_decay_param_fun(weight) and not opt._apply_decay_param_fun(bias)
    with pytest.raises(ValueError, match="unknown"):
        OptimConfig.from_mapping({"nmae": "adamw"})
    for p in model.parameters():
        p.stop_gradient = True
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer({}, model, total_steps=5)


def test_sizes_recorded_intact_order_and_damage_listed(tmp_path):
    from training.trainer.checkpoint import damaged_checkpoints, intact_checkpoints

    model = _mlp()
    opt, _ = build_optimizer({}, model, total_steps=10)
    root = tmp_path / "checkpoints"
    _save(root, model, opt, step=2, name="best")
    _save(root, model, opt, step=3)
    state = json.loads((root / "latest" / "state.json").read_text())
    assert state["files"] == {f: (root / "latest" / f).stat().st_size
                              for f in ("model.pdparams", "optimizer.pdopt", "trainer.pkl")}
    assert [p.name for p in intact_checkpoints(tmp_path)] == ["latest", "best"]
    assert damaged_checkpoints(tmp_path) == []
    target = (root / "latest").resolve()
    (target / "state.json").unlink()
    assert [p.name for p in intact_checkpoints(tmp_path)] == ["best"]
    assert damaged_checkpoints(tmp_path) == [f"{target}: state.json is missing"]
    _save(root, model, opt, step=4)  # a new latest: the damaged directory is not cleaned up
    assert target.is_dir() and [p.name for p in intact_checkpoints(tmp_path)] == ["latest", "best"]

"""Data-parallel training on CPU through `python -m paddle.distributed.launch` (gloo backend), 2 processes.

The same tiny training script runs (a) under the launcher with 2 ranks of batch 4 and (b) as one plain
process with batch 8. Checked: parameters bitwise identical across ranks, equal to the single process within
float tolerance, eval state summed over ranks, only rank 0 writes checkpoints and tracks. About 15 s here
(two Paddle start-ups), so it runs in the default suite."""
from __future__ import annotations

import training  # noqa: F401  -- start-up fix before paddle

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from training.trainer import distributed as dist_utils
from datasets.loaders import SeededBatchSampler

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import training  # start-up fix first
    import json, sys
    from pathlib import Path
    import numpy as np
    import paddle
    from paddle.io import DataLoader, TensorDataset
    from datasets.loaders import SeededBatchSampler
    from training.trainer import Trainer, init_distributed, seed_everything
    from training.trainer import distributed as D
    from training.tracking import MlflowTracker

    out, batch, uri = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    init_distributed()
    seed_everything(7)
    model = paddle.nn.Sequential(paddle.nn.Linear(6, 16), paddle.nn.Tanh(), paddle.nn.Linear(16, 1))
    rs = np.random.RandomState(0)
    X = rs.randn(64, 6).astype("float32"); Y = (X.sum(1, keepdims=True) > 0).astype("float32")
    ds = TensorDataset([paddle.to_tensor(X), paddle.to_tensor(Y)])
    loader = DataLoader(ds, batch_sampler=SeededBatchSampler(len(ds), batch, shuffle=True, seed=7))

    class Counts:
        def __init__(self, model):
            idx = np.arange(64)[D.rank()::D.world_size()]   # each rank evaluates its own shard
            pred = model(paddle.to_tensor(X[idx])).numpy() > 0.5
            self.c = np.array([float((pred == (Y[idx] > 0.5)).sum()), float(len(idx))])
        def state(self):
            return {"c": self.c}
        def compute(self, state):
            return {"acc": state["c"][0] / state["c"][1], "n": state["c"][1]}

    loss_fn = lambda o, b: {"loss": paddle.nn.functional.mse_loss(o, b[1])}
    trainer = Trainer(model, loss_fn, loader,
                      {"max_steps": 20, "eval_every": 10, "save_every": 5, "progress_bar": False, "summary": False},
                      {"name": "adamw", "lr": 0.05, "warmup_steps": 2}, out / "run",
                      MlflowTracker("ocr-dist", tracking_uri=uri), eval_fn=Counts, main_metric="acc")
    summary = trainer.fit()
    np.savez(out / f"params_rank{D.rank()}.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    (out / f"summary_rank{D.rank()}.json").write_text(json.dumps(summary))
    """
)


def _run(cmd: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    for key in [k for k in env if k.startswith("PADDLE_")]:
        env.pop(key)
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)


def test_sampler_shards_cover_the_single_process_batches():
    data = list(range(21))
    single = list(SeededBatchSampler(len(data), 6, shuffle=True, seed=3, num_replicas=1, rank=0))
    ranks = [list(SeededBatchSampler(len(data), 3, shuffle=True, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    for i, batch in enumerate(single[:3]):
        assert sorted(ranks[0][i] + ranks[1][i]) == sorted(batch)
    sampler = SeededBatchSampler(len(data), 4, shuffle=True, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2)
    sampler.skip(2)
    assert list(sampler) == full[2:]
    sampler.set_epoch(2)  # a new epoch starts from its first batch again
    assert list(sampler) == full
    sampler.set_epoch(3)
    assert list(sampler) != full
    assert not dist_utils.is_distributed() and dist_utils.world_size() == 1 and dist_utils.is_rank0()
    np.testing.assert_array_equal(dist_utils.all_reduce_sum(np.array([1.5, 2.0])), [1.5, 2.0])


# slow (≈ 45 s: three training processes); the sharding and the launcher entry points stay in the default suite
@pytest.mark.slow
def test_data_parallel_two_cpu_processes_match_one_process(tmp_path):
    script = tmp_path / "dp_train.py"
    script.write_text(SCRIPT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "dp").mkdir()
    (tmp_path / "single").mkdir()
    t0 = time.perf_counter()
    dp = _run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
               str(tmp_path / "log"), str(script), str(tmp_path / "dp"), "4", uri], tmp_path)
    dp_seconds = time.perf_counter() - t0
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted((tmp_path / "log").glob("*")) if p.is_file())
    assert dp.returncode == 0, dp.stderr[-3000:] + logs
    single = _run([sys.executable, str(script), str(tmp_path / "single"), "8", uri], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]

    r0, r1 = (np.load(tmp_path / "dp" / f"params_rank{r}.npz") for r in (0, 1))
    one = np.load(tmp_path / "single" / "params_rank0.npz")
    for key in r0.files:
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=f"ranks differ: {key}")
        np.testing.assert_allclose(r0[key], one[key], atol=1e-5, rtol=0, err_msg=f"DP vs single: {key}")
    max_diff = max(float(np.abs(r0[k] - one[k]).max()) for k in r0.files)

    s0, s1 = (json.loads((tmp_path / "dp" / f"summary_rank{r}.json").read_text()) for r in (0, 1))
    assert s0["world_size"] == 2 and s0["steps"] == 20 and s0["samples"] == 20 * 8
    assert s0["final_metrics"]["n"] == 64.0  # eval state summed over the two shards
    assert s0["final_metrics"] == s1["final_metrics"] and s0["best_metric"] == s1["best_metric"]
    assert s1["tracking_run_id"] is None and s0["tracking_run_id"]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("ocr-dist").experiment_id])
    assert len(runs) == 2  # one for the DP run (rank 0 only) and one for the single-process run
    ckpts = sorted(p.name.split("-")[0] for p in (tmp_path / "dp" / "run" / "checkpoints").iterdir())
    assert ckpts == ["best", "best", "latest", "latest"]
    print(f"2-process DP run incl. launcher start-up: {dp_seconds:.1f} s; max |DP - single| = {max_diff:.2e}")


def test_entry_points_run_as_files_for_the_launcher(tmp_path):
    """``paddle.distributed.launch`` runs a ``.py`` path, not ``-m module``: ``training/det.py`` and
    ``training/rec.py`` must work as files (the project root on sys.path, ``training/`` not shadowing)."""
    for task in ("det", "rec"):
        done = subprocess.run([sys.executable, str(ROOT / "training" / f"{task}.py"), "+experiment=smoke", "--cfg", "job"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"task: {task}" in done.stdout

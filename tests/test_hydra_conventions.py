"""Hydra and MLflow the way their users know them (issue 15) and config values refused in one line (issue 14.7).

Every test drives the documented commands as subprocesses from a scratch working directory, so runs, sweeps
and ``mlflow.db`` land there and not in the checkout."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from training.cli import CONF_DIR
from training.config_schema import validate

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Synthetic data rendered once for the module's runs."""
    return tmp_path_factory.mktemp("cache")


def _run(args: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def _train(task: str, *overrides: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", f"training.{task}", *overrides], cwd, timeout)


def _tiny(cache: Path, tmp: Path) -> list[str]:
    return ["+experiment=smoke", f"paths.cache={cache}", f"tracking.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
            "data.train.num=4", "data.eval.num=2", "trainer.progress_bar=false"]


# --- 14.7: bad values are one line naming the key, before anything loads ------------------------------------
@pytest.mark.parametrize("override, key", [
    ("trainer.max_steps=abc", "trainer.max_steps"),
    ("trainer.max_steps=-5", "trainer.max_steps"),
    ("optim.lr=abc", "optim.lr"),
    ("optim.lr=0", "optim.lr"),
    ("data.batch_size=abc", "data.batch_size"),
    ("postprocess.box_thresh=1.5", "postprocess.box_thresh"),
    ("+trainer.max_step=3", "trainer.max_step"),      # a typo that would do nothing
    ("+foo=1", "foo"),
    ("+model.pretrianed=null", "model.pretrianed"),   # silently did nothing before
    ("+data.batchsize=4", "data.batchsize"),
])
def test_bad_config_value_is_one_line_before_anything_loads(tmp_path, override, key):
    proc = _train("det", override, cwd=tmp_path, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) <= 2 and key in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists()  # refused before Hydra made a run dir, let alone loaded a model


def test_typo_gets_a_suggestion_and_negative_steps_no_checkpoint(tmp_path):
    proc = _train("rec", "+trainer.max_step=3", cwd=tmp_path, timeout=120)
    assert "did you mean trainer.max_steps" in proc.stderr
    proc = _train("rec", "trainer.max_steps=-5", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "must be an integer >= 1" in proc.stderr
    assert not list(tmp_path.rglob("checkpoints"))


@pytest.mark.parametrize("overrides, message", [
    (("quant=ptq_int8", "quant.calib_batches=0"), "quant.calib_batches=0: must be an integer >= 1"),
    (("quant=qat_int8", "quant.compact=maybe"), "quant.compact='maybe': must be true or false"),
    (("quant=qat_int8", "quant.fold_affine_padded=2"), "quant.fold_affine_padded=2: must be true or false"),
])
def test_quant_keys_are_typed_before_anything_loads(tmp_path, overrides, message):
    proc = _train("det", *overrides, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"config error: {message}"], proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("task, overrides, message", [
    ("det", ("quant=ptq_int8", "quant.fold_affine_padded=true"), "with quant.method=ptq"),
    ("rec", ("quant=qat_int8", "quant.fold_affine_padded=true"), "is for det"),
])
def test_padded_affine_fold_is_refused_where_nothing_can_absorb_it(tmp_path, task, overrides, message):
    """The approximate fold needs QAT on a detector (measured); PTQ or a recogniser gets one line and exit 2
    before any weights load."""
    proc = _train(task, *overrides, "model.pretrained=ppocrv4_mobile", cwd=tmp_path, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and message in lines[-1] and "Traceback" not in proc.stderr, proc.stderr
    assert not [p for p in tmp_path.rglob("checkpoints/*")]  # nothing trained, nothing saved


def test_every_value_of_a_sweep_is_checked_before_the_first_job(tmp_path):
    proc = _train("det", "-m", "optim.lr=1e-4,-1", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["config error: optim.lr=-1: must be a number > 0"]
    assert not (tmp_path / "runs").exists()


def test_conflicting_hydra_modes_are_one_line(tmp_path):
    proc = _train("det", "-m", "--cfg", "job", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_schema_accepts_every_shipped_config():
    """The schema must not refuse what we ship: root configs with each experiment and hparams_search preset."""
    cases = [("det", []), ("rec", [])]
    cases += [(task, [f"+experiment={p.stem}"]) for task in ("det", "rec") for p in (CONF_DIR / "experiment").glob("*.yaml")]
    cases += [("det", ["hparams_search=det_optuna"]), ("rec", ["hparams_search=rec_optuna"])]
    for group in ("optim", "trainer", "tracking", "quant", "data", "aug"):  # every option of every group
        cases += [(task, [f"{group}={p.stem}"]) for task in ("det", "rec") for p in (CONF_DIR / group).glob("*.yaml")]
    cases += [(task, [f"model={task}/{p.stem}"]) for task in ("det", "rec") for p in (CONF_DIR / "model" / task).glob("*.yaml")]
    for name, overrides in cases:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=name, overrides=overrides)
        assert validate(cfg) is None, (name, overrides, validate(cfg))


def test_hparams_search_drives_optuna_over_lr_and_db_thresholds():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="det", overrides=["hparams_search=det_optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert "optuna" in sweeper._target_.lower() and sweeper.direction == "maximize"
    assert {"optim.lr", "postprocess.thresh", "postprocess.box_thresh"} <= set(sweeper.params)
    assert cfg.hydra.callbacks.mlflow_sweep._target_ == "training.hydra_callbacks.MlflowSweepCallback"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):  # SLURM through submitit
        cfg = compose(config_name="rec", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.partition == "gpu"


# --- Hydra: completion, multirun with nested MLflow runs -------------------------------------------------------
def test_shell_completion_installs_and_completes(tmp_path):
    proc = _train("det", "-sc", "install=bash", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and "hydra_bash_completion" in proc.stdout, proc.stderr
    # the command form completes keys in a real bash (Hydra's script knows `python FILE.py` and commands)
    if shutil.which("bash") and (BIN / "ocr-det").exists():
        script = ('eval "$(ocr-det -sc install=bash)"; COMP_LINE="ocr-det optim.l"; COMP_POINT=15; '
                  'COMP_WORDS=(ocr-det optim.l); COMP_CWORD=1; hydra_bash_completion; echo "${COMPREPLY[@]}"')
        done = _run(["bash", "-c", script], tmp_path, 120, PATH=f"{BIN}:{os.environ['PATH']}")
        assert "optim.lr=" in done.stdout.split(), done.stdout + done.stderr


def _sweep_runs(db: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return client, parents[0], children


def test_two_job_multirun_nests_two_runs_under_one_parent(tmp_path, cache):
    """`-m optim.lr=a,b` through the joblib launcher: two run dirs, two MLflow runs with distinct names nested
    under one parent that records the best job; stdout holds only the jobs' JSON lines."""
    sweep = tmp_path / "sweep"
    proc = _train("rec", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
                  *_tiny(cache, tmp_path), "trainer.max_steps=1", "model.pretrained=null", "optim.lr=1e-4,3e-4",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.strip().splitlines()]  # every stdout line is a result
    assert len(results) == 2 and {Path(r["run_dir"]).name for r in results} == {"0", "1"}
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "best").exists() and (sweep / job / "sweep_result.json").is_file()
    client, parent, children = _sweep_runs(tmp_path / "mlflow.db", "ocr-rec")
    assert len(children) == 2
    assert len({c.info.run_name for c in children} | {parent.info.run_name}) == 3
    assert {c.data.params["optim.lr"] for c in children} == {"0.0001", "0.0003"}
    assert all(c.info.run_name.startswith("rec-") for c in children)
    tags = parent.data.tags
    assert tags["sweep.num_jobs"] == "2" and tags["sweep.best_run_id"] in {c.info.run_id for c in children}
    assert "best_acc" in parent.data.metrics and parent.info.status == "FINISHED"
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["best"]["run_id"] == tags["sweep.best_run_id"]
    # rec runs have a picture of the worst-read lines (an untrained head reads every line wrong)
    assert "eval_images/worst_lines.png" in {a.path for a in client.list_artifacts(children[0].info.run_id, "eval_images")}


def test_mode_eval_stdout_is_one_json_line(tmp_path, cache):
    proc = _train("det", *_tiny(cache, tmp_path), "mode=eval", "eval_resize.limit_side_len=320",
                  "data.eval.image_size=[320,240]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # no ppocr warning, no Hydra log line before the JSON
    assert 0.0 <= json.loads(lines[0])["hmean"] <= 1.0
    assert "UserWarning" not in proc.stderr


@pytest.mark.slow
def test_optuna_search_returns_the_metric_and_records_the_best_trial(tmp_path, cache):
    """A 3-trial Optuna search over the DB thresholds on pretrained weights (mode=eval keeps it short): the
    sweeper receives each run's hmean and writes its best; the MLflow parent records the same best."""
    sweep = tmp_path / "sweep"
    proc = _train("det", "hparams_search=det_optuna", "hydra.sweeper.n_trials=3",
                  f"hydra.sweep.dir={sweep}", *_tiny(cache, tmp_path), "mode=eval", "eval_resize.limit_side_len=320",
                  "data.eval.image_size=[320,240]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import yaml

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["num_jobs"] == 3 and best["best_value"] == pytest.approx(summary["best"]["objective"])


def test_a_failed_job_closes_the_sweep_parent_as_failed(tmp_path, cache):
    """A job that stops the sweep must not leave its MLflow parent RUNNING forever."""
    proc = _train("rec", "-m", *_tiny(cache, tmp_path), "mode=eval", "model.pretrained=/nonexistent/x.pdparams,null",
                  cwd=tmp_path)
    assert proc.returncode == 2 and "model.pretrained" in proc.stderr.strip().splitlines()[-1]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = client.search_runs([client.get_experiment_by_name("ocr-rec").experiment_id])
    assert parent.info.status == "FAILED" and parent.data.tags["sweep.aborted"] == "true"

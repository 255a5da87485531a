"""The registry against real tracking stores: a temporary SQLite file and a real ``mlflow server`` over HTTP.

The full cycle uses real inference directories (the pretrained PP-OCRv4 det, and a "v2" of it whose DB
post-process is stricter, so it genuinely scores worse) evaluated through ``export.evaluate`` on synthetic
labelled images. Train → export are not part of this cycle yet (see the module's TODO at the bottom).
"""
from __future__ import annotations

import base64
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import pytest

import registry  # noqa: F401  -- start-up fix before paddle
from registry.__main__ import main as cli
from registry.audit import AuditLog
from registry.client import RegistryClient
from registry.config import LockConfig, RegistryConfig
from registry.lineage import VersionInfo
from registry.lock import PromotionLock, lock_name
from registry.promote import PromotionRefused, promote, rollback
from mlflow_helpers import MLFLOW, free_port, stop, wait_http
from mlflow_helpers import mlflow_server as start_mlflow_server

PROJECT = Path(__file__).resolve().parents[1]
PY = sys.executable


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 with a temporary SQLite backend and artifact root."""
    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture(scope="module")
def sqlite_root(tmp_path_factory):
    """One SQLite store per module (creating its tables costs ~1.5 s); tests use their own model names."""
    return tmp_path_factory.mktemp("mlflow-sqlite")


@pytest.fixture(scope="module")
def quick_latency_config(tmp_path_factory) -> Path:
    """The shipped registry yaml with 3 side-by-side latency rounds instead of 9: the gates and the audit are
    what the cycle tests; more rounds only make the median steadier (and cost ~25 s per cycle)."""
    import yaml

    from registry.config import default_config_path

    data = yaml.safe_load(default_config_path().read_text(encoding="utf-8"))
    data["gates"]["latency_rounds"] = 3
    path = tmp_path_factory.mktemp("registry-config") / "registry.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "server"])
def store(request, sqlite_root, monkeypatch):
    """Tracking URI of a store; the process-wide MLflow URI and ``$MLFLOW_TRACKING_URI`` point at it."""
    import mlflow

    if request.param == "sqlite":
        uri = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("mlflow_server")
    monkeypatch.chdir(sqlite_root)  # SQLite's default artifact root is ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("OCR_REGISTRY_USER", "pytest")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _unique(name: str) -> str:
    """The server is shared by a module; every test uses its own model name."""
    return f"{name}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory):
    from datasets.synth import generate_det_dataset

    out = generate_det_dataset(tmp_path_factory.mktemp("eval") / "det", 4, "icdar2015", "mixed", seed=0,
                               image_size=(480, 360), kind="invoice")
    return f"icdar2015:{out}"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """v1: the pretrained PP-OCRv4 det. v2: the same weights with a stricter DB post-process (worse recall)."""
    from export.inference_yml import write_inference_yml
    from export.pretrained import pretrained_model_dir

    root = tmp_path_factory.mktemp("models")
    v1 = shutil.copytree(pretrained_model_dir("det"), root / "det_v1")
    v2 = shutil.copytree(pretrained_model_dir("det"), root / "det_v2")
    write_inference_yml(v2, "det", post_params={"thresh": 0.6, "box_thresh": 0.85})
    return Path(v1), Path(v2)


def _fake_training_run(uri: str, train_digest: str) -> str:
    """A training run tagged the way the training runner tags one (:func:`training.lineage.data_tags`)."""
    from training.lineage import data_tags
    from training.tracking import MlflowTracker

    tracker = MlflowTracker("ocr-det", tracking_uri=uri)
    run_id = tracker.start(run_name="tiny-train")
    tracker.set_tags({"charset.sha256": "will-be-overridden-by-the-bundled-rec",
                      **data_tags(train_digest=train_digest, train_size=12)})
    tracker.log_dataset_input("train", digest=train_digest, num=12, source="synthetic:seed=0", context="training")
    tracker.end()
    assert run_id, "training tracker failed to start"
    return run_id


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------- the cycle
# The SQLite cycle is `slow` (≈ 90 s): the server cycle runs the same steps over HTTP (against SQLite behind
# the server), and the lifecycle test and the tests below use SQLite stores.
@pytest.mark.parametrize("store", [pytest.param("sqlite", marks=pytest.mark.slow), "server"], indirect=True)
def test_full_cycle(store, tmp_path, capsys, eval_set, model_dirs, page_image, quick_latency_config):
    """register v1 → promote → register v2 (worse) → refusal (exit 2, one line) → forced promotion →
    rollback → rollback refused → history shows all; the champion serves through pyfunc; v2 as a canary
    challenger gets its share of requests and graduates."""
    import mlflow

    from registry.register import register_model

    name = _unique("ocr-det")

    def run_cli(*argv: str) -> tuple[int, str, str]:
        return _cli(capsys, "--config", str(quick_latency_config), *argv)

    v1_dir, v2_dir = model_dirs
    run_id = _fake_training_run(store, train_digest="train-digest-123")

    code, out, err = run_cli("register", "det", "--model-dir", str(v1_dir), "--name", name,
                             "--eval-data", eval_set, "--run-id", run_id)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["version"] == "1"
    client = RegistryClient(store)
    v1 = VersionInfo.from_model_version(client.version(name, 1))
    assert v1.task == "det" and v1.metric("hmean") > 0.9 and v1.latency_ms > 0
    assert v1.tags["data.train.digest"] == "train-digest-123" and v1.tags["data.train.size"] == "12"
    assert v1.eval_digest and v1.tags["data.eval.size"] == "4" and v1.tags["source_run_id"] == run_id
    assert v1.postprocess["box_thresh"] == 0.6 and v1.quantized is False
    assert v1.charset_sha256 and v1.tags["rec_bundle"].startswith("pretrained") and v1.libraries["paddlepaddle"]
    assert v1.run_id == run_id  # the version links to the training run in the UI

    assert run_cli("promote", name, "1")[0] == 0
    assert client.aliases(name) == {"champion": "1"}

    result = register_model("det", v2_dir, name=name, eval_data=eval_set, client=client)
    assert result.version == "2"
    v2 = VersionInfo.from_model_version(client.version(name, 2))
    assert v2.metric("hmean") < v1.metric("hmean") - 0.005 and v2.eval_digest == v1.eval_digest
    assert v2.postprocess["box_thresh"] == 0.85

    # refusal, through the real command line: exit 2, one line naming the gate and the numbers
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run([PY, "-m", "registry", "--config", str(quick_latency_config), "promote", name, "2"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "gate main_metric failed: hmean" in lines[0] and f"{v2.metric('hmean'):.4f}" in lines[0]
    assert f"{v1.metric('hmean'):.4f}" in lines[0]
    assert client.aliases(name) == {"champion": "1"}

    code, _, err = run_cli("promote", name, "2", "--force")
    assert code == 1 and "--reason" in err  # force without a reason is an error, not a promotion
    code, out, _ = run_cli("promote", name, "2", "--force", "--reason", "hotfix for receipts")
    assert code == 0 and "FORCED" in out
    assert client.aliases(name) == {"champion": "2", "previous-champion": "1"}

    code, out, _ = run_cli("compare", name, "1", "2")
    assert code == 0 and "metric hmean" in out and "postprocess box_thresh" in out and "latency_ms" in out

    assert run_cli("rollback", name)[0] == 0
    assert client.aliases(name) == {"champion": "1"}
    code, _, err = run_cli("rollback", name)
    assert code == 2 and "no previous champion" in err and len(err.strip().splitlines()) == 1

    code, out, _ = run_cli("history", name, "--json")
    events = [json.loads(line) for line in out.strip().splitlines()]
    assert [(e["action"], e["outcome"], e["from_version"], e["to_version"]) for e in events] == [
        ("promote", "done", None, "1"),
        ("promote", "refused", "1", "2"),
        ("promote", "done", "1", "2"),
        ("rollback", "done", "2", "1"),
        ("rollback", "refused", "1", None),
    ]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[2]["forced"] and events[2]["reason"] == "hotfix for receipts"
    assert not events[1]["gates"]["passed"] and all(e["who"].startswith("pytest@") for e in events)
    code, out, _ = run_cli("history", name)
    assert code == 0 and "hotfix for receipts" in out
    assert run_cli("show", name)[0] == 0 and run_cli("show", name, "@champion")[0] == 0
    code, out, _ = run_cli("list")
    assert code == 0 and name in out

    # the champion, loaded by alias, reads a rendered page (Noto Sans CJK, face 2)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    image, _ = page_image(["增值税发票", "合计 88.00"], size=(480, 220))
    ok, buf = cv2.imencode(".png", image)
    answers = model.predict({"image": [base64.b64encode(buf.tobytes()).decode()]})
    assert len(answers) == 1 and answers[0]["model"]["version"] == "1"
    assert answers[0]["model"]["aliases"] == ["champion"]
    texts = [r["text"] for r in answers[0]["results"]]
    assert "增值税发票" in texts and any("88.00" in t for t in texts), texts

    # canary: v2 as challenger (only the charset gate blocks a canary), half the traffic routed to it
    from registry.canary import summarize

    assert run_cli("promote", name, "2", "--as", "challenger")[0] == 0
    assert client.aliases(name) == {"champion": "1", "challenger": "2"}
    log = tmp_path / "canary.jsonl"
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion", model_config={
        "canary_fraction": 0.5, "canary_seed": 3, "canary_log": str(log)})
    request = {"image": [base64.b64encode(buf.tobytes()).decode()]}
    assert model.predict(request, params={"route": "challenger"})[0]["model"]["version"] == "2"
    assert model.predict(request, params={"route": "primary"})[0]["model"]["version"] == "1"
    versions = [model.predict(request)[0]["model"]["version"] for _ in range(6)]
    assert set(versions) == {"1", "2"}, versions  # seeded draw: both answer
    summary = summarize(log)
    assert summary["1"]["requests"] + summary["2"]["requests"] == 8 and summary["2"]["routes"] == ["challenger"]
    code, out, _ = run_cli("compare", name, "@champion", "@challenger", "--canary-log", str(log))
    assert code == 0 and "canary requests" in out
    # the canary graduates: its alias goes, the old champion stays reachable
    assert run_cli("promote", name, "2", "--force", "--reason", "canary looked fine")[0] == 0
    assert client.aliases(name) == {"champion": "2", "previous-champion": "1"}
    assert len(AuditLog(client, name).events()) == 7


def test_rec_version_reads_line_images(sqlite_root, monkeypatch, eval_set, line_image):
    """An ocr-rec version: metrics of record through export.evaluate (line crops of the det-format eval set),
    charset hash from the directory, pyfunc answers text per line image."""
    import mlflow

    from export.pretrained import pretrained_model_dir
    from registry.register import register_model

    uri = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    monkeypatch.chdir(sqlite_root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        client = RegistryClient(uri)
        name = _unique("ocr-rec")
        result = register_model("rec", pretrained_model_dir("rec"), name=name, eval_data=eval_set, client=client)
        info = VersionInfo.from_model_version(client.version(name, result.version))
        assert info.task == "rec" and 0.0 <= info.metric("acc") <= 1.0 and info.latency_ms > 0
        from datasets.charset import Charset

        assert info.charset_sha256 == Charset.default().sha256 and "rec_bundle" not in info.tags
        assert info.tags["data.eval.size"] == "24"  # 4 images × 6 lines
        model = mlflow.pyfunc.load_model(result.model_uri)
        crops = [line_image(t) for t in ("发票代码 12345", "Total 88.00")]
        request = [base64.b64encode(cv2.imencode(".png", c)[1].tobytes()).decode() for c in crops]
        answers = model.predict({"image": request})
        assert [a["text"] for a in answers] == ["发票代码12345", "Total88.00"] or \
            [a["text"].replace(" ", "") for a in answers] == ["发票代码12345", "Total88.00"], answers
        assert all(a["model"]["name"] == name and a["model"]["version"] == result.version for a in answers)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def test_int8_child_links_to_its_fp32_parent(sqlite_root, monkeypatch, model_dirs, tmp_path):
    """An INT8 export (inference.yml ``quantization.precision: int8`` naming the FP32 parent's run, as QAT export
    writes it) registers as quantized=yes with fp32_parent_version found through the parent's run."""
    from export.inference_yml import write_inference_yml
    from registry.register import register_model

    uri = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    monkeypatch.chdir(sqlite_root)
    client = RegistryClient(uri)
    name = _unique("ocr-det-int8")
    parent_run = _fake_training_run(uri, train_digest="fp32-train")
    qat_run = _fake_training_run(uri, train_digest="qat-train")
    metrics = {"hmean": 0.9, "latency_ms": 100.0, "data_digest": "d"}
    fp32 = register_model("det", model_dirs[0], name=name, metrics=metrics, source_run_id=parent_run, client=client)
    int8_dir = shutil.copytree(model_dirs[0], tmp_path / "det_int8")
    write_inference_yml(int8_dir, "det", extra={
        "quantization": {"precision": "int8", "runtime": "onednn_int8", "parent": {"run_id": parent_run}},
        "provenance": {"source": "qat_checkpoint", "tracking_run_id": qat_run}})
    child = register_model("det", int8_dir, name=name, metrics={**metrics, "latency_ms": 70.0}, client=client)
    tags = client.version(name, child.version).tags
    assert tags["quantized"] == "yes" and tags["fp32_parent_version"] == fp32.version
    assert tags["source_run_id"] == qat_run and tags["data.train.digest"] == "qat-train"
    assert client.version(name, fp32.version).tags["quantized"] == "no"


def test_version_description_is_readable_in_the_ui(sqlite_root, monkeypatch, model_dirs, tmp_path):
    """The description (Markdown in `mlflow ui`) says what a version is: family and precision, data, metric of
    record vs the champion at registration, the FP32 parent as a UI link, and the promotion history."""
    from export.inference_yml import write_inference_yml
    from registry.register import register_model

    uri = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    monkeypatch.chdir(sqlite_root)
    monkeypatch.setenv("OCR_REGISTRY_USER", "pytest")
    client = RegistryClient(uri)
    name = _unique("ocr-det-desc")
    run = _fake_training_run(uri, train_digest="fp32-train")
    fp32_dir = shutil.copytree(model_dirs[0], tmp_path / "det_fp32")
    write_inference_yml(fp32_dir, "det", model_name="PP-OCRv4_mobile_det")
    metrics = {"hmean": 0.9, "precision": 0.92, "recall": 0.88, "latency_ms": 100.0, "data_digest": "evaldigest01"}
    fp32 = register_model("det", fp32_dir, name=name, metrics=metrics, source_run_id=run, rec_dir="none",
                          client=client)
    text = client.version(name, fp32.version).description
    assert text.startswith(f"**{name}: FP32 PP-OCRv4_mobile_det**, text detector (DB); serves boxes only")
    assert "hmean **0.9000** (precision 0.9200, recall 0.8800)" in text and "no champion yet" in text
    assert "#/experiments/" in text and f"/runs/{run})" in text and "fp32-train" in text
    promote(client, name, fp32.version)

    int8_dir = shutil.copytree(fp32_dir, tmp_path / "det_int8")
    write_inference_yml(int8_dir, "det", model_name="PP-OCRv4_mobile_det", extra={"quantization": {
        "precision": "int8", "parent": {"run_id": run, "registry_name": name, "registry_version": fp32.version}}})
    child = register_model("det", int8_dir, name=name, metrics={**metrics, "hmean": 0.87, "latency_ms": 70.0},
                           rec_dir="none", client=client)
    text = client.version(name, child.version).description
    assert text.startswith(f"**{name}: INT8 (QAT, oneDNN) PP-OCRv4_mobile_det**")
    assert f"| FP32 parent | [{name} v{fp32.version}](#/models/{name}/versions/{fp32.version}) |" in text
    assert f"[{name} v{fp32.version}](#/models/{name}/versions/{fp32.version}): hmean 0.9000 (-0.0300), same eval data" in text

    with pytest.raises(PromotionRefused):
        promote(client, name, child.version)
    promote(client, name, child.version, force=True, reason="INT8 is fast enough")
    rollback(client, name, reason="accuracy complaints")
    child_text = client.version(name, child.version).description
    history = child_text.split("#### History", 1)[1]
    entries = [line.split(" — ", 1)[1] for line in history.strip().splitlines()]
    assert entries[0].startswith("registered (by pytest@")
    assert entries[1].startswith("promotion to **champion** refused: gate main_metric failed")
    assert entries[2].startswith(f"promoted to **champion** (was v{fp32.version}) FORCED")
    assert entries[3].startswith(f"rolled back: **champion** returned to v{fp32.version}") and len(entries) == 4
    assert "reason: INT8 is fast enough" in history and "reason: accuracy complaints" in history
    parent_history = client.version(name, fp32.version).description.split("#### History", 1)[1]
    assert f"replaced as **champion** by v{child.version}" in parent_history
    assert f"**champion** again: rollback from v{child.version}" in parent_history


def test_failed_registration_leaves_nothing_behind(store, model_dirs, tmp_path):
    from mlflow import MlflowClient

    from registry.register import register_model

    name = _unique("ocr-det-fail")
    model_dir = shutil.copytree(model_dirs[0], tmp_path / name)  # its run is named register-<dir>
    client = RegistryClient(store)
    with pytest.raises(RuntimeError, match="injected failure"):
        register_model("det", model_dir, name=name, metrics={"hmean": 0.9, "latency_ms": 1.0},
                       client=client, _fail_after_create=True)
    assert client.versions(name) == []
    raw = MlflowClient(store)
    exp = raw.get_experiment_by_name("ocr-det")
    runs = raw.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = 'register-{name}'",
                           run_view_type=3)  # ALL: the run exists only as deleted
    assert runs and all(r.info.lifecycle_stage == "deleted" for r in runs)
    alive = [m for m in raw.search_logged_models([exp.experiment_id]) if m.tags.get("registry.model") == name]
    assert alive == []


# ---------------------------------------------------------------------------------------------- races
def _fake_versions(client: RegistryClient, name: str, n: int, **overrides: str) -> list[str]:
    """Cheap versions (tags only, one shared logged model) for alias tests."""
    exp = client.get_experiment_by_name("ocr-det")
    exp_id = exp.experiment_id if exp else client.create_experiment("ocr-det")
    logged = client.create_logged_model(exp_id, name="fake")
    client.ensure_registered_model(name)
    tags = {"task": "det", "metric.hmean": "0.9", "metric.latency_ms": "100", "data.eval.digest": "d1",
            "charset.sha256": "c1", **overrides}
    return [str(client.create_model_version(name, f"models:/{logged.model_id}", tags=tags,
                                            model_id=logged.model_id).version) for _ in range(n)]


def _check_consistent(client: RegistryClient, name: str, attempted: list[str]) -> None:
    """One champion; every attempt in the audit; the done events form one unbroken from → to chain."""
    events = AuditLog(client, name).events()
    assert sorted(e.to_version for e in events) == sorted(attempted)
    done = [e for e in events if e.outcome == "done"]
    assert [e.from_version for e in done] == [None] + [e.to_version for e in done[:-1]]
    aliases = client.aliases(name)
    assert aliases["champion"] == done[-1].to_version
    assert aliases.get("previous-champion") == done[-1].from_version
    assert client.registered_model(lock_name(name)) is None  # lock released


def test_concurrent_promotions_threads(store):
    client = RegistryClient(store)
    name = _unique("race-t")
    versions = _fake_versions(client, name, 4)
    barrier = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def go(version: str) -> None:
        barrier.wait()
        try:
            promote(RegistryClient(store), name, version, cfg=RegistryConfig(lock=LockConfig(timeout_s=60)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    _check_consistent(client, name, versions)


def _promote_in_process(uri: str, name: str, version: str, barrier) -> None:
    import registry  # noqa: F401
    from registry.client import RegistryClient as Client
    from registry.promote import promote as do_promote

    client = Client(uri)
    client.registered_model(name)  # store opened before the start signal
    barrier.wait(60)
    do_promote(client, name, version)


def test_concurrent_promotions_processes(sqlite_root, monkeypatch):
    """Separate processes on one SQLite file: the case where the store itself serialises writers."""
    store = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    monkeypatch.chdir(sqlite_root)
    client = RegistryClient(store)
    import mlflow

    mlflow.set_tracking_uri(store)
    name = _unique("race-p")
    try:
        versions = _fake_versions(client, name, 2)  # two processes on two cores: a real overlap
    finally:
        mlflow.set_tracking_uri(None)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(versions))
    procs = [ctx.Process(target=_promote_in_process, args=(store, name, v, barrier)) for v in versions]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    _check_consistent(client, name, versions)


def test_racing_promotion_is_gated_against_the_winner(store):
    """v2 and v3 race; v3 is worse than v2 but fine against v1. Whoever comes second is judged against the
    first's result, so the end state never has a champion that failed its gates against its predecessor."""
    client = RegistryClient(store)
    name = _unique("race-g")
    v1 = _fake_versions(client, name, 1, **{"metric.hmean": "0.80"})[0]
    v2 = _fake_versions(client, name, 1, **{"metric.hmean": "0.90"})[0]
    v3 = _fake_versions(client, name, 1, **{"metric.hmean": "0.85"})[0]
    promote(client, name, v1)
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def go(version: str) -> None:
        barrier.wait()
        try:
            promote(RegistryClient(store), name, version)
            outcomes[version] = "done"
        except PromotionRefused:
            outcomes[version] = "refused"

    threads = [threading.Thread(target=go, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    events = AuditLog(client, name).events()
    assert len(events) == 3
    champion = client.aliases(name)["champion"]
    assert champion == v2  # v3 after v2 is refused; v2 after v3 passes
    assert outcomes[v2] == "done"


def test_rollback_walks_back_through_history(store, capsys):
    client = RegistryClient(store)
    name = _unique("walk")
    v1, v2, v3 = _fake_versions(client, name, 3)
    for v in (v1, v2, v3):
        promote(client, name, v)
    assert client.aliases(name) == {"champion": v3, "previous-champion": v2}
    rollback(client, name)
    assert client.aliases(name) == {"champion": v2, "previous-champion": v1}
    rollback(client, name, reason="still bad")
    assert client.aliases(name) == {"champion": v1}
    with pytest.raises(PromotionRefused, match="no previous champion"):
        rollback(client, name)
    noop = promote(client, name, v1)
    assert noop.outcome == "noop"
    events = AuditLog(client, name).events()
    assert [e.action + ":" + e.outcome for e in events][-3:] == ["rollback:done", "rollback:refused", "promote:noop"]
    assert events[4].reason == "still bad"


def test_audit_log_keeps_every_concurrent_event(store):
    """20 writers at once: no event lost, sequence numbers 1..20 in time order."""
    from registry.audit import AuditEvent

    client = RegistryClient(store)
    name = _unique("audit")
    client.ensure_registered_model(name)
    barrier = threading.Barrier(20)

    def write(i: int) -> None:
        barrier.wait()
        AuditLog(RegistryClient(store), name).record(AuditEvent(action="promote", outcome="refused",
                                                                to_version=str(i), message=f"writer {i}"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    events = AuditLog(client, name).events()
    assert sorted(int(e.to_version) for e in events) == list(range(20))
    assert [e.seq for e in events] == list(range(1, 21))
    assert [e.time_ns for e in events] == sorted(e.time_ns for e in events)


def test_stale_lock_is_broken_and_busy_lock_refuses(store):
    client = RegistryClient(store)
    name = _unique("lock")
    v1, v2 = _fake_versions(client, name, 2)
    # a crashed holder: lock whose lease expired long ago
    client.create_registered_model(lock_name(name), tags={"token": "dead", "who": "ghost", "expires": "1"})
    promote(client, name, v1)
    assert client.aliases(name)["champion"] == v1 and client.registered_model(lock_name(name)) is None

    holder = PromotionLock(client, name, lease_s=300).acquire()
    try:
        cfg = RegistryConfig(lock=LockConfig(timeout_s=0.5))
        with pytest.raises(PromotionRefused, match="held the lock"):
            promote(client, name, v2, cfg=cfg)
    finally:
        holder.release()
    last = AuditLog(client, name).events()[-1]
    assert last.outcome == "refused" and last.to_version == v2 and "held the lock" in last.message
    assert client.aliases(name)["champion"] == v1


def test_challenger_promotion_and_charset_gate(store, capsys):
    client = RegistryClient(store)
    name = _unique("canary")
    v1 = _fake_versions(client, name, 1)[0]
    worse = _fake_versions(client, name, 1, **{"metric.hmean": "0.5"})[0]
    other_charset = _fake_versions(client, name, 1, **{"charset.sha256": "c2"})[0]
    promote(client, name, v1)
    code, out, _ = _cli(capsys, "--tracking-uri", store, "promote", name, worse, "--as", "challenger")
    assert code == 0 and "challenger" in out
    code, _, err = _cli(capsys, "promote", name, other_charset, "--as", "challenger", "--tracking-uri", store)
    assert code == 2 and "charset_compatible" in err
    code, _, err = _cli(capsys, "promote", name, v1, "--as", "challenger", "--tracking-uri", store)
    assert code == 2 and "is the champion" in err
    assert client.aliases(name) == {"champion": v1, "challenger": worse}


def test_rollback_to_the_challenger_clears_the_challenger_alias(store, capsys):
    """One role per version: v1 champion, v2 champion (v1 previous), v1 as challenger, rollback → v1 is the
    champion again and no longer the challenger; the audit says so."""
    client = RegistryClient(store)
    name = _unique("roles")
    v1, v2, v3 = _fake_versions(client, name, 3)
    promote(client, name, v1)
    promote(client, name, v2)
    promote(client, name, v1, target="challenger")
    assert client.aliases(name) == {"champion": v2, "previous-champion": v1, "challenger": v1}
    code, out, _ = _cli(capsys, "--tracking-uri", store, "rollback", name)
    assert code == 0 and "challenger alias removed" in out
    assert client.aliases(name) == {"champion": v1}
    assert "challenger alias removed" in AuditLog(client, name).events()[-1].message
    # a challenger on another version survives a rollback
    promote(client, name, v2)
    promote(client, name, v3, target="challenger")
    rollback(client, name)
    assert client.aliases(name) == {"champion": v1, "challenger": v3}
    for aliases in [client.aliases(name)]:
        assert aliases.get("champion") != aliases.get("challenger")


def test_challenger_audit_records_each_gates_true_result(store, capsys):
    """A challenger with hmean 0.20 vs the champion's 0.98 may skip the metric gate, but the audit and the
    console say the gate failed (not blocking), never "all gates passed"."""
    client = RegistryClient(store)
    name = _unique("canary-audit")
    good = _fake_versions(client, name, 1, **{"metric.hmean": "0.98"})[0]
    bad = _fake_versions(client, name, 1, **{"metric.hmean": "0.20"})[0]
    promote(client, name, good)
    code, out, _ = _cli(capsys, "--tracking-uri", store, "promote", name, bad, "--as", "challenger")
    assert code == 0 and "all gates passed" not in out
    assert "gate main_metric: failed (not blocking): hmean 0.2000 < champion" in out
    event = AuditLog(client, name).events()[-1]
    assert event.outcome == "done" and event.alias == "challenger"
    assert "all gates passed" not in event.message and "not blocking: gate main_metric failed" in event.message
    results = {r["name"]: r for r in event.gates["results"]}
    assert results["main_metric"]["passed"] is False and results["main_metric"]["enforced"] is False
    assert event.gates["all_passed"] is False and event.gates["waived"] == ["main_metric"]
    code, out, _ = _cli(capsys, "--tracking-uri", store, "history", name, "--json")
    assert json.loads(out.strip().splitlines()[-1])["gates"]["all_passed"] is False


def test_byte_identical_copy_of_the_champion_passes_the_latency_gate(sqlite_root, monkeypatch, model_dirs,
                                                                     tmp_path, capsys):
    """The copy's latency tag was recorded under heavy load (+110 %); timed side by side with the champion
    at promotion time it is as fast, so the latency gate passes and prints both measured figures."""
    from registry.register import register_model

    uri = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    monkeypatch.chdir(sqlite_root)
    client = RegistryClient(uri)
    name = _unique("ocr-det-copy")
    copy_dir = shutil.copytree(model_dirs[0], tmp_path / "det_copy")
    base = {"hmean": 0.9, "data_digest": "same-eval"}
    register_model("det", model_dirs[0], name=name, metrics={**base, "latency_ms": 50.0}, rec_dir="none",
                   client=client)
    register_model("det", copy_dir, name=name, metrics={**base, "latency_ms": 105.0}, rec_dir="none",
                   client=client)
    promote(client, name, "1")
    monkeypatch.setenv("OCR_REGISTRY_PROGRESS", "1")  # progress notes are on for terminals, opt-in otherwise
    code, out, err = _cli(capsys, "--tracking-uri", uri, "promote", name, "2")
    assert code == 0, err
    assert "… measuring latency" in err
    line = next(x for x in out.splitlines() if "gate latency:" in x)
    assert "gate latency: passed: latency measured side by side now" in line, out
    assert "recorded at registration: 105.0 vs 50.0 ms" in line
    event = AuditLog(client, name).events()[-1]
    latency = next(r for r in event.gates["results"] if r["name"] == "latency")
    assert latency["passed"] and latency["candidate"] > 0 and latency["champion"] > 0
    assert "paired ratio" in latency["message"]


def test_served_alias_follows_promotion_and_rollback(sqlite_root, monkeypatch, model_dirs, page_image):
    """A model loaded as ``models:/NAME@champion`` re-resolves the alias in its own thread: after promote it
    answers from v2, after rollback from v1, without a reload; requests sent all along never fail, and each
    names the version that answered it. A challenger appearing later is picked up for canary traffic."""
    import mlflow

    from registry.register import register_model

    uri = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    monkeypatch.chdir(sqlite_root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        client = RegistryClient(uri)
        name = _unique("ocr-det-follow")
        metrics = {"hmean": 0.9, "latency_ms": 50.0, "data_digest": "d"}
        for model_dir in model_dirs:
            register_model("det", model_dir, name=name, metrics=metrics, rec_dir="none", client=client)
        promote(client, name, "1")
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion", model_config={
            "alias_refresh_s": 0.3, "canary_fraction": 0.5, "canary_seed": 1})
        inner = model.unwrap_python_model()
        assert inner.follow_alias == "champion" and inner.challenger is None
        image, _ = page_image(["增值税发票", "合计 88.00"], size=(480, 220))
        request = {"image": [base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()]}
        seen: list[str] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                try:
                    answer = model.predict(request, params={"route": "primary"})[0]
                    assert "results" in answer, answer
                    seen.append(answer["model"]["version"])
                except BaseException as exc:  # noqa: BLE001
                    failures.append(exc)

        def wait_for(version: str, timeout: float = 90) -> None:
            deadline = time.monotonic() + timeout
            count = len(seen)
            while time.monotonic() < deadline:
                if len(seen) > count and seen[-1] == version:
                    return
                time.sleep(0.1)
            raise AssertionError(f"still answering from {seen[-1:]} after {timeout}s, expected v{version}")

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            wait_for("1")
            promote(client, name, "2", force=True, reason="test: follow the alias")
            wait_for("2")
            rollback(client, name)
            wait_for("1")
            promote(client, name, "2", target="challenger")  # a canary appears while serving
            deadline = time.monotonic() + 60
            while inner.challenger is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert model.predict(request, params={"route": "challenger"})[0]["model"]["version"] == "2"
        finally:
            stop.set()
            sender.join(60)
        assert not failures, failures[:3]
        assert seen[0] == "1" and "2" in seen and seen[-1] == "1", seen
        assert inner.primary.swaps == 2  # v1 → v2 → v1 (back on the predictors it was loaded with)
        answer = model.predict(request, params={"route": "primary"})[0]
        assert answer["model"]["aliases"] == ["champion"]
        inner.refresher.stop()
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def test_cli_errors_are_one_line(store, capsys, tmp_path):
    code, _, err = _cli(capsys, "show", "no-such-model")
    assert code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, "register", "det", "--model-dir", str(tmp_path / "missing"), "--metrics", "x.json")
    assert code == 1 and "not found" in err
    code, _, err = _cli(capsys, "promote", "no-such-model", "1")
    assert code == 1 and "not found" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------- serving
@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_champion(tmp_path, monkeypatch, model_dirs, page_image):
    from registry.register import register_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    client = RegistryClient(uri)
    register_model("det", model_dirs[0], metrics={"hmean": 0.9, "latency_ms": 50.0, "data_digest": "d"},
                   client=client)
    promote(client, "ocr-det", "1")
    port = free_port()
    log = tmp_path / "serve.log"
    # mlflow starts `uvicorn` by name: the venv's bin must be on PATH, as it is in an activated venv
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,  # earlier tests may leave one set
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([MLFLOW, "models", "serve", "-m", "models:/ocr-det@champion", "--env-manager",
                                 "local", "-h", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=tmp_path, env=env, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, 180, log)
        image, _ = page_image(["增值税发票", "合计 88.00"], size=(480, 220))
        b64 = base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
        body = json.dumps({"dataframe_records": [{"image": b64}, {"image": "garbage"}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            predictions = json.loads(resp.read())["predictions"]
        assert predictions[0]["model"]["version"] == "1"
        assert "增值税发票" in [r["text"] for r in predictions[0]["results"]]
        assert predictions[1]["error"]["code"] == "IMAGE_UNREADABLE"
    finally:
        stop(proc)

# TODO(train→export): when training.det and `python -m export` can produce a tiny checkpoint/export in test
# time, start test_full_cycle from them (train tiny → export → register v1 → train again → register v2).


def test_registry_uri_as_pretrained_and_qat_parent(sqlite_root, monkeypatch, model_dirs, tmp_path):
    """``model.pretrained=models:/NAME/VERSION`` (or ``@ALIAS``) loads the registered weights, and a QAT run
    records the version as its FP32 parent; unknown versions are one clear error."""
    import numpy as np

    from registry.register import register_model
    from training.models import PretrainedError, build_model, load_pretrained
    from training.quant import QuantConfigError, check_parent

    uri = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    monkeypatch.chdir(sqlite_root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("OCR_CACHE_DIR", str(tmp_path / "cache"))
    client = RegistryClient(uri)
    name = _unique("ocr-det-parent")
    run_id = _fake_training_run(uri, train_digest="fp32-train")
    version = register_model("det", model_dirs[0], name=name, metrics={"hmean": 0.9, "latency_ms": 50.0},
                             source_run_id=run_id, client=client).version
    client.call("set_registered_model_alias", name, "champion", version)

    cfg = {"arch": "ppocrv4_mobile_det", "task": "det"}
    reference, from_registry = build_model(cfg), build_model(cfg)
    load_pretrained(reference, "ppocrv4_mobile", cfg)
    report = load_pretrained(from_registry, f"models:/{name}@champion", cfg)
    assert f"version {version}" in report.source and len(report.loaded) == len(reference.state_dict()) - len(report.fresh)
    ref_state = reference.state_dict()
    for key, value in from_registry.state_dict().items():
        if key in report.loaded:
            np.testing.assert_array_equal(value.numpy(), ref_state[key].numpy())

    record = check_parent(f"models:/{name}/{version}", cfg)
    assert record["registry_version"] == str(version) and record["run_id"] == run_id
    assert (tmp_path / "cache").is_dir()  # downloaded once into the cache
    with pytest.raises(PretrainedError, match="not in the registry"):
        load_pretrained(build_model(cfg), f"models:/{name}/99", cfg)
    with pytest.raises(QuantConfigError, match="expected models:/NAME/VERSION"):
        check_parent(f"models:/{name}", cfg)


def test_int8_child_of_a_registry_parent_names_that_version(sqlite_root, monkeypatch, model_dirs, tmp_path):
    """A QAT run started from models:/NAME/VERSION records the version; registering its INT8 export links to
    exactly that version (not to whichever version its run produced last)."""
    from export.inference_yml import write_inference_yml
    from registry.register import register_model

    uri = f"sqlite:///{sqlite_root / 'mlflow.db'}"
    monkeypatch.chdir(sqlite_root)
    client = RegistryClient(uri)
    name = _unique("ocr-det-regparent")
    run = _fake_training_run(uri, train_digest="fp32-train")
    metrics = {"hmean": 0.9, "latency_ms": 100.0, "data_digest": "d"}
    first = register_model("det", model_dirs[0], name=name, metrics=metrics, source_run_id=run, client=client)
    register_model("det", model_dirs[1], name=name, metrics=metrics, source_run_id=run, client=client)
    int8_dir = shutil.copytree(model_dirs[0], tmp_path / "det_int8")
    write_inference_yml(int8_dir, "det", extra={"quantization": {
        "precision": "int8", "parent": {"run_id": run, "registry_name": name, "registry_version": first.version}}})
    child = register_model("det", int8_dir, name=name, metrics={**metrics, "latency_ms": 70.0}, client=client)
    assert client.version(name, child.version).tags["fp32_parent_version"] == str(first.version)

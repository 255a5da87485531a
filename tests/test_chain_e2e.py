"""The lifecycle chain of issue #13, end to end, through the documented commands only (subprocesses):

FP32 fine-tune (registry.register=true) → v1 → promote → QAT from ``models:/ocr-det@champion`` → v2 (INT8,
fp32_parent_version=1, metrics and latency of record) → promote v2 (the gates decide on measured numbers; a
refusal exits 2 naming the gate, then ``--force --reason``) → a live ``mlflow models serve -m
models:/ocr-det@champion`` answers from v2 without a restart → rollback → the same server answers from v1 →
``history`` shows every step. Requests go to the server continuously across both swaps; none may fail.

Everything runs against a real ``mlflow server`` on 127.0.0.1 with a temporary SQLite backend and artifact
root; ``mlflow models serve --env-manager local`` uses this venv (offline: no environment is built).
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest

from mlflow_helpers import MLFLOW, free_port, mlflow_server, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent

#: the tiny budget of tests/test_chain_links.py, as command-line overrides
_TINY = ["+experiment=smoke", "trainer.max_steps=2", "trainer.eval_every=2", "data.train.num=4", "data.eval.num=2",
         "data.train.image_size=[320,240]", "data.eval.image_size=[320,240]", "trainer.progress_bar=false",
         "aug.size=320", "eval_resize.limit_side_len=320"]
_QUICK_REPORT = ["registry.int8_report.repeat=2", "registry.int8_report.warmup=1", "registry.int8_report.det_size=320"]


def _env(tmp_path: Path, uri: str, **extra: str) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)  # `mlflow models serve` starts uvicorn by name
    return {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,
            "OCR_CACHE_DIR": str(tmp_path / "cache"),
            "OCR_REGISTRY_USER": "chain-e2e", "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def _train(tmp_path: Path, uri: str, run: str, *overrides: str) -> dict:
    args = [sys.executable, "-m", "training.det", *_TINY, f"paths.runs={tmp_path / 'runs'}",
            f"paths.cache={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / run}", *overrides]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=_env(tmp_path, uri), timeout=2400)
    assert proc.returncode == 0, f"training.det {run} exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _registry(tmp_path: Path, uri: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry", *argv], cwd=ROOT, capture_output=True, text=True,
                          env=_env(tmp_path, uri), timeout=900)


class _Traffic:
    """Posts one page to /invocations back to back from a thread; records who answered and every failure."""

    def __init__(self, url: str, body: bytes) -> None:
        self.url, self.body = url, body
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(self.url, data=self.body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=180) as resp:
                    answer = json.loads(resp.read())["predictions"][0]
                if "error" in answer or "results" not in answer:
                    self.failures.append(f"bad answer: {answer}")
                else:
                    self.versions.append(str(answer["model"]["version"]))
            except (OSError, ValueError, KeyError) as exc:  # HTTP errors, resets, bad JSON
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)

    def start(self) -> "_Traffic":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(240)

    def wait_for(self, version: str, timeout: float = 300) -> float:
        """Seconds until an answer *sent after this call* came from ``version``."""
        start, count = time.monotonic(), len(self.versions)
        while time.monotonic() - start < timeout:
            if self.versions[count:] and self.versions[-1] == version:
                return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"server still answers from {self.versions[-3:]} after {timeout}s (expected v{version})")


def _check_gate_decision(event: dict) -> None:
    """The gates' verdicts agree with the numbers they print."""
    for gate in event["gates"]["results"]:
        if gate["name"] == "main_metric" and gate["candidate"] is not None and gate["champion"] is not None:
            assert gate["passed"] == (gate["candidate"] >= gate["champion"] - gate["threshold"]), gate
        if gate["name"] == "latency" and "paired ratio" in gate["message"]:
            change = float(re.search(r"paired ratio ([+-][0-9.]+)%", gate["message"]).group(1))
            assert gate["passed"] == (change <= gate["threshold"] + 0.05), gate


@pytest.mark.slow
def test_fine_tune_quantize_register_promote_serve_rollback(tmp_path, page_image):
    with mlflow_server(tmp_path / "server") as uri:
        # 1. FP32 fine-tune, registered → v1, promoted
        fp32 = _train(tmp_path, uri, "fp32", "registry.register=true")
        assert fp32["registry"]["version"] == "1", fp32
        promoted = _registry(tmp_path, uri, "promote", "ocr-det", "1")
        assert promoted.returncode == 0, promoted.stderr

        # 2. QAT from the champion in the registry → v2: INT8, its FP32 parent, metrics/latency of record
        qat = _train(tmp_path, uri, "qat", "quant=qat_int8", "model.pretrained=models:/ocr-det@champion",
                     "registry.register=true", *_QUICK_REPORT)
        assert qat["registry"]["version"] == "2", qat
        show = _registry(tmp_path, uri, "show", "ocr-det", "2", "--json")
        assert show.returncode == 0, show.stderr
        tags = json.loads(show.stdout.strip().splitlines()[-1])["tags"]
        assert tags["quantized"] == "yes" and tags["fp32_parent_version"] == "1", tags
        assert 0.0 <= float(tags["metric.hmean"]) <= 1.0 and float(tags["metric.latency_ms"]) > 0, tags
        print(f"v2 INT8: hmean {tags['metric.hmean']}, latency {tags['metric.latency_ms']} ms of record")

        # 3. serve the champion (v1) and keep sending requests across every swap below
        port = free_port()
        log = tmp_path / "serve.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [MLFLOW, "models", "serve", "-m", "models:/ocr-det@champion", "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                env=_env(tmp_path, uri, OCR_ALIAS_REFRESH_S="1"), start_new_session=True)
        traffic = None
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", server, 300, log)
            image, _ = page_image(["增值税发票", "合计 88.00"], size=(480, 220))
            b64 = base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
            body = json.dumps({"dataframe_records": [{"image": b64}]}).encode()
            traffic = _Traffic(f"http://127.0.0.1:{port}/invocations", body).start()
            traffic.wait_for("1")

            # 4. promote v2: the gates judge measured numbers; a refusal is exit 2 naming the gate
            promote = _registry(tmp_path, uri, "promote", "ocr-det", "2")
            assert promote.returncode in (0, 2), promote.stderr
            print(f"promote v2: exit {promote.returncode}; {promote.stderr.strip()}\n{promote.stdout.strip()}")
            if promote.returncode == 2:
                lines = [line for line in promote.stderr.splitlines() if line.strip()]
                assert len(lines) == 1 and "gate " in lines[0] and "failed" in lines[0], promote.stderr
                forced = _registry(tmp_path, uri, "promote", "ocr-det", "2", "--force", "--reason", "chain e2e")
                assert forced.returncode == 0, forced.stderr
                promote = forced
            assert "gate latency:" in promote.stdout and "measured side by side" in promote.stdout, promote.stdout
            swap_to_v2 = traffic.wait_for("2")

            # 5. rollback: the same server answers from v1 again
            back = _registry(tmp_path, uri, "rollback", "ocr-det", "--reason", "chain e2e: production complains")
            assert back.returncode == 0, back.stderr
            swap_to_v1 = traffic.wait_for("1")
        finally:
            if traffic is not None:
                traffic.stop()
            stop(server)
        assert traffic.failures == [], traffic.failures[:5]
        assert "2" in traffic.versions and traffic.versions[0] == "1" and traffic.versions[-1] == "1"
        print(f"requests answered: {len(traffic.versions)}; swap to v2 seen after {swap_to_v2:.1f}s, "
              f"back to v1 after {swap_to_v1:.1f}s")

        # 6. history shows every step, and the gates' verdicts match their numbers
        history = _registry(tmp_path, uri, "history", "ocr-det", "--json")
        assert history.returncode == 0, history.stderr
        events = [json.loads(line) for line in history.stdout.strip().splitlines()]
        steps = [(e["action"], e["outcome"], e["to_version"]) for e in events]
        refused = [("promote", "refused", "2")] if ("promote", "refused", "2") in steps else []
        assert steps == [("promote", "done", "1"), *refused, ("promote", "done", "2"), ("rollback", "done", "1")]
        for event in events:
            if event["gates"] and event["gates"]["champion"]:
                _check_gate_decision(event)
        assert events[-1]["reason"] == "chain e2e: production complains"
        table = _registry(tmp_path, uri, "history", "ocr-det")
        assert table.returncode == 0 and "rollback" in table.stdout

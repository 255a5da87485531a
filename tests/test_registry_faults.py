"""The registry under faults: a tracking server that is down, or that accepts connections and never answers.

Every registry command must then fail within the configured limit (``retries.deadline_s``, 15 s by default;
``$OCR_REGISTRY_TIMEOUT_S``) with exit 1 and ONE line on stderr naming the URI — never MLflow's own retry
loop multiplied by ours (a dead server once took ``registry list`` 20 min 38 s)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_helpers import mlflow_server

PROJECT = Path(__file__).resolve().parents[1]


def _registry(*argv: str, env_extra: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}  # our caps, not the user's
    env.update({"PYTHONPATH": str(PROJECT), **(env_extra or {})})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "registry", *argv], capture_output=True, text=True, env=env,
                          cwd=PROJECT, timeout=timeout)
    return proc.returncode, proc.stderr, time.monotonic() - start


def _python_startup_s() -> float:
    """What importing the CLI costs on this (shared) machine before any network call."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import registry.__main__, mlflow"], cwd=PROJECT, check=True,
                   env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=120)
    return time.monotonic() - start


@pytest.mark.slow
def test_commands_against_a_stopped_server_fail_fast_with_one_line(tmp_path):
    with mlflow_server(tmp_path / "server") as uri:
        code, err, _ = _registry("list", "--tracking-uri", uri)
        assert code == 0, err  # the server was really up
    startup = _python_startup_s()
    for argv in (["list"], ["show", "ocr-det"], ["promote", "ocr-det", "1"], ["history", "ocr-det"]):
        code, err, elapsed = _registry(*argv, "--tracking-uri", uri)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1, (argv, err)
        assert len(lines) == 1 and uri in lines[0] and "unreachable" in lines[0], (argv, err)
        assert elapsed < 15 + startup + 5, (argv, elapsed, startup)


def test_a_server_that_never_answers_is_cut_at_the_configured_limit(tmp_path):
    """A socket that accepts connections (kernel backlog) but never replies: the read times out at the
    configured limit, not at MLflow's 120 s x 7 retries."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        startup = _python_startup_s()
        code, err, elapsed = _registry("list", "--tracking-uri", uri, env_extra={"OCR_REGISTRY_TIMEOUT_S": "3"})
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert uri in lines[0] and "timed out" in lines[0] and "limit 3 s" in lines[0], err
    assert elapsed < 3 + startup + 5, (elapsed, startup)


def test_transient_errors_stop_at_the_deadline(tmp_path):
    """Our own retry loop gives up at the total deadline even with attempts to spare."""
    from registry.client import RegistryClient

    client = RegistryClient(f"sqlite:///{tmp_path / 'unused.db'}", attempts=50, backoff_s=0.2, deadline_s=1.0)
    calls = []

    def busy() -> None:
        calls.append(time.monotonic())
        raise RuntimeError("database is locked")

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="database is locked"):
        client.call(busy)
    assert time.monotonic() - start < 1.5 and 2 <= len(calls) < 50

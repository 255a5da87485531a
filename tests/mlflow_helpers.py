"""Helpers for tests that run real MLflow processes: a free port, waiting for HTTP, a temporary
``mlflow server`` (SQLite backend + artifact root under a temp dir), and stopping what we started."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Until ``url`` answers 200; fails with the process log when it exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not up after {timeout}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Terminate the process group we started (servers fork workers)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def start_server(root: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow server`` on 127.0.0.1 with its store under ``root``; returns (process, URI) once up."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = root / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
             "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, 180, log)
    except BaseException:
        stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}"


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    proc, uri = start_server(root)
    try:
        yield uri
    finally:
        stop(proc)

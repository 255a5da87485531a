"""``bench.paddleocr_train``: PaddleOCR 2.10's own ``tools/train.py`` really trains our model on our synthetic data.

One tiny step per task, driven as the documented command in a subprocess. The parameter count of the network
PaddleOCR builds from the written config must equal ours in the training form (so the peer row of
``bench.train_step`` trains the same model), every phase of the step must have been timed, and PaddleOCR's own
logged step cost must agree with the wrapped timing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> dict:
    env = {**os.environ, "OCR_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OCR_CPU_TUNING": "none"}
    proc = subprocess.run([sys.executable, "-m", "bench.paddleocr_train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must carry only the JSON line, got {lines[:3]}"
    assert "ppocr INFO" in proc.stderr  # PaddleOCR's own logging went to stderr
    return json.loads(lines[-1])


def _our_param_count(task: str) -> int:
    code = ("import datasets, json; from training.models import build_model; from datasets.charset import Charset;"
            f"m = build_model({{'arch': 'ppocrv4_mobile_{task}', 'backbone_form': 'train',"
            " 'num_classes': Charset.default().num_classes});"
            "print(sum(int(p.size) for p in m.parameters()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("task,size,batch", [("det", 96, 1), ("rec", 160, 2)])
def test_tools_train_runs_one_step_of_our_model(task: str, size: int, batch: int) -> None:
    out = _run("--task", task, "--size", str(size), "--batch", str(batch), "--steps", "1", "--warmup", "0")
    assert out["paddleocr_samples"] == batch
    assert out["num_params"] == _our_param_count(task)
    [step] = out["steps"]
    for phase in ("forward", "loss", "backward", "optimizer"):
        assert step[phase] > 0, phase
    assert step["total"] >= step["forward"] + step["backward"]
    [logged] = out["paddleocr_logged_step_s"]
    # its avg_batch_cost spans reader → before the lr step: inside our step, and most of it
    assert 0.5 * step["total"] <= logged <= step["total"] + 0.05
    assert out["peak_rss_mb"] > 100

"""``python -m bench.vs_tools --quick`` end to end: ours and RapidOCR on 2 synthetic images per class.

Real models (pretrained PP-OCRv4 det + rec, RapidOCR's bundled copies), real images from ``datasets.synth``;
asserts the report's shape and that the metrics mean something (not timings)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("rapidocr_paddle")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.vs_tools", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("vs_tools") / "report.json"
    done = _run("--quick", "--classes", "small,line", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), json.loads(out.read_text())


@pytest.mark.slow  # ~20-40 s: two pipelines on real models; the bench is a dev tool
def test_quick_report_has_a_row_per_tool_and_class(quick: tuple[dict, dict]) -> None:
    report, written = quick
    assert written["rows"] == report["rows"]
    keys = {(r["class"], r["tool"]) for r in report["rows"]}
    assert keys == {(c, t) for c in ("small", "line") for t in ("ours", "rapidocr")}
    assert report["tools"]["rapidocr"]["limit_type"] == "min" and report["tools"]["rapidocr"]["box_thresh"] == 0.5
    assert report["tools"]["ours"]["det"]["box_thresh"] == 0.6


@pytest.mark.slow  # ~20-40 s: two pipelines on real models; the bench is a dev tool
def test_quick_metrics_are_real(quick: tuple[dict, dict]) -> None:
    rows = {(r["class"], r["tool"]): r for r in quick[0]["rows"]}
    for (cls, _), r in rows.items():
        assert r["images"] == 2 and r["ms_median"] > 0
        if cls == "small":
            assert r["lines"] >= 6  # every synthetic image has at least 3 labelled lines
            for k in ("precision", "recall", "hmean", "line_acc"):
                assert 0.0 <= r[k] <= 1.0
            assert r["one_minus_ned"] is None
        else:
            assert r["lines"] == 2 and r["hmean"] is None
            assert 0.0 <= r["line_acc"] <= r["one_minus_ned"] <= 1.0
    # the same weights find the text of small photos, and ours reads a rendered line crop exactly
    assert rows[("small", "ours")]["hmean"] > 0.6 and rows[("small", "rapidocr")]["hmean"] > 0.6
    assert rows[("line", "ours")]["line_acc"] > 0.0
    for r in rows.values():  # a miss names what was expected and what was read
        assert all(set(m) == {"truth", "pred", "shape"} for m in r.get("misses", []))


def test_unknown_class_is_one_clear_line() -> None:
    done = _run("--classes", "scene,photos")
    assert done.returncode == 2
    assert "--classes: unknown photos" in done.stderr and "Traceback" not in done.stderr

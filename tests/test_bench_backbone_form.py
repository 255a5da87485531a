"""``bench.backbone_form`` never writes its run dirs into a folder that already holds something (nothing lost)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_refuses_a_non_empty_out_dir_and_keeps_its_files(tmp_path: Path) -> None:
    kept = tmp_path / "det-deploy-s1" / "metrics.json"
    kept.parent.mkdir()
    kept.write_text('{"hmean": 0.9}')
    proc = subprocess.run([sys.executable, "-m", "bench.backbone_form", "--tasks", "det", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and str(tmp_path) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert kept.read_text() == '{"hmean": 0.9}'
    assert proc.stdout == ""

"""The venv as users meet it: their own scripts import paddle first, without our zlib start-up fix.

Why: libpaddle.so exports zlib 1.2.8 symbols (STACK.md trap 1); without the start-up hook that
scripts/setup.sh installs, ``import paddle, pyclipper`` segfaults and ``import paddle, mlflow`` fails with
``zlib.error``. Each check runs a fresh interpreter of this venv from an empty directory, so nothing of the
project is imported first."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "scripts" / "ocr_lifecycle_zlib_first.pth"


def _fresh(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("other", ["pyclipper", "mlflow"])
def test_paddle_first_then_zlib_user_in_fresh_interpreter(other: str, tmp_path: Path) -> None:
    code = (f"import sys, paddle, {other}\n"
            "assert 'datasets' not in sys.modules  # no project import did the fix\n")
    if other == "pyclipper":   # the segfault came from inflate when pyclipper's offset ran
        code += "pc = pyclipper.PyclipperOffset(); pc.AddPath([(0,0),(10,0),(10,10)], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON); assert pc.Execute(2)\n"
    else:
        code += "import gzip; assert gzip.decompress(gzip.compress(b'x' * 1000)) == b'x' * 1000\n"
    code += "print('ok')"
    proc = _fresh(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_hook_installed_is_the_repo_one_and_imports_only_zlib() -> None:
    installed = Path(sysconfig.get_paths()["purelib"]) / HOOK.name
    assert installed.read_text() == HOOK.read_text(), "run bash scripts/setup.sh to install the start-up hook"
    code_lines = [ln for ln in HOOK.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert code_lines == ["import zlib"]   # cheap: start-up must not import paddle for every python call


def test_setup_installs_hook_into_an_up_to_date_venv(tmp_path: Path) -> None:
    """A venv made before the hook existed (its stamp matches) still gets it on the next setup run."""
    proj = tmp_path / "proj"
    (proj / "scripts").mkdir(parents=True)
    (proj / "requirements").mkdir()
    for rel in ["scripts/setup.sh", f"scripts/{HOOK.name}", "pyproject.toml"]:
        (proj / rel).write_bytes((ROOT / rel).read_bytes())
    for req in (ROOT / "requirements").glob("*.txt"):
        (proj / "requirements" / req.name).write_bytes(req.read_bytes())
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(proj / ".venv")], check=True, timeout=120)
    # the same stamp formula as setup.sh, so the run takes its "up to date" branch
    stamp = subprocess.run(["bash", "-c", "cd " + str(proj) + " && printf '%s' \"$(cat requirements/*.txt "
                            "pyproject.toml; echo gpu=0)\" | sha256sum | cut -d' ' -f1"],
                           capture_output=True, text=True, check=True).stdout.strip()
    (proj / ".venv" / ".setup-stamp").write_text(stamp + "\n")
    proc = subprocess.run(["bash", "scripts/setup.sh"], cwd=proj, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout
    hooks = list((proj / ".venv").glob(f"lib/python*/site-packages/{HOOK.name}"))
    assert len(hooks) == 1 and hooks[0].read_text() == HOOK.read_text()
    probe = subprocess.run([str(proj / ".venv" / "bin" / "python"), "-c", "import sys; print('zlib' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "True"

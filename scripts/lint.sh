#!/usr/bin/env bash
# The code checks CI runs before the tests: ruff (lint and format, pyproject.toml) and mypy on the public API.
#   bash scripts/lint.sh          check only (exit 1 on a finding)
#   bash scripts/lint.sh --fix    let ruff mend what it can (imports, formatting), then check
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PATHS="src tests benchmarks scripts"
if [ "${1:-}" = "--fix" ]; then
  "$PY" -m ruff check --fix -q $PATHS
  "$PY" -m ruff format -q $PATHS
fi
"$PY" -m ruff check $PATHS
"$PY" -m ruff format --check -q $PATHS
"$PY" -m mypy

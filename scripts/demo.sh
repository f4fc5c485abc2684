#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the headless AGILE demo on the bundled sample tissue.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/napari-agile demo --out "${1:-agile-demo}"

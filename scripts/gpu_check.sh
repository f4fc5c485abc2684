#!/usr/bin/env bash
# The GPU check, prepared for a session that is lent a GPU machine: one run of a few minutes, e.g. the device
# tool's run with command "bash scripts/gpu_check.sh" and timeout_s 540. It uses that machine's own python3
# (torch with CUDA, numpy, pandas, scipy, scikit-image, tifffile, safetensors, tqdm, pytest) and this checkout's
# src/ (the engine needs neither napari nor Qt), and writes gpu-check.log and the speed JSON files to $OUT.
#   1. the engine's tests with torch on the GPU (meta-training resumes exactly there; the Session runs there);
#   2. speed.py's sections 1-4 on the GPU (inference, MC dropout, the Session loop, meta-iterations; each with
#      its peak GPU memory), then the meta-iteration section on that machine's CPU for comparison.
# Locally, as a smoke test: PYTHON=.venv/bin/python NAPARI_AGILE_DEVICE=cpu bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 NAPARI_AGILE_DEVICE=${NAPARI_AGILE_DEVICE:-cuda}
export NAPARI_AGILE_HOME=$(mktemp -d)
exec > >(tee "$OUT/gpu-check.log") 2>&1
nvidia-smi -L || echo "no nvidia-smi"
$PY -c "import torch; print('torch', torch.__version__, '| CUDA:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
$PY -m pytest -q -p no:cacheprovider tests/engine/test_meta.py tests/engine/test_network.py tests/test_session.py
$PY benchmarks/speed.py --only inference mc session meta --json "$OUT/speed-$NAPARI_AGILE_DEVICE.json"
NAPARI_AGILE_DEVICE=cpu $PY benchmarks/speed.py --only meta --json "$OUT/speed-meta-cpu-baseline.json"
echo "results in $OUT"

#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine: system libraries for Qt under Xvfb, a venv in .venv, the package.
# Idempotent: a second run only checks. Needs root (or sudo) for apt on a machine without the libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0
  libxcb-randr0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1 libxkbcommon-x11-0 libgl1 libegl1 libdbus-1-3
  libfontconfig1 libglib2.0-0"
missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build. A wheel on this
# machine's pip find-links comes first; elsewhere PyTorch's CPU index (TORCH_INDEX overrides it).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if .venv/bin/pip install -q --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
    .venv/bin/pip install -q "torch==2.13.0"  # its dependencies, torch itself being there
  else
    .venv/bin/pip install -q "torch==2.13.0" --index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
.venv/bin/pip install -q -e ".[testing]"

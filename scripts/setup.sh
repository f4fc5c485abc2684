#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine: system libraries for Qt under Xvfb, a venv in .venv, the package.
# Idempotent: a second run only checks. Needs root (or sudo) for apt on a machine without the libraries.
#   PYTHON=python3.12 bash scripts/setup.sh   the Python to build .venv with (default python3; 3.11 or newer)
#   bash scripts/setup.sh --check             only say what is missing or broken (exit 1 if anything), change nothing
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=0; [ "${1:-}" = "--check" ] && CHECK=1
PY=${PYTHON:-python3}
todo=0
say() { echo "setup: $*"; }

# 1. Python 3.11 or newer (tomllib; pyproject's requires-python), refused before anything is installed
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup: no '$PY' on this machine: install Python 3.11 or newer (e.g. sudo apt-get install python3)," \
       "or name one with PYTHON=/path/to/python3.11." >&2
  exit 2
fi
version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "unknown")
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: $PY is Python $version; napari-agile needs Python 3.11 or newer: install one (e.g. sudo apt-get" \
       "install python3.11 python3.11-venv) and run again with PYTHON=python3.11." >&2
  exit 2
fi

# 2. system packages: Qt under Xvfb, and venv/ensurepip for this Python when Debian split them out
APT_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0
  libxcb-randr0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1 libxkbcommon-x11-0 libgl1 libegl1 libdbus-1-3
  libfontconfig1 libglib2.0-0"
missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing="$missing python$version-venv"
fi
missing=$(echo $missing)
if [ -n "$missing" ]; then
  if [ "$CHECK" = 1 ]; then
    say "missing system packages: $missing (apt-get install)"; todo=1
  elif ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing $missing and no apt-get here: install them with this system's package manager." >&2
    exit 2
  else
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    say "installing $missing (apt)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

# 3. the virtual environment: one that does not run, has no pip or another Python version is rebuilt
venv_state() {
  [ -e .venv ] || { echo "absent"; return; }
  [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys' >/dev/null 2>&1 || { echo "broken (its python does not run)"; return; }
  .venv/bin/python -m pip --version >/dev/null 2>&1 || { echo "broken (no pip: a venv step that failed)"; return; }
  [ "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$version" ] \
    || { echo "broken (another Python than $PY $version)"; return; }
  echo "ok"
}
state=$(venv_state)
if [ "$CHECK" = 1 ]; then
  case "$state" in
    ok) .venv/bin/python -c 'import torch, napari_agile' >/dev/null 2>&1 \
          && say ".venv ok, napari-agile installed" || { say ".venv ok, napari-agile or torch not installed yet"; todo=1; } ;;
    absent) say "no .venv yet: it would be made with $PY ($version)"; todo=1 ;;
    *) say ".venv is $state: it would be removed and made again with $PY ($version)"; todo=1 ;;
  esac
  exit $todo
fi
if [ "$state" != "ok" ] && [ "$state" != "absent" ]; then
  say ".venv is $state: removing it and making it again"
  rm -rf .venv
fi
if [ ! -e .venv ]; then
  if ! "$PY" -m venv .venv; then
    rm -rf .venv  # a half-made venv would be taken for a working one next time
    echo "setup: '$PY -m venv' failed: install python$version-venv (sudo apt-get install python$version-venv)" \
         "and run again." >&2
    exit 2
  fi
fi
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
.venv/bin/pip install -q -e ".[testing,lint]"

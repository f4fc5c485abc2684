"""scripts/setup.sh's checks, in a copy of the script (--check: it says what it would do and changes nothing)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="setup.sh is a bash script")


def _script(tmp_path: Path, body: str, name: str) -> Path:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def _setup(tmp_path: Path, python: Path | str, *args: str) -> subprocess.CompletedProcess:
    """Run a copy of setup.sh in `tmp_path` (its own checkout) with PYTHON=python."""
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    return subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh"), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(python), "HOME": str(tmp_path)},
        timeout=120,
    )


def test_a_too_old_python_is_refused_before_anything_is_installed(tmp_path):
    old = _script(tmp_path, 'case "$*" in *sys.exit*) exit 1;; *) echo 3.9;; esac', "python3.9")
    for args in ((), ("--check",)):
        run = _setup(tmp_path, old, *args)
        assert run.returncode == 2 and "Python 3.9; napari-agile needs Python 3.11 or newer" in run.stderr
    assert not (tmp_path / ".venv").exists()
    run = _setup(tmp_path, tmp_path / "bin" / "nowhere")
    assert run.returncode == 2 and "install Python 3.11 or newer" in run.stderr


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda v: (v / "bin" / "python").symlink_to(v / "gone"), "its python does not run"),
        (lambda v: _script(v.parent, "exit 1", "python").rename(v / "bin" / "python"), "its python does not run"),
        (
            lambda v: _script(
                v.parent, f'case "$*" in *pip*) exit 1;; *) exec "{sys.executable}" "$@";; esac', "python"
            ).rename(v / "bin" / "python"),
            "no pip: a venv step that failed",
        ),
    ],
)
def test_a_broken_venv_is_found_and_would_be_rebuilt(tmp_path, make, says):
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    make(venv)
    run = _setup(tmp_path, sys.executable, "--check")
    assert run.returncode == 1 and f".venv is broken ({says}): it would be removed and made again" in run.stdout
    assert (venv / "bin").exists()  # --check changes nothing


def test_a_working_venv_is_kept(tmp_path):
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    _script(tmp_path, f'exec "{sys.executable}" "$@"', "python").rename(venv / "bin" / "python")
    run = _setup(tmp_path, sys.executable, "--check")
    assert "setup: .venv ok" in run.stdout and "broken" not in run.stdout

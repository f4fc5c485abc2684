"""Where automatic session folders live ($NAPARI_AGILE_HOME/sessions), and listing and cleaning the stale ones."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from napari_agile.errors import AgileInputError


def agile_home() -> Path:
    """$NAPARI_AGILE_HOME, or ~/.napari-agile: napari-agile's own folder."""
    return Path(os.environ.get("NAPARI_AGILE_HOME", Path.home() / ".napari-agile"))


def sessions_dir() -> Path:
    """The folder that holds the automatic session folders (a Session made without `store=`)."""
    return agile_home() / "sessions"


def default_store() -> Path:
    """A fresh folder under sessions_dir() for a session's answers."""
    home = agile_home()
    return sessions_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(home) % 10000}"


@dataclass(frozen=True)
class StoredSession:
    """One automatic session folder: where, how long since it last changed, how many answer lines, its size."""

    path: Path
    age_days: float
    answers: int
    size_bytes: int


def _answer_lines(folder: Path) -> int:
    """How many lines the folder's answers.jsonl holds (0 without one)."""
    journal = folder / "answers.jsonl"
    return sum(1 for line in journal.read_text().splitlines() if line.strip()) if journal.exists() else 0


def _describe(folder: Path, now: float) -> StoredSession:
    """A StoredSession for a folder: its newest file's age, answer count and total size."""
    files = [f for f in folder.rglob("*") if f.is_file()]
    newest = max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime)
    return StoredSession(folder, (now - newest) / 86400, _answer_lines(folder), sum(f.stat().st_size for f in files))


def auto_sessions(home: Path | None = None) -> list[StoredSession]:
    """Every session folder under `home` (default sessions_dir()), oldest first; other folders are left out."""
    home = sessions_dir() if home is None else Path(home)
    if not home.is_dir():
        return []
    now = time.time()
    found = [
        _describe(d, now)
        for d in home.iterdir()
        if d.is_dir() and ((d / "session.json").exists() or (d / "cells.csv").exists())
    ]
    return sorted(found, key=lambda s: -s.age_days)


def clean_sessions(
    older_than_days: float = 7.0, dry_run: bool = False, home: Path | None = None
) -> list[StoredSession]:
    """Remove (with `dry_run`, only list) the automatic session folders unchanged for `older_than_days` days."""
    if older_than_days < 0:
        raise AgileInputError(f"older_than_days={older_than_days}: use 0 (every session folder) or more.")
    stale = [s for s in auto_sessions(home) if s.age_days >= older_than_days]
    if not dry_run:
        for s in stale:
            shutil.rmtree(s.path)
    return stale

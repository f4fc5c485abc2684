"""Automatic session folders: where they go, and `napari-agile clean-sessions` removing the stale ones."""

import os
import time

from napari_agile.cli import main
from napari_agile.engine.model_file import load_model
from napari_agile.io.session_folders import auto_sessions, sessions_dir
from napari_agile.session import Session
from napari_agile.synth.simulator import simulate_tissue


def _fake_session(folder, days_old: float, answers: int = 2):
    """A session-like folder whose files were last changed `days_old` days ago."""
    folder.mkdir(parents=True)
    (folder / "session.json").write_text("{}")
    (folder / "answers.jsonl").write_text('{"type": "a", "id": 1, "answer": true}\n' * answers)
    then = time.time() - days_old * 86400
    for f in folder.iterdir():
        os.utime(f, (then, then))
    return folder


def test_a_session_without_a_folder_writes_under_the_agile_home(agile_home):
    sim = simulate_tissue((192, 192), seed=3)
    session = Session(sim.tissue, sim.cells, load_model(), mc_passes=2)
    assert session.store.parent == agile_home / "sessions" == sessions_dir()
    assert [s.path for s in auto_sessions()] == [session.store]


def test_clean_sessions_lists_then_removes_only_stale_session_folders(agile_home, capsys):
    old = _fake_session(agile_home / "sessions" / "old", days_old=10)
    new = _fake_session(agile_home / "sessions" / "new", days_old=1)
    other = agile_home / "sessions" / "notes"  # not a session: never touched
    other.mkdir()
    assert main(["clean-sessions", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove {old}" in out and "2 answers" in out and str(new) not in out
    assert old.exists() and new.exists()
    assert main(["clean-sessions"]) == 0
    assert not old.exists() and new.exists() and other.exists()
    assert "1 session folders" in capsys.readouterr().out
    assert main(["clean-sessions", "--older-than", "0"]) == 0
    assert not new.exists() and other.exists()
    assert main(["clean-sessions", "--older-than", "-1"]) == 2

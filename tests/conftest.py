"""Shared test set-up: every test's automatic session folders go to its own temporary folder."""

import pytest


@pytest.fixture(autouse=True)
def agile_home(tmp_path, monkeypatch):
    """$NAPARI_AGILE_HOME in the test's tmp_path, so a Session without `store=` never writes to ~/.napari-agile."""
    home = tmp_path / "agile-home"
    monkeypatch.setenv("NAPARI_AGILE_HOME", str(home))
    return home

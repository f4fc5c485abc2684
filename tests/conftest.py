"""Shared test set-up: every test's automatic session folders go to its own temporary folder; a small saved session."""

import pytest


@pytest.fixture(autouse=True)
def agile_home(tmp_path, monkeypatch):
    """$NAPARI_AGILE_HOME in the test's tmp_path, so a Session without `store=` never writes to ~/.napari-agile."""
    home = tmp_path / "agile-home"
    monkeypatch.setenv("NAPARI_AGILE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def adapted_session():
    """save(folder, shape, seed): a session on a simulated section, `neuron` adapted on 4 yes and 4 no answers,
    saved to `folder` (for typing other sections with it); returns the simulation."""
    from napari_agile.engine.model_file import load_model
    from napari_agile.session import Session
    from napari_agile.synth.simulator import simulate_tissue

    def save(folder, shape=(256, 256), seed=4):
        sim = simulate_tissue(shape, seed=seed)
        session = Session(sim.tissue, sim.cells, load_model(), store=folder)
        types = sim.cells.table["cell_type"]
        ids = [*types.index[types == "neuron"][:4], *types.index[types != "neuron"][:4]]
        session.annotate("neuron", ids, [True] * 4 + [False] * 4)
        session.adapt("neuron")
        session.save(folder)
        return sim

    return save


@pytest.fixture()
def saved_session(tmp_path, adapted_session):
    """A session saved in tmp_path/session, adapted to "neuron" from 8 answers on a small simulated section."""
    adapted_session(tmp_path / "session")
    return tmp_path / "session"

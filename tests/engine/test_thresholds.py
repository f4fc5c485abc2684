"""Per-type thresholds from held-out answers, and how each cell's type follows them."""

import json

import numpy as np
import pytest

from napari_agile import Session, simulate_tissue
from napari_agile.engine.model_file import load_model
from napari_agile.engine.thresholds import assign_types, choose_threshold, held_out_probabilities


def test_a_type_that_claims_its_held_out_noes_asks_for_more_probability():
    p = np.array([0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.55, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)  # three noes between 0.55 and 0.65: over-called at 0.5
    assert 0.65 < choose_threshold(p, y) <= 0.7
    assert choose_threshold(p, p >= 0.5) == 0.5  # already right at 0.5: stays there (the lowest of the ties)
    assert choose_threshold(p, y, floor=0.75) == 0.75  # never below the session's threshold
    assert choose_threshold(p, np.arange(10) == 0) == 0.5  # one yes says too little: the floor


def test_types_compete_only_among_those_that_reach_their_threshold():
    probs = np.array([[0.7, 0.6], [0.9, 0.2], [0.4, 0.3], [0.55, 0.52]])
    assert list(assign_types(probs, ["a", "b"], [0.5, 0.5])) == ["a", "a", "none", "a"]
    assert list(assign_types(probs, ["a", "b"], [0.8, 0.5])) == ["b", "a", "none", "b"]
    assert list(assign_types(probs[:, :0], [], [])) == ["none"] * 4


@pytest.fixture(scope="module")
def answered(tmp_path_factory):
    sim = simulate_tissue((384, 384), seed=11)
    session = Session(sim.tissue, sim.cells, load_model(), store=tmp_path_factory.mktemp("t") / "s", mc_passes=8)
    truth = sim.cells.table["cell_type"]
    ids = [*truth.index[truth == "astrocyte"][:5], *truth.index[truth != "astrocyte"][:11]]
    session.annotate("astrocyte", ids, [True] * 5 + [False] * 11)
    session.adapt("astrocyte")
    return sim, session


def test_adapt_fits_the_threshold_on_held_out_answers_and_the_session_keeps_it(answered, tmp_path):
    sim, session = answered
    p, y = held_out_probabilities(session, "astrocyte")
    assert len(p) == 16 and y.sum() == 5 and ((0 <= p) & (p <= 1)).all()
    assert session.type_thresholds["astrocyte"] == choose_threshold(p, y) >= session.threshold
    saved = session.save(tmp_path / "saved")
    assert json.loads((saved / "session.json").read_text())["thresholds"] == session.type_thresholds
    on_new = Session.apply_saved(saved, sim.tissue, sim.cells, store=tmp_path / "new")
    assert on_new.type_thresholds == session.type_thresholds
    on_new.type_thresholds["astrocyte"] = 0.999  # what predict types follows the per-type threshold
    table = on_new.predict()
    assert (table["cell_type"] == "astrocyte").sum() == (table["p_astrocyte"] >= 0.999).sum()


def test_too_few_answers_of_a_kind_leave_the_session_threshold(answered, tmp_path):
    sim, _ = answered
    session = Session(sim.tissue, sim.cells, load_model(), store=tmp_path / "s", mc_passes=8)
    session.annotate("astrocyte", sim.cells.ids[:4], [True, False, False, False])
    session.adapt("astrocyte")
    assert session.type_thresholds["astrocyte"] is None
    session.threshold = 0.0  # then the session's threshold decides: every cell takes its most probable type
    assert set(session.predict()["cell_type"]) == {"astrocyte"}

"""A saved session applied to a section unlike the answered one says so."""

import warnings

import pytest

from napari_agile import Session, simulate_tissue
from napari_agile.engine.likeness import unlike_channels
from napari_agile.engine.model_file import load_model


def test_unlike_channels_names_a_moved_or_stretched_channel():
    saved = {"DAPI": [0.3, 0.2], "S100": [0.15, 0.25]}
    assert unlike_channels(saved, {"DAPI": [0.35, 0.22], "S100": [0.16, 0.2]}) == []
    moved = unlike_channels(saved, {"DAPI": [0.6, 0.2], "S100": [0.15, 0.6]})
    assert len(moved) == 2 and moved[0].startswith("DAPI (median 0.30 -> 0.60") and moved[1].startswith("S100")


def test_apply_saved_warns_on_a_section_with_swapped_channels(tmp_path):
    sim = simulate_tissue((320, 320), seed=12)
    session = Session(sim.tissue, sim.cells, load_model(), store=tmp_path / "s", mc_passes=4)
    truth = sim.cells.table["cell_type"]
    ids = [*truth.index[truth == "neuron"][:3], *truth.index[truth != "neuron"][:3]]
    session.annotate("neuron", ids, [True] * 3 + [False] * 3)
    session.adapt("neuron")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Session.apply_saved(tmp_path / "s", sim.tissue, sim.cells, store=tmp_path / "same")
    assert not [w for w in caught if "looks unlike" in str(w.message)]  # the answered section looks like itself
    swapped = sim.tissue.rename({"DAPI": "RECA1", "RECA1": "DAPI"})
    with pytest.warns(UserWarning, match=r"looks unlike .* in DAPI \(median"):
        Session.apply_saved(tmp_path / "s", swapped, sim.cells, store=tmp_path / "swapped")

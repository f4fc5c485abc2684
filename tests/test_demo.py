import pandas as pd
import pytest
import tifffile

from napari_agile.demo import run_demo, true_types
from napari_agile.detect.nuclei import detect_nuclei
from napari_agile.engine.model_file import AgileModel
from napari_agile.engine.network import ModelConfig, init_params
from napari_agile.errors import AgileInputError
from napari_agile.io.legend import read_legend
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.synth.simulator import simulate_tissue


def test_true_types_follow_the_truth_mask():
    sim = simulate_tissue((256, 256), seed=4)
    assert (true_types(sim.cells, sim.cells) == sim.cells.table["cell_type"].to_numpy()).all()
    detected = detect_nuclei(sim.tissue)
    types = true_types(detected, sim.cells)
    assert (types != "none").mean() > 0.8  # most detections sit on a true nucleus


def test_demo_writes_every_output(tmp_path):
    cfg = ModelConfig(channels=PAPER_CHANNELS)
    model = AgileModel(cfg, init_params(cfg), inner_lr=0.01)
    report = run_demo(tmp_path, model=model, types=("astrocyte",), rounds=1, per_round=4, log=lambda s: None)
    for name in (
        "tissue.ome.tif",
        "cells.csv",
        "predictions.csv",
        "predictions.geojson",
        "cell_types.tif",
        "accuracy.csv",
        "session/answers.jsonl",
        "session/adapted.safetensors",
    ):
        assert (tmp_path / name).exists(), name
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert {"p_astrocyte", "cell_type", "true_type"} <= set(table.columns)
    assert report["astrocyte"]["labels"] == 4 and 0 <= report["astrocyte"]["accuracy"] <= 1
    assert len((tmp_path / "session/answers.jsonl").read_text().splitlines()) == 4
    legend = pd.read_csv(tmp_path / "cell_types.csv")  # the painted labels explained, beside and inside the image
    assert list(legend["cell_type"]) == ["none", "astrocyte"] and legend["color"].iloc[1].startswith("#")
    assert read_legend(tmp_path / "cell_types.tif") == {0: "none", 1: "astrocyte"}
    painted, nuclei = tifffile.imread(tmp_path / "cell_types.tif"), tifffile.imread(tmp_path / "session/nuclei.tif")
    named = legend.set_index("label")["cell_type"].reindex(painted[nuclei > 0]).to_numpy()
    assert (named == table.set_index("id")["cell_type"].reindex(nuclei[nuclei > 0]).to_numpy()).all()
    assert (
        legend.set_index("cell_type")["n_cells"].to_dict()
        == table["cell_type"].value_counts().reindex(legend["cell_type"], fill_value=0).to_dict()
    )


def test_demo_reruns_into_its_own_folder_and_refuses_other_files(tmp_path):
    cfg = ModelConfig(channels=PAPER_CHANNELS)
    model = AgileModel(cfg, init_params(cfg), inner_lr=0.01)
    said = []
    for _ in range(2):  # the second run replaces the first's outputs (the session folder included)
        run_demo(tmp_path / "demo", model=model, types=("astrocyte",), rounds=1, per_round=4, log=said.append)
    assert any("replacing them" in line for line in said)
    assert len((tmp_path / "demo/session/answers.jsonl").read_text().splitlines()) == 4
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    with pytest.raises(AgileInputError, match="notes.txt"):
        run_demo(tmp_path / "demo", model=model, types=("astrocyte",), rounds=1, per_round=4, log=said.append)
    assert (tmp_path / "demo" / "notes.txt").exists() and (tmp_path / "demo" / "tissue.ome.tif").exists()

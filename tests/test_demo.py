import pandas as pd

from napari_agile.demo import run_demo, true_types
from napari_agile.model import ModelConfig, init_params
from napari_agile.modelio import AgileModel
from napari_agile.nuclei import detect_nuclei
from napari_agile.synth import simulate_tissue
from napari_agile.tissue import PAPER_CHANNELS


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
    for name in ("tissue.ome.tif", "cells.csv", "predictions.csv", "predictions.geojson", "cell_types.tif",
                 "accuracy.csv", "session/answers.jsonl", "session/adapted.safetensors"):
        assert (tmp_path / name).exists(), name
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert {"p_astrocyte", "cell_type", "true_type"} <= set(table.columns)
    assert report["astrocyte"]["labels"] == 4 and 0 <= report["astrocyte"]["accuracy"] <= 1
    assert len((tmp_path / "session/answers.jsonl").read_text().splitlines()) == 4

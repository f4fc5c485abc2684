"""The command line, end to end through main([...])."""

import json
import signal
import threading
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from napari_agile.cli import main
from napari_agile.engine.model_file import load_model

ROOT = Path(__file__).resolve().parents[1]


def test_synth_then_detect(tmp_path, capsys):
    image, truth = tmp_path / "tissue.ome.tif", tmp_path / "truth.csv"
    assert main(["synth", "--shape", "256", "256", "--seed", "0", "--out", str(image), "--cells", str(truth)]) == 0
    cells, labels = tmp_path / "cells.csv", tmp_path / "labels.tif"
    assert main(["detect", str(image), "--out", str(cells), "--labels", str(labels)]) == 0
    table = pd.read_csv(cells)
    assert len(table) > 0.7 * len(pd.read_csv(truth))
    assert set(np.unique(tifffile.imread(labels))) == {0, *table["id"]}
    assert "cell_type" in pd.read_csv(truth).columns
    assert main(["synth", "--shape", "256", "256", "--out", str(image), "--cells", str(tmp_path / "lab.tsv")]) == 0
    assert "no cell types" in capsys.readouterr().out  # the lab's detection columns: said, not silently dropped


def test_bad_input_prints_a_message_and_exits_2(tmp_path, capsys):
    image = tmp_path / "x.tif"
    tifffile.imwrite(image, np.zeros((2, 32, 32), np.uint16), photometric="minisblack")
    assert main(["detect", str(image), "--names", "NeuN", "S100", "--out", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert "--nuclear" in err and "Traceback" not in err


def test_weak_labels_types_the_brightest_cells_and_refuses_bad_markers(tmp_path, capsys):
    image, truth, out = tmp_path / "tissue.ome.tif", tmp_path / "truth.csv", tmp_path / "weak.csv"
    assert main(["synth", "--shape", "512", "512", "--seed", "1", "--out", str(image), "--cells", str(truth)]) == 0
    assert main(["weak-labels", str(image), str(truth), "--out", str(out)]) == 0
    weak, all_cells = pd.read_csv(out), pd.read_csv(truth)
    assert 0 < len(weak) <= 5 * round(0.05 * len(all_cells))  # at most the top 5 % of each of 5 markers
    assert set(weak["cell_type"]) <= {"neuron", "astrocyte", "oligodendrocyte", "microglia", "endothelial"}
    assert weak["true_type"].notna().all() and set(weak["id"]) <= set(all_cells["id"])
    assert main(["weak-labels", str(image), str(truth), "--marker", "astrocyte:S100", "--out", str(out)]) == 2
    assert main(["weak-labels", str(image), str(truth), "--marker", "astrocyte=GFAP", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "TYPE=CHANNEL" in err and "GFAP" in err and "Traceback" not in err


PANEL_TOML = """
[model]
channels = ["DAPI", "Histones", "NeuN", "S100", "Olig2", "Iba1", "RECA1"]
centre_block = "nucleus"
[meta]
meta_types = ["neuron", "astrocyte"]
iterations = 2
tasks_per_batch = 1
k_max = 2
n_query = 2
n_unlabelled = 8
validate_every = 1
validate_tasks = 2
[data]
source = "labelled"
images = {images}
cells = {tables}
labels = {masks}
"""


def test_weak_labels_feed_meta_training_on_your_own_sections(tmp_path, capsys, monkeypatch):
    images, tables, masks = [], [], []
    for seed in (1, 2):  # your own sections: an image and its detected nuclei, typed by the marker rule
        image, cells, types, mask = (
            tmp_path / f"s{seed}{end}" for end in (".ome.tif", "-cells.csv", "-types.csv", "-nuclei.tif")
        )
        assert main(["synth", "--shape", "768", "768", "--seed", str(seed), "--out", str(image)]) == 0
        assert main(["detect", str(image), "--out", str(cells), "--labels", str(mask)]) == 0
        assert main(["weak-labels", str(image), str(cells), "--top", "0.2", "--out", str(types)]) == 0
        images.append(str(image))
        tables.append(str(types))
        masks.append(str(mask))
    config = tmp_path / "panel.toml"
    relative = [json.dumps([Path(f).name for f in files]) for files in (images, tables, masks)]
    config.write_text(PANEL_TOML.format(images=relative[0], tables=relative[1], masks=relative[2]))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the recipe's file names are read from its own folder
    assert main(["meta-train", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    model = load_model(tmp_path / "run" / "model.safetensors")
    assert model.info["iterations_done"] == 2 and model.info["config"]["data"]["source"] == "labelled"
    assert model.channels == ("DAPI", "Histones", "NeuN", "S100", "Olig2", "Iba1", "RECA1")
    assert model.config.centre_block == "nucleus"  # the bundled recipe's block, read on the given label images
    # Ctrl-C stops at an iteration's end with a checkpoint that the same command resumes
    handler = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under a shell's background job
    timer = threading.Timer(2.0, signal.raise_signal, [signal.SIGINT])
    timer.start()
    assert main(["meta-train", "--config", str(config), "--out", str(tmp_path / "run"), "--iterations", "100000"]) == 0
    timer.join()
    stopped = load_model(tmp_path / "run" / "model.safetensors").info["iterations_done"]
    assert 2 <= stopped < 100000 and "stopped at iteration" in capsys.readouterr().out
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == stopped
    assert signal.getsignal(signal.SIGINT) is handler  # the handler is put back
    config.write_text(PANEL_TOML.format(images=json.dumps(images), tables=json.dumps(tables), masks="[]"))
    assert main(["meta-train", "--config", str(config), "--out", str(tmp_path / "again")]) == 2  # labels: one per image


def test_predict_types_new_sections_with_a_saved_session_detected_or_from_masks(tmp_path, capsys, adapted_session):
    from napari_agile.io.images import write_ome_tiff
    from napari_agile.synth.simulator import simulate_tissue

    sim = adapted_session(tmp_path / "session")
    new = simulate_tissue((256, 256), seed=5)
    image, mask = write_ome_tiff(new.tissue, tmp_path / "new.ome.tif"), tmp_path / "new-nuclei.tif"
    tifffile.imwrite(mask, new.cells.labels)

    assert main(["predict", str(tmp_path / "session"), str(image), "--out", str(tmp_path / "detected")]) == 0
    detected = pd.read_csv(tmp_path / "detected" / "new.csv")
    assert len(detected) > 0 and detected["p_neuron"].between(0, 1).all()
    assert (
        main(
            ["predict", str(tmp_path / "session"), str(image), "--masks", str(mask), "--out", str(tmp_path / "masked")]
        )
        == 0
    )
    masked = pd.read_csv(tmp_path / "masked" / "new.csv")
    assert sorted(masked["id"]) == sorted(set(np.unique(new.cells.labels)) - {0})  # the mask's own ids
    assert (
        main(
            [
                "predict",
                str(tmp_path / "session"),
                str(image),
                "--masks",
                str(mask),
                "--format",
                "h5ad",
                "--out",
                str(tmp_path / "scverse"),
            ]
        )
        == 0
    )
    adata = anndata.read_h5ad(tmp_path / "scverse" / "new.h5ad")
    assert sorted(adata.obs["cell_id"]) == sorted(masked["id"]) and adata.n_vars == 7
    np.testing.assert_allclose(
        adata.obs.set_index("cell_id").loc[masked["id"], "p_neuron"], masked["p_neuron"], rtol=1e-5
    )
    session = str(tmp_path / "session")
    assert (
        main(["predict", session, str(image), "--masks", str(mask), "--format", "zarr", "--out", str(tmp_path / "sd")])
        == 0
    )
    store = tmp_path / "sd" / "new.zarr"  # a SpatialData store: typed again from its own image and nucleus labels
    assert main(["predict", session, str(store), "--masks", str(store), "--out", str(tmp_path / "again")]) == 0
    again = pd.read_csv(tmp_path / "again" / "new.csv")
    pd.testing.assert_frame_equal(again, masked, check_exact=False, rtol=1e-5)
    assert main(["predict", str(tmp_path / "session"), str(image), "--masks", str(mask), str(mask)]) == 2
    assert "one per image" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                str(tmp_path / "session"),
                str(image),
                "--masks",
                str(tmp_path / "typo.tif"),
                "--out",
                str(tmp_path / "typo"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "No nucleus label image at" in err and "typo.tif" in err and "Traceback" not in err
    (tmp_path / "b").mkdir()
    twin = write_ome_tiff(new.tissue, tmp_path / "b" / "new.ome.tif")  # same name, another folder
    assert main(["predict", str(tmp_path / "session"), str(image), str(twin), "--out", str(tmp_path / "twins")]) == 2
    assert "Several images would write new.csv" in capsys.readouterr().err and not (tmp_path / "twins").exists()
    blank = tmp_path / "blank.tif"  # one image without a nucleus: named and skipped, the next is still typed
    tifffile.imwrite(blank, np.zeros((7, 256, 256), np.uint16), photometric="minisblack")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "session"),
                str(blank),
                str(image),
                "--names",
                *sim.tissue.channel_names,
                "--out",
                str(tmp_path / "mixed"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{blank}: skipped:" in err and "1 of 2 images were not typed" in err
    assert (tmp_path / "mixed" / "new.csv").exists() and not (tmp_path / "mixed" / "blank.csv").exists()
    assert main(["predict", str(tmp_path / "nowhere"), str(image), "--out", str(tmp_path / "none")]) == 2
    assert "not a saved session" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda t: t.replace("[meta]", "[meta\n"), "is not valid TOML"),
        (lambda t: t.replace("k_max = 8", "kmax = 8"), "unexpected keyword argument 'kmax'"),
        (lambda t: t.replace("dropout = 0.1", 'dropout = 0.1\ndropout_placment = "head"'), "dropout_placment"),
        (lambda t: t.replace('source = "simulated"', 'source = "simulate"'), 'use "simulated" or "labelled"'),
        (
            lambda t: t.replace('source = "simulated"', 'source = "labelled"\nimages = ["a.tif"]'),
            "one cell table per image",
        ),
        (
            lambda t: t.replace('source = "simulated"', 'source = "labelled"\nimages = ["a.tif"]\ncells = ["a.csv"]'),
            "at least two labelled sections",
        ),
        (lambda t: t.replace('centre_block = "nucleus"', 'centre_block = "nuclei"'), "centre_block must be"),
    ],
)
def test_a_bad_meta_training_config_is_a_message_not_a_traceback(tmp_path, capsys, edit, says):
    config = tmp_path / "bad.toml"
    config.write_text(edit((ROOT / "configs" / "bundled-model.toml").read_text()))
    assert main(["meta-train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_names_and_formats_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    assert main(["synth", "--shape", "64", "64", "--out", str(tmp_path / "x.png")]) == 2
    assert "this writes a TIFF, so name it .tif (e.g. x.ome.tif)" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    image = tmp_path / "t.ome.tif"
    assert main(["synth", "--shape", "128", "128", "--out", str(image)]) == 0
    import napari_agile.detect.nuclei

    def never(*args, **kwargs):
        raise AssertionError("detection ran before the output names were checked")

    monkeypatch.setattr(napari_agile.detect.nuclei, "detect_nuclei", never)
    assert main(["detect", str(image), "--out", str(tmp_path / "cells.xlsx")]) == 2
    assert "Cannot tell the table format of cells.xlsx" in capsys.readouterr().err
    assert main(["detect", str(image), "--write-mask", str(tmp_path / "mask.png")]) == 2
    assert "--write-mask mask.png: this writes a TIFF" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "missing.tif")]) == 2
    err = capsys.readouterr().err
    assert "No such file" in err and "detecting nuclei" not in err  # no empty progress bar before the error


def test_channel_names_match_ignoring_case_and_suggest_the_closest(tmp_path, capsys):
    image = tmp_path / "t.tif"
    tifffile.imwrite(image, np.random.default_rng(0).integers(0, 999, (2, 96, 96), np.uint16), photometric="minisblack")
    assert (
        main(["detect", str(image), "--names", "dapi", "NeuN", "--channels", "Dapi", "--out", str(tmp_path / "c.csv")])
        == 0
    )
    assert (
        main(["detect", str(image), "--names", "dapi", "NeuN", "--channels", "NeuM", "--out", str(tmp_path / "c.csv")])
        == 2
    )
    assert "Did you mean 'NeuN' (for 'NeuM')?" in capsys.readouterr().err


def test_warnings_are_one_plain_line(monkeypatch, capsys):
    import warnings

    from napari_agile import cli

    help_line, add, _ = cli.COMMANDS["synth"]
    monkeypatch.setitem(
        cli.COMMANDS, "synth", (help_line, add, lambda args: warnings.warn("check the names", stacklevel=1))
    )
    assert main(["synth", "--out", "x.tif"]) == 0
    assert capsys.readouterr().err == "napari-agile synth: warning: check the names\n"


def test_predict_help_names_its_default_folder(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "default: predictions" in " ".join(capsys.readouterr().out.split())


def _any_panel_model():
    """A small untrained stand-in for the bundled model for any panel (a per-channel encoder)."""
    from napari_agile.engine.model_file import AgileModel
    from napari_agile.engine.network import ModelConfig, init_params

    cfg = ModelConfig(channels=(), encoder="per_channel", centre_block="nucleus", width=8, blocks=3, trunk_bin=2)
    return AgileModel(cfg, init_params(cfg), 0.01, "head")


def test_channels_and_nuclear_choose_the_panel_for_predict_detect_and_demo(tmp_path, capsys, monkeypatch):
    import napari_agile.demo as demo
    import napari_agile.engine.model_file as modelio
    from napari_agile.io.images import write_ome_tiff
    from napari_agile.session import Session
    from napari_agile.synth.simulator import simulate_tissue

    sim = simulate_tissue((256, 256), seed=4)
    own = sim.tissue.select(["DAPI", "NeuN"]).rename({"DAPI": "DNA", "NeuN": "CD3"})  # a user's own 2-channel panel
    session = Session(own, sim.cells, _any_panel_model(), store=tmp_path / "session")
    types = sim.cells.table["cell_type"]
    ids = [*types.index[types == "neuron"][:4], *types.index[types != "neuron"][:4]]
    session.annotate("T cell", ids, [True] * 4 + [False] * 4)
    session.adapt("T cell")
    session.save(tmp_path / "session")
    new = simulate_tissue((256, 256), seed=5)
    wider = write_ome_tiff(
        new.tissue.select(["DAPI", "NeuN", "S100"]).rename({"DAPI": "DNA", "NeuN": "CD3", "S100": "CD20"}),
        tmp_path / "wider.ome.tif",
    )
    # the saved session's channels and nuclear stain (DNA, detected by it too); CD20 left out
    assert main(["predict", str(tmp_path / "session"), str(wider), "--out", str(tmp_path / "p1")]) == 0, (
        capsys.readouterr().err
    )
    assert pd.read_csv(tmp_path / "p1" / "wider.csv")["p_T cell"].between(0, 1).all()

    renamed = write_ome_tiff(
        new.tissue.select(["DAPI", "NeuN"]).rename({"DAPI": "Ho", "NeuN": "CD3"}), tmp_path / "renamed.ome.tif"
    )  # another lab's names: said with --channels / --nuclear
    assert main(["predict", str(tmp_path / "session"), str(renamed), "--out", str(tmp_path / "p2")]) == 2
    assert "renamed.ome.tif: skipped" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                str(tmp_path / "session"),
                str(renamed),
                "--channels",
                "Ho",
                "CD3",
                "--nuclear",
                "Ho",
                "--out",
                str(tmp_path / "p2"),
            ]
        )
        == 0
    ), capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "p2" / "renamed.csv")) > 0
    assert (
        main(
            [
                "predict",
                str(tmp_path / "session"),
                str(renamed),
                "--channels",
                "Ho",
                "CD3",
                "--nuclear",
                "Ho",
                "CD3",
                "--out",
                str(tmp_path / "p3"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "at least one marker channel" in err and "Traceback" not in err

    for flag in ("--nuclear", "--channels"):  # detect: --nuclear, and --channels as before
        assert main(["detect", str(renamed), flag, "Ho", "--out", str(tmp_path / f"c{flag}.csv")]) == 0
        assert len(pd.read_csv(tmp_path / f"c{flag}.csv")) > 0

    stand_in = _any_panel_model().save(tmp_path / "any.safetensors")
    real = modelio._bundled_path
    monkeypatch.setattr(
        modelio, "_bundled_path", lambda name="rat-brain": stand_in if name == "any-panel" else real(name)
    )
    monkeypatch.setattr(demo, "DEMO_SHAPE", (256, 256))
    assert (
        main(
            [
                "demo",
                "--out",
                str(tmp_path / "demo"),
                "--channels",
                "DAPI",
                "NeuN",
                "S100",
                "RECA1",
                "--nuclear",
                "DAPI",
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "demo" / "session" / "session.json").read_text())
    assert meta["channels"] == ["DAPI", "NeuN", "S100", "RECA1"] and meta["nuclear"] == ["DAPI"]
    assert main(["demo", "--out", str(tmp_path / "demo2"), "--channels", "NeuN", "S100"]) == 2
    assert "nuclear stain" in capsys.readouterr().err

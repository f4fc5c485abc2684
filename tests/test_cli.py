"""The command line, end to end through main([...])."""
import numpy as np
import pandas as pd
import tifffile

from napari_agile.cli import main


def test_synth_then_detect(tmp_path, capsys):
    image, truth = tmp_path / "tissue.ome.tif", tmp_path / "truth.csv"
    assert main(["synth", "--shape", "256", "256", "--seed", "0", "--out", str(image), "--cells", str(truth)]) == 0
    cells, labels = tmp_path / "cells.csv", tmp_path / "labels.tif"
    assert main(["detect", str(image), "--out", str(cells), "--labels", str(labels)]) == 0
    table = pd.read_csv(cells)
    assert len(table) > 0.7 * len(pd.read_csv(truth))
    assert set(np.unique(tifffile.imread(labels))) == {0, *table["id"]}


def test_bad_input_prints_a_message_and_exits_2(tmp_path, capsys):
    image = tmp_path / "x.tif"
    tifffile.imwrite(image, np.zeros((2, 32, 32), np.uint16), photometric="minisblack")
    assert main(["detect", str(image), "--names", "NeuN", "S100", "--out", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert "--channels" in err and "Traceback" not in err

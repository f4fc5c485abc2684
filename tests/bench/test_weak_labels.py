import numpy as np
import pandas as pd
import pytest

from napari_agile.bench.weak_labels import lab_labelled, marker_intensities, weak_labels
from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import PAPER_CHANNELS, Tissue


def _section(n: int = 20, side: int = 30):
    """n nuclei boxes of side x side on a row over a faint random background (no ties), and their table."""
    image = np.random.default_rng(0).uniform(0, 1e-3, (len(PAPER_CHANNELS), side + 20, n * (side + 10)))
    xmin = np.arange(n) * (side + 10)
    table = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "y": 10 + side / 2,
            "x": xmin + side / 2,
            "ymin": 10,
            "xmin": xmin,
            "ymax": 10 + side,
            "xmax": xmin + side,
            "cell_type": "neuron",
        }
    )
    return image, table


def _paint(image, table, cell_id, channel, value, inset=10):
    """Fill a cell's box, inset by `inset` px, in `channel`."""
    r = table.set_index("id").loc[cell_id]
    image[PAPER_CHANNELS.index(channel), r.ymin + inset : r.ymax - inset, r.xmin + inset : r.xmax - inset] = value


#: Two bright cells per marker (cell id 3 in the top NeuN and top S100 sets); cell 4 bright on its box's rim only.
BRIGHT = [
    (1, "S100", 5.0),
    (3, "S100", 6.0),
    (3, "NeuN", 4.0),
    (5, "NeuN", 2.0),
    (6, "Olig2", 2.0),
    (7, "Olig2", 2.0),
    (8, "Iba1", 3.0),
    (9, "Iba1", 3.0),
    (2, "RECA1", 3.0),
    (10, "RECA1", 1.0),
]
EXPECTED = {
    1: "astrocyte",
    2: "endothelial",
    3: "astrocyte",
    5: "neuron",
    6: "oligodendrocyte",
    7: "oligodendrocyte",
    8: "microglia",
    9: "microglia",
    10: "endothelial",
}


def _painted():
    image, table = _section()
    for cell_id, channel, value in BRIGHT:
        _paint(image, table, cell_id, channel, value)
    _paint(image, table, 4, "Olig2", 10.0, inset=0)  # whole box at 10 (a mean of 8.9 over it) ...
    _paint(image, table, 4, "Olig2", 0.0)  # ... but dark inside the inset box
    return Tissue(image, list(PAPER_CHANNELS)), Cells(table)


def test_rule_keeps_the_brightest_per_marker_and_types_by_brightest_marker():
    labels = weak_labels(marker_intensities(*_painted()), top_fraction=0.1)  # 2 of 20 cells per marker
    assert labels[labels != ""].to_dict() == EXPECTED


def test_nuclei_too_small_for_the_inset_are_never_kept():
    image, table = _section(n=4, side=18)  # 18 - 2 * 10 < 1: nothing left inside
    image[:] = 1.0
    inten = marker_intensities(Tissue(image, list(PAPER_CHANNELS)), Cells(table))
    assert inten.isna().all().all()
    assert (weak_labels(inten, top_fraction=1.0) == "").all()


def test_lab_labelled_keeps_only_labelled_cells_and_the_former_type():
    ((_, cells),) = lab_labelled([_painted()], top_fraction=0.1)
    assert dict(zip(cells.table["id"], cells.table["cell_type"])) == EXPECTED
    assert (cells.table["true_type"] == "neuron").all() and cells.labels is None


def test_bad_input_is_refused():
    image, table = _section(n=2)
    with pytest.raises(AgileInputError, match="bounding box"):
        marker_intensities(Tissue(image, list(PAPER_CHANNELS)), Cells(table.drop(columns=["xmax"])))
    with pytest.raises(AgileInputError, match="top_fraction"):
        weak_labels(pd.DataFrame({"neuron": [1.0]}), top_fraction=0)


def test_tile_by_tile_reads_give_each_cell_its_own_box_mean(monkeypatch):
    import dask.array as da

    import napari_agile.bench.weak_labels as wl

    tissue, cells = _painted()
    want = marker_intensities(tissue, cells)
    direct = [
        np.asarray(
            tissue.data[[tissue.index(m) for m in wl.MARKER_OF.values()], y0 + 10 : y1 - 10, x0 + 10 : x1 - 10],
            np.float64,
        ).mean((1, 2))
        for y0, x0, y1, x1 in cells.table[["ymin", "xmin", "ymax", "xmax"]].to_numpy()
    ]
    np.testing.assert_allclose(want.to_numpy(), np.array(direct))
    monkeypatch.setattr(wl, "TILE", 64)  # boxes spread over 13 tiles, read lazily from a dask array
    lazy = Tissue(da.from_array(tissue.data, chunks=(1, 25, 100)), list(PAPER_CHANNELS))
    np.testing.assert_allclose(marker_intensities(lazy, cells).to_numpy(), want.to_numpy())

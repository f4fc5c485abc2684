"""Patches: centring, border padding, normaliser robustness, streaming, cell tables."""

import numpy as np
import pandas as pd
import pytest

from napari_agile.detect.patches import at_border, extract_patches, fit_normalizer, iter_patches
from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells, read_cell_table, write_cell_table
from napari_agile.io.tissue import Tissue


def _cells(yx):
    yx = np.asarray(yx, float)
    return Cells(pd.DataFrame({"id": np.arange(1, len(yx) + 1) * 10, "y": yx[:, 0], "x": yx[:, 1]}))


def _tissue(seed=0, shape=(300, 400)):
    return Tissue(np.random.default_rng(seed).integers(100, 1000, (2, *shape), dtype=np.uint16), ["DAPI", "NeuN"])


def test_bright_pixel_lands_at_the_centre():
    tissue = _tissue()
    tissue.data[1, 123, 257] = 60000
    patches = extract_patches(tissue, _cells([(123.2, 256.7)]), size=20)
    assert patches.shape == (1, 2, 20, 20)
    assert np.unravel_index(patches[0, 1].argmax(), (20, 20)) == (10, 10)


def test_border_patches_are_zero_outside_after_normalisation():
    tissue = _tissue()
    norm = fit_normalizer(tissue)
    cells = _cells([(2, 3), (150, 200)])
    patches = extract_patches(tissue, cells, size=20, normalizer=norm)
    assert (patches[0, :, :8, :] == 0).all() and (patches[0, :, :, :7] == 0).all()
    assert patches[0, :, 8:, 7:].mean() > 0.2
    assert at_border(cells, tissue.shape, 20).tolist() == [True, False]


def test_normaliser_makes_patches_independent_of_stain_brightness():
    tissue = _tissue()
    brighter = Tissue(tissue.data * 3, tissue.channel_names)
    cells = _cells([(50, 60), (200, 390), (299, 0)])
    a = extract_patches(tissue, cells, size=32, normalizer=fit_normalizer(tissue))
    b = extract_patches(brighter, cells, size=32, normalizer=fit_normalizer(brighter))
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert 0 <= a.min() and a.max() <= 1.5


def test_iter_patches_streams_the_same_patches_as_extract():
    tissue = _tissue()
    rng = np.random.default_rng(1)
    cells = _cells(rng.uniform([0, 0], [300, 400], (50, 2)))
    whole = extract_patches(tissue, cells, size=16)
    seen = {}
    for ids, batch in iter_patches(tissue, cells, size=16, batch_size=7):
        assert len(ids) <= 7
        seen.update(zip(ids.tolist(), batch))
    assert sorted(seen) == sorted(cells.ids.tolist())
    for k, i in enumerate(cells.ids):
        np.testing.assert_array_equal(seen[int(i)], whole[k])


def test_cell_tables_round_trip_csv_and_lab_tsv(tmp_path):
    cells = Cells(
        pd.DataFrame(
            {
                "id": [3, 5],
                "y": [1.5, 20.0],
                "x": [4.0, 7.25],
                "area": [10, 20],
                "ymin": [0, 15],
                "xmin": [2, 3],
                "ymax": [4, 25],
                "xmax": [6, 11],
            }
        )
    )
    write_cell_table(cells, tmp_path / "c.csv")
    pd.testing.assert_frame_equal(read_cell_table(tmp_path / "c.csv").table, cells.table)
    write_cell_table(cells, tmp_path / "c.tsv")
    header = (tmp_path / "c.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["ID", "centroid_x", "centroid_y", "xmin", "ymin", "xmax", "ymax"]
    back = read_cell_table(tmp_path / "c.tsv")
    np.testing.assert_allclose(back.centroids, cells.centroids)  # x = column, y = row kept apart
    assert back.table.loc[5, "xmax"] == 11
    (tmp_path / "bad.csv").write_text("id,y,x\ncell-a,1,2\n,3,4\n")  # text and empty ids, as spreadsheets save them
    with pytest.raises(AgileInputError, match="whole numbers"):
        read_cell_table(tmp_path / "bad.csv")


def test_nucleus_mask_plane_marks_each_cells_own_nucleus():
    tissue = _tissue(shape=(120, 140))
    labels = np.zeros((120, 140), np.int32)
    labels[40:50, 60:66] = 10  # cell 10's nucleus; cell 20 has none in the label image
    labels[44:48, 70:75] = 30  # a neighbour inside cell 10's window
    cells = _cells([(45, 63), (5, 5)])
    cells.labels = labels
    ((ids, out),) = iter_patches(tissue, cells, size=20, nucleus_mask=True)
    own = {int(i): p[-1] for i, p in zip(ids, out)}
    assert out.shape == (2, 3, 20, 20)
    assert own[10].sum() == 60 and own[10][5, 7] == 1 and own[10][9, 17] == 0  # not the neighbour's pixels
    assert own[20][10, 10] == 1 and own[20].sum() < 20 * 20 / 2  # no nucleus: a small disk at the centre
    np.testing.assert_array_equal(out[:, :2], extract_patches(tissue, cells, size=20, ids=ids))
    np.testing.assert_array_equal(out, extract_patches(tissue, cells, size=20, ids=ids, nucleus_mask=True))


def test_nucleus_mask_needs_a_label_image_of_the_tissues_size():
    tissue, cells = _tissue(), _cells([(45, 63)])
    with pytest.raises(AgileInputError, match="no label image"):
        next(iter_patches(tissue, cells, size=20, nucleus_mask=True))
    cells.labels = np.zeros((10, 10), np.int32)
    with pytest.raises(AgileInputError, match="label image made on this tissue"):
        next(iter_patches(tissue, cells, size=20, nucleus_mask=True))

"""Typing whole sections in bounded memory: the mask on disk, cells typed batch by batch, OME-Zarr label pyramids."""

import numpy as np
import pandas as pd
import pytest
import zarr

from napari_agile.batch import type_sections
from napari_agile.detect.nuclei import detect_nuclei
from napari_agile.engine.model_file import load_model
from napari_agile.io.cells import Cells
from napari_agile.io.images import read_label_zarr, write_ome_tiff
from napari_agile.io.label_zarr import create_label_image, finish_label_image, open_level, paint_label_image
from napari_agile.session import Session
from napari_agile.streamed import SavedTypes, type_cells
from napari_agile.synth.simulator import simulate_tissue


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved session with two adapted types, taught on one simulated section."""
    folder = tmp_path_factory.mktemp("streamed") / "session"
    sim = simulate_tissue((256, 256), seed=4)
    session = Session(sim.tissue, sim.cells, load_model(), store=folder)
    kinds = sim.cells.table["cell_type"]
    for name in kinds.value_counts().index[:2]:  # the two commonest types: 3 answers of each kind
        ids = [*kinds.index[kinds == name][:3], *kinds.index[kinds != name][:3]]
        session.annotate(name, ids, [True] * 3 + [False] * 3)
        session.adapt(name)
    session.save(folder)
    return folder


def test_a_mask_on_disk_gives_the_same_nuclei(tmp_path):
    tissue = simulate_tissue((300, 260), seed=6).tissue
    in_memory = detect_nuclei(tissue, tile=128)
    on_disk = detect_nuclei(tissue, tile=128, out=create_label_image(tmp_path / "nuclei", tissue.shape, chunk=64))
    pd.testing.assert_frame_equal(on_disk.table, in_memory.table)
    np.testing.assert_array_equal(np.asarray(on_disk.labels), in_memory.labels)


def test_cells_typed_batch_by_batch_match_the_session(saved, tmp_path):
    new = simulate_tissue((256, 256), seed=5)
    expected = Session.apply_saved(saved, new.tissue, new.cells, store=tmp_path / "s").predict()
    level = create_label_image(tmp_path / "nuclei", new.tissue.shape, chunk=100)
    level[:] = new.cells.labels
    cells = Cells(new.cells.table.reset_index(drop=True), open_level(tmp_path / "nuclei"))  # read back chunk by chunk
    typed = type_cells(SavedTypes.load(saved), new.tissue, cells, batch_size=37)  # batches cross cells' order
    pd.testing.assert_frame_equal(typed, expected, check_dtype=False, rtol=1e-5)
    assert set(typed["cell_type"]) - {"none"}  # some cells typed, else the comparison proves little


def test_label_pyramid_halves_until_one_chunk_and_names_its_labels(tmp_path):
    mask = np.zeros((300, 130), np.int32)
    mask[10:20, 10:20], mask[200:260, 50:120] = 1, 2
    paint_label_image(mask, np.array([0, 5, 7], np.int32), tmp_path / "types", chunk=64)
    finish_label_image(tmp_path / "types", {5: "neuron", 7: "glia"}, {5: "#ff0000", 7: "#00ff00"})
    group = zarr.open_group(str(tmp_path / "types"), mode="r")
    assert [group[str(k)].shape for k in range(4)] == [(300, 130), (150, 65), (75, 33), (38, 17)]
    np.testing.assert_array_equal(read_label_zarr(tmp_path / "types"), np.array([0, 5, 7])[mask])
    np.testing.assert_array_equal(group["2"][:], np.array([0, 5, 7])[mask][::4, ::4])
    label = group.attrs["image-label"]
    assert {(c["label-value"], tuple(c["rgba"])) for c in label["colors"]} == {
        (5, (255, 0, 0, 255)),
        (7, (0, 255, 0, 255)),
    }
    assert [d["coordinateTransformations"][0]["scale"] for d in group.attrs["multiscales"][0]["datasets"]][-1] == [8, 8]


def test_batch_writes_a_csv_and_its_label_images_whole(saved, tmp_path):
    new = simulate_tissue((256, 256), seed=5)
    image = write_ome_tiff(new.tissue, tmp_path / "new.ome.tif")
    heard = []
    [typed] = type_sections(saved, [image], tmp_path / "out", labels=True, stages=lambda *a: heard.append(a))
    assert typed.error is None and typed.labels == tmp_path / "out" / "new.labels.zarr"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.csv", "new.labels.zarr"]  # no partial left
    table = pd.read_csv(typed.table)
    nuclei = read_label_zarr(typed.labels / "nuclei")
    types = read_label_zarr(typed.labels / "cell_types")
    assert len(table) == typed.n_cells == len(np.unique(nuclei)) - 1
    codes = {name: k + 1 for k, name in enumerate(SavedTypes.load(saved).meta["types"])} | {"none": 0}
    centre = np.round(table[["y", "x"]].to_numpy()).astype(int)
    on_own = nuclei[centre[:, 0], centre[:, 1]] == table["id"].to_numpy()
    assert on_own.mean() > 0.9
    np.testing.assert_array_equal(types[centre[on_own, 0], centre[on_own, 1]], table["cell_type"].map(codes)[on_own])
    assert zarr.open_group(str(typed.labels), mode="r").attrs["labels"] == ["nuclei", "cell_types"]
    assert [a for a in heard if a[0] == "cells"][-1] == ("cells", typed.n_cells, typed.n_cells)  # progress to the end
    assert heard[0][0] == "nuclei" and heard.index(next(a for a in heard if a[0] == "cells")) > 0


def test_an_h5ad_made_tile_by_tile_holds_what_the_session_export_holds(saved, tmp_path):
    anndata = pytest.importorskip("anndata")
    new = simulate_tissue((256, 256), seed=5)
    image = write_ome_tiff(new.tissue, tmp_path / "new.ome.tif")
    mask = tmp_path / "new-nuclei.tif"
    import tifffile

    tifffile.imwrite(mask, new.cells.labels, tile=(64, 64))
    [typed] = type_sections(saved, [image], tmp_path / "out", masks=[mask], suffix=".h5ad", labels=True)
    assert typed.error is None and typed.labels is not None and typed.labels.exists()  # label images beside it too
    streamed = anndata.read_h5ad(typed.table)
    session = Session.apply_saved(saved, new.tissue, new.cells, store=tmp_path / "s")
    whole = anndata.read_h5ad(session.export(tmp_path / "whole.h5ad"))
    assert list(streamed.obs_names) == list(whole.obs_names) and list(streamed.var_names) == list(whole.var_names)
    np.testing.assert_allclose(streamed.X, whole.X, rtol=1e-5)  # marker means, read tile by tile
    np.testing.assert_allclose(streamed.layers["ring"], whole.layers["ring"], rtol=1e-5)
    np.testing.assert_allclose(streamed.obsm["spatial"], whole.obsm["spatial"])
    pd.testing.assert_frame_equal(streamed.obs, whole.obs, check_exact=False, rtol=1e-5)
    assert list(streamed.uns["cell_type_colors"]) == list(whole.uns["cell_type_colors"])
    assert {"session", "model", "tissue"} <= set(streamed.uns["napari_agile"])


def test_a_geojson_made_tile_by_tile_holds_what_the_session_export_holds(saved, tmp_path):
    """The batch .geojson outlines each nucleus from the on-disk mask block by block: the same detections (outline,
    class, measurements) as the whole-section Session export, label images beside it."""
    import json

    new = simulate_tissue((256, 256), seed=5)
    image = write_ome_tiff(new.tissue, tmp_path / "new.ome.tif")
    [typed] = type_sections(saved, [image], tmp_path / "out", suffix=".geojson", labels=True)
    assert typed.error is None and typed.labels is not None and typed.labels.exists()
    cells = detect_nuclei(new.tissue, channels=SavedTypes.load(saved).meta["nuclear"])
    session = Session.apply_saved(saved, new.tissue, cells, store=tmp_path / "s")
    whole = session.export(tmp_path / "whole.geojson", session.predict())

    def features(path):
        return {f["id"]: f for f in json.loads(path.read_text())["features"]}

    streamed, expected = features(typed.table), features(whole)
    assert streamed.keys() == expected.keys() and len(streamed) == typed.n_cells
    for cell, feature in streamed.items():
        assert feature["geometry"] == expected[cell]["geometry"]
        assert feature["properties"].get("classification") == expected[cell]["properties"].get("classification")
        assert feature["properties"]["measurements"] == pytest.approx(expected[cell]["properties"]["measurements"])
    assert sum(f["geometry"]["type"] == "Polygon" for f in streamed.values()) == len(streamed)


def test_a_spatialdata_store_made_tile_by_tile_holds_what_the_session_export_holds(saved, tmp_path):
    """The batch .zarr copies the image and both label images chunk by chunk from lazy arrays: spatialdata reads
    back the same image, nuclei, cell types and table as the whole-section Session export."""
    spatialdata = pytest.importorskip("spatialdata")
    new = simulate_tissue((256, 256), seed=5)
    image = write_ome_tiff(new.tissue, tmp_path / "new.ome.tif")
    mask = tmp_path / "new-nuclei.tif"
    import tifffile

    tifffile.imwrite(mask, new.cells.labels, tile=(64, 64))
    [typed] = type_sections(saved, [image], tmp_path / "out", masks=[mask], suffix=".zarr")
    assert typed.error is None and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.zarr"]
    streamed = spatialdata.read_zarr(typed.table)
    session = Session.apply_saved(saved, new.tissue, new.cells, store=tmp_path / "s")
    whole = spatialdata.read_zarr(session.export(tmp_path / "whole.zarr"))
    for kind, name in (("images", "tissue"), ("labels", "nuclei"), ("labels", "cell_types")):
        np.testing.assert_array_equal(
            np.asarray(getattr(streamed, kind)[name].data), np.asarray(getattr(whole, kind)[name].data)
        )
    assert set(np.unique(np.asarray(streamed.labels["cell_types"].data))) - {0}  # some cells typed
    ours, theirs = streamed.tables["table"], whole.tables["table"]
    assert list(ours.obs_names) == list(theirs.obs_names)
    np.testing.assert_allclose(ours.X, theirs.X, rtol=1e-5)
    pd.testing.assert_series_equal(ours.obs["cell_type"], theirs.obs["cell_type"])
    assert ours.uns["spatialdata_attrs"] == theirs.uns["spatialdata_attrs"]

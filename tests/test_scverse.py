"""AnnData (.h5ad) and SpatialData (.zarr) export, read back with anndata and spatialdata themselves, the marker
means they carry, and SpatialData stores made elsewhere opened as a tissue and its nuclei."""

import json

import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from napari_agile import AgileInputError, Session, read_spatialdata, read_tissue, simulate_tissue
from napari_agile.detect.markers import disc_labels, marker_means
from napari_agile.detect.nuclei import read_mask
from napari_agile.detect.patches import fit_normalizer
from napari_agile.engine.model_file import AgileModel
from napari_agile.engine.network import ModelConfig, init_params
from napari_agile.io.cells import Cells
from napari_agile.io.export import export_table
from napari_agile.io.tissue import PAPER_CHANNELS


@pytest.fixture(scope="module")
def sim():
    return simulate_tissue((300, 340), seed=11)


@pytest.fixture()
def session(sim, tmp_path):
    cfg = ModelConfig(channels=PAPER_CHANNELS, centre_radius=14)
    session = Session(
        sim.tissue,
        sim.cells,
        AgileModel(cfg, init_params(cfg, seed=3), inner_lr=0.1),
        store=tmp_path / "store",
        mc_passes=4,
    )
    types = sim.cells.table["cell_type"]
    for name in ("neuron", "astrocyte"):
        ids = [*types.index[types == name][:3], *types.index[types != name][:3]]
        session.annotate(name, ids, [True] * 3 + [False] * 3)
        session.adapt(name)
    session.set_color("neuron", "#123456")
    return session


def whole_image_means(tissue, cells, band, normalizer=None):
    """The same means computed on the whole image at once with ndimage (the reference)."""
    img = np.asarray(tissue.data, np.float32)
    img = img if normalizer is None else normalizer.apply(img)
    ring = np.where(cells.labels == 0, ndimage.grey_dilation(cells.labels, size=2 * band + 1), 0)
    return [
        np.nan_to_num(np.stack([ndimage.mean(ch, lab, cells.ids) for ch in img], 1)) for lab in (cells.labels, ring)
    ]


@pytest.mark.parametrize("tile", [64, 100, 4096])
def test_marker_means_do_not_depend_on_the_tile_size(sim, tile):
    cells = sim.cells.subset(sim.cells.ids[::2])  # the other nuclei are neither nucleus nor ring
    norm = fit_normalizer(sim.tissue)
    got = marker_means(sim.tissue, cells, band=5, normalizer=norm, tile=tile)
    for g, want in zip(got, whole_image_means(sim.tissue, cells, 5, norm)):
        assert g.shape == (len(cells), sim.tissue.n_channels)
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got[0], got[1])  # a nucleus is not its surroundings


def test_cells_without_a_mask_are_measured_over_a_disc():
    cells = Cells(pd.DataFrame({"id": [3, 9], "y": [10.0, 40.0], "x": [10.0, 40.0], "area": [50.0, 50.0]}))
    labels = disc_labels(cells, (60, 60))
    assert set(np.unique(labels)) == {0, 3, 9} and abs((labels == 3).sum() - 50) < 12


def test_h5ad_export_reads_back_with_anndata(session, sim, tmp_path):
    table = session.predict()
    path = session.export(tmp_path / "out" / "cells.h5ad", table)
    assert not list(path.parent.glob("*.partial"))
    adata = anndata.read_h5ad(path)
    assert adata.shape == (len(sim.cells), 7) and list(adata.var_names) == list(PAPER_CHANNELS)
    assert list(adata.obs_names) == [str(i) for i in table["id"]]
    nucleus, ring = marker_means(sim.tissue, sim.cells)  # raw intensities, as scanpy users expect
    np.testing.assert_allclose(adata.X, nucleus, rtol=1e-6)
    np.testing.assert_allclose(adata.layers["ring"], ring, rtol=1e-6)
    assert list(adata.obs["cell_type"].cat.categories) == ["neuron", "astrocyte", "none"]
    assert (adata.obs["cell_type"].astype(str).to_numpy() == table["cell_type"].to_numpy()).all()
    np.testing.assert_allclose(adata.obs["p_neuron"], table["p_neuron"])
    np.testing.assert_allclose(adata.obs["entropy_astrocyte"], table["entropy_astrocyte"])
    np.testing.assert_allclose(adata.obsm["spatial"], table[["x", "y"]].to_numpy())
    assert adata.uns["cell_type_colors"][0] == "#123456" and adata.uns["cell_type_colors"][-1] == "#d3d3d3"
    answers = adata.uns["napari_agile"]["answers"]
    assert len(answers) == 12 and answers["answer"].sum() == 6
    assert set(answers["cell_type"]) == {"neuron", "astrocyte"}
    meta = {k: json.loads(v) for k, v in adata.uns["napari_agile"].items() if k != "answers"}
    assert meta["session"]["types"] == ["neuron", "astrocyte"] and meta["model"]["inner_lr"] == 0.1
    assert meta["tissue"]["channels"] == list(PAPER_CHANNELS)


def test_csv_and_geojson_go_through_the_same_export(session, tmp_path):
    table = session.predict()
    pd.testing.assert_frame_equal(pd.read_csv(session.export(tmp_path / "c.csv", table)), table, check_dtype=False)
    features = json.loads(session.export(tmp_path / "c.geojson", table).read_text())["features"]
    neuron = next(f for f in features if f["properties"].get("classification", {}).get("name") == "neuron")
    assert neuron["properties"]["classification"]["color"] == [0x12, 0x34, 0x56]


@pytest.mark.parametrize("name", ["cells.h5ad", "section.zarr"])
def test_a_bare_table_cannot_become_h5ad_or_spatialdata_and_says_how(session, tmp_path, name):
    with pytest.raises(AgileInputError, match="Session.export"):
        export_table(session.predict(), tmp_path / name)


def test_without_anndata_the_error_says_what_to_install(session, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "anndata", None)  # import anndata now raises ImportError
    with pytest.raises(AgileInputError, match=r"napari-agile\[scverse\]"):
        session.export(tmp_path / "cells.h5ad")
    assert not (tmp_path / "cells.h5ad").exists() and len(session.answer_table()) == 12


def test_an_unwritable_target_is_a_clear_error(session, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(AgileInputError, match="Could not write"):
        session.export(tmp_path / "file" / "cells.h5ad")


def test_spatialdata_export_reads_back_with_spatialdata(session, sim, tmp_path):
    import spatialdata

    table = session.predict()
    path = session.export(tmp_path / "out" / "section.zarr", table)
    assert not list(path.parent.glob(".*partial"))
    data = spatialdata.read_zarr(path)
    image = data.images["tissue"]
    assert list(image.coords["c"].values) == list(PAPER_CHANNELS)
    np.testing.assert_array_equal(image.values, np.asarray(sim.tissue.data))
    np.testing.assert_array_equal(data.labels["nuclei"].values, sim.cells.labels)
    np.testing.assert_array_equal(data.labels["cell_types"].values, session.paint(table))
    adata = data.tables["table"]
    assert adata.uns["spatialdata_attrs"]["region"] == "nuclei"
    assert (adata.obs["cell_id"].to_numpy() == table["id"].to_numpy()).all()
    assert (adata.obs["cell_type"].astype(str).to_numpy() == table["cell_type"].to_numpy()).all()
    np.testing.assert_allclose(adata.X, marker_means(sim.tissue, sim.cells)[0], rtol=1e-6)
    session.export(path, table)  # a second export replaces the store whole
    assert spatialdata.read_zarr(path).tables["table"].n_obs == len(table)


def test_spatialdata_export_takes_cell_type_names_with_spaces_and_signs(session, tmp_path):
    """Types are named as biologists name them ("T cell", "CD8+"); SpatialData allows no such column names."""
    import spatialdata

    session.rename_type("neuron", "T cell")
    session.rename_type("astrocyte", "CD8+")
    table = session.predict()
    adata = spatialdata.read_zarr(session.export(tmp_path / "section.zarr", table)).tables["table"]
    np.testing.assert_allclose(adata.obs["p_T_cell"], table["p_T cell"])
    np.testing.assert_allclose(adata.obs["p_CD8_"], table["p_CD8+"])
    assert set(adata.obs["cell_type"].cat.categories) == {"T cell", "CD8+", "none"}


def _store_made_elsewhere(path, img, labels, names):
    """A SpatialData store as another tool writes one: an image, a nucleus mask and a cell mask, no table."""
    import spatialdata
    from spatialdata.models import Image2DModel, Labels2DModel

    spatialdata.SpatialData(
        images={"section": Image2DModel.parse(img, dims=("c", "y", "x"), c_coords=names)},
        labels={
            "nucleus_boundaries": Labels2DModel.parse(labels, dims=("y", "x")),
            "cell_boundaries": Labels2DModel.parse(labels, dims=("y", "x")),
        },
    ).write(path)
    return path


def test_a_spatialdata_store_made_elsewhere_opens_as_tissue_and_nuclei(sim, tmp_path):
    names = ["Hoechst", "CD3", "CD20"]
    img = np.asarray(sim.tissue.data)[[0, 2, 3]]
    path = _store_made_elsewhere(tmp_path / "other.zarr", img, sim.cells.labels, names)
    tissue, cells = read_spatialdata(path)  # the nuclei: the only labels element named for them
    assert list(tissue.channel_names) == names and tissue.shape == sim.tissue.shape
    np.testing.assert_array_equal(np.asarray(tissue.data), img)
    assert sorted(cells.ids) == sorted(sim.cells.ids)
    np.testing.assert_allclose(cells.table.loc[sim.cells.ids, ["y", "x"]], sim.cells.table[["y", "x"]], atol=1e-6)
    assert list(read_tissue(path).channel_names) == names  # the store's root opens as its image
    np.testing.assert_array_equal(read_mask(path), sim.cells.labels)  # ... and as a nucleus mask (--masks)
    with pytest.raises(AgileInputError, match="no labels element 'cells'; it has: cell_boundaries"):
        read_spatialdata(path, labels="cells")


def test_a_store_with_several_images_or_none_says_what_to_choose(sim, tmp_path):
    with pytest.raises(AgileInputError, match="not a SpatialData zarr store"):
        read_spatialdata(tmp_path)
    import spatialdata
    from spatialdata.models import Image2DModel

    img = np.asarray(sim.tissue.data)[:2]
    two = {n: Image2DModel.parse(img, dims=("c", "y", "x"), c_coords=["a", "b"]) for n in ("s1", "s2")}
    spatialdata.SpatialData(images=two).write(tmp_path / "two.zarr")
    with pytest.raises(AgileInputError, match=r"holds 2 images \(s1, s2\): name the image"):
        read_tissue(tmp_path / "two.zarr")
    with pytest.raises(AgileInputError, match=r"holds 0 labels \(none\): name the nucleus label image"):
        read_spatialdata(tmp_path / "two.zarr", image="s2")


def test_without_spatialdata_the_error_says_what_to_install(session, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "spatialdata", None)
    with pytest.raises(AgileInputError, match=r"spatialdata package: pip install 'napari-agile\[scverse\]'"):
        session.export(tmp_path / "section.zarr")
    assert not (tmp_path / "section.zarr").exists()

"""The npe2 manifest validates and its reader, writer and sample data work on real files (no viewer needed)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from npe2 import PluginManifest

import napari_agile
from napari_agile._napari.reader import napari_get_reader
from napari_agile._napari.sample_data import SAMPLE_SHAPE, simulated_tissue
from napari_agile._napari.writer import write_cell_csv
from napari_agile.errors import AgileInputError
from napari_agile.io.images import write_ome_tiff
from napari_agile.io.tissue import PAPER_CHANNELS, Tissue

MANIFEST = Path(napari_agile.__file__).parent / "napari.yaml"


def _resolve(python_name: str):
    module, _, attr = python_name.partition(":")
    return getattr(import_module(module), attr)


def test_manifest_validates_and_every_command_imports():
    pm = PluginManifest.from_file(MANIFEST)
    pm.validate_imports()  # what `npe2 validate --imports` runs
    assert PluginManifest.from_distribution("napari-agile").name == "napari-agile"  # the installed entry point
    contrib = pm.contributions
    assert [w.command for w in contrib.widgets] == ["napari-agile.widget"]
    assert contrib.readers[0].accepts_directories
    assert contrib.writers[0].layer_types == ["points"]
    assert "simulated rat brain tissue (7 channels)" in contrib.sample_data[0].display_name
    for cmd in contrib.commands:
        assert callable(_resolve(cmd.python_name))


def _tissue() -> Tissue:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (3, 40, 50)).astype(np.uint16)
    return Tissue(data, ["DAPI", "NeuN", "S100"], pixel_size=0.5)


def test_reader_opens_ome_tiff_as_one_additive_layer_per_channel(tmp_path):
    tissue = _tissue()
    path = write_ome_tiff(tissue, tmp_path / "section.ome.tif")
    reader = napari_get_reader(str(path))
    layers = reader(str(path))
    assert [meta["name"] for _, meta, _ in layers] == ["DAPI", "NeuN", "S100"]
    assert {kind for *_, kind in layers} == {"image"}
    assert {meta["blending"] for _, meta, _ in layers} == {"additive"}
    assert [meta["colormap"] for _, meta, _ in layers] == ["blue", "green", "magenta"]
    assert layers[0][1]["scale"] == (0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(layers[1][0]), tissue.data[1])
    lo, hi = layers[0][1]["contrast_limits"]
    assert 0 <= lo < hi <= 4000


def test_reader_leaves_a_single_2d_tiff_to_napari(tmp_path, make_napari_viewer):
    mask = np.zeros((40, 50), np.uint16)
    mask[5:15, 5:15] = 1
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    assert napari_get_reader(str(tmp_path / "mask.tif")) is None
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "mask.tif"))  # napari's builtin reader, no error from ours
    np.testing.assert_array_equal(layer.data, mask)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((40, 50, 3), np.uint8), photometric="rgb")
    assert napari_get_reader(str(tmp_path / "rgb.tif")) is not None  # three samples: three channels


def test_reader_opens_a_folder_of_channel_tiffs(tmp_path):
    tissue = _tissue()
    for name, plane in zip(tissue.channel_names, tissue.data):
        tifffile.imwrite(tmp_path / f"{name}.tif", plane)
    layers = napari_get_reader(str(tmp_path))(str(tmp_path))
    assert sorted(meta["name"] for _, meta, _ in layers) == ["DAPI", "NeuN", "S100"]
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "readme.md").write_text("no images")
    assert napari_get_reader(str(tmp_path / "bad")) is None


def test_reader_opens_a_spatialdata_store_with_its_nuclei_as_labels(tmp_path):
    import spatialdata
    from spatialdata.models import Image2DModel, Labels2DModel

    tissue = _tissue()
    nuclei = np.zeros(tissue.shape, np.int32)
    nuclei[5:12, 5:12] = 4
    images = {
        "section": Image2DModel.parse(np.asarray(tissue.data), dims=("c", "y", "x"), c_coords=["DAPI", "NeuN", "S100"])
    }
    labels = {"nuclei": Labels2DModel.parse(nuclei, dims=("y", "x"))}
    spatialdata.SpatialData(images=images, labels=labels).write(tmp_path / "store.zarr")
    layers = napari_get_reader(str(tmp_path / "store.zarr"))(str(tmp_path / "store.zarr"))
    assert [(meta["name"], kind) for _, meta, kind in layers] == [
        ("DAPI", "image"),
        ("NeuN", "image"),
        ("S100", "image"),
        ("nuclei", "labels"),
    ]
    np.testing.assert_array_equal(layers[-1][0], nuclei)


def test_writer_writes_points_with_features_as_a_cell_table(tmp_path):
    data = np.array([[10.0, 20.0], [30.5, 40.0]])
    features = pd.DataFrame({"id": [7, 9], "p_astrocyte": [0.9, 0.2], "cell_type": ["astrocyte", "none"]})
    [out] = write_cell_csv(str(tmp_path / "cells.csv"), data, {"features": features})
    table = pd.read_csv(out)
    assert list(table.columns[:3]) == ["id", "y", "x"]
    assert table["x"].tolist() == [20.0, 40.0] and table["cell_type"].tolist() == ["astrocyte", "none"]
    with pytest.raises(AgileInputError):
        write_cell_csv(str(tmp_path / "bad.csv"), np.zeros(3), {})


def test_sample_data_is_the_paper_panel():
    layers = simulated_tissue()
    assert [meta["name"] for _, meta, _ in layers] == list(PAPER_CHANNELS)
    assert layers[0][0].shape == SAMPLE_SHAPE


def test_reader_opens_label_pyramids_in_their_colours(tmp_path):
    from napari_agile.io.label_zarr import finish_label_image, paint_label_image, write_label_group

    mask = np.zeros((200, 150), np.int32)
    mask[10:40, 10:40], mask[100:180, 60:140] = 1, 2
    paint_label_image(mask, np.arange(3, dtype=np.int32), tmp_path / "types.zarr" / "nuclei", chunk=64)
    finish_label_image(tmp_path / "types.zarr" / "nuclei")
    paint_label_image(mask, np.array([0, 1, 2], np.int32), tmp_path / "types.zarr" / "cell_types", chunk=64)
    finish_label_image(tmp_path / "types.zarr" / "cell_types", {1: "neuron", 2: "glia"}, {1: "#ff0000", 2: "#0000ff"})
    write_label_group(tmp_path / "types.zarr", ["nuclei", "cell_types"])
    layers = napari_get_reader(str(tmp_path / "types.zarr"))(str(tmp_path / "types.zarr"))
    assert [(meta["name"], kind, meta["multiscale"]) for _, meta, kind in layers] == [
        ("nuclei", "labels", True),
        ("cell_types", "labels", True),
    ]
    levels, meta, _ = layers[1]
    assert [level.shape for level in levels] == [(200, 150), (100, 75), (50, 38)]
    np.testing.assert_array_equal(np.asarray(levels[0]), mask)
    np.testing.assert_allclose(meta["colormap"].map(np.array([1, 2]))[:, :3], [[1, 0, 0], [0, 0, 1]])


def test_reader_opens_a_multiscale_ome_zarr_as_pyramids(tmp_path):
    import zarr

    tissue = _tissue()
    group = zarr.open_group(str(tmp_path / "section.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=np.asarray(tissue.data), chunks=(1, 16, 16))
    group.create_array("1", data=np.asarray(tissue.data)[:, ::2, ::2], chunks=(1, 16, 16))
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    group.attrs.update(
        {
            "multiscales": [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}, {"path": "1"}]}],
            "omero": {"channels": [{"label": name} for name in tissue.channel_names]},
        }
    )
    layers = napari_get_reader(str(tmp_path / "section.zarr"))(str(tmp_path / "section.zarr"))
    assert [meta["name"] for _, meta, _ in layers] == ["DAPI", "NeuN", "S100"]
    pyramid = layers[2][0]
    assert [level.shape for level in pyramid] == [(40, 50), (20, 25)]
    np.testing.assert_array_equal(np.asarray(pyramid[1]), tissue.data[2, ::2, ::2])

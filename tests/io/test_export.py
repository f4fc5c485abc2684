"""Exported predictions: CSV and GeoJSON detections (outlines or points) that QuPath imports with their classes and
colours."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_agile.errors import AgileInputError
from napari_agile.io.export import default_colors, export_table, outline_blocks, write_geojson


def test_geojson_export_is_a_qupath_feature_collection(tmp_path):
    table = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "y": [5.0, 6.0, 7.0],
            "x": [50.0, 60.0, 70.0],
            "p_astrocyte": [0.9, 0.1, 0.6],
            "entropy_astrocyte": [0.3, 0.3, 0.6],
            "cell_type": ["astrocyte", "none", "microglia"],
        }
    )
    geo = json.loads(write_geojson(table, tmp_path / "c.geojson", {"astrocyte": "#ff0000"}).read_text())
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 3
    first, second, third = geo["features"]
    assert first["geometry"] == {"type": "Point", "coordinates": [50.0, 5.0]}  # x = column, y = row
    assert first["properties"]["classification"] == {"name": "astrocyte", "color": [255, 0, 0]}
    assert first["properties"]["measurements"] == {"p_astrocyte": 0.9, "entropy_astrocyte": 0.3}
    assert "classification" not in second["properties"]
    want = default_colors(["astrocyte", "microglia"])["microglia"]
    assert third["properties"]["classification"]["color"] == [int(want[i : i + 2], 16) for i in (1, 3, 5)]
    assert len(pd.read_csv(export_table(table, tmp_path / "c.csv"))) == 3
    with pytest.raises(AgileInputError, match=r"\.csv, \.geojson, \.h5ad or \.zarr"):
        export_table(table, tmp_path / "c.xlsx")
    with pytest.raises(AgileInputError, match="cell_type"):
        write_geojson(table.drop(columns="cell_type"), tmp_path / "d.geojson")


def test_with_the_nucleus_mask_each_cell_is_its_outline(tmp_path):
    from skimage.draw import disk, ellipse

    labels = np.zeros((60, 80), np.int32)
    labels[disk((20, 20), 8)] = 4
    labels[ellipse(35, 55, 6, 14, rotation=0.5)] = 7
    table = pd.DataFrame(
        {
            "id": [4, 7, 9],
            "y": [20.0, 35.0, 50.0],
            "x": [20.0, 55.0, 5.0],
            "p_a": [0.9, 0.2, 0.5],
            "cell_type": ["a", "none", "a"],
        }
    )  # cell 9 has no nucleus in the mask: a point
    geo = json.loads(export_table(table, tmp_path / "c.geojson", labels=labels).read_text())
    kinds = [f["geometry"]["type"] for f in geo["features"]]
    assert kinds == ["Polygon", "Polygon", "Point"]
    for feature, cid in zip(geo["features"][:2], (4, 7)):
        ring = np.array(feature["geometry"]["coordinates"][0])  # [x, y] corners, closed
        assert np.allclose(ring[0], ring[-1])
        x, y = ring[:, 0], ring[:, 1]
        area = 0.5 * abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))
        assert abs(area - (labels == cid).sum()) < 0.12 * (labels == cid).sum()  # the nucleus's own size
        rows, cols = np.nonzero(labels == cid)
        assert x.min() >= cols.min() - 1 and x.max() <= cols.max() + 1 and y.min() >= rows.min() - 1  # its place


def test_a_lazy_mask_is_outlined_block_by_block_as_if_whole(tmp_path):
    """A section's mask on disk is read a block at a time (a zarr array in 50 px chunks, 40 px blocks here): nuclei
    across block edges, one longer than a block and its margin, and one cell with no nucleus get the outlines the
    whole mask gives, and the file holds every cell once."""
    import zarr
    from skimage.draw import disk, ellipse
    from skimage.measure import regionprops

    labels = np.zeros((300, 260), np.int32)
    rng = np.random.default_rng(0)
    for k in range(1, 41):
        labels[disk(tuple(rng.uniform(10, 250, 2)), rng.uniform(4, 9), shape=labels.shape)] = k
    labels[ellipse(150, 130, 8, 120, shape=labels.shape)] = 99  # 240 px long
    regions = regionprops(labels)
    table = pd.DataFrame(
        {
            "id": [r.label for r in regions] + [500],
            "y": [r.centroid[0] for r in regions] + [5.0],
            "x": [r.centroid[1] for r in regions] + [5.0],
            "cell_type": ["a"] * len(regions) + ["none"],
        }
    )
    lazy = zarr.create_array(str(tmp_path / "mask.zarr"), shape=labels.shape, dtype="int32", chunks=(50, 50))
    lazy[:] = labels
    ids, centres = table["id"].to_numpy(), table[["y", "x"]].to_numpy()

    def outlines(mask, tile):
        return {
            cell: ring for _, rings in outline_blocks(mask, ids, centres, tile=tile) for cell, ring in rings.items()
        }

    whole = outlines(labels, 10**6)
    assert set(whole) == {r.label for r in regions} and 99 in whole
    assert outlines(lazy, 40) == whole
    features = json.loads(write_geojson(table, tmp_path / "c.geojson", labels=lazy).read_text())["features"]
    assert sorted(int(f["id"]) for f in features) == sorted(ids.tolist())
    assert {int(f["id"]): f["geometry"]["coordinates"][0] for f in features if f["id"] != "500"} == whole


def test_geojson_keeps_type_names_that_are_not_python_names(tmp_path):
    table = pd.DataFrame(
        {
            "id": [7],
            "y": [1.0],
            "x": [2.0],
            "p_T cell": [0.8],
            "p_CD4+": [0.1],
            "p_class": [0.3],
            "cell_type": ["T cell"],
        }
    )
    (feature,) = json.loads(write_geojson(table, tmp_path / "t.geojson").read_text())["features"]
    assert feature["properties"]["measurements"] == {"p_T cell": 0.8, "p_CD4+": 0.1, "p_class": 0.3}
    assert feature["properties"]["classification"]["name"] == "T cell"


def test_default_colours_follow_the_order_types_were_named_not_the_first_cell(tmp_path):
    table = pd.DataFrame(
        {
            "id": [1, 2],
            "y": [1.0, 2.0],
            "x": [1.0, 2.0],
            "p_astrocyte": [0.1, 0.9],
            "p_endothelial": [0.9, 0.1],
            "cell_type": ["endothelial", "astrocyte"],
        }
    )
    features = json.loads(write_geojson(table, tmp_path / "c.geojson").read_text())["features"]
    colors = {f["properties"]["classification"]["name"]: f["properties"]["classification"]["color"] for f in features}
    want = default_colors(["astrocyte", "endothelial"])  # what the widget gives types named in this order
    assert colors == {n: [int(c[i : i + 2], 16) for i in (1, 3, 5)] for n, c in want.items()}


def test_default_colours_keep_away_from_the_channel_colours():
    colors = default_colors(["astrocyte", "neuron", "microglia"], avoid=["#ff0000", "#00ff00", (0.0, 0.0, 1.0)])
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colors.values()]) / 255
    for channel in np.eye(3):
        assert np.linalg.norm(rgb - channel, axis=1).min() >= 0.5
    assert default_colors(["a", "b"]) == {"a": "#e6194b", "b": "#3cb44b"}  # nothing to avoid: the palette's order

"""Damaged input (issue 24 item 4): a cut-off TIFF, a damaged tile, a zarr store missing a chunk; each a clear
AgileInputError naming the file and where, and none stopping a batch."""

import numpy as np
import pytest
import tifffile
import zarr

from napari_agile.errors import AgileInputError
from napari_agile.io.images import read_tissue, write_ome_tiff


def _data(c=2, h=300, w=400, seed=0):
    return np.random.default_rng(seed).integers(1, 60000, (c, h, w), dtype=np.uint16)


def _cut(path, share=0.5):
    """Keep the first `share` of the file's bytes, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])


@pytest.mark.parametrize(
    "layout, says",
    [
        (dict(rowsperstrip=16), "from row 150 of plane 2 on"),  # uncompressed: the exact row
        (dict(tile=(64, 64), compression="zlib"), "from row 128 of plane 2 on"),
    ],
)
def test_a_cut_off_tiff_is_refused_naming_the_file_and_the_first_missing_row(tmp_path, layout, says):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _data(3), photometric="minisblack", metadata={"axes": "CYX"}, **layout)
    _cut(path)
    with pytest.raises(AgileInputError, match=f"cut.tif is cut off .*{says}.*copy it again"):
        read_tissue(path, channel_names=["DAPI", "NeuN", "S100"])


def test_a_channel_file_cut_off_is_named_in_its_folder(tmp_path):
    for name, plane in zip(["DAPI", "NeuN"], _data()):
        tifffile.imwrite(tmp_path / f"{name}.tif", plane)
    _cut(tmp_path / "NeuN.tif")
    with pytest.raises(AgileInputError, match=r"NeuN.tif is cut off .*from row 149 on"):
        read_tissue(tmp_path)


def test_a_damaged_tile_is_named_by_its_rows_and_columns_and_the_rest_reads(tmp_path):
    data = _data(h=2000, w=300)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, data, photometric="minisblack", tile=(64, 64), compression="zlib")
    with tifffile.TiffFile(path) as tf:  # tile row 5 (rows 320-384) of channel 1: between check_tissue's samples
        offset, count = tf.pages[0].dataoffsets[25], tf.pages[0].databytecounts[25]
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(count))
    tissue = read_tissue(path, channel_names=["DAPI", "NeuN"])
    np.testing.assert_array_equal(tissue.read_region(0, 300, 0, 300), data[:, :300])  # before the damage
    with pytest.raises(AgileInputError, match=r"rows 300-400, columns 0-64 of .*s.tif .*copy it again"):
        tissue.read_region(300, 400, 0, 64)


def _ome_zarr(path, data, zarr_format, names=("DAPI", "NeuN")):
    """A two-level OME-Zarr (level 1 halved) with every chunk written."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    for level, array in enumerate([data, data[:, ::2, ::2]]):
        group.create_array(str(level), shape=array.shape, dtype=array.dtype, chunks=(1, 64, 64))[:] = array
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    scales = [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1, 2**k, 2**k]}]} for k in (0, 1)
    ]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": scales}]
    group.attrs["omero"] = {"channels": [{"label": name} for name in names]}
    return path


CHUNK_FILE = {2: "0/1.2.3", 3: "0/c/1/2/3"}  # channel 2, rows 128-192, columns 192-256


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_zarr_chunk_lost_is_named_and_one_never_written_is_read_as_blank(tmp_path, zarr_format):
    data = _data()
    lost = _ome_zarr(tmp_path / "lost.zarr", data, zarr_format)
    (lost / CHUNK_FILE[zarr_format]).unlink()
    with pytest.raises(
        AgileInputError, match=r"lost.zarr lacks the chunk of rows 128-192, columns 192-256 of channel 2"
    ):
        read_tissue(lost)
    data[1, 128:192, 192:256] = 0  # blank there: zarr-python 3 writes no chunk of fill value only
    sparse = _ome_zarr(tmp_path / "sparse.zarr", data, zarr_format)
    assert not (sparse / CHUNK_FILE[zarr_format]).exists()
    np.testing.assert_array_equal(read_tissue(sparse).read_region(0, 300, 0, 400), data)


def test_a_zarr_array_without_a_pyramid_warns_of_absent_chunks(tmp_path):
    path = tmp_path / "flat.zarr"
    zarr.create_array(str(path), shape=(2, 300, 400), dtype="uint16", chunks=(1, 64, 64), zarr_format=2)[:] = _data()
    (path / "0.4.6").unlink()
    with pytest.warns(UserWarning, match=r"flat.zarr lacks 1 chunk.*rows 256-300, columns 384-400 of channel 1"):
        read_tissue(path, channel_names=["DAPI", "NeuN"])


def test_a_batch_types_the_good_sections_and_names_the_damaged_ones(tmp_path, saved_session):
    from napari_agile.batch import type_sections
    from napari_agile.synth.simulator import simulate_tissue

    tissue = simulate_tissue((256, 256), seed=5).tissue
    good = [write_ome_tiff(tissue, tmp_path / f"good{k}.ome.tif") for k in (1, 2)]
    cut = write_ome_tiff(tissue, tmp_path / "cut.ome.tif")
    _cut(cut)
    lost = _ome_zarr(tmp_path / "lost.zarr", np.asarray(tissue.data), 3, tissue.channel_names)
    for chunk in (lost / "0" / "c" / "0").rglob("*"):  # channel 1's chunks
        if chunk.is_file():
            chunk.unlink()
    results = type_sections(saved_session, [good[0], cut, lost, good[1]], tmp_path / "out")
    assert [r.table is not None for r in results] == [True, False, False, True]
    assert all(r.n_cells > 0 for r in results[::3])
    assert "cut.ome.tif is cut off" in results[1].error and "lost.zarr lacks the chunk" in results[2].error

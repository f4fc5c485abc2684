"""read_tissue / write_ome_tiff / check_tissue on real files in tmp_path."""

import os

import numpy as np
import pytest
import tifffile

from napari_agile.errors import AgileInputError
from napari_agile.io.images import check_tissue, read_tissue, write_ome_tiff
from napari_agile.io.tissue import Tissue


def _data(c=3, h=300, w=400, seed=0):
    return np.random.default_rng(seed).integers(1, 60000, (c, h, w), dtype=np.uint16)


def test_ome_tiff_round_trip_keeps_names_pixels_and_size(tmp_path):
    data = _data()
    write_ome_tiff(Tissue(data, ["DAPI", "NeuN", "S100"], pixel_size=0.325), tmp_path / "t.ome.tif", tile=128)
    back = read_tissue(tmp_path / "t.ome.tif")
    assert back.channel_names == ["DAPI", "NeuN", "S100"]
    assert back.pixel_size == pytest.approx(0.325)
    assert not isinstance(back.data, np.ndarray) or isinstance(back.data, np.memmap)  # lazy
    np.testing.assert_array_equal(np.asarray(back.data), data)


def test_writing_a_tissue_over_its_own_file_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", _data(), photometric="minisblack")
    t = read_tissue(tmp_path / "plain.tif", channel_names=["a", "b", "c"])
    with pytest.raises(AgileInputError, match="the file this tissue is read from"):
        write_ome_tiff(t, tmp_path / "plain.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "plain.tif"), _data())
    assert read_tissue(write_ome_tiff(t, tmp_path / "named.ome.tif")).channel_names == ["a", "b", "c"]


def test_plain_cyx_tiff_needs_and_takes_names(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", _data(), photometric="minisblack")
    t = read_tissue(tmp_path / "plain.tif", channel_names=["a", "b", "c"])
    assert isinstance(t.data, np.memmap) and t.channel_names == ["a", "b", "c"]
    with pytest.warns(UserWarning, match="channel_names"):
        assert read_tissue(tmp_path / "plain.tif").channel_names == ["channel_1", "channel_2", "channel_3"]


@pytest.mark.parametrize("metadata", [{}, None])
def test_unlabelled_rows_columns_channels_tiff_is_read_channels_first(tmp_path, metadata):
    """A (Y, X, C) array saved as is (tifffile labels no axis) is not read as Y channels of X x C pixels."""
    data = _data(5, 60, 80)
    tifffile.imwrite(tmp_path / "yxc.tif", data.transpose(1, 2, 0), photometric="minisblack", metadata=metadata)
    names = ["DAPI", "a", "b", "c", "d"]
    t = read_tissue(tmp_path / "yxc.tif", channel_names=names)
    assert t.channel_names == names
    np.testing.assert_array_equal(t.read_region(0, 60, 0, 80), data)
    with pytest.warns(UserWarning, match=r"\(rows, columns, channels\)"):
        assert read_tissue(tmp_path / "yxc.tif").data.shape == (5, 60, 80)


def test_unlabelled_rows_columns_channels_zarr_is_read_channels_first(tmp_path):
    zarr = pytest.importorskip("zarr")
    data = _data(4, 50, 70)
    zarr.save_array(str(tmp_path / "yxc.zarr"), data.transpose(1, 2, 0))
    t = read_tissue(tmp_path / "yxc.zarr", channel_names=["DAPI", "a", "b", "c"])
    np.testing.assert_array_equal(t.read_region(0, 50, 0, 70), data)


def test_in_memory_rows_columns_channels_array_gets_a_transpose_hint():
    with pytest.raises(AgileInputError, match=r"transpose\(2, 0, 1\)"):
        Tissue(_data(4, 50, 70).transpose(1, 2, 0), ["DAPI", "a", "b", "c"])


def test_imagej_channel_labels_name_the_channels(tmp_path):
    """Fiji saves a multichannel image as an ImageJ hyperstack with its channel names as slice labels."""
    names = ["DAPI", "CD3", "CD20"]
    tifffile.imwrite(tmp_path / "fiji.tif", _data(3), imagej=True, metadata={"axes": "CYX", "Labels": names})
    assert read_tissue(tmp_path / "fiji.tif").channel_names == names


def test_one_image_per_channel_and_page_names_name_the_channels(tmp_path):
    """Exporters that write an OME image (series) per channel, or name each page (MIBItiff's PageName): the
    channels are stacked in order with those names, not refused as one 2D image or left unnamed."""
    data, names = _data(3), ["HH3", "CD20", "CD8"]
    with tifffile.TiffWriter(tmp_path / "series.ome.tif", ome=True) as tw:
        for plane, name in zip(data, names):
            tw.write(plane, photometric="minisblack", metadata={"axes": "YX", "Name": name, "Channel": {"Name": name}})
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for plane, name in zip(data, names):
            tw.write(plane, photometric="minisblack", extratags=[(285, "s", 0, name, True)], metadata=None)
    for file in ("series.ome.tif", "pages.tif"):
        tissue = read_tissue(tmp_path / file)
        assert tissue.channel_names == names, file
        np.testing.assert_array_equal(tissue.read_region(0, 300, 0, 400), data)


def test_a_channel_the_ome_metadata_leaves_unnamed_is_named_alone(tmp_path):
    write_ome_tiff(Tissue(_data(3), ["DAPI", "CD3", "CD20"]), tmp_path / "t.ome.tif")
    with tifffile.TiffFile(tmp_path / "t.ome.tif") as tf:
        description = tf.pages[0].description.replace('Name="CD3"', 'Name=""')
    tifffile.tiffcomment(tmp_path / "t.ome.tif", description)
    with pytest.warns(UserWarning, match=r"names no channel \[2\]; calling it channel_2"):
        assert read_tissue(tmp_path / "t.ome.tif").channel_names == ["DAPI", "channel_2", "CD20"]


def test_an_lzw_compressed_tiff_reads(tmp_path):
    """LZW is what PIL, ImageMagick and MATLAB write: tifffile decodes it with imagecodecs, a dependency."""
    tifffile.imwrite(tmp_path / "lzw.tif", _data(3), compression="lzw", photometric="minisblack")
    tissue = read_tissue(tmp_path / "lzw.tif", channel_names=["DAPI", "CD3", "CD20"])
    np.testing.assert_array_equal(tissue.read_region(0, 300, 0, 400), _data(3))


def test_a_file_moved_after_opening_is_named_as_gone(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", _data(3), compression="zlib", photometric="minisblack")
    tissue = read_tissue(tmp_path / "t.tif", channel_names=["DAPI", "CD3", "CD20"])
    tissue.close()
    (tmp_path / "t.tif").rename(tmp_path / "elsewhere.tif")
    with pytest.raises(
        AgileInputError, match=r"t\.tif is gone: the file was moved or deleted.*read_tissue\(new_path\)"
    ):
        tissue.read_region(0, 10, 0, 10)


def test_a_label_image_beside_the_channel_files_is_left_out(tmp_path):
    """A segmentation saved into the channel folder (any integer type) is not read as one more marker."""
    data = _data(2)
    tifffile.imwrite(tmp_path / "DAPI.tif", data[0])
    tifffile.imwrite(tmp_path / "CD3.tif", data[1].astype(np.float32))  # another pixel type: read as one
    tifffile.imwrite(tmp_path / "nuclei_mask.tif", np.arange(300 * 400, dtype=np.int32).reshape(300, 400))
    with pytest.warns(UserWarning, match=r"Left out \['nuclei_mask.tif'\].*a label image"):
        tissue = read_tissue(tmp_path)
    assert tissue.channel_names == ["CD3", "DAPI"] and np.dtype(tissue.data.dtype) == np.float32
    np.testing.assert_array_equal(tissue.read_region(0, 300, 0, 400), data[[1, 0]])


def test_2d_tiff_is_a_clear_error(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", _data(1)[0])
    with pytest.raises(AgileInputError, match="folder"):
        read_tissue(tmp_path / "one.tif")


def test_folder_with_lab_channel_map(tmp_path):
    data = _data(3)
    for name, plane in zip(["S1_R2C1", "S1_R2C4", "S1_R3C5"], data):
        tifffile.imwrite(tmp_path / f"{name}.tif", plane)
    t = read_tissue(tmp_path, channel_map={"R3C5": "S100", "S1_R2C1": "DAPI"})
    assert t.channel_names == ["S100", "DAPI"]
    np.testing.assert_array_equal(t.read_region(0, 300, 0, 400), data[[2, 0]])
    assert read_tissue(tmp_path).channel_names == ["S1_R2C1", "S1_R2C4", "S1_R3C5"]
    with pytest.raises(AgileInputError, match="R9C9"):
        read_tissue(tmp_path, channel_map={"R9C9": "Iba1"})


def test_channel_map_key_matching_two_sections_is_refused(tmp_path):
    data = _data(2)
    for section in ("S1", "S2"):
        for name, plane in zip(["R2C1", "R2C4"], data):
            tifffile.imwrite(tmp_path / f"{section}_{name}.tif", plane)
    with pytest.raises(AgileInputError, match=r"'R2C1' matches 2 files.*S1_R2C1.tif.*S2_R2C1.tif"):
        read_tissue(tmp_path, channel_map={"R2C1": "DAPI"})
    t = read_tissue(tmp_path, channel_map={"S2_R2C4": "NeuN"})
    np.testing.assert_array_equal(t.read_region(0, 300, 0, 400), data[[1]])


def test_folder_of_channel_files_with_a_trailing_length_1_axis(tmp_path):
    data = _data(2)
    for name, plane in zip(["DAPI", "NeuN"], data):  # (rows, columns, 1): how some tools save one channel
        tifffile.imwrite(tmp_path / f"{name}.tif", plane[..., None], photometric="minisblack")
    t = read_tissue(tmp_path)
    assert t.channel_names == ["DAPI", "NeuN"]
    np.testing.assert_array_equal(t.read_region(0, 300, 0, 400), data)


def test_folder_of_uncompressed_tiffs_reads_memmaps_without_copying(tmp_path):
    data = _data(2)
    for name, plane in zip(["DAPI", "NeuN"], data):
        tifffile.imwrite(tmp_path / f"{name}.tif", plane)
    t = read_tissue(tmp_path)
    backing = [getattr(node, "data", None) for node in dict(t.data.dask).values()]
    mapped = sorted(os.path.basename(b.filename) for b in backing if isinstance(b, np.memmap))
    assert mapped == ["DAPI.tif", "NeuN.tif"] and not any(type(b) is np.ndarray for b in backing)
    np.testing.assert_array_equal(t.read_region(100, 356, 50, 306), data[:, 100:356, 50:306])


def test_a_crop_is_a_lazy_view_of_the_section(tmp_path):
    """Teaching on part of a section: `crop` keeps the names and reads only its rows and columns (still a dask
    array over the files); a region past the edge is clipped, one with no pixel of the section refused."""
    data = _data(2)
    for name, plane in zip(["DAPI", "NeuN"], data):
        tifffile.imwrite(tmp_path / f"{name}.tif", plane)
    part = read_tissue(tmp_path).crop(100, 50, 250, 10**6)
    assert part.channel_names == ["DAPI", "NeuN"] and part.shape == (150, data.shape[2] - 50)
    assert type(part.data).__name__ == "Array"  # dask: nothing read yet
    np.testing.assert_array_equal(np.asarray(part.data), data[:, 100:250, 50:])
    with pytest.raises(AgileInputError, match="holds no pixel"):
        read_tissue(tmp_path).crop(10, 10, 10, 50)


def test_folder_shape_mismatch_names_the_files(tmp_path):
    tifffile.imwrite(tmp_path / "DAPI.tif", _data(1)[0])
    tifffile.imwrite(tmp_path / "NeuN.tif", _data(1, 200, 400)[0])
    with pytest.raises(AgileInputError, match=r"'DAPI.tif': \(300, 400\), 'NeuN.tif': \(200, 400\)"):
        read_tissue(tmp_path)


def test_unreadable_tiff_in_folder_is_named(tmp_path):
    tifffile.imwrite(tmp_path / "DAPI.tif", _data(1)[0])
    (tmp_path / "NeuN.tif").write_bytes(b"not a tiff")
    with pytest.raises(AgileInputError, match="NeuN.tif"):
        read_tissue(tmp_path)


@pytest.mark.parametrize("bioformats2raw", [False, True])
def test_zarr_with_omero_names(tmp_path, bioformats2raw):
    """An OME-Zarr image, also inside bioformats2raw's layout (the image is the root's group 0)."""
    import zarr  # a hard dependency: a missing install must fail, not skip

    data = _data()
    group = zarr.open_group(str(tmp_path / "t.zarr"), mode="w")
    if bioformats2raw:
        group.attrs["bioformats2raw.layout"] = 3
        group = group.create_group("0")
    group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=(1, 128, 128))[:] = data
    group.attrs.update(
        {
            "multiscales": [
                {
                    "axes": [{"name": "c"}, {"name": "y"}, {"name": "x"}],
                    "datasets": [
                        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.5]}]}
                    ],
                }
            ],
            "omero": {"channels": [{"label": "DAPI"}, {"label": "NeuN"}, {"label": "Iba1"}]},
        }
    )
    t = read_tissue(tmp_path / "t.zarr")
    assert t.channel_names == ["DAPI", "NeuN", "Iba1"] and t.pixel_size == 0.5
    np.testing.assert_array_equal(np.asarray(t.data), data)


def test_nan_is_an_error_and_blank_channel_a_warning(tmp_path):
    data = _data(2).astype(np.float32)
    data[0, 5, 5] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", data, photometric="minisblack")
    with pytest.raises(AgileInputError, match="NaN"):
        read_tissue(tmp_path / "nan.tif", channel_names=["DAPI", "NeuN"])
    blank = _data(2)
    blank[1] = 0
    problems = check_tissue(Tissue(blank, ["DAPI", "NeuN"]))
    assert len(problems) == 1 and "NeuN" in problems[0]


def _open_descriptors(path) -> int:
    """How many of this process's file descriptors point at `path` (Linux /proc)."""
    fd_dir = "/proc/self/fd"
    count = 0
    for fd in os.listdir(fd_dir):
        try:
            count += os.readlink(os.path.join(fd_dir, fd)) == str(path)
        except OSError:  # the descriptor listdir itself used is gone
            pass
    return count


counts_descriptors = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts descriptors through Linux /proc"
)


@counts_descriptors
def test_compressed_files_stay_open_until_the_tissue_is_closed(tmp_path):
    ome = write_ome_tiff(
        Tissue(_data(), ["DAPI", "NeuN", "S100"]), tmp_path / "z.ome.tif", tile=128, compression="zlib"
    )
    with read_tissue(ome) as tissue:
        view = tissue.select(["S100", "DAPI"])
        np.testing.assert_array_equal(view.read_region(0, 10, 0, 10), _data()[[2, 0], :10, :10])
        assert _open_descriptors(ome) == 1  # read lazily from the open file
    assert _open_descriptors(ome) == 0
    view.read_region(0, 10, 0, 10)  # a read after close opens the file again, and close closes it again
    view.close()
    assert _open_descriptors(ome) == 0
    folder = tmp_path / "channels"
    folder.mkdir()
    for name, plane in zip(["DAPI", "NeuN"], _data(2)):
        tifffile.imwrite(folder / f"{name}.tif", plane, compression="zlib", tile=(128, 128))
    tissue = read_tissue(folder)
    tissue.read_region(0, 10, 0, 10)
    assert sum(_open_descriptors(f) for f in folder.iterdir()) == 2
    tissue.close()
    assert sum(_open_descriptors(f) for f in folder.iterdir()) == 0


@counts_descriptors
def test_a_failed_read_leaves_no_file_open(tmp_path):
    data = _data(2).astype(np.float32)
    data[0, 5, 5] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", data, photometric="minisblack", compression="zlib", tile=(128, 128))
    with pytest.raises(AgileInputError, match="NaN"):
        read_tissue(tmp_path / "nan.tif", channel_names=["DAPI", "NeuN"])
    assert _open_descriptors(tmp_path / "nan.tif") == 0

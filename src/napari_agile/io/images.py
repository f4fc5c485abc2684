"""Read and write multiplexed tissue images lazily: OME-TIFF, (C, Y, X) TIFF, a folder of one TIFF per channel, zarr."""

from __future__ import annotations

import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import Tissue

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
_ZARR_MARKERS = (".zarray", ".zgroup", ".zattrs", "zarr.json")


def read_tissue(
    path: str | Path,
    channel_names: Sequence[str] | None = None,
    channel_map: Mapping[str, str] | None = None,
) -> Tissue:
    """Open a section without loading it: OME-TIFF, (C,Y,X)/multi-page TIFF (ImageJ/Fiji channel labels read; an
    unlabelled (Y,X,C) TIFF or zarr array turned channels-first), folder of per-channel TIFFs, or zarr.

    `channel_names` names the channels of a file that carries none (or overrides them); `channel_map` renames
    channels (old -> new) or, for a folder, picks and names the channel files (e.g. {"R2C1": "DAPI"}).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise AgileInputError(f"No such file or folder: {p}.")
    stores: list = []  # opened for lazy reads: closed here on error, else handed to the tissue
    try:
        if _is_zarr(p):
            tissue = _read_zarr(p, channel_names)
        elif p.is_dir():
            tissue = _read_folder(p, channel_names, channel_map, stores)
            channel_map = None  # already applied to the file names
        elif p.suffix.lower() in TIFF_SUFFIXES:
            tissue = _read_tiff(p, channel_names, stores)
        else:
            raise AgileInputError(
                f"Cannot read {p.name}: give an OME-TIFF/TIFF file, a folder of one TIFF per channel, or a .zarr "
                "folder."
            )
        if channel_map:
            tissue = tissue.rename(dict(channel_map))
        tissue.stores = stores
        problems = tissue.metadata["problems"] = check_tissue(tissue, strict=True)
    except BaseException:
        for store in stores:
            store.close()
        raise
    for message in problems:
        warnings.warn(message, stacklevel=2)
    return tissue


#: the share of a channel's sampled pixels at its integer type's maximum above which check_tissue calls it saturated
SATURATED = 0.01


def check_tissue(tissue: Tissue, strict: bool = False, n_tiles: int = 16, tile: int = 256) -> list[str]:
    """Problems found in sampled tiles (NaN/inf, empty, constant or saturated channels), each naming the channel
    and a fix (read_tissue keeps them in `tissue.metadata["problems"]`, so a Session does not say them again).

    Reads at most `n_tiles` tiles of `tile`² pixels spread over the section, never the whole image. With
    `strict`, non-finite values raise AgileInputError (they break normalisation and training).
    """
    h, w = tissue.shape
    ny = nx = int(np.ceil(np.sqrt(n_tiles)))
    ys = np.unique(np.linspace(0, max(h - tile, 0), ny).astype(int))
    xs = np.unique(np.linspace(0, max(w - tile, 0), nx).astype(int))
    blocks = [tissue.read_region(y, y + tile, x, x + tile).reshape(tissue.n_channels, -1) for y in ys for x in xs]
    sample = np.concatenate(blocks, axis=1)
    where = f" in {tissue.source}" if tissue.source else ""
    problems: list[str] = []
    for c, name in enumerate(tissue.channel_names):
        values = sample[c]
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            message = (
                f"Channel {name!r}{where} contains NaN or infinite values: replace them (e.g. with 0) "
                "before analysis; they break normalisation and the model."
            )
            if strict:
                raise AgileInputError(message)
            problems.append(message)
            continue
        lo, hi = values.min(), values.max()
        if hi == 0 and lo == 0:
            problems.append(
                f"Channel {name!r}{where} is all zero in {len(blocks)} sampled tiles: check that the right file "
                "was loaded, or drop the channel."
            )
        elif lo == hi:
            problems.append(
                f"Channel {name!r}{where} is constant ({lo}) in {len(blocks)} sampled tiles: it carries no "
                "signal; check the file or drop the channel."
            )
        elif values.dtype.kind in "ui" and (at_max := (values == np.iinfo(values.dtype).max).mean()) > SATURATED:
            problems.append(
                f"Channel {name!r}{where} is saturated (at {np.iinfo(values.dtype).max}) in {at_max:.0%} of the "
                f"sampled pixels: its brightest cells all look alike; image it with a shorter exposure if you can."
            )
    return problems


def _reads_from(tissue: Tissue, path: Path) -> bool:
    """Whether `path` is the tissue's source file, or a file in its source folder of per-channel TIFFs."""
    source, target = Path(tissue.source or "").resolve(), path.resolve()
    return target == source or (source.is_dir() and target.parent == source)


def write_ome_tiff(tissue: Tissue, path: str | Path, tile: int = 512, compression: str | None = None) -> Path:
    """Write a tiled OME-TIFF with channel names and pixel size, streaming one tile row per channel."""
    import tifffile

    p = Path(path)
    if tissue.source and p.exists() and _reads_from(tissue, p):
        raise AgileInputError(
            f"{p} is the file this tissue is read from: writing it would destroy the image "
            "while it is read. Write to a new path (and rename it afterwards if you like)."
        )
    c, h, w = tissue.data.shape
    dtype = np.dtype(tissue.data.dtype)
    metadata: dict[str, Any] = {"axes": "CYX", "Channel": {"Name": list(tissue.channel_names)}}
    if tissue.pixel_size:
        metadata.update(
            PhysicalSizeX=tissue.pixel_size,
            PhysicalSizeXUnit="µm",
            PhysicalSizeY=tissue.pixel_size,
            PhysicalSizeYUnit="µm",
        )
    with tifffile.TiffWriter(p, bigtiff=c * h * w * dtype.itemsize > 2**31, ome=True) as tw:
        tw.write(
            _tiles(tissue.data, tile),
            shape=(c, h, w),
            dtype=dtype,
            tile=(tile, tile),
            photometric="minisblack",
            compression=compression,
            metadata=metadata,
        )
    return p


def _tiles(data: Any, tile: int) -> Iterator[np.ndarray]:
    """Tiles of (C, Y, X) `data` in TIFF order (channel, tile row, tile column), padded to tile²."""
    c, h, w = data.shape
    for ci in range(c):
        for y0 in range(0, h, tile):
            band = np.asarray(data[ci, y0 : y0 + tile, :])
            for x0 in range(0, w, tile):
                block = band[:, x0 : x0 + tile]
                if block.shape != (tile, tile):
                    block = np.pad(block, ((0, tile - block.shape[0]), (0, tile - block.shape[1])))
                yield np.ascontiguousarray(block)


# ----------------------------------------------------------------------------------------------- TIFF


def _open_tiff(path: Path, stores: list) -> tuple[Any, str, str | None, list[str] | None]:
    """Level 0 of the first series of a TIFF as a memmap (uncompressed) or dask array (a file of one 2D image per
    channel: the images stacked), its axes, OME-XML and the names the file gives its planes (Fiji's slice labels,
    page names, or those images' names); the store a dask array reads from is appended to `stores`."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            axes = series.axes
            ome = tf.ome_metadata if tf.is_ome else None
            if tf.is_imagej:
                labels = (tf.imagej_metadata or {}).get("Labels")
            else:
                labels = None if ome else _page_names(tf)
            contiguous = series.levels[0].dataoffset is not None
            cut = _cut_off(tf, series.levels[0], ome)
            planes = _plane_series(tf)
    except Exception as exc:  # tifffile raises many types for broken files
        raise AgileInputError(f"Cannot read {path} as a TIFF ({exc}). Is the file complete and a TIFF?") from exc
    if cut:
        raise AgileInputError(f"{path} is cut off ({cut}): copy it again from its source, or re-export it.")
    if planes is not None:  # one image (series) per channel, as some exporters write: stacked, named by the images
        return _stack_series(path, len(planes), stores), "CYX", ome, planes
    if contiguous:
        try:
            return tifffile.memmap(path, series=0, level=0, mode="r"), axes, ome, labels
        except (ValueError, OSError):
            pass
    import dask.array as da
    import zarr

    store = tifffile.imread(path, aszarr=True, series=0, level=0)
    stores.append(store)
    return da.from_zarr(zarr.open(store, mode="r")), axes, ome, labels


def _page_names(tf: Any) -> list[str] | None:
    """The PageName tag of each page (MIBItiff and other exporters name a channel per page), when every page has one."""
    names = [page.tags.get(285) for page in tf.pages]
    return [str(tag.value) for tag in names] if names and all(names) else None


def _plane_series(tf: Any) -> list[str] | None:
    """The names of a file's images when it holds one 2D image per channel (several series of one shape and type,
    the first of them a single plane), else None."""
    first = tf.series[0]
    if len(tf.series) < 2 or sum(n > 1 for n in first.shape) != 2:
        return None
    same = [s for s in tf.series if s.shape == first.shape and s.dtype == first.dtype]
    if len(same) != len(tf.series):  # a thumbnail or a label image beside the channels: not this layout
        return None
    return [s.name or f"channel_{i + 1}" for i, s in enumerate(tf.series)]


def _stack_series(path: Path, n: int, stores: list) -> Any:
    """The `n` single-plane series of a TIFF as one lazy (channels, rows, columns) dask array."""
    import dask.array as da
    import tifffile
    import zarr

    planes = []
    for i in range(n):
        store = tifffile.imread(path, aszarr=True, series=i, level=0)
        stores.append(store)
        plane = da.from_zarr(zarr.open(store, mode="r"))
        planes.append(plane.reshape(plane.shape[-2:]))
    return da.stack(planes)


def _cut_off(tf: Any, level: Any, ome: str | None) -> str | None:
    """Why a TIFF looks truncated, or None: image data past the end of the file (saying from which plane and row
    on pixels are missing), a page named past its end, or fewer planes than its OME-XML names; reads the header."""
    size = tf.filehandle.size
    if level.dataoffset is not None:  # uncompressed and contiguous: the bytes there give the row
        end = level.dataoffset + level.nbytes
        if end > size:
            plane_bytes = level.keyframe.nbytes
            plane, rest = divmod(size - level.dataoffset, plane_bytes)
            row = rest // (plane_bytes // level.keyframe.imagelength)
            return _missing_from(size, end, plane if level.nbytes > plane_bytes else None, row)
    planes = []
    try:
        for page in level.pages:
            planes += [page] if page is not None else []
    except IndexError:  # a cut-off file may lack later pages that its description counts
        pass
    for k, page in enumerate(planes):
        key = page.keyframe
        for i, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            if offset + count > size:
                end = max(o + n for p in planes for o, n in zip(p.dataoffsets, p.databytecounts))
                if key.is_tiled:
                    across, down = -(-key.imagewidth // key.tilewidth), -(-key.imagelength // key.tilelength)
                    row = i // across % down * key.tilelength
                else:
                    row = i * key.rowsperstrip % key.imagelength
                return _missing_from(size, end, k if len(planes) > 1 else None, row)
    dangling = _dangling_page(tf)
    if dangling:
        return f"{size} bytes, but page {dangling[1] + 1} is named at byte {dangling[0]}: the planes after plane {dangling[1]} are missing"
    pixels = _ome_pixels(ome) if ome else None
    if pixels is not None:
        expected = int(np.prod([int(pixels.get(f"Size{a}", 1)) for a in "CZT"]))
        if len(level.pages) < expected:
            return f"its OME-XML describes {expected} planes, {len(level.pages)} remain"
    return None


def _missing_from(size: int, end: int, plane: int | None, row: int) -> str:
    """The cut-off message's reason: the file's length, where its pixels end, and the first row (and plane, when
    there are several) lost."""
    where = f" of plane {plane + 1}" if plane is not None else ""
    return f"{size} bytes, but its pixels run to byte {end}: the pixels from row {row}{where} on are missing"


def _dangling_page(tf: Any) -> tuple[int, int] | None:
    """(where, how many pages came before) for a page the file's chain of pages names at or past its end, or None:
    the file lost its end, which tifffile only logs; follows the chain, reading a few bytes per page."""
    import struct

    fh, tiff = tf.filehandle, tf.tiff
    offset, seen = tf.pages[0].offset, set[int]()
    while offset and offset not in seen:
        try:
            fh.seek(offset)
            (n_tags,) = struct.unpack(tiff.tagnoformat, fh.read(tiff.tagnosize))
            fh.seek(offset + tiff.tagnosize + n_tags * tiff.tagsize)
            (following,) = struct.unpack(tiff.offsetformat, fh.read(tiff.offsetsize))
        except struct.error:  # the file ends inside this page's tags
            return offset, len(seen)
        seen.add(offset)
        offset = following
        if offset >= fh.size:
            return offset, len(seen)
    return None


def _squeeze(data, axes: str, keep: str):
    """(`data` without its length-1 axes except those named in `keep`, the axes letters that remain)."""
    idx = [i for i, (a, n) in enumerate(zip(axes, data.shape)) if n > 1 or a in keep]
    if len(idx) < data.ndim:
        data = data.reshape([data.shape[i] for i in idx])
    return data, "".join(axes[i] for i in idx)


def is_single_plane_tiff(path: str | Path) -> bool:
    """True for a TIFF whose first series is one 2D plane (a mask, one channel): not a section on its own.

    Reads the header only; a file tifffile cannot parse counts as not single-plane, so read_tissue says why.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            shape = tf.series[0].shape
    except Exception:  # tifffile raises many types for broken files
        return False
    return sum(n > 1 for n in shape) <= 2


def _read_tiff(path: Path, channel_names: Sequence[str] | None, stores: list) -> Tissue:
    """One TIFF file holding all channels (OME-TIFF names them)."""
    data, axes, ome, labels = _open_tiff(path, stores)
    data, axes = _squeeze(data, axes, "YX")
    if data.ndim == 2:
        raise AgileInputError(
            f"{path.name} is a single 2D image (one channel). Put one TIFF per channel in a folder and open the "
            "folder, or save the channels together as one (channels, rows, columns) TIFF."
        )
    if data.ndim != 3:
        raise AgileInputError(
            f"{path.name} has axes {axes} and shape {data.shape}; expected (channels, rows, columns). "
            "Save one plane (no time or z) with its channels."
        )
    if axes.endswith("S"):  # RGB(A) samples: each sample becomes a channel
        data = data.transpose(2, 0, 1)
    elif axes[0] in "QI":  # tifffile names no axis: a (rows, columns, channels) array may have been saved as is
        data = _channels_first(data, len(channel_names) if channel_names else None, path)
    names = (_ome_channel_names(ome, data.shape[0], path) if ome else None) or _plane_names(labels, axes, data.shape[0])
    pixel_size = _ome_pixel_size(ome) if ome else None
    names = _resolve_names(list(channel_names) if channel_names else names, data.shape[0], path)
    return Tissue(data, names, pixel_size=pixel_size, source=str(path))


def _channels_first(data: Any, n_names: int | None, where: Path) -> Any:
    """(C, Y, X) `data` from a 3D image whose axes are not labelled: (Y, X, C) when `n_names` channel names count
    the last axis and not the first, or, without names, when the last axis is the shortest (a warning says so)."""
    first, rows, last = data.shape
    if n_names is not None:
        channels_last = n_names == last != first
    else:
        channels_last = last < min(first, rows)
        if channels_last:
            warnings.warn(
                f"{where.name} does not label its axes; reading its shape {data.shape} as (rows, columns, "
                f"channels): {last} channels of {first} x {rows} px. Pass channel_names=[...] (CLI: --names) to "
                "confirm the channel count.",
                stacklevel=4,
            )
    return data.transpose(2, 0, 1) if channels_last else data


def _ome_pixels(ome: str) -> ET.Element | None:
    try:
        root = ET.fromstring(ome)
    except ET.ParseError:
        return None
    return next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)


def _ome_channel_names(ome: str, n: int, where: Path) -> list[str] | None:
    """Channel Name attributes of the first OME image, when there is one per channel; a channel without a name
    is called channel_<k> (a warning names it) and the others keep theirs."""
    pixels = _ome_pixels(ome)
    if pixels is None:
        return None
    names = [(ch.get("Name") or "").strip() for ch in pixels if ch.tag.endswith("Channel")]
    if len(names) != n or not any(names):
        return None
    blank = [k for k, name in enumerate(names, 1) if not name]
    if blank:
        warnings.warn(
            f"{where.name} names no channel {blank}; calling {'it' if len(blank) == 1 else 'them'} "
            f"{', '.join(f'channel_{k}' for k in blank)}. Pass channel_names=[...] (CLI: --names) to name every "
            "channel.",
            stacklevel=4,
        )
    return [name or f"channel_{k}" for k, name in enumerate(names, 1)]


def _plane_names(labels: Any, axes: str, n: int) -> list[str] | None:
    """Names a file gives each plane of a (channels, rows, columns) image, when there is one per channel: Fiji's
    slice labels (the first line of each: ImageJ appends details after a newline), page names or image names."""
    if axes[1:] != "YX" or not isinstance(labels, list) or len(labels) != n:
        return None
    names = [str(label).split("\n")[0].strip() for label in labels]
    return names if all(names) and len(set(names)) == n else None


def _ome_pixel_size(ome: str) -> float | None:
    """PhysicalSizeX in µm when given in µm (the OME default unit)."""
    pixels = _ome_pixels(ome)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    if pixels.get("PhysicalSizeXUnit", "µm") not in ("µm", "um", "micron"):
        return None
    return float(pixels.get("PhysicalSizeX", ""))  # present: checked above


def _resolve_names(names: list[str] | None, n: int, where: Path) -> list[str]:
    """The given names, or placeholders with a warning saying how to name the channels."""
    if names is None:
        warnings.warn(
            f"{where.name} does not name its {n} channels; calling them channel_1..channel_{n}. "
            "Pass channel_names=[...] (CLI: --names) so markers like DAPI are recognised.",
            stacklevel=3,
        )
        return [f"channel_{i + 1}" for i in range(n)]
    if len(names) != n:
        raise AgileInputError(f"{where.name} has {n} channels but {len(names)} names were given: {names}.")
    return names


# --------------------------------------------------------------------------------------------- folder


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".ome.tiff", ".ome.tif", *TIFF_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


#: file stems of label images that sit beside the channel TIFFs in a folder (a segmentation's output)
MASK_STEM = re.compile(r"(^|[^a-z])(masks?|labels?|segmentation|segmented|seg)([^a-z]|$)")


def _read_folder(
    folder: Path, channel_names: Sequence[str] | None, channel_map: Mapping[str, str] | None, stores: list
) -> Tissue:
    """A folder of one 2D TIFF per channel; names from file stems or picked and named by `channel_map`."""
    files = sorted(
        (f for f in folder.iterdir() if f.suffix.lower() in TIFF_SUFFIXES and not f.name.startswith(".")),
        key=lambda f: _natural_key(f.name),
    )
    if not files:
        found = sorted(f.name for f in folder.iterdir())[:10]
        raise AgileInputError(
            f"The folder {folder} holds no TIFF files (found {found}); give a folder of one TIFF per channel."
        )
    by_stem = {_stem(f): f for f in files}
    if channel_map:
        chosen: list[tuple[str, Path]] = []
        missing = []
        for key, name in channel_map.items():
            matches = [by_stem[key]] if key in by_stem else [f for s, f in by_stem.items() if s.endswith("_" + key)]
            if not matches:
                missing.append(key)
            elif len(matches) > 1:
                raise AgileInputError(
                    f"channel_map key {key!r} matches {len(matches)} files in {folder} "
                    f"({sorted((f.name for f in matches), key=_natural_key)}): the folder holds more than one "
                    "section. Give the full file name without .tif as the key (e.g. 'S1_R2C1'), or one "
                    "folder per section."
                )
            else:
                chosen.append((name, matches[0]))
        if missing:
            raise AgileInputError(
                f"channel_map names files {missing} that are not in {folder} "
                f"(it has {sorted(by_stem, key=_natural_key)[:20]}). Keys are file names without .tif, "
                "e.g. 'R2C1' or 'S1_R2C1'."
            )
        names = [n for n, _ in chosen]
        files = [f for _, f in chosen]
    else:
        masks = [f for f in files if MASK_STEM.search(_stem(f).lower())]
        if masks and len(masks) < len(files) and not (channel_names and len(channel_names) == len(files)):
            warnings.warn(
                f"Left out {[f.name for f in masks]} of {folder}: by name a label image (a mask), not a channel. "
                "Give channel_map={file stem: channel name} to choose the channels yourself.",
                stacklevel=3,
            )
            files = [f for f in files if f not in masks]
        names = list(channel_names) if channel_names else [_stem(f) for f in files]
        if len(names) != len(files):
            raise AgileInputError(f"{folder} has {len(files)} TIFF files but {len(names)} channel names were given.")
    arrays = []
    for f in files:
        data, axes, _, _ = _open_tiff(f, stores)
        if sum(n > 1 for n in data.shape) != 2 or data.ndim < 2:
            raise AgileInputError(
                f"{f.name} in {folder} is not a single-channel 2D image (shape {data.shape}): a channel folder "
                "holds one 2D TIFF per channel."
            )
        arrays.append((f, _squeeze(data, axes, "YX")[0]))
    shapes = {f.name: a.shape for f, a in arrays}
    if len(set(shapes.values())) > 1:
        raise AgileInputError(
            f"Channel files in {folder} differ in size: {shapes}. All channels of a section must have the same "
            "rows and columns (register or crop them first)."
        )
    import dask.array as da

    h, w = arrays[0][1].shape
    chunks = (min(h, 2048), min(w, 2048))
    common = np.result_type(*(a.dtype for _, a in arrays))  # channels saved as different types: read as one
    stack = da.stack([(a if isinstance(a, da.Array) else _wrap_memmap(a, f, chunks)).astype(common) for f, a in arrays])
    return Tissue(stack, names, source=str(folder))


def _wrap_memmap(data: np.memmap, path: Path, chunks: tuple[int, int]) -> Any:
    """A dask array reading a file's memmap block by block, without copying it: dask copies whatever array it is
    given (and hashes it to name it, reading every byte), so it gets a slicing-only view and a name from the file."""
    import dask.array as da
    from dask.base import tokenize

    stat = path.stat()
    name = "tiff-" + tokenize(str(path.resolve()), stat.st_size, stat.st_mtime_ns, data.shape, str(data.dtype))
    return da.from_array(_Sliced(data), chunks=chunks, name=name, meta=np.empty((0,) * data.ndim, data.dtype))


class _Sliced:
    """An array seen only through slicing (shape, dtype, ndim, [...]): no `copy` for dask to call."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.data[key]


# ----------------------------------------------------------------------------------------------- zarr


def _is_zarr(p: Path) -> bool:
    return p.is_dir() and (p.suffix.lower() == ".zarr" or any((p / m).exists() for m in _ZARR_MARKERS))


def _open_zarr(path: Path) -> Any:
    import zarr

    try:
        return zarr.open(str(path), mode="r")
    except Exception as exc:
        raise AgileInputError(f"Cannot open {path} as zarr ({exc}).") from exc


def is_spatialdata(path: str | Path) -> bool:
    """Whether `path` is the root of a SpatialData zarr store (images, labels and tables side by side)."""
    p = Path(path)
    return _is_zarr(p) and (p / "images").is_dir() and "spatialdata_attrs" in dict(_open_zarr(p).attrs)


def spatialdata_element(root: str | Path, kind: str, name: str | None = None) -> Path:
    """The folder of one `kind` ("images" or "labels") element of a SpatialData zarr: `name`, else the only one,
    else (labels) the only one named for nuclei; a clear error naming the choices otherwise."""
    root = Path(root)
    group = root / kind
    names = sorted(p.name for p in group.iterdir() if p.is_dir()) if group.is_dir() else []
    if name is not None and name not in names:
        raise AgileInputError(f"{root} has no {kind} element {name!r}; it has: {', '.join(names) or 'none'}.")
    if name is None:
        nuclear = [n for n in names if "nucle" in n.lower()] if kind == "labels" else []
        if len(names) == 1 or len(nuclear) == 1:
            name = names[0] if len(names) == 1 else nuclear[0]
        else:
            what = "image" if kind == "images" else "nucleus label image"
            raise AgileInputError(
                f"{root} holds {len(names)} {kind} ({', '.join(names) or 'none'}): name the {what} to read "
                f"(read_spatialdata(path, {kind[:-1] if kind == 'images' else 'labels'}=NAME), or open "
                f"{group}/NAME)."
            )
    return group / name


def read_label_zarr(path: str | Path) -> np.ndarray:
    """A 2D label image from zarr: level 0 of an OME-Zarr label image, or a SpatialData zarr's nucleus labels."""
    return np.asarray(_label_zarr_array(Path(path)))


@contextmanager
def open_label_image(path: str | Path) -> Iterator[Any]:
    """A label image opened lazily, reading only the regions sliced from it: a TIFF's level 0 (a memmap, or tiles
    through tifffile's zarr view) or a zarr label image's (an OME-Zarr label folder, a SpatialData store's nucleus
    labels). The TIFF is closed on leaving the block."""
    p = Path(path)
    if p.is_dir():
        yield _label_zarr_array(p)
        return
    stores: list = []
    try:
        yield _open_tiff(p, stores)[0]
    finally:
        for store in stores:
            store.close()


def _label_zarr_array(p: Path) -> Any:
    """Level 0 of a zarr label image as a (lazy) zarr array."""
    if is_spatialdata(p):
        p = spatialdata_element(p, "labels")
    node = _open_zarr(p)
    attrs: dict[str, Any] = dict(node.attrs)
    ome: dict[str, Any] = attrs.get("ome", attrs)
    if hasattr(node, "shape"):
        return node
    if "multiscales" not in ome:
        raise AgileInputError(f"{p} is a zarr group without OME multiscales metadata: open the label array itself.")
    return node[ome["multiscales"][0]["datasets"][0]["path"]]


def _read_zarr(path: Path, channel_names: Sequence[str] | None) -> Tissue:
    """A zarr array or (OME-)zarr group; multiscale images give level 0, omero metadata names the channels; a
    SpatialData store gives its image."""
    import dask.array as da
    import zarr

    node = _open_zarr(path)
    attrs: dict[str, Any] = dict(node.attrs)  # JSON: checked key by key below
    if "spatialdata_attrs" in attrs and (path / "images").is_dir():  # a store's root, not one of its elements
        return _read_zarr(spatialdata_element(path, "images"), channel_names)
    if "bioformats2raw.layout" in attrs.get("ome", attrs) and (path / "0").is_dir():  # bioformats2raw: image 0 of it
        return _read_zarr(path / "0", channel_names)
    ome: dict[str, Any] = attrs.get("ome", attrs)  # OME-NGFF 0.5 nests its metadata under "ome"
    axes = None
    pixel_size = None
    arr: Any
    coarser: list[Any] = []  # a multiscale image's lower levels: for viewers, and to tell a lost chunk from a blank one
    if isinstance(node, zarr.Array):
        arr = node
    elif "multiscales" in ome:
        ms = ome["multiscales"][0]
        level0 = ms["datasets"][0]
        arr = node[level0["path"]]
        axes = "".join((a["name"] if isinstance(a, dict) else a)[0].upper() for a in ms.get("axes", [])) or None
        coarser = [node[d["path"]] for d in ms["datasets"][1:]]
        for t in level0.get("coordinateTransformations", []):
            if t.get("type") == "scale" and axes and len(t["scale"]) == len(axes):
                pixel_size = float(t["scale"][axes.index("X")])
    else:
        arrays = [a for _, a in node.arrays()]
        if len(arrays) != 1:
            raise AgileInputError(
                f"{path} is a zarr group with {len(arrays)} arrays and no OME multiscales metadata; "
                "open the array folder itself."
            )
        arr = arrays[0]
    labelled, stored_axes = axes is not None, axes
    axes = axes or ("CYX"[-arr.ndim :] if arr.ndim <= 3 else "?" * (arr.ndim - 3) + "CYX")
    _check_chunks(arr, path, axes, coarser[0] if coarser else None)
    data = da.from_zarr(arr)
    data, axes = _squeeze(data, axes, "CYX")
    if not labelled and data.ndim == 3:
        data = _channels_first(data, len(channel_names) if channel_names else None, path)
    if data.ndim == 2:
        raise AgileInputError(f"{path} holds a single 2D image; multiplexed tissue needs a channel axis (C, Y, X).")
    if axes != "CYX":
        raise AgileInputError(f"{path} has axes {axes} (shape {data.shape}); expected channels, rows, columns.")
    names = list(channel_names) if channel_names else None
    omero = ome.get("omero", {}).get("channels") if isinstance(ome.get("omero"), dict) else None
    if names is None and omero and len(omero) == data.shape[0]:
        names = [ch.get("label") or f"channel_{i + 1}" for i, ch in enumerate(omero)]
    names = _resolve_names(names, data.shape[0], path)
    tissue = Tissue(data, names, pixel_size=pixel_size, source=str(path))
    if coarser and stored_axes:  # by channel name, so a selection or reordering of channels keeps its own
        levels = [_squeeze(da.from_zarr(level), stored_axes, "CYX")[0] for level in coarser]
        tissue.metadata["levels"] = {name: [level[i] for level in levels] for i, name in enumerate(names)}
    return tissue


#: how many of level 0's absent chunks _check_chunks looks up in the next pyramid level (a bounded cost per open)
CHUNKS_CHECKED = 32


def _check_chunks(arr: Any, root: Path, axes: str, coarser: Any | None) -> None:
    """Refuse a store whose level 0 lacks a chunk where its next pyramid level holds data: a chunk lost in copying,
    which zarr would silently read as blank. Absent chunks are not refused otherwise: zarr-python 3 writes no chunk
    that is all fill value (write_empty_chunks=False), so a store with blank background is sparse on purpose; where
    a coarser level is blank there too that is taken as such, and a store without a pyramid gets a warning."""
    missing = _absent_chunks(arr, root)
    if not missing:
        return
    grid = arr.shards or arr.chunks
    fill = arr.fill_value or 0

    def tile(index: tuple[int, ...]) -> str:
        spans = {a: (i * n, min((i + 1) * n, s)) for a, i, n, s in zip(axes, index, grid, arr.shape)}
        channel = f" of channel {spans['C'][0] + 1}" if "C" in spans and arr.shape[axes.index("C")] > 1 else ""
        return f"rows {spans['Y'][0]}-{spans['Y'][1]}, columns {spans['X'][0]}-{spans['X'][1]}{channel}"

    if coarser is None:
        warnings.warn(
            f"{root} lacks {len(missing)} chunk(s) of its image (first: {tile(missing[0])}), read as {fill}: expected "
            "if its writer skipped blank chunks; otherwise the store is incomplete, so copy it again.",
            stacklevel=4,
        )
        return
    for index in missing[:: max(1, len(missing) // CHUNKS_CHECKED)][:CHUNKS_CHECKED]:
        region = tuple(
            slice(i * n * c // s, -(-min((i + 1) * n, s) * c // s))
            for i, n, s, c in zip(index, grid, arr.shape, coarser.shape)
        )
        if np.any(np.asarray(coarser[region]) != fill):
            raise AgileInputError(
                f"{root} lacks the chunk of {tile(index)} ({len(missing)} chunk(s) absent in all), though its lower-"
                "resolution level shows an image there: the store is incomplete. Copy it again from its source, or "
                "re-export it."
            )


def _absent_chunks(arr: Any, root: Path) -> list[tuple[int, ...]]:
    """Chunk-grid positions (of shards, for a sharded array) whose files a local zarr array lacks, v2 ('0.1.2') or
    v3 ('c/0/1/2') keys alike; lists the array's folder, reads no chunk."""
    folder = root / arr.path
    present = {(Path(top).relative_to(folder) / name).as_posix() for top, _, names in os.walk(folder) for name in names}
    grid = [-(-s // n) for s, n in zip(arr.shape, arr.shards or arr.chunks)]
    return [index for index in np.ndindex(*grid) if arr.metadata.encode_chunk_key(index) not in present]

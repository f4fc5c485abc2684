"""Chunked OME-Zarr label images with a multiscale pyramid, written tile by tile: a section's nucleus mask and its
painted cell types, never held whole in memory (a 29,000 x 43,000 int32 mask is 5 GB)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_agile.io.export import to_rgb255

#: chunk side of every level (pixels): a chunk of int32 labels is 16 MB
CHUNK = 2048
#: OME-NGFF version written (read by napari-ome-zarr, QuPath, and this package's readers)
NGFF = "0.4"


def create_label_image(path: str | Path, shape: tuple[int, int], chunk: int = CHUNK) -> Any:
    """A new, all-zero int32 level 0 of an OME-Zarr label image at `path` (zarr v2 format) to paint into tile by tile;
    `finish_label_image` adds the coarser levels and the metadata once it is painted."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    return _level(group, "0", shape, chunk)


def finish_label_image(
    path: str | Path, names: Mapping[int, str] | None = None, colors: Mapping[int, Any] | None = None
) -> Path:
    """Write the pyramid's coarser levels (each half the last, nearest-pixel, until one chunk holds it) and the OME
    multiscales metadata; `names`/`colors` (label value -> name, colour) become its image-label properties."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    level: Any = group["0"]
    paths = ["0"]
    while max(level.shape) > level.chunks[0]:
        level = _half(group, level, str(len(paths)))
        paths.append(str(len(paths)))
    datasets = [
        {"path": p, "coordinateTransformations": [{"type": "scale", "scale": [2.0**k, 2.0**k]}]}
        for k, p in enumerate(paths)
    ]
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    attrs: dict[str, Any] = {"multiscales": [{"version": NGFF, "axes": axes, "datasets": datasets}]}
    label: dict[str, Any] = {"version": NGFF}
    if colors:
        label["colors"] = [{"label-value": int(v), "rgba": [*to_rgb255(c), 255]} for v, c in colors.items()]
    if names:
        label["properties"] = [{"label-value": int(v), "name": str(n)} for v, n in names.items()]
    attrs["image-label"] = label
    group.attrs.update(attrs)
    return Path(path)


def paint_label_image(source: Any, lut: np.ndarray, path: str | Path, chunk: int = CHUNK) -> Any:
    """A new label image at `path` whose level 0 is `lut[source]` (e.g. nucleus ids -> cell-type codes), chunk by
    chunk; call `finish_label_image` after."""
    out = create_label_image(path, tuple(source.shape), chunk)
    for region in _tiles(out.shape, out.chunks[0]):
        ids = np.asarray(source[region])
        out[region] = lut[np.clip(ids, 0, len(lut) - 1)] * (ids < len(lut))
    return out


def open_level(path: str | Path, level: int = 0) -> Any:
    """One level of the label image at `path`, as a zarr array read chunk by chunk."""
    import zarr

    return zarr.open_group(str(path), mode="r")[str(level)]


def write_label_group(path: str | Path, members: Sequence[str]) -> Path:
    """Mark `path` as an OME-Zarr "labels" group holding the label images `members` (its sub-folders)."""
    import zarr

    group = zarr.open_group(str(path), mode="a", zarr_format=2)
    group.attrs["labels"] = list(members)
    return Path(path)


def label_members(path: str | Path) -> list[Path] | None:
    """The label images at `path`: those an OME-Zarr "labels" group lists, or `path` itself when it is one; None when
    it is neither (e.g. an image)."""
    import zarr

    try:
        attrs: dict[str, Any] = dict(zarr.open_group(str(path), mode="r").attrs)  # JSON, checked below
    except Exception:  # not a zarr group: an array, another format, a damaged store
        return None
    if isinstance(attrs.get("labels"), list):
        return [Path(path) / str(name) for name in attrs["labels"]]
    return [Path(path)] if "image-label" in attrs else None


def read_label_levels(path: str | Path) -> tuple[list[Any], dict[int, list[int]]]:
    """A label image's levels (finest first, lazy dask arrays) and its colours (label value -> [r, g, b, a], 0-255)."""
    import dask.array as da
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs: dict[str, Any] = dict(group.attrs)
    levels = [da.from_zarr(group[d["path"]]) for d in attrs["multiscales"][0]["datasets"]]
    colors = {int(c["label-value"]): list(c["rgba"]) for c in attrs.get("image-label", {}).get("colors", [])}
    return levels, colors


def _half(group: Any, finer: Any, name: str) -> Any:
    """Level `name`: every second row and column of `finer`, written chunk by chunk."""
    shape = tuple(-(-s // 2) for s in finer.shape)
    chunk = finer.chunks[0]
    out = _level(group, name, shape, chunk)
    for ry, rx in _tiles(shape, chunk):
        out[ry, rx] = finer[2 * ry.start : 2 * ry.stop : 2, 2 * rx.start : 2 * rx.stop : 2]
    return out


def _level(group: Any, name: str, shape: tuple[int, ...], chunk: int) -> Any:
    """An all-zero int32 array `name` of `group`, chunked in `chunk`² blocks."""
    chunks = (min(chunk, shape[0]), min(chunk, shape[1]))
    return group.create_array(name, shape=shape, chunks=chunks, dtype="int32", fill_value=0)


def _tiles(shape: tuple[int, ...], tile: int) -> list[tuple[slice, slice]]:
    """(row, column) slices of `tile`-sized blocks covering `shape`."""
    return [
        (slice(y, min(y + tile, shape[0])), slice(x, min(x + tile, shape[1])))
        for y in range(0, shape[0], tile)
        for x in range(0, shape[1], tile)
    ]

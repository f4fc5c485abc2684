"""npe2 reader: a multiplexed section (OME-TIFF, TIFF, folder of channel TIFFs, zarr, SpatialData) as one layer per
channel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_agile.errors import AgileInputError
from napari_agile.io.images import (
    TIFF_SUFFIXES,
    is_single_plane_tiff,
    is_spatialdata,
    read_label_zarr,
    read_tissue,
    spatialdata_element,
)
from napari_agile.io.label_zarr import label_members, read_label_levels
from napari_agile.io.tissue import Tissue

#: Colormaps for the paper's panel; other channels cycle through OTHER_COLORMAPS.
CHANNEL_COLORMAPS = {
    "DAPI": "blue",
    "Histones": "cyan",
    "NeuN": "green",
    "S100": "magenta",
    "Olig2": "yellow",
    "Iba1": "red",
    "RECA1": "bop orange",
}
OTHER_COLORMAPS = ("blue", "green", "magenta", "yellow", "red", "cyan", "bop orange", "bop purple", "gray")

LayerData = tuple[Any, dict, str]


def channel_colormap(name: str, index: int) -> str:
    """A napari colormap name for channel `name` (the paper's panel by name, others by position)."""
    return CHANNEL_COLORMAPS.get(name, OTHER_COLORMAPS[index % len(OTHER_COLORMAPS)])


def _contrast_limits(channel: Any) -> tuple[float, float]:
    """(0.5, 99.8) percentiles of a strided sample of at most ~1024² pixels, so a large section opens at once."""
    step = max(1, max(channel.shape) // 1024)
    sample = np.asarray(channel[::step, ::step], dtype=np.float32)
    lo, hi = np.percentile(sample, (0.5, 99.8))
    return float(lo), float(hi if hi > lo else lo + 1)


def tissue_layer_data(tissue: Tissue) -> list[LayerData]:
    """One additive image layer per channel, named by channel (the widget reads the names back as channels)."""
    scale = (tissue.pixel_size, tissue.pixel_size) if tissue.pixel_size else (1.0, 1.0)
    layers = []
    pyramids = tissue.metadata.get("levels", {})
    for i, name in enumerate(tissue.channel_names):
        channel = [tissue.data[i], *pyramids[name]] if name in pyramids else tissue.data[i]
        meta = {
            "name": name,
            "colormap": channel_colormap(name, i),
            "blending": "additive",
            "contrast_limits": _contrast_limits(channel[-1] if isinstance(channel, list) else channel),
            "scale": scale,
            "metadata": {"channel_names": list(tissue.channel_names), "source": tissue.source},
        }
        layers.append((channel, meta, "image"))
    return layers


def label_layer_data(path: Path) -> LayerData:
    """One OME-Zarr label image as a multiscale Labels layer, in the colours it was written with."""
    from napari.utils.colormaps import DirectLabelColormap

    levels, colors = read_label_levels(path)
    meta: dict[str, Any] = {"name": path.name, "opacity": 0.6, "multiscale": len(levels) > 1}
    if colors:
        color_dict: dict[int | None, Any] = {None: "transparent", 0: "transparent"}
        color_dict.update({value: np.array(rgba) / 255 for value, rgba in colors.items()})
        meta["colormap"] = DirectLabelColormap(color_dict=color_dict)
    return (levels if len(levels) > 1 else levels[0], meta, "labels")


def _looks_like_tissue(path: Path) -> bool:
    if path.is_dir():
        return path.suffix.lower() == ".zarr" or any(p.suffix.lower() in TIFF_SUFFIXES for p in path.iterdir())
    return path.suffix.lower() in TIFF_SUFFIXES and not is_single_plane_tiff(path)


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for a multichannel TIFF/OME-TIFF file, a folder of per-channel TIFFs or a .zarr folder; None
    otherwise, so that napari's own reader opens a single 2D TIFF (a mask, one channel)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return read_layers if _looks_like_tissue(Path(path)) else None


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Open `path` lazily with read_tissue and return one image layer per channel (multiscale when the file holds
    coarser levels); a SpatialData store adds its nucleus labels as a Labels layer, which the widget then offers as
    the nuclei. An OME-Zarr label image or labels group (`napari-agile predict --labels`) opens as Labels layers."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    members = label_members(path) if Path(path).is_dir() else None
    if members is not None:
        return [label_layer_data(member) for member in members]
    tissue = read_tissue(path)
    layers = tissue_layer_data(tissue)
    if is_spatialdata(path):
        try:
            element = spatialdata_element(path, "labels")
        except AgileInputError:  # no labels, or several and none named for nuclei: the user detects or picks
            return layers
        layers.append(
            (read_label_zarr(element), {"name": element.name, "opacity": 0.5, "scale": layers[0][1]["scale"]}, "labels")
        )
    return layers

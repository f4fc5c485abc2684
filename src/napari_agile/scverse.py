"""The scverse world: an AnnData (.h5ad) that scanpy and squidpy read, with per-cell marker means in X, the
predicted types and probabilities in obs, the centres in obsm["spatial"] and the answers and the model in uns; a
SpatialData zarr holding the image, the nucleus and cell-type labels and that table; and a reader for SpatialData
stores made elsewhere. anndata and spatialdata are an optional extra (`pip install napari-agile[scverse]`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_agile.detect.markers import marker_means
from napari_agile.detect.nuclei import cells_from_labels
from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.export import NONE_TYPE, check_table, default_colors
from napari_agile.io.images import is_spatialdata, read_label_zarr, read_tissue, spatialdata_element
from napari_agile.io.tissue import Tissue

#: the colour of cells no type claims, in uns["cell_type_colors"] (scanpy's grey for missing categories)
NONE_COLOR = "#d3d3d3"


def require_anndata():
    """The anndata module, or a clear error saying how to install it."""
    try:
        import anndata
    except ImportError:
        raise AgileInputError(
            "Writing .h5ad needs the anndata package: pip install 'napari-agile[scverse]' "
            "(or pip install anndata), or export .csv / .geojson instead."
        ) from None
    return anndata


def to_anndata(
    table: pd.DataFrame,
    tissue: Tissue,
    cells: Cells,
    colors: Mapping[str, str] | None = None,
    answers: pd.DataFrame | None = None,
    info: Mapping[str, object] | None = None,
):
    """An AnnData of one cell per row of `table` (Session.predict): X the raw mean intensity of each channel over
    the nucleus (layers["ring"]: over a ring around it), obs the cell_type (categorical, 'none' last) and every
    p_/entropy_ column, obsm["spatial"] the (x, y) centres in pixels, uns the type colours, the `answers` table
    and `info` (each value JSON text, so any h5ad reader opens it)."""
    anndata = require_anndata()
    check_table(table)
    ids = table["id"].to_numpy(np.int64)
    nucleus, ring = marker_means(tissue, cells.subset(ids))
    named = [c[2:] for c in table.columns if c.startswith("p_")]
    types = [t for t in dict.fromkeys([*named, *table["cell_type"].astype(str)]) if t != NONE_TYPE]
    # plain object strings (not pandas' string arrays), so readers with anndata older than 0.11 open the file too
    obs = pd.DataFrame(index=pd.Index([str(i) for i in ids], name="cell", dtype=object))
    obs["cell_id"] = ids
    obs["cell_type"] = pd.Categorical(
        table["cell_type"].astype(str).to_numpy(object), categories=pd.Index([*types, NONE_TYPE], dtype=object)
    )
    for column in table.columns:
        if column.startswith(("p_", "entropy_")):
            obs[column] = table[column].to_numpy(np.float64)
    var = pd.DataFrame(index=pd.Index([str(c) for c in tissue.channel_names], name="channel", dtype=object))
    adata = anndata.AnnData(X=nucleus, obs=obs, var=var, layers={"ring": ring})
    adata.obsm["spatial"] = table[["x", "y"]].to_numpy(np.float64)
    palette = {**default_colors(types), **(colors or {})}
    adata.uns["cell_type_colors"] = np.array([str(palette[t]) for t in types] + [NONE_COLOR], dtype=object)
    meta = {key: json.dumps(value, default=str) for key, value in (info or {}).items()}
    if answers is not None:
        meta["answers"] = answers.reset_index(drop=True).astype(
            {c: object for c in answers.columns if pd.api.types.is_string_dtype(answers[c])}
        )
    adata.uns["napari_agile"] = meta
    return adata


def write_anndata(
    table: pd.DataFrame,
    path: str | Path,
    tissue: Tissue,
    cells: Cells,
    colors: Mapping[str, str] | None = None,
    answers: pd.DataFrame | None = None,
    info: Mapping[str, object] | None = None,
) -> Path:
    """Write to_anndata(...) to `path` (.h5ad): complete or absent, through a temporary name renamed at the end."""
    adata = to_anndata(table, tissue, cells, colors, answers, info)
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        adata.write_h5ad(partial)
        os.replace(partial, path)
    except OSError as err:
        with contextlib.suppress(OSError):  # nothing to remove where the folder itself could not be made
            partial.unlink(missing_ok=True)
        raise AgileInputError(
            f"Could not write {path}: {err.strerror or err}. Choose a folder you can write to with free space."
        ) from None
    return path


def require_spatialdata():
    """The spatialdata module, or a clear error saying how to install it."""
    try:
        import spatialdata
    except ImportError:
        raise AgileInputError(
            "Writing a SpatialData .zarr needs the spatialdata package: pip install 'napari-agile[scverse]' "
            "(or pip install spatialdata), or export .h5ad / .csv / .geojson instead."
        ) from None
    return spatialdata


def to_spatialdata(
    table: pd.DataFrame,
    tissue: Tissue,
    cells: Cells,
    types: Any,
    colors: Mapping[str, str] | None = None,
    answers: pd.DataFrame | None = None,
    info: Mapping[str, object] | None = None,
):
    """A SpatialData of the section: images["tissue"] (channels named), labels["nuclei"] (the nucleus mask) and
    labels["cell_types"] (`types`, Session.paint), each of them possibly lazy (written chunk by chunk), and
    tables["table"], to_anndata's table annotating the nuclei (region "nuclei", instance key cell_id), its column
    names made SpatialData names (type "T cell": p_T_cell)."""
    sd = require_spatialdata()
    from spatialdata.models import Image2DModel, Labels2DModel, TableModel

    if cells.labels is None:
        raise AgileInputError("A SpatialData export needs the nucleus mask: detect nuclei, or pass Cells with labels.")
    adata = to_anndata(table, tissue, cells, colors, answers, info)
    sd.sanitize_table(adata)  # SpatialData refuses spaces, '+', '/' (a type named "T cell", "CD8+") in column names
    adata.obs["region"] = pd.Categorical(
        np.full(adata.n_obs, "nuclei", dtype=object), categories=pd.Index(["nuclei"], dtype=object)
    )
    names = [str(c) for c in tissue.channel_names]
    return sd.SpatialData(
        images={"tissue": Image2DModel.parse(_chunked(tissue.data), dims=("c", "y", "x"), c_coords=names)},
        labels={
            "nuclei": Labels2DModel.parse(_chunked(cells.labels), dims=("y", "x")),
            "cell_types": Labels2DModel.parse(_chunked(types), dims=("y", "x")),
        },
        tables={"table": TableModel.parse(adata, region="nuclei", region_key="region", instance_key="cell_id")},
    )


def _chunked(array: Any) -> Any:
    """A numpy array as it is; a lazy one (zarr, a TIFF memory map, dask) as a dask array of its own chunks, so
    SpatialData writes a section's image and label images chunk by chunk instead of reading them whole."""
    if type(array) is np.ndarray:
        return array
    import dask.array as da

    if isinstance(array, da.Array):
        return array
    chunks = getattr(array, "chunks", None)
    return da.from_array(array, chunks=chunks if isinstance(chunks, tuple) else "auto")


def write_spatialdata(
    table: pd.DataFrame,
    path: str | Path,
    tissue: Tissue,
    cells: Cells,
    types: Any,
    colors: Mapping[str, str] | None = None,
    answers: pd.DataFrame | None = None,
    info: Mapping[str, object] | None = None,
) -> Path:
    """Write to_spatialdata(...) as a SpatialData zarr store at `path` (.zarr): complete or absent, written under a
    temporary name and renamed at the end (an earlier store at `path` is replaced)."""
    data = to_spatialdata(table, tissue, cells, types, colors, answers, info)
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        data.write(partial)
        if path.exists():
            shutil.rmtree(path)
        os.replace(partial, path)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise AgileInputError(
            f"Could not write {path}: {err.strerror or err}. Choose a folder you can write to with free space."
        ) from None
    return path


def read_spatialdata(
    path: str | Path, image: str | None = None, labels: str | None = None, channel_names: Sequence[str] | None = None
) -> tuple[Tissue, Cells]:
    """A SpatialData zarr store made elsewhere as a tissue and its nuclei: the image `image` (default: the only one)
    and the nucleus label image `labels` (default: the only one, or the only one named for nuclei). Needs only zarr,
    not spatialdata."""
    root = Path(path).expanduser()
    if not is_spatialdata(root):
        raise AgileInputError(
            f"{root} is not a SpatialData zarr store (no images group with spatialdata metadata): open an image with "
            "read_tissue instead."
        )
    tissue = read_tissue(spatialdata_element(root, "images", image), channel_names)
    mask = read_label_zarr(spatialdata_element(root, "labels", labels))
    return tissue, cells_from_labels(mask, tissue.shape)

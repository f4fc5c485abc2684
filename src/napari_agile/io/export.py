"""Export a prediction table (Session.predict) as CSV or as GeoJSON detections (nucleus outlines, or points without a
mask) that QuPath imports with their classes; AnnData (.h5ad) and SpatialData (.zarr) are in scverse.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_agile.errors import AgileInputError

#: Distinct colours handed to cell types in the order they are named (white and black stay free for answers).
TYPE_PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
    "#800000",
    "#aaffc3",
    "#000075",
)
#: Name of the class of cells no type claims (the Session and every export use this one).
NONE_TYPE = "none"


#: how far (RGB distance, 0-1 per component) a default type colour keeps from every channel colour
CLASH = 0.5


def default_colors(names: Sequence[str], avoid: Sequence = ()) -> dict[str, str]:
    """A '#rrggbb' colour per cell type, from TYPE_PALETTE in order (cycled past 16 types); colours closer than
    CLASH to one of `avoid` (the channel colours shown under them) come last."""
    shown = np.array([to_rgb255(c) for c in avoid], float).reshape(-1, 3) / 255

    def clashes(color: str) -> bool:
        return bool(len(shown)) and np.linalg.norm(shown - np.array(to_rgb255(color)) / 255, axis=1).min() < CLASH

    palette = sorted(TYPE_PALETTE, key=clashes)  # stable: palette order within each group
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def to_rgb255(color) -> list[int]:
    """A colour as [r, g, b] in 0-255, from '#rrggbb', three 0-255 numbers or three 0-1 floats."""
    if isinstance(color, str):
        text = color.lstrip("#")
        if len(text) not in (6, 8) or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise AgileInputError(f"Colour {color!r} is not '#rrggbb'.")
        return [int(text[i : i + 2], 16) for i in (0, 2, 4)]
    arr = np.asarray(color, dtype=float)[:3]
    if arr.size != 3:
        raise AgileInputError(f"Colour {color!r} needs three components (r, g, b).")
    return [int(round(v)) for v in (arr * 255 if arr.max() <= 1.0 else arr)]


def check_table(table: pd.DataFrame) -> None:
    """A clear error when `table` lacks the columns of a prediction table (Session.predict)."""
    missing = [c for c in ("id", "y", "x", "cell_type") if c not in table.columns]
    if missing:
        raise AgileInputError(
            f"A prediction table needs columns id, y, x, cell_type (from Session.predict); missing {missing}."
        )


#: side of the square blocks a nucleus mask is outlined in, read one at a time (a lazy mask never whole in memory)
OUTLINE_TILE = 2048
#: how far past its block a block's mask is read, so nuclei centred near its edge are whole (grown where one is not)
OUTLINE_MARGIN = 64


def outline_blocks(
    labels: Any, ids: np.ndarray, centroids: np.ndarray, tile: int = OUTLINE_TILE
) -> Iterator[tuple[np.ndarray, dict[int, list[list[float]]]]]:
    """Block by block of the nucleus mask `labels` (an array or a lazy zarr / TIFF view that slices to numpy): the
    positions of the cells whose (y, x) centre lies in the block, and their nuclei's outlines by id (`_ring`;
    cells with no pixel in the mask get none). Only the block and a margin around it are read at a time."""
    from skimage.measure import regionprops

    shape = np.asarray(labels.shape[:2])
    blocks = (np.clip(np.floor(centroids), 0, shape - 1) // tile).astype(np.int64)
    order = np.lexsort((blocks[:, 1], blocks[:, 0]))
    cuts = np.flatnonzero((np.diff(blocks[order], axis=0) != 0).any(1)) + 1
    for group in np.split(order, cuts) if len(order) else []:
        start = blocks[group[0]] * tile
        window = _window(start, np.minimum(start + tile, shape), OUTLINE_MARGIN, shape)
        regions = {r.label: r for r in regionprops(np.asarray(labels[window]))}
        corner = np.array([window[0].start, window[1].start])
        rings = {}
        for cell in ids[group].tolist():
            if (region := regions.get(cell)) is None:
                continue
            lo, hi = corner + region.bbox[:2], corner + region.bbox[2:]
            if _cut(lo, hi, window, shape):  # reaches past the read window
                rings[cell] = _whole_ring(labels, cell, lo, hi, shape)
            else:
                rings[cell] = _ring(region.image, lo)
        yield group, rings


def _window(lo: np.ndarray, hi: np.ndarray, margin: int, shape: np.ndarray) -> tuple[slice, slice]:
    """The (rows, cols) slices of [lo, hi) grown by `margin` px on every side, within the image."""
    lo, hi = np.maximum(lo - margin, 0), np.minimum(hi + margin, shape)
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def _cut(lo: np.ndarray, hi: np.ndarray, window: tuple[slice, slice], shape: np.ndarray) -> bool:
    """Whether a nucleus spanning [lo, hi) touches an edge of `window` that is not the image's own."""
    starts, stops = np.array([w.start for w in window]), np.array([w.stop for w in window])
    return bool(((lo <= starts) & (starts > 0)).any() or ((hi >= stops) & (stops < shape)).any())


def _whole_ring(labels: Any, cell: int, lo: np.ndarray, hi: np.ndarray, shape: np.ndarray) -> list[list[float]]:
    """The outline of nucleus `cell`, seen reaching to [lo, hi), read in windows grown until it lies inside one."""
    margin = OUTLINE_MARGIN
    while True:
        window = _window(lo, hi, margin, shape)
        mine = np.asarray(labels[window]) == cell
        rows, cols = np.flatnonzero(mine.any(1)), np.flatnonzero(mine.any(0))
        corner = np.array([window[0].start, window[1].start])
        lo, hi = corner + (rows[0], cols[0]), corner + (rows[-1] + 1, cols[-1] + 1)
        if not _cut(lo, hi, window, shape):
            return _ring(mine[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], lo)
        margin *= 2


def _ring(image: np.ndarray, corner: np.ndarray) -> list[list[float]]:
    """A nucleus's outline as a closed ring of [x, y] pixel corners (the boundary between its pixels, `image` placed
    at (row, col) `corner`, and the rest, with the points in the middle of straight runs dropped); the longest ring
    where it has parts."""
    from skimage.measure import find_contours

    crop = np.pad(image, 1).astype(float)  # this nucleus only, a background border all round
    contour = max(find_contours(crop, 0.5), key=len)
    step = np.diff(contour, axis=0)
    turns = np.abs(step[:-1, 0] * step[1:, 1] - step[:-1, 1] * step[1:, 0]) > 1e-9  # where the direction changes
    contour = contour[np.r_[True, turns, True]]
    ring = [[float(x + corner[1] - 1), float(y + corner[0] - 1)] for y, x in contour]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def write_geojson(
    table: pd.DataFrame, path: str | Path, colors: Mapping[str, object] | None = None, labels: Any = None
) -> Path:
    """One GeoJSON detection per cell classified by `cell_type`, for QuPath: its nucleus outline as a Polygon when
    the nucleus mask `labels` is given, else a Point at its centre (x = column, y = row, in pixels).

    Every numeric column other than id/y/x (p_<type>, entropy_<type>, ...) becomes a QuPath measurement; cells
    of type 'none' carry no classification. `colors` maps type names to colours (default: default_colors).
    `labels` may be a lazy array (zarr, a TIFF view): it is outlined and the file written block by block
    (`outline_blocks`), cells in the order of their blocks.
    """
    check_table(table)
    # default colours in the order the types were named (the p_<type> columns), as the widget gives them, so a
    # type keeps its colour across files whatever cell comes first
    named = [c[2:] for c in table.columns if c.startswith("p_")]
    names = [t for t in dict.fromkeys([*named, *table["cell_type"].astype(str)]) if t != NONE_TYPE]
    colors = {**default_colors(names), **(colors or {})}
    rgb = {name: to_rgb255(colors[name]) for name in names}
    measured = [c for c in table.columns if c not in ("id", "y", "x") and pd.api.types.is_numeric_dtype(table[c])]
    if labels is None:
        blocks: Iterable = [(np.arange(len(table)), {})]
    else:
        ids = table["id"].to_numpy(np.int64)
        blocks = outline_blocks(labels, ids, table[["y", "x"]].to_numpy(np.float64))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # renamed when whole: a failed export leaves no half a file
    try:
        _write_features(tmp, table, blocks, measured, rgb)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_features(
    path: Path, table: pd.DataFrame, blocks: Iterable, measured: list[str], rgb: Mapping[str, list[int]]
) -> None:
    """The FeatureCollection of `write_geojson`, written block by block of (table positions, outlines by id)."""
    with open(path, "w") as out:
        out.write('{"type": "FeatureCollection", "features": [')
        first = True
        for rows, rings in blocks:
            for rec in table.iloc[rows].to_dict("records"):  # itertuples would rename columns such as "p_T cell"
                props: dict = {
                    "objectType": "detection",
                    "name": f"cell {int(rec['id'])}",
                    "measurements": {c: float(rec[c]) for c in measured},
                }
                if rec["cell_type"] != NONE_TYPE:
                    props["classification"] = {"name": str(rec["cell_type"]), "color": rgb[str(rec["cell_type"])]}
                ring = rings.get(int(rec["id"]))
                geometry = (
                    {"type": "Point", "coordinates": [float(rec["x"]), float(rec["y"])]}
                    if ring is None
                    else {"type": "Polygon", "coordinates": [ring]}
                )
                feature = {"type": "Feature", "id": str(int(rec["id"])), "geometry": geometry, "properties": props}
                out.write(("" if first else ", ") + json.dumps(feature))
                first = False
        out.write("]}")


def export_table(
    table: pd.DataFrame, path: str | Path, colors: Mapping[str, object] | None = None, labels: Any = None
) -> Path:
    """Write a prediction table by extension: .csv (all columns) or .geojson/.json (QuPath detections: nucleus
    outlines from the mask `labels` when given, else points)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        check_table(table)
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        return path
    if suffix in (".geojson", ".json"):
        return write_geojson(table, path, colors, labels)
    if suffix in (".h5ad", ".zarr"):
        raise AgileInputError(
            f"{path.name}: an AnnData file or a SpatialData store needs the cells' marker means (and the image), "
            "which a table alone lacks; use Session.export (or napari_agile.write_anndata / write_spatialdata with "
            "the tissue and cells)."
        )
    raise AgileInputError(f"Cannot tell the export format of {path.name}: use .csv, .geojson, .h5ad or .zarr.")

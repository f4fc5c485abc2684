"""Export a prediction table (Session.predict) as CSV or as GeoJSON detections (nucleus outlines, or points without a
mask) that QuPath imports with their classes; AnnData (.h5ad) and SpatialData (.zarr) are in scverse.py."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def nucleus_outlines(labels: np.ndarray) -> dict[int, list[list[float]]]:
    """Each nucleus's outline as a closed ring of [x, y] pixel corners (the boundary between its pixels and the rest,
    simplified to within half a pixel), keyed by label id; the longest ring where a nucleus has several parts."""
    from skimage.measure import approximate_polygon, find_contours, regionprops

    rings = {}
    for region in regionprops(np.asarray(labels)):
        y0, x0, y1, x1 = region.bbox
        crop = np.pad(region.image, 1).astype(float)  # this nucleus only, a background border all round
        contour = max(find_contours(crop, 0.5), key=len)
        contour = approximate_polygon(contour, tolerance=0.5)
        ring = [[float(x + x0 - 1), float(y + y0 - 1)] for y, x in contour]
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        rings[int(region.label)] = ring
    return rings


def write_geojson(
    table: pd.DataFrame, path: str | Path, colors: Mapping[str, object] | None = None, labels: np.ndarray | None = None
) -> Path:
    """One GeoJSON detection per cell classified by `cell_type`, for QuPath: its nucleus outline as a Polygon when
    the nucleus mask `labels` is given, else a Point at its centre (x = column, y = row, in pixels).

    Every numeric column other than id/y/x (p_<type>, entropy_<type>, ...) becomes a QuPath measurement; cells
    of type 'none' carry no classification. `colors` maps type names to colours (default: default_colors).
    """
    check_table(table)
    rings = {} if labels is None else nucleus_outlines(labels)
    # default colours in the order the types were named (the p_<type> columns), as the widget gives them, so a
    # type keeps its colour across files whatever cell comes first
    named = [c[2:] for c in table.columns if c.startswith("p_")]
    names = [t for t in dict.fromkeys([*named, *table["cell_type"].astype(str)]) if t != NONE_TYPE]
    colors = {**default_colors(names), **(colors or {})}
    rgb = {name: to_rgb255(colors[name]) for name in names}
    measured = [c for c in table.columns if c not in ("id", "y", "x") and pd.api.types.is_numeric_dtype(table[c])]
    features = []
    for rec in table.to_dict("records"):  # itertuples would rename columns such as "p_T cell"
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
        features.append({"type": "Feature", "id": str(int(rec["id"])), "geometry": geometry, "properties": props})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def export_table(
    table: pd.DataFrame, path: str | Path, colors: Mapping[str, object] | None = None, labels: np.ndarray | None = None
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

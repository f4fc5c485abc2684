"""The legend of a painted cell-type image (Session.paint): label -> cell type -> colour, beside it and inside it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from napari_agile.io.export import NONE_TYPE

#: the OME MapAnnotation namespace of the legend written into a cell-type image
LEGEND_NAMESPACE = "napari-agile/cell-types"


def legend_table(names: Sequence[str], colors: Mapping[str, str], cell_types: pd.Series) -> pd.DataFrame:
    """The legend as Labels features: index = class id, cell_type, color, n_cells."""
    counts = cell_types.value_counts()
    rows = [{"index": 0, "cell_type": NONE_TYPE, "color": "transparent", "n_cells": int(counts.get(NONE_TYPE, 0))}]
    rows += [
        {"index": i + 1, "cell_type": n, "color": colors[n], "n_cells": int(counts.get(n, 0))}
        for i, n in enumerate(names)
    ]
    return pd.DataFrame(rows)


def legend_path(image: str | Path) -> Path:
    """Where a cell-type image's legend table goes: beside it, `<name>.csv` ("cell_types.tif" -> "cell_types.csv")."""
    image = Path(image)
    return image.with_name(image.name.split(".")[0] + ".csv")


def write_type_image(labels: np.ndarray, path: str | Path, legend: pd.DataFrame) -> tuple[Path, Path]:
    """Write a painted (Y, X) label image as an OME-TIFF whose metadata holds the legend, and the legend as a CSV
    beside it (label, cell_type, color, n_cells); returns both paths."""
    path = Path(path)
    rows = legend.rename(columns={"index": "label"})
    annotation = {str(r.label): f"{r.cell_type} {r.color}" for r in rows.itertuples(index=False)}
    metadata = {
        "axes": "YX",
        "Name": "cell types",
        "Description": "label: cell type colour; " + "; ".join(f"{k}: {v}" for k, v in annotation.items()),
        "MapAnnotation": {"Namespace": LEGEND_NAMESPACE, **annotation},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(labels, dtype=np.int32), ome=True, metadata=metadata, compression="zlib")
    table = legend_path(path)
    rows.to_csv(table, index=False)
    return path, table


def read_legend(path: str | Path) -> dict[int, str]:
    """label -> cell type, from the OME metadata of an image write_type_image wrote."""
    with tifffile.TiffFile(path) as tif:
        ome = tifffile.xml2dict(tif.ome_metadata or "<OME/>")
    found = ome.get("OME", {}).get("StructuredAnnotations", {}).get("MapAnnotation", {})
    for note in found if isinstance(found, list) else [found]:
        if note.get("Namespace") == LEGEND_NAMESPACE:
            pairs = note["Value"]["M"]
            return {
                int(m["K"]): str(m["value"]).rsplit(" ", 1)[0] for m in (pairs if isinstance(pairs, list) else [pairs])
            }
    return {}

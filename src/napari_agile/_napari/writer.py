"""npe2 writer: a Points layer of cells (with its features: predictions, answers) as a CSV cell table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_agile.errors import AgileInputError


def write_cell_csv(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one row per point: y, x (data coordinates) and every feature column; returns [path]."""
    points = np.asarray(data, dtype=float)
    if points.ndim != 2 or points.shape[1] < 2:
        raise AgileInputError(f"A cell table needs (N, 2) point coordinates; got shape {points.shape}.")
    features = pd.DataFrame(attributes.get("features", {})).reset_index(drop=True)
    table = features.drop(columns=[c for c in ("y", "x") if c in features.columns])
    table.insert(0, "x", points[:, -1])
    table.insert(0, "y", points[:, -2])
    if "id" in table.columns:
        table.insert(0, "id", table.pop("id"))
    out = Path(path)
    if out.suffix.lower() != ".csv":
        out = out.with_suffix(".csv")
    table.to_csv(out, index=False)
    return [str(out)]

"""Cells: the table of detected nuclei (stable integer ids) and their instance mask."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_agile.errors import AgileInputError

#: Columns every cell table has; ids index the table and match the ids in `labels`.
CELL_COLUMNS = ("id", "y", "x", "area", "ymin", "xmin", "ymax", "xmax")


@dataclass
class Cells:
    """Detected nuclei: `table` indexed by cell id, `labels` a (Y, X) int32 mask with the same ids."""

    table: pd.DataFrame
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        missing = [c for c in ("id", "y", "x") if c not in self.table.columns]
        if missing:
            raise AgileInputError(f"A cell table needs columns id, y, x; missing {missing}.")
        try:
            ids = self.table["id"].astype(np.int64)
        except (TypeError, ValueError):
            raise AgileInputError(
                "Cell ids must be whole numbers, one per cell; the id column holds other values (text or empty cells)."
            ) from None
        self.table = self.table.set_index(ids.rename(None))
        if self.table.index.has_duplicates:
            raise AgileInputError("Cell ids must be unique; the table repeats some.")
        yx = self.table[["y", "x"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        bad = self.table.index[~np.isfinite(yx).all(axis=1)]
        if len(bad):
            raise AgileInputError(
                f"{len(bad)} cell(s) have no centre (y, x empty, text or infinite), e.g. ids "
                f"{bad[:5].tolist()}: fix or drop those rows of the cell table."
            )

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> np.ndarray:
        """The cells' integer ids, in table order."""
        return self.table.index.to_numpy()

    @property
    def centroids(self) -> np.ndarray:
        """(N, 2) float array of (y, x) centres."""
        return self.table[["y", "x"]].to_numpy(dtype=np.float64)

    @property
    def diameter(self) -> float:
        """Median nucleus diameter in pixels (of a disc of the median area; 24, the detector's default, without areas)."""
        return median_diameter(self.table["area"] if "area" in self.table else []) or 24.0

    def check_labels(self) -> None:
        """A clear error when the table's ids are not the mask's ids (e.g. a 0-based table with a 1-based mask):
        most centres must sit on a nucleus of their own id, or every patch would read another cell's nucleus."""
        if self.labels is None or not len(self):
            return
        yx = np.round(self.centroids).astype(np.int64)
        inside = np.all((yx >= 0) & (yx < self.labels.shape), axis=1)
        found = self.labels[yx[inside, 0], yx[inside, 1]]
        on_nucleus = found > 0
        own = found[on_nucleus] == self.ids[inside][on_nucleus]
        if on_nucleus.sum() and own.mean() < 0.5:
            raise AgileInputError(
                f"The cell table's ids do not match the nucleus mask: only {own.sum()} of {on_nucleus.sum()} "
                "centres lie on a nucleus with their own id. Give the table whose ids are the mask's labels "
                "(napari_agile.cells_from_labels(mask) makes one from the mask)."
            )

    def check_inside(self, shape: tuple[int, int]) -> None:
        """A clear error naming the cells whose centres lie outside an image of `shape` (rows, columns): a table
        made on another (larger) section, or with x and y swapped."""
        yx = self.centroids
        outside = self.ids[~np.all((yx > -0.5) & (yx < np.asarray(shape) - 0.5), axis=1)]
        if outside.size:
            raise AgileInputError(
                f"{outside.size} of {len(self)} cell centres lie outside the {shape[0]} x {shape[1]} px section (e.g. "
                f"ids {outside[:5].tolist()}): give the cell table made on this section (y = row, x = column)."
            )

    def check_ids(self, ids: Iterable[int] | int) -> np.ndarray:
        """`ids` as an int64 array; a clear error naming ids that are not cells."""
        raw = np.atleast_1d(np.asarray(ids))
        if raw.size and (raw.dtype.kind not in "iuf" or (raw.dtype.kind == "f" and not np.all(raw == np.round(raw)))):
            raise AgileInputError(f"Cell ids are whole numbers (from cells.table); got {raw[:10].tolist()}.")
        arr = raw.astype(np.int64)
        unknown = arr[~np.isin(arr, self.ids)]
        if unknown.size:
            raise AgileInputError(
                f"Unknown cell ids {unknown[:10].tolist()}{'...' if unknown.size > 10 else ''}: "
                f"ids come from cells.table (there are {len(self)} cells)."
            )
        return arr

    def subset(self, ids: Iterable[int]) -> Cells:
        """The cells with these ids (the mask is shared, not copied)."""
        return Cells(self.table.loc[self.check_ids(ids)].reset_index(drop=True), self.labels)


#: The lab's tab-separated detection table (x = column, y = row), e.g. Maric et al. 2021.
LAB_COLUMNS = ("ID", "centroid_x", "centroid_y", "xmin", "ymin", "xmax", "ymax")
_LAB_TO_OURS = {
    "ID": "id",
    "centroid_x": "x",
    "centroid_y": "y",
    "xmin": "xmin",
    "ymin": "ymin",
    "xmax": "xmax",
    "ymax": "ymax",
}


def _table_format(path: str | Path, format: str | None) -> str:
    """'lab' for .tsv/.txt, 'csv' for .csv, or the override; a clear error otherwise."""
    fmt = format or {".tsv": "lab", ".txt": "lab", ".csv": "csv"}.get(Path(path).suffix.lower())
    if fmt not in ("lab", "csv"):
        raise AgileInputError(
            f"Cannot tell the table format of {Path(path).name}: use .csv (our columns) or .tsv/.txt (the lab's "
            "ID, centroid_x, centroid_y, xmin, ymin, xmax, ymax), or pass format='csv' / format='lab'."
        )
    return fmt


def read_cell_table(path: str | Path, format: str | None = None) -> Cells:
    """Read a cell table: CSV with our columns, or the lab's tab-separated detections (chosen by extension)."""
    p = Path(path)
    if not p.is_file():
        raise AgileInputError(f"No such cell table: {p}.")
    if _table_format(p, format) == "lab":
        df = pd.read_csv(p, sep=None, engine="python")
        df.columns = [c.strip() for c in df.columns]
        missing = [c for c in LAB_COLUMNS if c not in df.columns]
        if missing:
            raise AgileInputError(
                f"{p.name} lacks the lab columns {missing} (it has {list(df.columns)}); expected {list(LAB_COLUMNS)}."
            )
        df = df.rename(columns=_LAB_TO_OURS)
        extra = [c for c in df.columns if c not in CELL_COLUMNS]
        df = df[[c for c in CELL_COLUMNS if c in df.columns] + extra]
    else:
        try:
            df = pd.read_csv(p)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
            raise AgileInputError(
                f"{p} is not a readable cell table ({str(err)[:120]}): give the CSV written by "
                "napari-agile detect or write_cell_table."
            ) from None
    try:
        return Cells(df)
    except AgileInputError as err:
        raise AgileInputError(f"{p}: {err}") from None


def write_cell_table(cells: Cells | pd.DataFrame, path: str | Path, format: str | None = None) -> Path:
    """Write `cells` (Cells or DataFrame) as CSV with all columns, or in the lab's tab-separated format."""
    p = Path(path)
    df = cells.table if isinstance(cells, Cells) else Cells(cells).table
    if _table_format(p, format) == "lab":
        ours = {v: k for k, v in _LAB_TO_OURS.items()}
        missing = [c for c in ours if c not in df.columns]
        if missing:
            raise AgileInputError(f"The lab format needs columns {missing}, which this cell table lacks.")
        df[list(ours)].rename(columns=ours).to_csv(p, sep="\t", index=False)
    else:
        df.to_csv(p, index=False)
    return p


def median_diameter(areas) -> float | None:
    """Diameter of a disc of the median of the finite, positive `areas` (px); None when there are none."""
    areas = np.asarray(areas, dtype=float)
    areas = areas[np.isfinite(areas) & (areas > 0)]
    return float(2 * np.sqrt(np.median(areas) / np.pi)) if len(areas) else None

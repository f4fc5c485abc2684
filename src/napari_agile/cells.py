"""Cells: the table of detected nuclei (stable integer ids) and their instance mask."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import AgileInputError

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
        self.table = self.table.set_index(self.table["id"].astype(np.int64).rename(None))
        if self.table.index.has_duplicates:
            raise AgileInputError("Cell ids must be unique; the table repeats some.")

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> np.ndarray:
        return self.table.index.to_numpy()

    @property
    def centroids(self) -> np.ndarray:
        """(N, 2) float array of (y, x) centres."""
        return self.table[["y", "x"]].to_numpy(dtype=np.float64)

    def check_ids(self, ids) -> np.ndarray:
        """`ids` as an int64 array; a clear error naming ids that are not cells."""
        arr = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        unknown = arr[~np.isin(arr, self.ids)]
        if unknown.size:
            raise AgileInputError(
                f"Unknown cell ids {unknown[:10].tolist()}{'...' if unknown.size > 10 else ''}: "
                f"ids come from cells.table (there are {len(self)} cells)."
            )
        return arr

    def subset(self, ids) -> "Cells":
        """The cells with these ids (the mask is shared, not copied)."""
        return Cells(self.table.loc[self.check_ids(ids)].reset_index(drop=True), self.labels)

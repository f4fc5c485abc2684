"""The rat-brain lab's weak cell-type labels: the labels behind the AGILE paper's tables (Maric et al. 2021).

Each cell's mean intensity of every type marker inside its nucleus box, inset by 10 px on each side; the
brightest cells per marker are kept, and a kept cell's type is its brightest marker. So the labels follow the
image near the nucleus, and are noisy where a neighbour's processes or a vessel wall reach into the box.
The numbers are the lab's public data preparation (RoysamLab/whole_brain_analysis, CLASSIFICATION/prepare_data):
an inset of 10 px, and the top 5,000-7,000 cells per marker of regions holding about 79,000-182,000 nuclei at
the measured 3.5 nuclei per 100 x 100 px, i.e. 4-6 % of cells per marker: 5 % here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import Tissue
from napari_agile.synth.simulator import MARKER_OF

LAB_INSET = 10
LAB_TOP_FRACTION = 0.05
TILE = 1024  # cells are measured a tile of the section at a time


def marker_intensities(
    tissue: Tissue, cells: Cells, markers: dict[str, str] | None = None, inset: int = LAB_INSET
) -> pd.DataFrame:
    """(cells x types) mean of each type's marker inside each cell's nucleus box inset by `inset` px per side.

    NaN where the inset leaves no pixel (a nucleus narrower than 2 * inset + 1): the lab's rule never keeps those.
    """
    markers = MARKER_OF if markers is None else markers
    missing = [c for c in ("ymin", "xmin", "ymax", "xmax") if c not in cells.table.columns]
    if missing:
        raise AgileInputError(f"The marker rule needs each nucleus's bounding box; the cell table lacks {missing}.")
    channels = [tissue.index(m) for m in markers.values()]
    boxes = cells.table[["ymin", "xmin", "ymax", "xmax"]].to_numpy(np.int64) + np.array([inset, inset, -inset, -inset])
    out = np.full((len(cells), len(channels)), np.nan)
    valid = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    # one read per tile of box corners (a lazily read section would pay a read per cell otherwise)
    tiles = pd.Series(valid).groupby([boxes[valid, 0] // TILE, boxes[valid, 1] // TILE])
    for _, rows in tiles:
        rows = rows.to_numpy()
        ty0, tx0 = boxes[rows, 0].min(), boxes[rows, 1].min()
        block = np.asarray(tissue.data[channels, ty0 : boxes[rows, 2].max(), tx0 : boxes[rows, 3].max()])
        for i in rows:
            y0, x0, y1, x1 = boxes[i] - np.array([ty0, tx0, ty0, tx0])
            out[i] = block[:, y0:y1, x0:x1].mean((1, 2), dtype=np.float64)
    return pd.DataFrame(out, index=cells.ids, columns=list(markers))


def weak_labels(intensities: pd.DataFrame, top_fraction: float = LAB_TOP_FRACTION) -> pd.Series:
    """The lab's type per cell ("" where the rule leaves it out): the brightest `top_fraction` of cells per
    marker are kept, each as the type of its brightest marker."""
    if not 0 < top_fraction <= 1:
        raise AgileInputError(f"top_fraction must be in (0, 1]; got {top_fraction}.")
    n_top = max(1, int(round(top_fraction * len(intensities))))
    ranks = intensities.rank(ascending=False, method="first")  # NaN stays NaN: never kept
    kept = (ranks <= n_top).any(axis=1).to_numpy()
    brightest = intensities.fillna(-np.inf).to_numpy().argmax(1)
    return pd.Series(np.where(kept, np.asarray(intensities.columns)[brightest], ""), index=intensities.index)


def lab_labelled(
    sections: Sequence[tuple[Tissue, Cells]],
    top_fraction: float = LAB_TOP_FRACTION,
    inset: int = LAB_INSET,
    markers: dict[str, str] | None = None,
) -> list[tuple[Tissue, Cells]]:
    """Sections with only the cells the lab's rule keeps, ranked together as one section; each kept cell's
    `cell_type` becomes its weak label and the former one, if any, moves to `true_type`."""
    intensities = [marker_intensities(tissue, cells, markers, inset) for tissue, cells in sections]
    labels = weak_labels(pd.concat(intensities, ignore_index=True), top_fraction).to_numpy()
    out, start = [], 0
    for (tissue, cells), inten in zip(sections, intensities):
        mine, start = labels[start : start + len(inten)], start + len(inten)
        table = cells.table[mine != ""].reset_index(drop=True)
        if "cell_type" in table.columns:
            table = table.rename(columns={"cell_type": "true_type"})
        table["cell_type"] = mine[mine != ""]
        out.append((tissue, Cells(table, cells.labels)))
    return out

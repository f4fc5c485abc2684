"""Per-cell marker means: each channel's mean intensity in a cell's nucleus and in a ring around it, the table
scanpy/squidpy users start from (AnnData X) and the features of the marker-mean baseline. Read tile by tile, so
a whole section never sits in memory."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import disk

from napari_agile.detect.patches import Normalizer
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import Tissue


def disc_labels(cells: Cells, shape: tuple[int, int]) -> np.ndarray:
    """A nucleus mask for cells given as centres only: a disc of the cells' median diameter at each centre
    (a later cell's disc covers an earlier one's where they overlap)."""
    labels = np.zeros(shape, np.int32)
    radius = cells.diameter / 2
    for cid, (y, x) in zip(cells.ids, cells.centroids):
        rr, cc = disk((y, x), radius, shape=shape)
        labels[rr, cc] = cid
    return labels


def marker_means(
    tissue: Tissue, cells: Cells, band: int = 8, normalizer: Normalizer | None = None, tile: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """(nucleus, ring): two (N, C) float32 arrays, each channel's mean over a cell's nucleus pixels and over the
    background pixels (no nucleus of any label) within `band` px of it (the ring goes to the highest label nearby where rings meet), in
    table order; raw intensities, or scaled by `normalizer`. A cell with no pixels (or no ring) gets 0.

    The section is read in `tile` x `tile` blocks with a `band` px halo, so the result does not depend on `tile`."""
    h, w = tissue.shape
    labels = cells.labels if cells.labels is not None else disc_labels(cells, (h, w))  # numpy, or lazy (zarr)
    top = int(cells.ids.max(initial=0)) + 1  # labels at or above it are no cell of the table
    index = np.zeros(top + 1, np.int64)
    index[cells.ids] = np.arange(1, len(cells) + 1)  # label -> row + 1; 0 for background and unknown labels
    c, n = tissue.n_channels, len(cells) + 1
    sums = np.zeros((2, c, n))
    counts = np.zeros((2, n))
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            hy0, hx0, hy1, hx1 = max(y0 - band, 0), max(x0 - band, 0), min(y1 + band, h), min(x1 + band, w)
            raw = np.minimum(np.asarray(labels[hy0:hy1, hx0:hx1]), top)  # index[top] is 0: an unknown label
            lab = index[raw]
            ring = np.where(raw == 0, index[ndimage.grey_dilation(raw, size=2 * band + 1)], 0)
            inner = (slice(y0 - hy0, y1 - hy0), slice(x0 - hx0, x1 - hx0))  # the halo only feeds the dilation
            img = np.asarray(tissue.read_region(y0, y1, x0, x1), np.float32)
            if normalizer is not None:
                img = normalizer.apply(img)
            for k, rows in enumerate((lab[inner].ravel(), ring[inner].ravel())):
                counts[k] += np.bincount(rows, minlength=n)
                for ch in range(c):
                    sums[k, ch] += np.bincount(rows, weights=img[ch].ravel(), minlength=n)
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    return means[0, :, 1:].T.astype(np.float32), means[1, :, 1:].T.astype(np.float32)

"""Patch extraction speed: 7 channels, 100×100 patches, from an in-memory uint16 section, normalised.
Run: python benchmarks/patches_speed.py"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from napari_agile.detect.patches import extract_patches, fit_normalizer, iter_patches
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import PAPER_CHANNELS, Tissue


def main(size: int = 2048, density: float = 3.5e-4) -> None:
    rng = np.random.default_rng(0)
    tissue = Tissue(rng.integers(0, 4000, (7, size, size), dtype=np.uint16), list(PAPER_CHANNELS))
    n = int(density * size * size)  # the real sections' 3.5 nuclei per 100×100 px
    cells = Cells(pd.DataFrame({"id": np.arange(1, n + 1), "y": rng.uniform(0, size, n), "x": rng.uniform(0, size, n)}))
    cells.labels = _square_nuclei(cells, (size, size))
    norm = fit_normalizer(tissue)
    for name, run in [
        (
            "iter_patches (batches of 512)",
            lambda: sum(len(ids) for ids, _ in iter_patches(tissue, cells, normalizer=norm)),
        ),
        (
            "iter_patches with the nucleus mask plane",
            lambda: sum(len(ids) for ids, _ in iter_patches(tissue, cells, normalizer=norm, nucleus_mask=True)),
        ),
        ("extract_patches (all at once)", lambda: len(extract_patches(tissue, cells, normalizer=norm))),
    ]:
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            count = run()
            best = min(best, time.perf_counter() - start)
        print(f"| {name} | {count} patches | {count / best:,.0f} patches/s |")


def _square_nuclei(cells: Cells, shape: tuple[int, int], half: int = 5) -> np.ndarray:
    """A label image with an 11×11 px square nucleus per cell (later cells overwrite earlier ones)."""
    labels = np.zeros(shape, np.int32)
    for cell, (y, x) in zip(cells.ids, np.round(cells.centroids).astype(int)):
        labels[max(y - half, 0) : y + half + 1, max(x - half, 0) : x + half + 1] = cell
    return labels


if __name__ == "__main__":
    main()

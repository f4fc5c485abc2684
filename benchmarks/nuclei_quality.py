"""Nucleus detection quality and speed: F1 of centroid matching on the real nuclei image and simulated tissue,
and cells/s on a 4096² simulated field. Run: /work/venv/bin/python benchmarks/nuclei_quality.py"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tifffile
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from skimage.measure import regionprops

from napari_agile.detect.nuclei import detect_nuclei
from napari_agile.io.tissue import Tissue
from napari_agile.synth.simulator import simulate_tissue

REAL = "/work/shared/data/nuclei-2d"


def match_f1(pred: np.ndarray, truth: np.ndarray, radius: float = 10.0) -> tuple[float, float, float]:
    """F1, precision, recall of a one-to-one (Hungarian) matching of centroids within `radius` pixels."""
    if len(pred) == 0 or len(truth) == 0:
        return 0.0, 0.0, 0.0
    pairs = cKDTree(pred).sparse_distance_matrix(cKDTree(truth), radius, output_type="coo_matrix")
    cost = np.full((len(pred), len(truth)), 1e6)
    cost[pairs.row, pairs.col] = pairs.data
    i, j = linear_sum_assignment(cost)
    tp = int((cost[i, j] <= radius).sum())
    precision, recall = tp / len(pred), tp / len(truth)
    return (2 * precision * recall / (precision + recall) if tp else 0.0), precision, recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed-size", type=int, default=4096)
    args = parser.parse_args()
    rows = []
    img = tifffile.imread(f"{REAL}/img2d.tif")
    truth = np.array([r.centroid for r in regionprops(tifffile.imread(f"{REAL}/mask2d.tif"))])
    cells = detect_nuclei(Tissue(img[None], ["DAPI"]))
    rows.append(("real nuclei-2d (512², 125 nuclei)", len(truth), len(cells), *match_f1(cells.centroids, truth)))
    for seed in (1, 2, 3, 4):
        sim = simulate_tissue(shape=(1024, 1024), seed=seed)
        cells = detect_nuclei(sim.tissue)
        rows.append(
            (
                f"simulated 1024², seed {seed}",
                len(sim.cells),
                len(cells),
                *match_f1(cells.centroids, sim.cells.centroids),
            )
        )
    n = args.speed_size
    sim = simulate_tissue(shape=(n, n), seed=3)
    start = time.perf_counter()
    cells = detect_nuclei(sim.tissue)
    seconds = time.perf_counter() - start
    f1 = match_f1(cells.centroids, sim.cells.centroids)
    rows.append((f"simulated {n}², seed 3", len(sim.cells), len(cells), *f1))
    print("| data | true | found | F1 | precision | recall |\n|---|---|---|---|---|---|")
    for name, nt, nf, f, p, r in rows:
        print(f"| {name} | {nt} | {nf} | {f:.3f} | {p:.3f} | {r:.3f} |")
    print(
        f"\nspeed on {n}² ({sim.tissue.n_channels} channels): {len(cells)} cells in {seconds:.2f} s "
        f"= {len(cells) / seconds:,.0f} cells/s"
    )


if __name__ == "__main__":
    main()

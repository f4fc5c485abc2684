"""Nucleus detection quality and speed: F1 of centroid matching on the real nuclei image, on simulated tissue at its
own and at other resolutions, and (with --real) against the published cell masks of the real multiplexed sets; each
with the width measured on the section (the default) and at the old fixed 24 px; simulated fields with hot pixels
(lone detector spikes); then cells/s on a 4096² field.
Run: python benchmarks/nuclei_quality.py [--real /work/realdata]"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from skimage.measure import regionprops
from skimage.transform import rescale

from napari_agile.detect.nuclei import detect_nuclei, estimate_diameter
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


def _centroids(mask_path: str | Path) -> np.ndarray:
    return np.array([r.centroid for r in regionprops(tifffile.imread(mask_path))])


def _hot_pixels(tissue: Tissue, seed: int, n: int = 100) -> Tissue:
    """`tissue` with `n` random pixels of each channel at the type's maximum: detector spikes as in IMC and MIBI
    (0.01 % of a 1024² field)."""
    data = np.array(tissue.data)
    rng = np.random.default_rng(seed)
    for plane in data:
        plane[rng.integers(0, plane.shape[0], n), rng.integers(0, plane.shape[1], n)] = np.iinfo(data.dtype).max
    return Tissue(data, tissue.channel_names)


def data_sets(real: Path | None) -> Iterator[tuple[str, Tissue, np.ndarray, float]]:
    """(name, tissue of its nuclear channels, true centroids, matching radius in px)."""
    img = tifffile.imread(f"{REAL}/img2d.tif")
    yield "real nuclei-2d (512², 125 nuclei)", Tissue(img[None], ["DAPI"]), _centroids(f"{REAL}/mask2d.tif"), 10.0
    for seed in (1, 2, 3, 4):
        sim = simulate_tissue(shape=(1024, 1024), seed=seed)
        nuclear = sim.tissue.select(["DAPI", "Histones"])
        yield f"simulated 1024², seed {seed}", nuclear, sim.cells.centroids, 10.0
        if seed > 2:
            continue
        yield f"simulated, seed {seed}, 100 hot pixels a channel", _hot_pixels(nuclear, seed), sim.cells.centroids, 10.0
        for zoom in (0.5, 1.5):  # the same field imaged at another resolution (anti-aliased resampling)
            planes = [rescale(np.asarray(p, np.float32), zoom, anti_aliasing=True) for p in nuclear.data]
            truth = (sim.cells.centroids + 0.5) * zoom - 0.5
            yield (
                f"simulated, seed {seed}, resampled ×{zoom}",
                Tissue(np.stack(planes), ["DAPI", "Histones"]),
                truth,
                10 * zoom,
            )
    if real is None:
        return
    for folder, channel, radius, what in (
        ("mibi_granuloma", "HH3", 8.0, "MIBI-TOF granuloma HH3 vs DeepCell whole-cell masks"),
        ("imc_pancreas", "H3", 4.0, "IMC pancreas H3 vs the authors' cell masks"),
    ):
        path = real / folder
        if (path / "image.ome.tif").exists():
            image = tifffile.imread(path / "image.ome.tif")[:1]
            yield what, Tissue(image, [channel]), _centroids(path / "nuclei.tif"), radius


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed-size", type=int, default=4096)
    parser.add_argument("--real", type=Path, default=None, help="folder of benchmarks/real_data's converted sets")
    args = parser.parse_args()
    print("| data | true | width measured (px) | found | F1 | precision | recall | F1 at 24 px |")
    print("|---|---|---|---|---|---|---|---|")
    for name, tissue, truth, radius in data_sets(args.real):
        width = estimate_diameter(tissue)
        cells = detect_nuclei(tissue)
        f1, precision, recall = match_f1(cells.centroids, truth, radius)
        fixed = match_f1(detect_nuclei(tissue, diameter=24.0).centroids, truth, radius)[0]
        print(
            f"| {name} | {len(truth)} | {width:.1f} | {len(cells)} | {f1:.3f} | {precision:.3f} | {recall:.3f} | "
            f"{fixed:.3f} |",
            flush=True,
        )
    n = args.speed_size
    sim = simulate_tissue(shape=(n, n), seed=3)
    start = time.perf_counter()
    cells = detect_nuclei(sim.tissue)
    seconds = time.perf_counter() - start
    f1 = match_f1(cells.centroids, sim.cells.centroids)[0]
    print(
        f"\nspeed on {n}² ({sim.tissue.n_channels} channels, width measured): {len(cells)} cells in {seconds:.2f} s "
        f"= {len(cells) / seconds:,.0f} cells/s; F1 {f1:.3f}"
    )


if __name__ == "__main__":
    main()

"""A bar for one-step learners that only find the marker: hand-made per-channel intensities of the centre cell.

On the quick benchmark's data (astrocyte and endothelial tasks): nearest class centroid of the standardised
(or whitened, as the bundled model's) mean intensity of each channel within 14 px of the patch centre (the
bundled model's centre block, without the network), from 8 + 8 random labels (20 repeats); and the best single channel with the best threshold chosen
on the test set itself (an oracle, so an upper bound for "threshold the marker channel").

    python benchmarks/marker_baseline.py
"""

from __future__ import annotations

import numpy as np
import torch

from napari_agile.bench import protocol as bm
from napari_agile.engine.network import ModelConfig, centre_means, zca_matrix
from napari_agile.io.tissue import PAPER_CHANNELS


def main() -> None:
    cfg = ModelConfig(channels=PAPER_CHANNELS, centre_radius=14)
    data = bm.build_data(bm.BenchConfig.quick(), cfg)
    feats = centre_means(cfg, data.pool.patches.float()).numpy()
    types, rng = data.pool.types, np.random.default_rng(0)
    for task in bm.REAL_TYPES:
        train, test = data.tasks[task]["train"], data.tasks[task]["test"]
        centred = feats - feats[train].mean(0)  # unlabelled pool statistics
        truth = types[test] == task
        accs: dict[str, list[float]] = {"standardised": [], "whitened": []}
        for how, z in (
            ("standardised", centred / (feats[train].std(0) + 1e-6)),
            ("whitened", centred @ zca_matrix(torch.as_tensor(feats[train])).numpy()),
        ):
            for _ in range(20):
                pos = rng.choice(train[types[train] == task], 8, replace=False)
                neg = rng.choice(train[types[train] != task], 8, replace=False)
                d_pos = ((z[test] - z[pos].mean(0)) ** 2).sum(1)
                d_neg = ((z[test] - z[neg].mean(0)) ** 2).sum(1)
                accs[how].append(np.mean((d_pos < d_neg) == truth))
        oracle = max(
            np.mean((feats[test, c] > t) == truth)
            for c in range(feats.shape[1])
            for t in np.quantile(feats[train, c], np.linspace(0.05, 0.95, 50))
        )
        centroid = "   ".join(f"{how} {np.mean(a):.3f}" for how, a in accs.items())
        print(f"{task:12s} nearest centroid, 16 labels: {centroid}   best channel, oracle threshold: {oracle:.3f}")


if __name__ == "__main__":
    main()

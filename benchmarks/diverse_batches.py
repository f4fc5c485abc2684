"""Do entropy batches spread over the cells' marker levels help phase II? Validation tasks only.

Phase II as the benchmark runs it (`Protocol.active`: 16 labels in rounds of 4, one step after each round) on the meta types
(neuron, oligodendrocyte, microglia) on validation fields (seeded 70,000 + offset, channel order shuffled per
repeat), the bundled model. Rows: the paper's round, the 4 cells of highest MC-dropout entropy; and rounds
that take the 4 cells covering the centre-block features (k-means, `covering_cells`) of the 4·m most
uncertain (`al_spread` = m; diverse mini-batch active learning, Zhdanov 2019), m = 5 and 9. Paired with the plain
round on the same draws. Measured, not kept (docs/method.md).

    python benchmarks/diverse_batches.py [--repeats 4] [--draws 3] [--offset 10] [--label-source truth lab]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from feature_probe import SEED, shuffled_protocols
from napari_agile.bench import protocol as bm
from napari_agile.io.model_file import load_model

BATCH, LABELS, SPREADS = 4, 16, (1, 5, 9)


def measure(repeats: int, draws: int, seed: int, label_source: str) -> dict[int, np.ndarray]:
    """Accuracy per spread, one entry per (repeat, type, draw), the same draws for every spread."""
    model = load_model(None)
    out: dict[int, list[float]] = {s: [] for s in SPREADS}
    for r, _, proto, stats in shuffled_protocols(model, repeats, seed, label_source):
        for task in bm.META_TYPES:
            for d in range(draws):
                for spread in SPREADS:
                    rng = np.random.default_rng([seed, r, bm.META_TYPES.index(task), d])
                    torch.manual_seed(int(rng.integers(1 << 30)))
                    proto.bench = replace(proto.bench, al_spread=spread)
                    idx = proto.active(model, task, LABELS, BATCH, rng, "entropy")
                    out[spread].append(proto._score(proto.adapt(model, idx, task), task, stats)["accuracy"])
    return {s: np.asarray(a) for s, a in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--offset", type=int, default=10, help="validation fields are seeded 70,000 + offset")
    ap.add_argument("--label-source", nargs="+", choices=("truth", "lab"), default=["truth", "lab"])
    args = ap.parse_args()
    se = lambda a: a.std(ddof=1) / np.sqrt(len(a))  # noqa: E731
    print("| labels | round | accuracy (mean ± SE) | runs under 0.75 | paired difference to the plain round |")
    print("|---|---|---|---|---|")
    for source in args.label_source:
        acc = measure(args.repeats, args.draws, SEED + args.offset, source)
        for spread, a in acc.items():
            name = "4 most uncertain (the paper)" if spread == 1 else f"4 covering the {BATCH * spread} most uncertain"
            diff = a - acc[1]
            print(
                f"| {source} | {name} | {a.mean():.3f} ± {se(a):.3f} | {int((a < 0.75).sum())}/{len(a)} | "
                f"{diff.mean():+.3f} ± {se(diff):.3f} |"
            )


if __name__ == "__main__":
    main()

"""Measure the simulator's geometry against the rat-brain facts (shared/data/rat-brain-facts.md) as a markdown table.

    python benchmarks/synth_facts.py [--fields 4] [--size 1024] [--seed 0]

Statistics are pooled over the fields; nearest-neighbour and patch counts use only cells at least
60 px from the border (their neighbours may lie anywhere), so the border does not inflate them.
Last, the lab's weak labels (napari_agile.bench.weak_labels, the fields ranked as one section) against the truth.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from napari_agile.bench.weak_labels import lab_labelled
from napari_agile.synth.simulator import CELL_TYPES, simulate_tissue

#: (statistic, real value) from rat-brain-facts.md, 8,324 nuclei in a 6,000 x 4,000 px region.
REAL = {
    "nuclei per 100 x 100 px": "3.5",
    "bbox width, median (5th-95th pct), px": "29 (19-42)",
    "bbox height, median (5th-95th pct), px": "27 (17-40)",
    "nearest-neighbour distance, median (5th-95th pct), px": "27 (15-54)",
    "other centres in the 100 x 100 patch around a nucleus": "3.9",
}


def field_stats(table: pd.DataFrame, shape: tuple[int, int], margin: float = 60.0) -> dict[str, np.ndarray | float]:
    """Per-cell geometry of one field: box sizes, nearest-neighbour distances, neighbours in the 100 x 100 patch."""
    yx = table[["y", "x"]].to_numpy()
    inner = (yx >= margin).all(1) & (yx < np.array(shape) - margin).all(1)
    tree = cKDTree(yx)
    dist, _ = tree.query(yx[inner], k=2)
    in_patch = tree.query_ball_point(yx[inner], 50.0, p=np.inf)  # Chebyshev ball = the square patch
    return {
        "width": (table.xmax - table.xmin).to_numpy(),
        "height": (table.ymax - table.ymin).to_numpy(),
        "nn": dist[:, 1],
        "patch": np.array([len(n) - 1 for n in in_patch], dtype=float),
        "count": len(table),
        "area": shape[0] * shape[1],
    }


def summary(pooled: dict[str, list]) -> dict[str, str]:
    """The statistics of REAL, measured on the pooled fields."""

    def spread(key: str) -> str:
        v = np.concatenate(pooled[key])
        p5, p50, p95 = np.percentile(v, (5, 50, 95))
        return f"{p50:.0f} ({p5:.0f}-{p95:.0f})"

    return {
        "nuclei per 100 x 100 px": f"{sum(pooled['count']) / sum(pooled['area']) * 1e4:.2f}",
        "bbox width, median (5th-95th pct), px": spread("width"),
        "bbox height, median (5th-95th pct), px": spread("height"),
        "nearest-neighbour distance, median (5th-95th pct), px": spread("nn"),
        "other centres in the 100 x 100 patch around a nucleus": f"{np.concatenate(pooled['patch']).mean():.1f}",
    }


def weak_label_table(sections: list) -> str:
    """Markdown: cells per (weak label, true type), and each weak label's precision against the truth."""
    table = pd.concat([cells.table for _, cells in lab_labelled(sections)])
    counts = pd.crosstab(table.cell_type, table.true_type).reindex(
        index=list(CELL_TYPES), columns=list(CELL_TYPES), fill_value=0
    )
    lines = [
        "| weak label \\ truth | " + " | ".join(CELL_TYPES) + " | kept | agrees with the truth |",
        "|---" * (len(CELL_TYPES) + 3) + "|",
    ]
    for t, row in counts.iterrows():
        lines.append(
            f"| {t} | " + " | ".join(str(v) for v in row) + f" | {row.sum()} | {row[t] / max(row.sum(), 1):.2f} |"
        )
    agree = np.trace(counts.to_numpy()) / counts.to_numpy().sum()
    return "\n".join(lines) + f"\n\n{len(table)} of {sum(len(c) for _, c in sections)} cells kept; {agree:.2f} agree."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pooled: dict[str, list] = {}
    types, sections = [], []
    start = time.perf_counter()
    for k in range(args.fields):
        sim = simulate_tissue((args.size, args.size), seed=args.seed + k)
        for key, value in field_stats(sim.cells.table, sim.tissue.shape).items():
            pooled.setdefault(key, []).append(value)
        types.append(sim.cells.table.cell_type)
        sections.append((sim.tissue, sim.cells))
    seconds = (time.perf_counter() - start) / args.fields
    measured = summary(pooled)
    n = sum(pooled["count"])
    print(
        f"Simulated geometry vs the rat-brain data: {args.fields} fields of {args.size} x {args.size} px "
        f"(seeds {args.seed}-{args.seed + args.fields - 1}, default SimParams), {n} nuclei, "
        f"{seconds:.2f} s per field.\n"
    )
    print("| statistic | rat brain (real) | simulated |")
    print("|---|---|---|")
    for key, real in REAL.items():
        print(f"| {key} | {real} | {measured[key]} |")
    share = pd.concat(types).value_counts(normalize=True)
    print("\nCell types (simulated): " + ", ".join(f"{t} {share[t]:.2f}" for t in share.index) + ".")
    print("\nThe lab's weak labels (brightest 5 % per marker, typed by the brightest) against the truth:\n")
    print(weak_label_table(sections))


if __name__ == "__main__":
    main()

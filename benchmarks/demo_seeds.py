"""The demo's whole loop (detection, 2 rounds of 8 suggestions answered from the truth, one step each; by
default the first round covers the section, the second is by entropy) on several simulated sections, for one
or more models: balanced accuracy per new type, natural proportions.

Unlike the paper's protocol (balanced tasks, labels from a pool), this is the Session as a user runs it.
`--validation` runs it on the meta types (neuron, oligodendrocyte, microglia) of sections seeded 70,000 and up,
which no model trains or is tested on: the loop's figure that may choose between recipes.

    python benchmarks/demo_seeds.py [MODEL ...] [--seeds 10] [--validation] [--method entropy] [--spread 1]
    (MODEL: a file, or "bundled"; --method entropy asks every round by entropy, as before the covering round)
"""

from __future__ import annotations

import argparse
import tempfile
import warnings

import numpy as np

from napari_agile.bench.protocol import META_TYPES, REAL_TYPES
from napari_agile.demo import DEMO_SEED, run_demo
from napari_agile.engine.model_file import load_model
from napari_agile.engine.uncertainty import SPREAD
from napari_agile.session import SUGGEST_METHODS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["bundled"], help="model files, or 'bundled' (the default)")
    ap.add_argument("--seeds", type=int, default=10, help="sections: the bundled sample's seed and the next ones")
    ap.add_argument("--validation", action="store_true", help="meta types on sections seeded 70,000 and up")
    ap.add_argument(
        "--method",
        default="auto",
        choices=SUGGEST_METHODS,
        help="how rounds are suggested (default: a covering first round, then entropy; 'entropy' is the paper)",
    )
    ap.add_argument(
        "--spread",
        type=int,
        default=SPREAD,
        help="entropy rounds ask the n cells covering the spread * n most uncertain (1: the paper's round)",
    )
    args = ap.parse_args()
    first, types = (70_000, META_TYPES) if args.validation else (DEMO_SEED, REAL_TYPES)
    rows: dict[tuple[str, str], list[float]] = {}
    for path in args.models:
        model, name = load_model(None if path == "bundled" else path), path
        for seed in range(first, first + args.seeds):
            with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the one-class warning is expected on some first rounds
                report = run_demo(
                    out, model=model, types=types, log=lambda _: None, seed=seed, method=args.method, spread=args.spread
                )
            for cell_type, r in report.items():
                rows.setdefault((name, cell_type), []).append(r["balanced_accuracy"])
    print("| model | cell type | balanced accuracy (mean ± SE) | min | max |\n|---|---|---|---|---|")
    for (name, cell_type), accs in rows.items():
        se = np.std(accs, ddof=1) / np.sqrt(len(accs)) if len(accs) > 1 else float("nan")
        print(f"| {name} | {cell_type} | {np.mean(accs):.3f} ± {se:.3f} | {min(accs):.3f} | {max(accs):.3f} |")


if __name__ == "__main__":
    main()

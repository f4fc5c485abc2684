"""How the any-panel model's head starts adaptation: prototypes or one Newton step, on whitened or standardised
(square-rooted) channel means; the Session's one-step accuracy on validation tissue, same weights throughout.

Each case is a balanced pool (up to 300 + 300 cells) of a simulated validation section (`panel_eval.section`, seeds
800,000+, the seeds choices are made on) or of a converted real data set (`real:NAME/TASK`, measurement only). Per
variant: `random16`, 3 draws of 16 random cells, one step each; `rounds8`, the widget's loop (Suggest 8 covering,
answer, Adapt, Suggest 8, Adapt). Accuracy over the whole pool.

    python benchmarks/head_variants.py panel12 panel40 --seeds 2
    python benchmarks/head_variants.py panel12 panel40 shifted12 panel5 rat7 --variants "newton 0.3, standardised root" \
        "newton 1.0, select 3"
    python benchmarks/head_variants.py real:mibi_granuloma/endothelial real:imc_pancreas/alpha --data /work/realdata
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

import napari_agile as agile
from panel_eval import TASKS, pool_cells, section
from real_eval import load

VARIANTS = {
    "prototypes, whitened": {"head_init": "prototypes", "centre_whiten": True, "centre_sqrt": False},
    "newton, whitened": {"head_init": "newton", "centre_whiten": True, "centre_sqrt": False},
    "prototypes, standardised root": {"head_init": "prototypes", "centre_whiten": False, "centre_sqrt": True},
    "newton 0.1, standardised root": {
        "head_init": "newton",
        "centre_whiten": False,
        "centre_sqrt": True,
        "head_ridge": 0.1,
    },
    "newton 0.3, standardised root": {
        "head_init": "newton",
        "centre_whiten": False,
        "centre_sqrt": True,
        "head_ridge": 0.3,
    },
    "newton 0.3, select 3": {
        "head_init": "newton",
        "centre_whiten": False,
        "centre_sqrt": True,
        "head_ridge": 0.3,
        "head_select": 3,
    },
    "newton 1.0, select 3": {
        "head_init": "newton",
        "centre_whiten": False,
        "centre_sqrt": True,
        "head_ridge": 1.0,
        "head_select": 3,
    },
}


def cases(names: list[str], seeds: int, data: Path):
    """(case name, tissue, balanced pool, truth) for each simulated domain x seed x task, or real data set task."""
    for name in names:
        if name.startswith("real:"):
            folder, task = name[5:].split("/")
            tissue, cells = load(data / folder)
            pool = pool_cells(cells, task, np.random.default_rng(0))
            yield name, tissue, pool, (pool.table.cell_type == task).to_numpy()
            continue
        for seed in range(800_000, 800_000 + seeds):
            sim = section(name, seed)
            for task in TASKS:
                pool = pool_cells(sim.cells, task, np.random.default_rng([seed, 0, 0]))
                yield f"{name}/{seed}/{task}", sim.tissue, pool, (pool.table.cell_type == task).to_numpy()


def accuracies(model: agile.AgileModel, tissue, pool: agile.Cells, truth: np.ndarray) -> dict[str, float]:
    """random16 (mean of 3 draws) and rounds8 accuracy of one model on one pool, through the Session API."""
    answer = dict(zip(pool.ids.tolist(), truth.tolist()))
    with tempfile.TemporaryDirectory() as tmp:
        session = agile.Session(tissue, pool, model, store=Path(tmp) / "s", seed=0)

        def give(name: str, ids) -> None:
            session.annotate(name, list(ids), [answer[i] for i in ids])
            session.adapt(name)

        for d in range(3):
            give(f"random{d}", np.random.default_rng([d, 16]).choice(pool.ids, 16, replace=False))
        for r in range(2):
            give("rounds8", session.suggest("rounds8", n=8, method="cover" if r == 0 else "auto"))
        table = session.predict()
    right = {name: float(np.mean((table[f"p_{name}"].to_numpy() >= 0.5) == truth)) for name in session.types}
    return {"random16": float(np.mean([right[f"random{d}"] for d in range(3)])), "rounds8": right["rounds8"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+", help="simulated domains (panel_eval.DOMAINS) or real:NAME/TASK")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path("/work/realdata"), help="converted real data sets")
    ap.add_argument("--model", default="any-panel")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME")
    args = ap.parse_args()
    base = agile.load_model(args.model)
    totals: dict[tuple[str, str], list[float]] = {}
    for name, tissue, pool, truth in cases(args.cases, args.seeds, args.data):
        for variant in args.variants:
            settings = VARIANTS[variant]
            model = dataclasses.replace(base, config=dataclasses.replace(base.config, **settings))
            for method, acc in accuracies(model, tissue, pool, truth).items():
                totals.setdefault((variant, method), []).append(acc)
                print(f"{name}\t{variant}\t{method}\t{acc:.3f}", flush=True)
    print("\n| variant | random16 | rounds8 |\n|---|---|---|")
    for variant in args.variants:
        cells = [
            f"{np.mean(totals[variant, m]):.3f} ± {np.std(totals[variant, m]) / len(totals[variant, m]) ** 0.5:.3f}"
            for m in ("random16", "rounds8")
        ]
        print(f"| {variant} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

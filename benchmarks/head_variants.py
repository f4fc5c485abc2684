"""How the any-panel model's head starts adaptation: prototypes or one Newton step, on whitened or standardised
(square-rooted) channel means; the Session's one-step accuracy on validation tissue, same weights throughout.

Each case is a balanced pool (up to 300 + 300 cells) of a simulated validation section (`panel_eval.section`, seeds
800,000+, the seeds choices are made on; `DOMAIN@ZOOM`: the section resampled by ZOOM, image and nucleus mask, as if
imaged at another resolution) or of a converted real data set (`real:NAME/TASK`, measurement only). Per
variant: `random16`, 3 draws of 16 random cells, one step each; `rounds8`, the widget's loop (Suggest 8 covering,
answer, Adapt, Suggest 8, Adapt). Accuracy over the whole pool; with `--natural N`, pools of N random cells at the
section's own prevalence, scored by the type's F1.

    python benchmarks/head_variants.py panel12 panel40 --seeds 2
    python benchmarks/head_variants.py panel12 panel40 shifted12 panel5 rat7 --variants "newton 0.3, standardised root" \
        "newton 1.0, select 3"
    python benchmarks/head_variants.py real:mibi_granuloma/endothelial real:imc_pancreas/alpha --data /work/realdata
    python benchmarks/head_variants.py panel12 panel40 --variants "newton 1.0, select 3" --plans cover:auto cover:balanced
    python benchmarks/head_variants.py panel12 panel12@0.5 panel12@2 panel5 panel5@0.5 panel5@2 --variants "newton 1.0, select 3"
    python benchmarks/head_variants.py panel12 panel40 shifted12 panel5 rat7 --natural 1000 --variants "newton 1.0, select 3" \
        --plans cover:auto cover:balanced cover:cover
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from skimage.transform import rescale

import napari_agile as agile
from napari_agile.engine.thresholds import type_threshold
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


def cases(names: list[str], seeds: int, data: Path, natural: int = 0):
    """(case name, tissue, pool, truth) for each simulated domain x seed x task, or real data set task. The pool is
    balanced (up to 300 + 300 cells), or with `natural` that many random cells at the section's own prevalence."""
    for name in names:
        if name.startswith("real:"):
            folder, task = name[5:].split("/")
            tissue, cells = load(data / folder)
            pool = draw_pool(cells, task, np.random.default_rng(0), natural)
            yield name, tissue, pool, (pool.table.cell_type == task).to_numpy()
            continue
        domain, _, zoom = name.partition("@")
        for seed in range(800_000, 800_000 + seeds):
            tissue, cells = resampled(section(domain, seed), float(zoom or 1))
            for task in TASKS:
                pool = draw_pool(cells, task, np.random.default_rng([seed, 0, 0]), natural)
                yield f"{name}/{seed}/{task}", tissue, pool, (pool.table.cell_type == task).to_numpy()


def draw_pool(cells: agile.Cells, task: str, rng: np.random.Generator, natural: int) -> agile.Cells:
    """`pool_cells`' balanced pool, or `natural` random cells (all, if fewer) as the section has them."""
    if not natural:
        return pool_cells(cells, task, rng)
    return cells.subset(np.sort(rng.choice(cells.ids, min(natural, len(cells)), replace=False)))


def resampled(sim: agile.synth.Simulation, zoom: float) -> tuple[agile.Tissue, agile.Cells]:
    """A section as if imaged at `zoom` times its resolution: each channel resampled (anti-aliased), the nucleus mask
    by nearest neighbour; the cells that keep a nucleus, with their simulated types."""
    if zoom == 1.0:
        return sim.tissue, sim.cells
    planes = [
        rescale(np.asarray(p, np.float32), zoom, anti_aliasing=True, preserve_range=True) for p in sim.tissue.data
    ]
    tissue = agile.Tissue(np.stack(planes), sim.tissue.channel_names)
    cells = agile.cells_from_labels(
        rescale(sim.cells.labels, zoom, order=0, anti_aliasing=False, preserve_range=True).astype(np.int32)
    )
    cells = cells.subset(np.intersect1d(cells.ids, sim.cells.ids))
    cells.table["cell_type"] = sim.cells.table.loc[cells.ids, "cell_type"].to_numpy()
    return tissue, cells


#: the widget's loop: Suggest 8 covering, answer, Adapt, Suggest 8 by the default method, Adapt
LOOP = ("cover", "auto")


def accuracies(
    model: agile.AgileModel,
    tissue,
    pool: agile.Cells,
    truth: np.ndarray,
    plans: tuple[tuple[str, ...], ...] = (LOOP,),
    natural: bool = False,
) -> dict[str, float]:
    """random16 (mean of 3 draws) and, per plan of two Suggest methods, the accuracy after those two rounds of 8
    (rounds8 for the widget's loop; rounds8:<first>:<second> for others), through the Session API, a cell called the
    type at probability 0.5. `natural` (a pool at the section's prevalence): the type's F1 instead, a cell called at
    the type's own threshold (fitted on its answers, as the widget calls it)."""
    answer = dict(zip(pool.ids.tolist(), truth.tolist()))
    names = {plan: "rounds8" if plan == LOOP else "rounds8:" + ":".join(plan) for plan in plans}
    with tempfile.TemporaryDirectory() as tmp:
        session = agile.Session(tissue, pool, model, store=Path(tmp) / "s", seed=0)

        def give(name: str, ids) -> None:
            session.annotate(name, list(ids), [answer[i] for i in ids])
            session.adapt(name)

        for d in range(3):
            give(f"random{d}", np.random.default_rng([d, 16]).choice(pool.ids, 16, replace=False))
        for plan, name in names.items():
            for method in plan:
                give(name, session.suggest(name, n=8, method=method))
        table = session.predict()
        cut = {name: type_threshold(session, name) if natural else 0.5 for name in session.types}
    calls = {name: table[f"p_{name}"].to_numpy() >= cut[name] for name in cut}
    right = {name: f1(call, truth) if natural else float(np.mean(call == truth)) for name, call in calls.items()}
    return {
        "random16": float(np.mean([right[f"random{d}"] for d in range(3)])),
        **{n: right[n] for n in names.values()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+", help="simulated domains (panel_eval.DOMAINS) or real:NAME/TASK")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path("/work/realdata"), help="converted real data sets")
    ap.add_argument("--model", default="any-panel")
    ap.add_argument(
        "--natural",
        type=int,
        default=0,
        metavar="N",
        help="pools of N random cells at the section's own prevalence, scored by the type's F1 (default: balanced "
        "pools, scored by accuracy)",
    )
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME")
    ap.add_argument(
        "--plans",
        nargs="+",
        default=[":".join(LOOP)],
        metavar="FIRST:SECOND",
        help="Suggest methods of the two rounds of 8 to compare (default cover:auto, the widget's loop)",
    )
    args = ap.parse_args()
    plans = [tuple(plan.split(":")) for plan in args.plans]
    base = agile.load_model(args.model)
    totals: dict[tuple[str, str], list[float]] = {}
    zooms: dict[tuple[str, str], list[float]] = {}  # the first variant's, by resolution (DOMAIN@ZOOM cases)
    for name, tissue, pool, truth in cases(args.cases, args.seeds, args.data, args.natural):
        for variant in args.variants:
            settings = VARIANTS[variant]
            model = dataclasses.replace(base, config=dataclasses.replace(base.config, **settings))
            for method, acc in accuracies(model, tissue, pool, truth, tuple(plans), bool(args.natural)).items():
                totals.setdefault((variant, method), []).append(acc)
                if variant == args.variants[0]:
                    zoom = name.split("/")[0].partition("@")[2] or "1"
                    zooms.setdefault((f"×{zoom}", method), []).append(acc)
                print(f"{name}\t{variant}\t{method}\t{acc:.3f}", flush=True)
    methods = list(dict.fromkeys(m for _, m in totals))
    print_table("variant", args.variants, methods, totals)
    if len({z for z, _ in zooms}) > 1:
        print_table(f"resolution ({args.variants[0]})", list(dict.fromkeys(z for z, _ in zooms)), methods, zooms)
    for m in methods[1:]:  # paired against random16, case by case
        diff = np.subtract(totals[args.variants[0], m], totals[args.variants[0], "random16"])
        print(f"{args.variants[0]}: {m} - random16 = {diff.mean():+.3f} ± {diff.std() / len(diff) ** 0.5:.3f}")


def f1(called: np.ndarray, truth: np.ndarray) -> float:
    """F1 of the calls for the type (0 when none is called right)."""
    hits = float(np.sum(called & truth))
    return 2 * hits / max(float(called.sum() + truth.sum()), 1.0)


def print_table(title: str, rows: list[str], methods: list[str], totals: dict[tuple[str, str], list[float]]) -> None:
    """A markdown table of mean accuracy ± standard error over cases, one row per entry of `rows`."""
    print(f"\n| {title} | {' | '.join(methods)} |\n|---|{'---|' * len(methods)}")
    for row in rows:
        values = [totals[row, m] for m in methods]
        print(f"| {row} | {' | '.join(f'{np.mean(v):.3f} ± {np.std(v) / len(v) ** 0.5:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()

"""A saved session on fresh sections: precision and recall per type against the simulator's truth (a few minutes).

Per pair: the demo's loop on one simulated 1024 px section (detection, 2 rounds of 8 suggestions per type answered
from the truth, one step each), saved; then `Session.apply_saved` on another section (as `napari-agile predict`
does) and every detected nucleus typed. Each cell's type is scored twice from the same probabilities: at the
uniform threshold 0.5 (before per-type thresholds) and with the session's per-type thresholds chosen from its own
held-out answers (engine/thresholds.py). Sections are seeded from --first (answers) and --first + 500 (new sections);
the thresholds' rule was chosen on seeds 30,000-30,008, so the default 40,000 sections are untouched by it.

    python benchmarks/cross_section.py [--pairs 6] [--first 40000] [--types astrocyte endothelial]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings

import numpy as np

from napari_agile.bench.protocol import REAL_TYPES
from napari_agile.demo import DEMO_SHAPE, answer_from_truth, true_types
from napari_agile.detect.nuclei import detect_nuclei
from napari_agile.engine.model_file import load_model
from napari_agile.engine.thresholds import assign_types
from napari_agile.session import Session
from napari_agile.synth.simulator import simulate_tissue


def precision_recall(predicted: np.ndarray, truth: np.ndarray, cell_type: str) -> tuple[float, float]:
    """Precision and recall of `cell_type` among detected cells (nan where nothing is predicted or true)."""
    said, actual = predicted == cell_type, truth == cell_type
    hit = float((said & actual).sum())
    return hit / said.sum() if said.any() else float("nan"), hit / actual.sum() if actual.any() else float("nan")


def detected_section(seed: int) -> tuple:
    """A simulated section, its detected nuclei and each nucleus's true type."""
    sim = simulate_tissue(DEMO_SHAPE, seed=seed)
    cells = detect_nuclei(sim.tissue)
    return sim.tissue, cells, true_types(cells, sim.cells)


def run_pair(model, seed: int, types: tuple[str, ...]) -> dict:
    """One answered section and one new section: per type, (precision, recall) at 0.5 and with the thresholds."""
    tissue, cells, truth = detected_section(seed)
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = Session(tissue, cells, model, store=f"{scratch}/answered")
        answer_from_truth(session, dict(zip(cells.ids.tolist(), truth)), types)
        new_tissue, new_cells, new_truth = detected_section(seed + 500)
        before = len(caught)
        table = Session.apply_saved(f"{scratch}/answered", new_tissue, new_cells, store=f"{scratch}/new").predict()
        unlike = [str(w.message) for w in caught[before:] if "looks unlike" in str(w.message)]
    probs = table[[f"p_{t}" for t in types]].to_numpy()
    uniform = assign_types(probs, types, [session.threshold] * len(types))
    return {
        "thresholds": dict(session.type_thresholds),
        "unlike": unlike,
        **{
            (t, rule): precision_recall(pred, new_truth, t)
            for t in types
            for rule, pred in (("0.5", uniform), ("per-type", table["cell_type"].to_numpy()))
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6, help="answered / new section pairs (default 6: ~3 min on 2 cores)")
    ap.add_argument("--first", type=int, default=40_000, help="seed of the first answered section (default 40000)")
    ap.add_argument("--types", nargs="+", default=list(REAL_TYPES), help="cell types to answer and score")
    args = ap.parse_args()
    model, types = load_model(), tuple(args.types)
    runs = []
    for seed in range(args.first, args.first + args.pairs):
        runs.append(run_pair(model, seed, types))
        print(
            f"section {seed} -> {seed + 500}: thresholds {runs[-1]['thresholds']}"
            + (f"; warned: {runs[-1]['unlike'][0]}" if runs[-1]["unlike"] else ""),
            flush=True,
        )
    print(
        f"\n{args.pairs} new sections (answers on seeds {args.first}-{args.first + args.pairs - 1}, typed on seeds "
        f"{args.first + 500}-{args.first + args.pairs + 499}); mean ± SE over sections, worst section in brackets\n"
    )
    print("| cell type | threshold | precision | recall |\n|---|---|---|---|")
    for t in types:
        for rule in ("0.5", "per-type"):
            pr = np.array([r[(t, rule)] for r in runs])
            cells = [
                f"{np.nanmean(v):.3f} ± {np.nanstd(v, ddof=1) / np.sqrt(np.isfinite(v).sum()):.3f} [{np.nanmin(v):.2f}]"
                for v in pr.T
            ]
            print(f"| {t} | {rule} | {cells[0]} | {cells[1]} |")
    print(f"\nsections warned as unlike the answered one: {sum(bool(r['unlike']) for r in runs)} of {len(runs)}")


if __name__ == "__main__":
    main()

"""The headless demo: the whole AGILE loop on the bundled sample tissue, answered by its ground truth.

Simulates a section, detects its nuclei, and for two cell types the bundled model never saw in meta-training
(astrocytes, endothelial cells) asks 2 rounds of 8 questions, answers them from the simulator's truth (a
stand-in for the biologist's clicks), adapts in one step and paints every nucleus. Writes everything a user
would get from the widget into one folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from napari_agile.detect.nuclei import detect_nuclei
from napari_agile.engine.model_file import AgileModel, load_model, pick_model
from napari_agile.engine.uncertainty import SPREAD
from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells, write_cell_table
from napari_agile.io.export import default_colors, write_geojson
from napari_agile.io.images import write_ome_tiff
from napari_agile.io.legend import legend_table, write_type_image
from napari_agile.session import NONE_TYPE, Session
from napari_agile.synth.simulator import simulate_tissue

#: The demo's section: one simulated 1024 x 1024 field of rat brain (7 channels); napari's File > Open Sample is a
#: smaller, quicker one (_napari/sample_data.py).
DEMO_SHAPE, DEMO_SEED = (1024, 1024), 2026
#: Everything run_demo writes in its folder: a folder holding only these is an earlier demo's, which a rerun replaces.
DEMO_OUTPUTS = (
    "tissue.ome.tif",
    "cells.csv",
    "session",
    "predictions.csv",
    "predictions.geojson",
    "cell_types.tif",
    "cell_types.csv",
    "accuracy.csv",
)


def true_types(detected: Cells, truth: Cells) -> np.ndarray:
    """The true type of each detected nucleus (the truth cell under its centre), or 'none'."""
    yx = np.clip(np.round(detected.centroids).astype(int), 0, np.array(truth.labels.shape) - 1)
    hit = truth.labels[yx[:, 0], yx[:, 1]]
    lookup = truth.table["cell_type"].reindex(hit).to_numpy()
    return np.where(hit > 0, lookup, NONE_TYPE).astype(object)


def answer_from_truth(
    session: Session,
    truth_of: dict[int, str],
    types=("astrocyte", "endothelial"),
    rounds: int = 2,
    per_round: int = 8,
    method: str = "auto",
    spread: int = SPREAD,
) -> None:
    """The demo's questions: per type, `rounds` rounds of `per_round` suggestions answered from `truth_of` (cell id ->
    true type), each followed by one adaptation step."""
    for name in types:
        for _ in range(rounds):
            ids = session.suggest(name, n=per_round, method=method, spread=spread)
            session.annotate(name, ids, [truth_of[i] == name for i in ids])
            session.adapt(name, steps=1)


def _clear_earlier_demo(out: Path, log: Callable[[str], None]) -> None:
    """Make `out` ready: created when new, an earlier demo's outputs removed (said), other files refused."""
    if out.exists() and not out.is_dir():
        raise AgileInputError(f"{out} is a file: give the demo a folder (--out), a new or empty one.")
    out.mkdir(parents=True, exist_ok=True)
    found = sorted(p.name for p in out.iterdir())
    foreign = [name for name in found if name not in DEMO_OUTPUTS]
    if foreign:
        raise AgileInputError(
            f"{out} holds files the demo did not write ({', '.join(foreign[:5])}): give the demo a "
            "new or empty folder (--out), or its own earlier one."
        )
    if found:
        log(f"{out} holds an earlier demo's outputs: replacing them")
        for path in (out / name for name in found):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def run_demo(
    out: str | Path,
    model: AgileModel | None = None,
    types=("astrocyte", "endothelial"),
    rounds: int = 2,
    per_round: int = 8,
    log: Callable[[str], None] = print,
    seed: int = DEMO_SEED,
    method: str = "auto",
    spread: int = SPREAD,
    channels: Sequence[str] | None = None,
    nuclear: Sequence[str] | None = None,
) -> dict:
    """Run the loop and write tissue, cells, predictions (CSV, GeoJSON), painted labels and the session.

    `out` is new, empty, or an earlier demo's folder, whose outputs are replaced (logged); other files are refused.

    `seed` picks the simulated section (the bundled sample by default; benchmarks/demo_seeds.py varies it);
    `method` and `spread` are how each round's cells are suggested (`Session.suggest`). `channels`: the channels the
    model reads, of which `nuclear` stain every nucleus (default: by name; they are summed for detection too); the
    default model is then the bundled one for those channels (`pick_model`: fewer than 7, the model for any panel).
    """
    out = Path(out)
    _clear_earlier_demo(out, log)
    sim = simulate_tissue(DEMO_SHAPE, seed=seed)
    write_ome_tiff(sim.tissue, out / "tissue.ome.tif")
    cells = detect_nuclei(sim.tissue, channels=nuclear)
    write_cell_table(cells, out / "cells.csv")
    log(f"detected {len(cells)} nuclei ({len(sim.cells)} in the truth)")
    truth = true_types(cells, sim.cells)
    truth_of = dict(zip(cells.ids.tolist(), truth))  # what an expert would answer, by cell id
    if model is None:
        model = load_model() if channels is None else pick_model(channels)
    session = Session(sim.tissue, cells, model, store=out / "session", channels=channels, nuclear=nuclear)
    answer_from_truth(session, truth_of, types, rounds, per_round, method, spread)
    table = session.predict()
    table["true_type"] = truth
    table.to_csv(out / "predictions.csv", index=False)
    write_geojson(table, out / "predictions.geojson", labels=cells.labels)
    colors = {**default_colors(list(session.types)), **session.colors}
    write_type_image(
        session.paint(table), out / "cell_types.tif", legend_table(list(session.types), colors, table["cell_type"])
    )
    session.save(out / "session")
    report = {}
    for name in types:
        pred, actual = table["cell_type"].to_numpy() == name, truth == name
        said_yes = table[f"p_{name}"].to_numpy() >= 0.5
        acc = float(np.mean(said_yes == actual))
        balanced = (
            float((np.mean(said_yes[actual]) + np.mean(~said_yes[~actual])) / 2)
            if 0 < actual.sum() < len(actual)
            else acc
        )
        report[name] = {
            "labels": rounds * per_round,
            "accuracy": acc,
            "balanced_accuracy": balanced,
            "predicted": int(pred.sum()),
            "true": int(actual.sum()),
        }
        log(
            f"{name}: {rounds * per_round} answers, 1 step -> accuracy {acc:.3f}, balanced accuracy {balanced:.3f} "
            f"over {len(table)} cells ({int(pred.sum())} predicted, {int(actual.sum())} true)"
        )
    pd.DataFrame(report).T.to_csv(out / "accuracy.csv")
    log(f"outputs in {out.resolve()}")
    return report

"""One-step accuracy on real multiplexed tissue: the panel_eval.py protocol on converted public data sets.

The data are not shipped (their licences do not allow it); `benchmarks/real_data/convert_*.py` make them from the
public repositories' git history (each script's docstring names the source and licence), as DIR/image.ome.tif,
DIR/nuclei.tif (the cell label image) and DIR/cells.csv (id, y, x, cell_type, ...):

- `mibi_granuloma`: MIBI-TOF, human tuberculosis granuloma (McCaffrey et al. 2022), 39 channels, 1,669 cells;
  cell types gated here on the authors' marker thresholds (not expert labels);
- `imc_pancreas`: imaging mass cytometry, human pancreas (Damond et al. 2019, cytomapper's example), 5 channels,
  362 cells; the authors' cell types.

Each task is a balanced pool (every positive, up to 300, and as many other cells), `--draws` pools and label
draws per task; methods, models and the table as in panel_eval.py.

    python benchmarks/real_eval.py /work/realdata --model any-panel --out runs/real-eval --render docs/benchmarks-real.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import napari_agile as agile
from napari_agile.detect.nuclei import read_mask
from panel_eval import METHODS, evaluate, pool_cells, table_rows

TASKS = {"mibi_granuloma": ("B_cell", "endothelial", "CD8_T"), "imc_pancreas": ("beta", "alpha")}


def load(folder: Path) -> tuple[agile.Tissue, agile.Cells]:
    """A converted data set: its tissue and its labelled cells with their label image."""
    tissue = agile.read_tissue(folder / "image.ome.tif")
    cells = agile.cells_from_labels(read_mask(folder / "nuclei.tif"))
    table = agile.read_cell_table(folder / "cells.csv").table
    cells = cells.subset(np.intersect1d(cells.ids, table.index))
    cells.table["cell_type"] = table.loc[cells.ids, "cell_type"].astype(str).to_numpy()
    return tissue, cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="folder holding the converted data sets")
    ap.add_argument("--model", default="any-panel")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--rounds", default="auto")
    ap.add_argument("--out", type=Path, default=Path("runs/real-eval"))
    ap.add_argument("--render", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    seen = {(r["model"], r["data"], r["task"], r["draw"], r["rounds"]) for r in done}
    for name, tasks in TASKS.items():
        if not (args.data / name).exists():
            print(f"skipped {name}: no {args.data / name} (make it with benchmarks/real_data/convert_{name}.py)")
            continue
        tissue, cells = load(args.data / name)
        for task in tasks:
            for draw in range(args.draws):
                if (args.model, name, task, draw, args.rounds) in seen:
                    continue
                rng = np.random.default_rng([draw, len(task)])
                pool = pool_cells(cells, task, rng)
                truth = (pool.table.cell_type == task).to_numpy()
                record = {
                    "model": args.model,
                    "data": name,
                    "task": task,
                    "draw": draw,
                    "rounds": args.rounds,
                    "channels": tissue.n_channels,
                    "pool": len(pool),
                    **evaluate(agile.load_model(args.model), tissue, pool, truth, rng, draw, args.rounds),
                }
                print(json.dumps(record), flush=True)
                with log.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                done.append(record)
    if args.render is not None:
        lines = [
            "# One step on real multiplexed tissue",
            "",
            f"Made by `python benchmarks/real_eval.py DATA --render {args.render}` (protocol in the script). "
            "Mean accuracy over pools ± standard error.",
            "",
            "| data | task | model | runs | " + " | ".join(METHODS) + " | suggest16 - random16 |",
            "|---|---|---|---|" + "---|" * (len(METHODS) + 1),
        ]
        args.render.write_text("\n".join(lines + table_rows(done, ("data", "task", "model"))) + "\n")


if __name__ == "__main__":
    main()

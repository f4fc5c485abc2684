"""Calibrate the simulator's difficulty on the paper's baselines (not on AGILE).

A CNN trained from scratch on all 960 pool cells of a real task (astrocyte, endothelial) should land near the
paper's 0.95; on 16 cells near 0.64. Prints both for the default SimParams (or overrides given as
name=value arguments), without meta-training anything.

    python benchmarks/calibrate_sim.py [repeats] [expression_overlap=0.3 ...]
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np

from napari_agile.bench import protocol as bm
from napari_agile.engine.network import ModelConfig
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.synth.simulator import SimParams


def main(argv: list[str]) -> None:
    repeats = int(argv[0]) if argv and "=" not in argv[0] else 3
    overrides = {k: float(v) for k, v in (a.split("=") for a in argv if "=" in a)}
    bench = bm.BenchConfig(repeats=repeats)
    cfg = ModelConfig(channels=PAPER_CHANNELS)
    t0 = time.time()
    data = bm.build_data(bench, cfg, replace(SimParams(), **overrides))
    proto = bm.Protocol(bench, cfg, data, models={})
    print(f"data {len(data.pool)} cells, {time.time() - t0:.0f}s; overrides {overrides or 'none'}")
    for method in ("vanilla_full", "vanilla_limit"):
        accs = {t: [proto.run(method, t, r)["accuracy"] for r in range(repeats)] for t in bm.REAL_TYPES}
        print(
            f"| {method} | "
            + " | ".join(f"{t} {np.mean(a):.3f} ± {np.std(a):.3f}" for t, a in accs.items())
            + f" | all {np.mean(sum(accs.values(), [])):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])

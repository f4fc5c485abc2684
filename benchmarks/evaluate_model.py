"""Zero-shot and one-step accuracy of a meta-trained model on tissue it was not trained on (for the model card).

Two test sets, both simulated with seeds no training run uses: the simulator's defaults (the rat-brain
calibration), and a shifted domain (imaging, staining, size and density drawn with SimParams.randomized at
strength 1.5, wider than meta-training's 1.0). Real tasks astrocyte and endothelial, 16 labels, 1 step.

    python benchmarks/evaluate_model.py [MODEL] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from napari_agile import benchmark as bm
from napari_agile.modelio import load_model
from napari_agile.synth import SimParams


def evaluate(model_path: str | None, repeats: int, n_per_type: int = 400) -> dict:
    model = load_model(model_path)
    bench = bm.BenchConfig(n_per_type=n_per_type, repeats=repeats, seed=90_000, field=1024, steps_curve=0)
    domains = {"default": SimParams(), "shifted": SimParams().randomized(np.random.default_rng(90_001), 1.5)}
    out = {}
    for name, params in domains.items():
        data = bm.build_data(bench, model.config, params)
        proto = bm.Protocol(bench, model.config, data, {"agile": model})
        for method in ("agile_phase1", "agile_phase2"):
            rows = [proto.run(method, t, r) for t in bm.REAL_TYPES for r in range(repeats)]
            out[f"{name}/{method}"] = {"one_step": float(np.mean([r["accuracy"] for r in rows])),
                                       "zero_shot": float(np.mean([r["steps_curve"][0] for r in rows])),
                                       "std": float(np.std([r["accuracy"] for r in rows]))}
            print(f"{name:8s} {method:13s} 16 labels: zero-shot {out[f'{name}/{method}']['zero_shot']:.3f}, "
                  f"1 step {out[f'{name}/{method}']['one_step']:.3f} ± {out[f'{name}/{method}']['std']:.3f}", flush=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None, help="model file (default: the bundled model)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    result = evaluate(args.model, args.repeats)
    if args.json:
        open(args.json, "w").write(json.dumps(result, indent=1))

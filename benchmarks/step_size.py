"""Would a larger step help the one-step adaptation? Validation tasks only.

The bundled model adapts with one gradient step of its meta-training inner learning rate (0.01) from the
prototype-initialised dense layer. Here the same step is taken at larger rates, on the meta types (neuron,
oligodendrocyte, microglia) on validation fields (seeded 70,000, channel order shuffled per repeat, as in
feature_probe.py), with 16 and 160 class-balanced labels, the same draws for every rate. Ten steps at the
meta-training rate are the reference for what more movement buys. Measured, not adopted (docs/method.md).

    python benchmarks/step_size.py [--repeats 4] [--draws 3] [--label-source truth]
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from feature_probe import SEED, shuffled_protocols

from napari_agile import benchmark as bm
from napari_agile.modelio import load_model

RATES = (0.01, 0.03, 0.1, 0.3, 1.0)
LABELS = (16, 160)


def measure(repeats: int, draws: int, seed: int, label_source: str) -> dict[str, np.ndarray]:
    """Accuracy per (labels, rate) and per (labels, ten steps), one entry per (repeat, type, draw)."""
    model = load_model(None)
    out: dict[str, list[float]] = {}
    for r, _, proto, stats in shuffled_protocols(model, repeats, seed, label_source):
        for task in bm.META_TYPES:
            for d in range(draws):
                for n in LABELS:
                    rng = np.random.default_rng([seed, r, bm.META_TYPES.index(task), d, n])
                    torch.manual_seed(int(rng.integers(1 << 30)))
                    idx = proto.balanced(task, n, rng)
                    for lr in RATES:
                        params = proto.adapt(replace(model, inner_lr=lr), idx, task)
                        out.setdefault(f"{n} labels, 1 step at {lr:g}", []).append(
                            proto._score(params, task, stats)["accuracy"])
                    out.setdefault(f"{n} labels, 10 steps at {model.inner_lr:g}", []).append(
                        proto._score(proto.adapt(model, idx, task, steps=10), task, stats)["accuracy"])
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--label-source", default="truth", choices=("truth", "lab"))
    args = parser.parse_args()
    acc = measure(args.repeats, args.draws, SEED, args.label_source)
    print(f"validation, {args.label_source}: {args.repeats} repeats x 3 types x {args.draws} draws")
    for n in LABELS:
        base = acc[f"{n} labels, 1 step at {RATES[0]:g}"]
        for key in [k for k in acc if k.startswith(f"{n} labels")]:
            diff = acc[key] - base
            half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
            print(f"{key:28s} {acc[key].mean():.3f}   paired vs 1 step at {RATES[0]:g}: {diff.mean():+.3f} ± {half:.3f}")


if __name__ == "__main__":
    main()

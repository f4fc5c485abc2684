"""Would a larger step help the one-step adaptation? Validation tasks only.

The bundled model adapts with one gradient step of its meta-training inner learning rate (0.01) from the
prototype-initialised dense layer. Here the same step is taken at larger rates, on the meta types (neuron,
oligodendrocyte, microglia) on validation fields (seeded 70,000, channel order shuffled per repeat, as in
feature_probe.py), with 16 and 160 class-balanced labels, the same draws for every rate. Ten steps at the
meta-training rate are the reference for what more movement buys. Measured, not adopted (docs/method.md).

    python benchmarks/step_size.py [--repeats 4] [--draws 3] [--label-source truth] [--model FILE] [--types microglia]
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from feature_probe import SEED, balanced_draws, paired_parser, print_paired
from napari_agile.bench import protocol as bm
from napari_agile.io.model_file import load_model

RATES = (0.01, 0.03, 0.1, 0.3, 1.0)
LABELS = (16, 160)


def measure(
    repeats: int,
    draws: int,
    seed: int,
    label_source: str,
    model_path: str | None = None,
    types: tuple[str, ...] = bm.META_TYPES,
) -> dict[str, np.ndarray]:
    """Accuracy per (labels, rate) and per (labels, ten steps), one entry per (repeat, type, draw)."""
    model = load_model(model_path)
    out: dict[str, list[float]] = {}
    for proto, stats, task, n, idx in balanced_draws(model, repeats, draws, seed, label_source, types, LABELS):
        for lr in RATES:
            params = proto.adapt(replace(model, inner_lr=lr), idx, task)
            out.setdefault(f"{n} labels, 1 step at {lr:g}", []).append(proto._score(params, task, stats)["accuracy"])
        out.setdefault(f"{n} labels, 10 steps at {model.inner_lr:g}", []).append(
            proto._score(proto.adapt(model, idx, task, steps=10), task, stats)["accuracy"]
        )
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    parser = paired_parser(__doc__)
    parser.add_argument("--model", default=None, help="model file (default: the bundled model)")
    parser.add_argument(
        "--types",
        default=",".join(bm.META_TYPES),
        help="validation types, a subset of the meta types (a model meta-trained without one of "
        "them meets it as a new type)",
    )
    args = parser.parse_args()
    types = tuple(args.types.split(","))
    if not set(types) <= set(bm.META_TYPES):
        parser.error(f"--types must name meta types ({', '.join(bm.META_TYPES)}); the new types stay unseen")
    acc = measure(args.repeats, args.draws, SEED, args.label_source, args.model, types)
    print(f"validation, {args.label_source}: {args.repeats} repeats x {', '.join(types)} x {args.draws} draws")
    print_paired(acc, LABELS, f"1 step at {RATES[0]:g}")


if __name__ == "__main__":
    main()

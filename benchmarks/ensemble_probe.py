"""Would an ensemble of meta-trained models adapt better than one? Validation tasks only.

Each model (e.g. the bundled recipe trained from several seeds) takes its own one step from the same 16 or 160
class-balanced labels; the ensemble averages their test probabilities. Tasks as in feature_probe.py: the meta
types on fresh fields (seed 70,000), channel order shuffled per repeat, the same draws for every model. The
models must share one architecture (one recipe, several seeds).

    python benchmarks/ensemble_probe.py MODEL MODEL [MODEL ...] [--repeats 4] [--draws 3] [--label-source lab]
"""

from __future__ import annotations

import argparse

import numpy as np

from feature_probe import SEED, shuffled_protocols, standard_error
from napari_agile.bench import protocol as bm
from napari_agile.io.model_file import load_model

LABELS = (16, 160)


def measure(paths: list[str], repeats: int, draws: int, seed: int, label_source: str) -> dict[str, list[float]]:
    """Accuracy of each model alone and of the ensemble, per (labels, repeat, type, draw)."""
    if len(set(paths)) < len(paths):
        raise SystemExit("Name each model once.")
    models = [load_model(None if p == "bundled" else p) for p in paths]
    for path, model in zip(paths[1:], models[1:]):
        if model.config != models[0].config:
            raise SystemExit(f"{path} is another architecture than {paths[0]}: ensemble models of one recipe.")
    out: dict[str, list[float]] = {}
    for r, _, proto, _ in shuffled_protocols(models[0], repeats, seed, label_source):
        for task in bm.META_TYPES:
            y = proto._labels(proto.data.tasks[task]["test"], task).numpy()
            for d in range(draws):
                for n in LABELS:
                    idx = proto.balanced(task, n, np.random.default_rng([seed, r, bm.META_TYPES.index(task), d, n]))
                    probas = [
                        proto.test_proba(
                            proto.adapt(m, idx, task), task, proto.stats(m.params), proto.test_features(m, task)
                        )
                        for m in models
                    ]
                    for path, p in zip(paths, probas):
                        out.setdefault(f"{n} labels | {path}", []).append(float(((p >= 0.5) == y).mean()))
                    out.setdefault(f"{n} labels | ensemble of {len(paths)}", []).append(
                        float(((np.mean(probas, 0) >= 0.5) == y).mean())
                    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files, or 'bundled'")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--label-source", choices=("truth", "lab"), default="truth")
    args = ap.parse_args()
    acc = measure(args.models, args.repeats, args.draws, SEED, args.label_source)
    print("| labels | model | accuracy (mean ± SE) | paired difference to the first model (± SE) |\n|---|---|---|---|")
    for key, values in acc.items():
        n, _, name = key.partition(" | ")
        diff = np.subtract(values, acc[f"{n} | {args.models[0]}"])
        print(
            f"| {n} | {name} | {np.mean(values):.3f} ± {standard_error(values):.3f} "
            f"| {diff.mean():+.3f} ± {standard_error(diff):.3f} |"
        )


if __name__ == "__main__":
    main()

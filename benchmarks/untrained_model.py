"""Write a model of the bundled model's shape and recipe with fresh, never meta-trained weights: the control that
says what meta-training adds (score it with feature_probe.py, evaluate_model.py or meta_variants.py --evaluate).

    python benchmarks/untrained_model.py runs/untrained.safetensors [--seed 0]
"""

from __future__ import annotations

import argparse

from napari_agile.engine.model_file import AgileModel, load_model
from napari_agile.engine.network import init_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bundled = load_model()
    info = {
        "untrained": True,
        "iterations_done": 0,
        "init_seed": args.seed,
    }  # none of the bundled model's training facts
    AgileModel(
        bundled.config, init_params(bundled.config, args.seed), bundled.inner_lr, bundled.adapt_scope, info
    ).save(args.out)
    print(f"wrote {args.out}: {bundled.config.feature_size} features, fresh weights (seed {args.seed})")


if __name__ == "__main__":
    main()

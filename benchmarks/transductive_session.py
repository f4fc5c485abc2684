"""The Session loop (benchmarks/demo_seeds.py) with the step's prototypes refined on the section's unlabelled
cells, against the bundled step, on validation sections: the test feature_probe.py --transductive asked for.

Refinement: the labelled cells' class means start the head as usual; then, `iterations` times, every cell of the
section is assigned softly by the prototype head itself (its probabilities, no dropout) and the prototypes become
the weighted means of labelled (weight 1) and unlabelled cells (Ren et al. 2018, semi-supervised prototypes).
"em" also re-estimates the class proportions and adds their log to the assignments' logits, so a type at 10 %
of the section does not have its prototype pulled towards the majority. The gradient step then runs as usual.

    python benchmarks/transductive_session.py [--seeds 6] [--variants plain,soft,em] [--iterations 5] [--pool 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import napari_agile.demo as demo
from napari_agile.bench.protocol import META_TYPES
from napari_agile.engine.meta import adapt_params
from napari_agile.engine.network import head, head_with_prototypes
from napari_agile.io.model_file import load_model
from napari_agile.session import Session


def refined_prototypes(
    cfg, params, labelled: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, iterations: int, em: bool
) -> torch.Tensor:
    """Class prototypes from the labelled features, refined on the pool's features by the prototype head's own
    soft assignments; with `em`, the assignments carry the estimated class proportions."""
    onehot = F.one_hot(y, cfg.n_classes).float()
    protos = (onehot.T @ labelled) / onehot.sum(0).clamp_min(1)[:, None]
    log_prior = torch.zeros(cfg.n_classes)
    for _ in range(iterations):
        logits = head(cfg, head_with_prototypes(cfg, params, protos), pool, mc=False)
        soft = torch.softmax(logits + log_prior, 1)
        weights = torch.cat([onehot, soft])
        protos = (weights.T @ torch.cat([labelled, pool])) / weights.sum(0).clamp_min(1e-6)[:, None]
        if em:
            log_prior = torch.log(soft.mean(0).clamp_min(1e-3)) - np.log(1.0 / cfg.n_classes)
    return protos


def session_class(iterations: int, em: bool, pool_size: int):
    """A Session whose adapt starts the step from refined prototypes."""

    class Refined(Session):
        def adapt(self, cell_type: str, steps: int = 1, lr: float | None = None) -> None:
            state = self.types[cell_type]
            cfg = self.model.config
            feats = self._features(None)
            y = torch.tensor([int(a) for a in state.answers.values()])
            rows = self._rows(list(state.answers))
            pool = feats
            if pool_size:
                pool = feats[
                    np.sort(
                        np.random.default_rng(self.seed).choice(len(feats), min(pool_size, len(feats)), replace=False)
                    )
                ]
            protos = refined_prototypes(cfg, self._init, feats[rows], y, pool, iterations, em)
            start = head_with_prototypes(cfg, self._init, protos)
            with torch.enable_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + len(y))
                fast = adapt_params(
                    dataclasses.replace(cfg, head_init="meta"),
                    start,
                    self.stats,
                    self._x[rows].float(),
                    y,
                    self.model.inner_lr,
                    steps,
                    self.model.adapt_scope,
                )
            state.params = {k: v.detach() for k, v in fast.items()}
            state.steps = steps
            self._feats.pop(cell_type, None)
            self._mc.pop(cell_type, None)

    return Refined


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--first", type=int, default=70_000)
    ap.add_argument("--variants", default="plain,soft,em")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--pool", type=int, default=0, help="unlabelled cells used (0: every cell of the section)")
    ap.add_argument("--types", default=",".join(META_TYPES))
    args = ap.parse_args()
    model = load_model(None)
    classes = {
        "plain": Session,
        "soft": session_class(args.iterations, False, args.pool),
        "em": session_class(args.iterations, True, args.pool),
    }
    rows: dict[tuple[str, str], list[float]] = {}
    for seed in range(args.first, args.first + args.seeds):
        for variant in args.variants.split(","):
            demo.Session = classes[variant]
            with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = demo.run_demo(out, model=model, types=args.types.split(","), log=lambda _: None, seed=seed)
            for cell_type, r in report.items():
                rows.setdefault((variant, cell_type), []).append(r["balanced_accuracy"])
            print(seed, variant, {t: round(r["balanced_accuracy"], 3) for t, r in report.items()}, flush=True)
    print("| variant | cell type | balanced accuracy (mean ± SE) |\n|---|---|---|")
    for (variant, cell_type), accs in sorted(rows.items()):
        se = np.std(accs, ddof=1) / np.sqrt(len(accs)) if len(accs) > 1 else float("nan")
        print(f"| {variant} | {cell_type} | {np.mean(accs):.3f} ± {se:.3f} |")
    for variant in args.variants.split(","):
        per_seed = np.mean([rows[(variant, t)] for t in args.types.split(",")], 0)
        print(f"{variant}: mean over types {per_seed.mean():.3f}")


if __name__ == "__main__":
    main()

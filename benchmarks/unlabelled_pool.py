"""Does the unlabelled pool help one-step adaptation? Validation tasks only (the meta types on fields seeded
70,000, channel order shuffled per repeat, 16 random class-balanced labels, 8 draws per task and repeat).

Rows, each from the bundled learner's start (the meta-learned dense layer plus the labels' class prototypes):
- one step on the labels (what the product does);
- the prototypes refined on the pool by one soft k-means pass (Ren et al. 2018, weights from the one-step
  model's probabilities), then one step on the labels;
- pseudo-labels: the pool cells the one-step model is surer than 0.7 of join the labels with a quarter of their
  total weight, for the prototypes and the one step.

    python benchmarks/unlabelled_pool.py [--repeats 3] [--label-source truth lab]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from feature_probe import SEED, shuffled_protocols
from napari_agile.bench import protocol as bm
from napari_agile.engine.network import features, head, head_keys, head_with_prototypes, prototype_head
from napari_agile.io.model_file import AgileModel, load_model

CONFIDENT, PSEUDO_WEIGHT = 0.7, 0.25


def head_step(model: AgileModel, start: dict, f: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> dict:
    """One step of weighted cross-entropy on the dense layer from `start`, features `f` held fixed."""
    keys = head_keys(start)
    params = {k: v.detach().requires_grad_(k in keys) for k, v in start.items()}
    loss = (F.cross_entropy(head(model.config, params, f), y, reduction="none") * w).sum() / w.sum()
    grads = torch.autograd.grad(loss, [params[k] for k in keys])
    return {**start, **{k: (params[k] - model.inner_lr * g).detach() for k, g in zip(keys, grads)}}


def variants(model: AgileModel, f_s: torch.Tensor, y: torch.Tensor, f_pool: torch.Tensor) -> dict[str, dict]:
    """The three learners' adapted weights from labelled features (f_s, y) and the pool's features."""
    cfg, ones = model.config, torch.ones(len(y))
    one_step = head_step(model, prototype_head(cfg, model.params, f_s, y), f_s, y, ones)
    p = torch.softmax(head(cfg, one_step, f_pool, mc=False), 1)
    onehot = F.one_hot(y, cfg.n_classes).float()
    refined = (onehot.T @ f_s + p.T @ f_pool) / (onehot.sum(0) + p.sum(0))[:, None]
    start = head_with_prototypes(cfg, model.params, refined)
    confident, guess = p.max(1)
    keep = confident > CONFIDENT
    f, yy = torch.cat([f_s, f_pool[keep]]), torch.cat([y, guess[keep]])
    w = torch.cat([ones, torch.full((int(keep.sum()),), PSEUDO_WEIGHT * len(y) / max(int(keep.sum()), 1))])
    return {
        "one step on the labels": one_step,
        "soft k-means prototypes, then one step": head_step(model, start, f_s, y, ones),
        "confident pseudo-labels join the labels": head_step(model, prototype_head(cfg, model.params, f, yy), f, yy, w),
    }


def measure(repeats: int, label_source: str, draws: int = 8) -> dict[str, list[float]]:
    model = load_model(None)
    cfg = model.config
    if model.adapt_scope != "head" or cfg.dropout_placement != "head":
        raise SystemExit("this probe holds the features fixed: it needs a head-only model with dropout in the head")
    out: dict[str, list[float]] = {}
    for r, base, proto, stats in shuffled_protocols(model, repeats, SEED, label_source):
        for task in bm.META_TYPES:
            (x_pool, _), (x_te, y_te) = (proto._xy(base.tasks[task][s], task) for s in ("train", "test"))
            with torch.no_grad():
                f_pool, f_te = (features(cfg, model.params, x, stats, mc=False) for x in (x_pool, x_te))
            rng = np.random.default_rng([SEED, r, bm.META_TYPES.index(task)])
            for _ in range(draws):
                x, y = proto._xy(proto.balanced(task, 16, rng), task)
                with torch.no_grad():
                    f_s = features(cfg, model.params, x, stats, mc=False)
                for name, params in variants(model, f_s, y, f_pool).items():
                    acc = float((head(cfg, params, f_te, mc=False).argmax(1) == y_te).float().mean())
                    out.setdefault(name, []).append(acc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--label-source", nargs="+", choices=("truth", "lab"), default=["truth", "lab"])
    args = ap.parse_args()
    print("| labels | learner | accuracy (mean ± SE) |\n|---|---|---|")
    for source in args.label_source:
        for name, accs in measure(args.repeats, source).items():
            print(f"| {source} | {name} | {np.mean(accs):.3f} ± {np.std(accs, ddof=1) / np.sqrt(len(accs)):.3f} |")


if __name__ == "__main__":
    main()

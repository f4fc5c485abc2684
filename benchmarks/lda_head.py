"""Would the prototype head gain from a linear discriminant on its centre block? Validation tasks only.

feature_probe.py --lda found a shrinkage LDA on the nucleus block alone 0.005-0.014 above its class means. Here
the same metric goes into the bundled model's one step, at test time only (no meta-training sees it): the
prototype head's centre-block rows become 2 A c_k / D and its bias -c_k^T A c_k / D, with A = (S_w + I)^-1 from
the labelled cells' block (S_w: their pooled within-class covariance, in whitened units), optionally rescaled to
mean eigenvalue 1 so the block keeps its weight beside the trunk. Meta types on validation fields (seeded 70,000,
channels shuffled per repeat, as feature_probe.py), 16 and 160 class-balanced labels, paired draws.

    python benchmarks/lda_head.py [--repeats 4] [--draws 3] [--label-source truth]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import napari_agile.engine.meta as meta
from feature_probe import SEED, balanced_draws, paired_parser, print_paired
from napari_agile.bench import protocol as bm
from napari_agile.engine.network import ModelConfig, Params, head_with_prototypes
from napari_agile.io.model_file import load_model

LABELS = (16, 160)
PLAIN = meta.prototype_head


def lda_head(rescale: bool):
    """A prototype_head whose centre-block part measures distance in the labels' within-class LDA metric."""

    def prototype_head(cfg: ModelConfig, params: Params, feats: torch.Tensor, y: torch.Tensor) -> Params:
        onehot = F.one_hot(y, cfg.n_classes).to(feats.dtype)
        protos = (onehot.T @ feats) / onehot.sum(0).clamp_min(1)[:, None]
        out = head_with_prototypes(cfg, params, protos)
        gain = params["centre.weight"].detach().abs().clamp_min(1e-6)
        block = slice(cfg.trunk_size, None)
        z, centres = feats[:, block] / gain, protos[:, block] / gain
        centred = z - centres[y]
        within = centred.T @ centred / max(len(z) - 2, 1)
        metric = torch.linalg.inv(within + torch.eye(len(within), dtype=z.dtype))
        if rescale:
            metric = metric * len(metric) / metric.trace()
        scale = 1.0 / cfg.feature_size
        c = protos[:, block]  # in feature units: distance (f - c)^T A (f - c), A = I gives the plain head
        weight = out["head.weight"].clone()
        weight[:, block] = params["head.weight"][:, block] + 2 * scale * c @ metric
        bias = out["head.bias"] + scale * (c**2).sum(1) - scale * ((c @ metric) * c).sum(1)  # block: c^T A c
        out["head.weight"], out["head.bias"] = weight, bias
        return out

    return prototype_head


def measure(repeats: int, draws: int, seed: int, label_source: str) -> dict[str, np.ndarray]:
    """Accuracy per (labels, head), one entry per (repeat, type, draw), the same draws for every head."""
    model = load_model(None)
    heads = {"class means (bundled)": PLAIN, "LDA metric": lda_head(False), "LDA metric, rescaled": lda_head(True)}
    out: dict[str, list[float]] = {}
    for proto, stats, task, n, idx in balanced_draws(model, repeats, draws, seed, label_source, labels=LABELS):
        for name, head in heads.items():
            meta.prototype_head = head
            try:
                params = proto.adapt(model, idx, task)
            finally:
                meta.prototype_head = PLAIN
            out.setdefault(f"{n} labels, {name}", []).append(proto._score(params, task, stats)["accuracy"])
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    parser = paired_parser(__doc__)
    args = parser.parse_args()
    acc = measure(args.repeats, args.draws, SEED, args.label_source)
    print(f"validation, {args.label_source}: {args.repeats} repeats x {', '.join(bm.META_TYPES)} x {args.draws} draws")
    print_paired(acc, LABELS, "class means (bundled)")


if __name__ == "__main__":
    main()

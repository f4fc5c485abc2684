"""MC-dropout uncertainty (AGILE phase II): T stochastic passes, predictive entropy or BALD, and which cells to ask.

With dropout before the dense layer ("head" placement) the convolutional features are computed once and
only the head is re-sampled T times; with "blocks" placement every pass re-runs the network.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from napari_agile.engine.network import ModelConfig, Params, features, forward, head_weight

METHODS = ("entropy", "bald", "random")
#: a round of n asks the n cells that cover the marker levels of the SPREAD * n most uncertain (docs/method.md)
SPREAD = 9


#: dropout masks drawn per pass: cell k uses mask row key % MASK_ROWS, so its passes do not depend on the batch
MASK_ROWS = 1024


@torch.no_grad()
def mc_head_probs(
    cfg: ModelConfig,
    params: Params,
    feats: torch.Tensor,
    passes: int,
    seed: int = 0,
    batch_size: int = 4096,
    keys: np.ndarray | None = None,
) -> torch.Tensor:
    """(passes, N) positive-class probabilities from cached trunk features, dropout re-drawn each pass.

    A cell's masks are chosen by its `keys` entry (e.g. its id; default its position), so the same cell gets the same
    passes whether it is typed alone, in a batch or with the whole section."""
    gen = torch.Generator(device=feats.device).manual_seed(seed)
    keep = 1.0 - cfg.dropout
    bank = torch.rand((passes, MASK_ROWS, feats.shape[1]), generator=gen, device=feats.device) < keep
    rows = torch.as_tensor(np.arange(len(feats)) if keys is None else np.asarray(keys), device=feats.device)
    w, b = head_weight(cfg, params), params["head.bias"]
    out = []
    for chunk, key in zip(torch.split(feats, batch_size), torch.split(rows % MASK_ROWS, batch_size)):
        logits = F.linear(chunk[None] * bank[:, key] / keep, w, b)
        out.append(torch.softmax(logits, -1)[..., 1])
    return torch.cat(out, 1)


@torch.no_grad()
def mc_full_probs(
    cfg: ModelConfig, params: Params, stats: Params, x: torch.Tensor, passes: int, seed: int = 0, batch_size: int = 256
) -> torch.Tensor:
    """(passes, N) positive-class probabilities re-running the whole network each pass."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack(
            [
                torch.cat(
                    [
                        torch.softmax(forward(cfg, params, xb.float(), stats), -1)[:, 1]
                        for xb in torch.split(x, batch_size)
                    ]
                )
                for _ in range(passes)
            ]
        )


@torch.no_grad()
def trunk_features(
    cfg: ModelConfig,
    params: Params,
    stats: Params,
    x: torch.Tensor,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Deterministic trunk features of all patches.

    Small batches keep each layer's activations in cache: 2.4x the throughput of batch 256 on a 2-core EPYC
    (docs/speed.md, section 1).

    `progress(done, total)` is called after every batch (it may raise to cancel).
    """
    out, done = [], 0
    for xb in torch.split(x, batch_size):
        xb = xb.float()
        out.append(features(cfg, params, xb, stats))
        done += len(xb)
        if progress is not None:
            progress(done, len(x))
    return torch.cat(out)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in nats of Bernoulli(p)."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def predictive_entropy(samples: np.ndarray) -> np.ndarray:
    """H[E_t p_t]: the paper's acquisition score, from (T, N) MC samples."""
    return binary_entropy(samples.mean(0))


def bald(samples: np.ndarray) -> np.ndarray:
    """Mutual information H[E p] - E H[p]: uncertainty the labels could remove (Houlsby et al. 2011)."""
    return predictive_entropy(samples) - binary_entropy(samples).mean(0)


def scores(samples: np.ndarray, method: str, rng: np.random.Generator) -> np.ndarray:
    """Acquisition score per cell (higher = ask first); 'random' is the control."""
    if method == "entropy":
        return predictive_entropy(samples)
    if method == "bald":
        return bald(samples)
    if method == "random":
        return rng.random((samples.shape[1],))
    raise ValueError(f"Unknown acquisition method {method!r}: use one of {METHODS}.")


def covering_cells(
    feats: np.ndarray, n: int, seed: int = 0, restarts: int = 5, iterations: int = 30, fixed: np.ndarray | None = None
) -> np.ndarray:
    """Indices of n distinct cells that cover the feature space: the cell nearest each centre of a k-means with
    n centres (k-means++ starts, the tightest of `restarts` runs). `fixed`: features of cells already answered,
    held as centres that do not move, so the n new ones go where no answer is yet.

    A type's first round: before any answer says which cells are wanted, the unadapted model's entropy only
    reflects what meta-training left in the dense layer and varies with its seed; a covering round reaches
    every kind of cell the section holds, so a rare type is likely among the answers (docs/method.md).
    """
    feats = np.asarray(feats, dtype=np.float64)
    n = min(n, len(feats))
    rng = np.random.default_rng(seed)
    held = np.zeros((0, feats.shape[1])) if fixed is None else np.asarray(fixed, dtype=np.float64)
    runs = [_kmeans(feats, n, rng, iterations, held) for _ in range(restarts)]
    dist = _sq_dist(feats, min(runs, key=lambda run: run[1])[0][len(held) :])
    picked: list[int] = []
    for j in range(n):
        dist[picked, j] = np.inf
        picked.append(int(dist[:, j].argmin()))
    return np.asarray(picked, dtype=np.int64)


def centre_part(cfg: ModelConfig, feats: torch.Tensor) -> np.ndarray:
    """The centre block of features (all of them for a model without one): what covering rounds cover."""
    return (feats[:, cfg.trunk_size :] if cfg.centre_size else feats).cpu().numpy()


def cover(
    cfg: ModelConfig, feats: torch.Tensor, n: int, seed: int = 0, fixed: torch.Tensor | None = None
) -> np.ndarray:
    """`covering_cells` over the centre block of the model's features, around the answered cells' `fixed`."""
    held = None if fixed is None or not len(fixed) else centre_part(cfg, fixed)
    return covering_cells(centre_part(cfg, feats), n, seed=seed, fixed=held)


def spread_picks(cfg: ModelConfig, feats: torch.Tensor, candidates: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The n of `candidates` (indices into `feats`, best first) that cover their centre-block features.

    One round's cells then differ in their marker levels instead of repeating one uncertain kind of cell (diverse
    mini-batch active learning, Zhdanov 2019). With n or fewer candidates, all of them.
    """
    if len(candidates) <= n:
        return np.asarray(candidates, dtype=np.int64)
    return candidates[cover(cfg, feats[torch.as_tensor(candidates, device=feats.device)], n, seed=seed)]


def _kmeans(
    feats: np.ndarray, n: int, rng: np.random.Generator, iterations: int, fixed: np.ndarray
) -> tuple[np.ndarray, float]:
    """Lloyd's k-means from a k-means++ start, with the `fixed` centres first and held: (centres, sum of squared
    distances to the nearest centre)."""
    centres = fixed if len(fixed) else feats[rng.choice(len(feats), 1)]
    while len(centres) < len(fixed) + n:
        dist = _sq_dist(feats, centres).min(1)
        p = dist / dist.sum() if dist.sum() > 0 else None  # all cells identical: any will do
        centres = np.vstack([centres, feats[rng.choice(len(feats), 1, p=p)]])
    for _ in range(iterations):
        nearest = _sq_dist(feats, centres).argmin(1)
        centres = np.stack(
            [
                centres[j] if j < len(fixed) or not (nearest == j).any() else feats[nearest == j].mean(0)
                for j in range(len(centres))
            ]
        )
    return centres, float(_sq_dist(feats, centres).min(1).sum())


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances, never below 0."""
    return np.maximum((a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None], 0.0)


def pick_spread(score: np.ndarray, centroids: np.ndarray, n: int, min_distance: float) -> np.ndarray:
    """Indices of the n best-scoring cells, skipping any within `min_distance` px of one already picked.

    Neighbouring cells share most of their patch, so asking about both teaches little more than one.
    Falls back to the remaining best cells when spacing leaves fewer than n.
    """
    order = np.argsort(-score, kind="stable")
    chosen: list[int] = []
    for i in order:
        if len(chosen) == n:
            break
        if not chosen or np.min(np.hypot(*(centroids[chosen] - centroids[i]).T)) >= min_distance:
            chosen.append(int(i))
    if len(chosen) < n:
        rest = [int(i) for i in order if int(i) not in set(chosen)]
        chosen += rest[: n - len(chosen)]
    return np.asarray(chosen, dtype=np.int64)

"""Plain supervised training (the paper's Vanilla and Transfer baselines) and the binary metrics of Table 2."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from napari_agile.engine.network import ModelConfig, Params, estimate_stats, forward, init_params


def fresh_params(cfg: ModelConfig, seed: int = 0) -> Params:
    """Untrained weights of the network `cfg` describes, random dense layer included (whatever `cfg.head_init` says:
    the baselines train from scratch and never add prototypes)."""
    return init_params(replace(cfg, head_init="meta"), seed)


def train_supervised(
    cfg: ModelConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    tissue_x: torch.Tensor,
    steps: int = 100,
    lr: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
    init: Params | None = None,
    snapshots: dict[int, Params] | None = None,
) -> Params:
    """`steps` Adam updates on (x, y) from `init` (or fresh weights); batch norm uses `tissue_x`'s statistics.

    `snapshots`: a dict whose keys are step counts; each is filled with the weights after that many steps, which
    are what a run of that many steps returns (the batches are drawn in the same order), so one run gives a
    whole accuracy-per-step curve."""
    gen = torch.Generator().manual_seed(seed)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in (init or fresh_params(cfg, seed)).items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    snapshots = {} if snapshots is None else snapshots
    for step in range(steps + 1):
        if step in snapshots:
            snapshots[step] = {k: v.detach().clone() for k, v in params.items()}
        if step == steps:
            break
        idx = torch.randperm(len(x), generator=gen)[:batch_size]
        stats = estimate_stats(cfg, params, tissue_x[torch.randperm(len(tissue_x), generator=gen)[:64]])
        loss = F.cross_entropy(forward(cfg, params, x[idx], stats), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


@torch.no_grad()
def predict_proba(cfg: ModelConfig, params: Params, stats: Params, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Positive-class probability per patch with dropout off (its expectation)."""
    return torch.cat(
        [torch.softmax(forward(cfg, params, xb, stats, mc=False), -1)[:, 1] for xb in torch.split(x, batch_size)]
    ).numpy()


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 and accuracy of binary predictions (Table 2's columns)."""
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp = float(np.sum(y_true & y_pred))
    precision = tp / max(float(np.sum(y_pred)), 1.0)
    recall = tp / max(float(np.sum(y_true)), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": float(np.mean(y_true == y_pred))}

"""Per-type decision thresholds chosen from the user's own answers by cross-validation, and each cell's type.

A type's threshold is the one, from the session's threshold (0.5) up, that types the answered cells best (F1)
when each of them is predicted by weights adapted on the other answers only: a type whose held-out answers show
it claiming too many cells asks for more probability before it claims one (docs/method.md, "Per-type
thresholds"). Nothing here looks at cells the user did not answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from napari_agile.engine.meta import adapt_params
from napari_agile.engine.network import Params
from napari_agile.engine.uncertainty import mc_head_probs, trunk_features
from napari_agile.io.export import NONE_TYPE

if TYPE_CHECKING:
    from napari_agile.session import Session

#: at most this many folds: leave-one-out up to that many answers
FOLDS = 16
#: thresholds tried above the floor, and the highest one
STEP, CEILING = 0.01, 0.95
#: fewer answers of either kind than this leave the threshold at the floor
MIN_EACH = 2


def mc_mean(session: Session, params: Params, x: torch.Tensor) -> np.ndarray:
    """MC-dropout mean probability of patches `x` under `params`, as the session computes it for every cell."""
    cfg = session.config
    feats = trunk_features(cfg, params, session.stats, x)
    return mc_head_probs(cfg, params, feats, session.mc_passes, session.seed).mean(0).cpu().numpy()


def held_out_probabilities(
    session: Session, cell_type: str, steps: int = 1, lr: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(p, y): each answered cell's probability under weights adapted (as Session.adapt does) on the answers of the
    other folds, and its answer."""
    answers = session.types[cell_type].answers
    ids = list(answers)
    y = np.array([bool(answers[i]) for i in ids])
    x = session._x[session._rows(ids)].float()
    folds = np.arange(len(ids)) % min(FOLDS, len(ids))
    p = np.empty(len(ids))
    model = session.model
    for k in range(folds.max() + 1):
        train = torch.as_tensor(folds != k, device=x.device)
        labels = torch.as_tensor(y, device=x.device)[train].long()
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(session.seed + len(labels))
            fast = adapt_params(
                session.config,
                session._init,
                session.stats,
                x[train],
                labels,
                model.inner_lr if lr is None else lr,
                steps,
                model.adapt_scope,
            )
        with torch.no_grad():
            p[folds == k] = mc_mean(session, {n: v.detach() for n, v in fast.items()}, x[~train])
    return p, y


def informative(y: np.ndarray | Sequence[bool]) -> bool:
    """Whether answers `y` hold at least MIN_EACH of each kind, enough to choose a threshold from."""
    y = np.asarray(y, bool)
    return bool(min(y.sum(), (~y).sum()) >= MIN_EACH)


def choose_threshold(p: np.ndarray, y: np.ndarray, floor: float = 0.5) -> float:
    """The threshold from `floor` to CEILING with the best F1 of `p >= threshold` against answers `y` (the lowest
    among ties); `floor` when the answers are not informative."""
    y = np.asarray(y, bool)
    if not informative(y) or floor >= CEILING:
        return float(floor)
    grid = np.round(np.arange(floor, CEILING + STEP / 2, STEP), 6)
    said = np.asarray(p)[None, :] >= grid[:, None]
    f1 = 2 * (said & y).sum(1) / (said.sum(1) + y.sum())
    return float(grid[int(np.argmax(f1))])


def fit_threshold(session: Session, cell_type: str, steps: int = 1, lr: float | None = None) -> float | None:
    """The type's threshold from its held-out answers (choose_threshold), never below the session's threshold; None
    (the session's threshold applies) while its answers are not informative."""
    if not informative(list(session.types[cell_type].answers.values())):
        return None
    p, y = held_out_probabilities(session, cell_type, steps, lr)
    return choose_threshold(p, y, session.threshold)


def type_threshold(session: Session, cell_type: str) -> float:
    """The threshold a type's probability must reach to claim a cell: its own, else the session's."""
    own = session.type_thresholds.get(cell_type)
    return session.threshold if own is None else own


def assign_types(probs: np.ndarray, names: Sequence[str], thresholds: Sequence[float]) -> np.ndarray:
    """Each cell's type: the most probable of the types whose probability reaches their threshold, else 'none'.

    `probs` is (cells, types) in the order of `names` and `thresholds`.
    """
    probs = np.asarray(probs, dtype=float).reshape(len(probs), len(names))
    passing = np.where(probs >= np.asarray(thresholds, dtype=float)[None, :], probs, -1.0)
    best = passing.argmax(1) if len(names) else np.zeros(len(probs), int)
    claimed = passing[np.arange(len(probs)), best] >= 0 if len(names) else np.zeros(len(probs), bool)
    return np.where(claimed, np.asarray(list(names) + [NONE_TYPE], dtype=object)[best], NONE_TYPE)

"""Binary cell-type tasks ("is this cell of type X?") and the task augmentations that make MAML generalise.

The paper's augmentations (each with probability p, pf = ps = pr): flip the labels, shuffle the channel
order, rotate by 90/180/270 degrees. A task is augmented as a whole: every patch of one task (support,
query and the unlabelled sample that sets batch-norm statistics) gets the same transform. On top, for
tissue nobody here has seen: per-channel gain and gamma, blur and noise (domain randomisation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .cells import Cells
from .errors import AgileInputError
from .model import ModelConfig, bin_patches
from .patches import fit_normalizer, iter_patches
from .tissue import Tissue


@dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of task augmentations; `p` is the paper's pf = ps = pr, and `flip`, `shuffle`,
    `rotate` set one of them apart (None: p)."""

    p: float = 0.5
    shuffle: float | None = None  # channel-shuffle probability ps
    flip: float | None = None  # label-flip probability pf
    rotate: float | None = None  # probability pr of a 90/180/270 degree rotation
    intensity: float = 0.0  # log-gain spread per channel (0 = off); gamma spread follows it
    blur: float = 0.0  # probability of a small Gaussian blur
    noise: float = 0.0  # maximal added Gaussian noise sigma (patches are ~[0, 1])


@dataclass
class TaskTransform:
    """One task's draw of the augmentations, applied identically to all its patches."""

    flip: bool
    perm: np.ndarray | None
    rot: int
    gain: np.ndarray | None
    gamma: np.ndarray | None
    blur_sigma: float
    noise_sigma: float
    n_channels: int | None = None  # marker channels among the planes; later planes (a nucleus mask) only rotate

    @classmethod
    def draw(cls, aug: Augmentation, n_channels: int, rng: np.random.Generator) -> "TaskTransform":
        intensity = aug.intensity > 0
        pf, ps, pr = (aug.p if q is None else q for q in (aug.flip, aug.shuffle, aug.rotate))
        return cls(
            flip=bool(rng.random() < pf),
            perm=rng.permutation(n_channels) if rng.random() < ps else None,
            rot=int(rng.integers(1, 4)) if rng.random() < pr else 0,
            gain=np.exp(rng.normal(0, aug.intensity, n_channels)) if intensity else None,
            gamma=np.exp(rng.normal(0, aug.intensity / 2, n_channels)) if intensity else None,
            blur_sigma=float(rng.uniform(0.3, 1.0)) if rng.random() < aug.blur else 0.0,
            noise_sigma=float(rng.uniform(0, aug.noise)) if aug.noise > 0 else 0.0,
            n_channels=n_channels,
        )

    def labels(self, y: torch.Tensor) -> torch.Tensor:
        return 1 - y if self.flip else y

    def images(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Transform (N, C, H, W) patches; noise draws from `gen`. Planes after the first `n_channels` are
        only rotated."""
        c = x.shape[1] if self.n_channels is None else self.n_channels
        if c < x.shape[1]:
            return torch.cat([self._markers(x[:, :c], gen), self._rotate(x[:, c:])], 1)
        return self._markers(x, gen)

    def _rotate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rot90(x, self.rot, dims=(2, 3)) if self.rot else x

    def _markers(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if self.perm is not None:
            x = x[:, torch.as_tensor(self.perm)]
        x = self._rotate(x)
        if self.gamma is not None:
            gamma = torch.as_tensor(self.gamma, dtype=x.dtype)[None, :, None, None]
            gain = torch.as_tensor(self.gain, dtype=x.dtype)[None, :, None, None]
            x = x.clamp_min(0) ** gamma * gain
        if self.blur_sigma > 0:
            x = _gaussian_blur(x, self.blur_sigma)
        if self.noise_sigma > 0:
            x = x + self.noise_sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        return x


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel."""
    radius = max(1, int(round(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)
    return F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)


@dataclass
class Task:
    """A binary episode: support (the labels the learner adapts on), query (what it is scored on)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    unlabelled_x: torch.Tensor  # sample of the task's tissue that sets batch-norm statistics

    def to(self, device: torch.device) -> "Task":
        """The same episode on `device` (episodes are drawn and augmented on the CPU, so every device sees the
        same tasks)."""
        return Task(*(t.to(device) for t in (self.support_x, self.support_y, self.query_x, self.query_y,
                                             self.unlabelled_x)))


class TaskPool:
    """Binned patches of labelled cells with their types (and the field each came from)."""

    def __init__(self, patches: torch.Tensor, types: np.ndarray, fields: np.ndarray | None = None):
        self.patches = patches
        self.types = np.asarray(types)
        self.fields = np.zeros(len(types), int) if fields is None else np.asarray(fields)

    def __len__(self) -> int:
        return len(self.types)

    def binary_indices(self, cell_type: str) -> tuple[np.ndarray, np.ndarray]:
        """Indices of positives (type == cell_type) and negatives (every other type)."""
        pos = self.types == cell_type
        return np.flatnonzero(pos), np.flatnonzero(~pos)

    def sample_task(
        self,
        cell_type: str,
        k_support: int,
        n_query: int,
        n_unlabelled: int,
        rng: np.random.Generator,
        transform: TaskTransform | None = None,
        gen: torch.Generator | None = None,
    ) -> Task:
        """Draw a class-balanced episode for `cell_type` within one field: k_support and n_query per class.

        Tasks stay inside one field (one section's imaging and staining), like a user's section does.
        """
        pos, neg = self.binary_indices(cell_type)
        need = k_support + n_query
        fields = [f for f in np.unique(self.fields)
                  if min(np.sum(self.fields[pos] == f), np.sum(self.fields[neg] == f)) >= need]
        if not fields:
            raise AgileInputError(f"No section has {need} {cell_type} cells and {need} others for a task: label more "
                                  f"cells of that type per section, or lower k_max or n_query in [meta].")
        field = rng.choice(fields)
        pos, neg = pos[self.fields[pos] == field], neg[self.fields[neg] == field]
        same_field = np.flatnonzero(self.fields == field)
        p = rng.choice(pos, k_support + n_query, replace=False)
        n = rng.choice(neg, k_support + n_query, replace=False)
        s_idx = np.concatenate([p[:k_support], n[:k_support]])
        q_idx = np.concatenate([p[k_support:], n[k_support:]])
        u_idx = rng.choice(same_field, min(n_unlabelled, len(same_field)), replace=False)
        y_s = torch.tensor([1] * k_support + [0] * k_support)
        y_q = torch.tensor([1] * n_query + [0] * n_query)
        x_s, x_q, x_u = (self.patches[i].float() for i in (s_idx, q_idx, u_idx))
        if transform is not None:
            x_s, x_q, x_u = (transform.images(x, gen) for x in (x_s, x_q, x_u))
            y_s, y_q = transform.labels(y_s), transform.labels(y_q)
        return Task(x_s, y_s, x_q, y_q, x_u)


def pool_from_tissues(
    labelled: Sequence[tuple[Tissue, Cells]],
    cfg: ModelConfig,
    per_type: int | None = None,
    seed: int = 0,
    type_column: str = "cell_type",
) -> TaskPool:
    """A TaskPool from sections whose cells carry a type column (each section becomes one field).

    Patches are normalised per section (its own percentiles), binned to the network's input and kept as
    float16; `per_type` caps the cells kept per type and section.
    """
    rng = np.random.default_rng(seed)
    xs, types, fields = [], [], []
    for f, (tissue, cells) in enumerate(labelled):
        if type_column not in cells.table.columns:
            raise AgileInputError(f"Section {f} has no {type_column!r} column: meta-training needs labelled cells.")
        tissue = tissue.select(cfg.channels)
        labels = cells.table[type_column].astype(str).to_numpy()
        keep = np.concatenate([
            rng.permutation(np.flatnonzero(labels == t))[:per_type] for t in np.unique(labels)
        ])
        ids = cells.ids[np.sort(keep)]
        norm = fit_normalizer(tissue, seed=seed)
        for batch_ids, batch in iter_patches(tissue, cells, ids=ids, size=cfg.patch_size, normalizer=norm,
                                             nucleus_mask=cfg.nucleus_mask):
            xs.append(bin_patches(torch.from_numpy(batch), cfg.bin).half())
            types.append(cells.table.loc[batch_ids, type_column].astype(str).to_numpy())
            fields.append(np.full(len(batch_ids), f))
    return TaskPool(torch.cat(xs), np.concatenate(types), np.concatenate(fields))

"""Binary cell-type tasks ("is this cell of type X?") and the task augmentations that make MAML generalise.

The paper's augmentations (each with probability p, pf = ps = pr): flip the labels, shuffle the channel
order, rotate by 90/180/270 degrees. A task is augmented as a whole: every patch of one task (support,
query and the unlabelled sample that sets batch-norm statistics) gets the same transform. On top, for
tissue nobody here has seen: per-channel gain and gamma, blur and noise (domain randomisation), and for a
per-channel model a random marker panel per task (`PanelAugmentation`): a subset of the section's markers, dimmed
positives, and made-up markers (another cell's marker, a shared or bled-through mix, a weak stain of every
nucleus, an empty channel), so no fixed panel is learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from napari_agile.detect.patches import fit_normalizer, iter_patches
from napari_agile.engine.network import ModelConfig, bin_patches
from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import Tissue


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


@dataclass(frozen=True)
class PanelAugmentation:
    """How a per-channel model's tasks draw their marker panels: `markers` (low, high) marker channels besides the
    nuclear ones; each slot past the type's own marker is a made-up marker with probability `extra`; the type's own
    marker is dimmed with probability `dim`."""

    markers: tuple[int, int] = (1, 8)
    extra: float = 0.4
    dim: float = 0.3

    def __post_init__(self) -> None:
        lo, hi = (int(m) for m in self.markers)
        if not 1 <= lo <= hi:
            raise AgileInputError(
                f"[meta.panel] markers = {list(self.markers)}: give [low, high] with 1 <= low <= high."
            )
        object.__setattr__(self, "markers", (lo, hi))


#: made-up markers a panel may hold: another cell's level of a real marker (expressed regardless of type), a mix of
#: two markers (shared or bled-through), a weak stain of every nucleus, an empty (noise-only) channel
_MADE_UP = ("other_cells", "mix", "nonspecific", "empty")


@dataclass
class PanelDraw:
    """One task's panel: each output channel as a recipe over the pool's `n_source` channels, and which of them
    are nuclear (the flag the per-channel model reads)."""

    recipes: list[tuple]
    nuclear: tuple[bool, ...]
    names: tuple[str, ...]
    n_source: int

    @classmethod
    def draw(
        cls,
        aug: PanelAugmentation,
        channels: Sequence[str],
        nuclear: Sequence[bool],
        own: str | None,
        rng: np.random.Generator,
    ) -> PanelDraw:
        """A random panel from the pool's `channels`; `own` is the task type's marker (always kept), None when the
        pool does not know it (then every real marker stays and made-up ones are added)."""
        channels = list(channels)
        nuc = [i for i, f in enumerate(nuclear) if f]
        markers = [i for i, f in enumerate(nuclear) if not f]
        keep_nuc = [i for i in nuc if rng.random() < 0.5] or ([int(rng.choice(nuc))] if nuc else [])
        recipes: list[tuple] = [("copy", i) for i in keep_nuc]
        own_i = channels.index(own) if own in channels else None
        others = [i for i in markers if i != own_i]
        size = int(rng.integers(aug.markers[0], aug.markers[1] + 1))
        if own_i is None:
            real, spare, slots = list(markers), [], max(0, size - len(markers))
        else:
            real, spare, slots = [own_i], list(rng.permutation(others)), size - 1
        for i in real:
            dimmed = i == own_i and rng.random() < aug.dim
            recipes.append(("dim", i, float(rng.uniform(0.2, 0.6))) if dimmed else ("copy", i))
        for _ in range(slots):
            if spare and rng.random() >= aug.extra:
                recipes.append(("copy", int(spare.pop())))
            else:
                recipes.append(_made_up(rng, nuc, markers, others))
        names = tuple(channels[r[1]] if r[0] == "copy" else f"made-up {k}" for k, r in enumerate(recipes))
        return cls(recipes, tuple(k < len(keep_nuc) for k in range(len(recipes))), names, len(channels))

    def images(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """(N, C' [+ mask], S, S) panel planes from (N, C [+ mask], S, S) pool patches; planes after the pool's
        channels (a nucleus mask) follow unchanged."""
        planes = torch.stack([self._plane(r, x, gen) for r in self.recipes], 1)
        return torch.cat([planes, x[:, self.n_source :]], 1)

    @staticmethod
    def _plane(recipe: tuple, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        kind, *args = recipe
        if kind == "copy":
            return x[:, args[0]]
        if kind == "other_cells":
            return x[torch.randperm(len(x), generator=gen), args[0]]
        if kind == "mix":
            return args[2] * x[:, args[0]] + (1 - args[2]) * x[:, args[1]]
        noise = 0.02 * torch.randn(x[:, 0].shape, generator=gen, dtype=x.dtype).abs()
        if kind == "empty":
            return args[0] + noise
        return args[1] * x[:, args[0]] + noise  # "dim" (the own marker) or "nonspecific" (a nuclear stain)


def _made_up(rng: np.random.Generator, nuc: list[int], markers: list[int], others: list[int]) -> tuple:
    """A made-up marker's recipe (see _MADE_UP); kinds the pool cannot make become an empty channel."""
    kind = _MADE_UP[int(rng.integers(len(_MADE_UP)))]
    if kind == "other_cells" and others:
        return ("other_cells", int(rng.choice(others)))
    if kind == "mix" and markers:
        return ("mix", int(rng.choice(markers)), int(rng.choice(markers)), float(rng.uniform(0.3, 0.7)))
    if kind == "nonspecific" and nuc:
        return ("nonspecific", int(rng.choice(nuc)), float(rng.uniform(0.1, 0.5)))
    return ("empty", float(rng.uniform(0.0, 0.05)))


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
    def draw(cls, aug: Augmentation, n_channels: int, rng: np.random.Generator) -> TaskTransform:
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
    nuclear: tuple[bool, ...] | None = None  # a drawn panel's nuclear flags (per-channel models), else None

    def to(self, device: torch.device) -> Task:
        """The same episode on `device` (episodes are drawn and augmented on the CPU, so every device sees the
        same tasks)."""
        tensors = ("support_x", "support_y", "query_x", "query_y", "unlabelled_x")
        return replace(self, **{name: getattr(self, name).to(device) for name in tensors})

    def config(self, cfg: ModelConfig) -> ModelConfig:
        """`cfg` bound to this task's panel (a per-channel model reads whatever panel the task drew)."""
        if not cfg.per_channel:
            return cfg
        flags = self.nuclear if self.nuclear is not None else cfg.nuclear
        return cfg.for_panel([f"c{i}" for i in range(len(flags))], flags)


class TaskPool:
    """Binned patches of labelled cells with their types (and the field each came from); `channels` names the
    marker planes, and `markers` maps a type to the marker that defines it where that is known (simulated tissue),
    so a drawn panel always keeps it."""

    def __init__(
        self,
        patches: torch.Tensor,
        types: np.ndarray,
        fields: np.ndarray | None = None,
        channels: Sequence[str] = (),
        markers: dict[str, str] | None = None,
    ):
        self.patches = patches
        self.types = np.asarray(types)
        self.fields = np.zeros(len(types), int) if fields is None else np.asarray(fields)
        self.channels = tuple(channels)
        self.markers = dict(markers or {})

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
        panel: PanelDraw | None = None,
    ) -> Task:
        """Draw a class-balanced episode for `cell_type` within one field: k_support and n_query per class.

        Tasks stay inside one field (one section's imaging and staining), like a user's section does.
        """
        pos, neg = self.binary_indices(cell_type)
        need = k_support + n_query
        fields = [
            f
            for f in np.unique(self.fields)
            if min(np.sum(self.fields[pos] == f), np.sum(self.fields[neg] == f)) >= need
        ]
        if not fields:
            raise AgileInputError(
                f"No section has {need} {cell_type} cells and {need} others for a task: label more "
                f"cells of that type per section, or lower k_max or n_query in [meta]."
            )
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
        if panel is not None:
            x_s, x_q, x_u = (panel.images(x, gen) for x in (x_s, x_q, x_u))
        if transform is not None:
            x_s, x_q, x_u = (transform.images(x, gen) for x in (x_s, x_q, x_u))
            y_s, y_q = transform.labels(y_s), transform.labels(y_q)
        return Task(x_s, y_s, x_q, y_q, x_u, None if panel is None else panel.nuclear)


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
    channels = cfg.channels or (labelled[0][0].channel_names if labelled else ())  # a per-channel model: the data's
    for f, (tissue, cells) in enumerate(labelled):
        if type_column not in cells.table.columns:
            raise AgileInputError(f"Section {f} has no {type_column!r} column: meta-training needs labelled cells.")
        tissue = tissue.select(channels)
        labels = cells.table[type_column].astype(str).to_numpy()
        keep = np.concatenate([rng.permutation(np.flatnonzero(labels == t))[:per_type] for t in np.unique(labels)])
        ids = cells.ids[np.sort(keep)]
        norm = fit_normalizer(tissue, seed=seed)
        for batch_ids, batch in iter_patches(
            tissue, cells, ids=ids, size=cfg.patch_size, normalizer=norm, nucleus_mask=cfg.nucleus_mask
        ):
            xs.append(bin_patches(torch.from_numpy(batch), cfg.bin).half())
            types.append(cells.table.loc[batch_ids, type_column].astype(str).to_numpy())
            fields.append(np.full(len(batch_ids), f))
    return TaskPool(torch.cat(xs), np.concatenate(types), np.concatenate(fields), channels)

"""Patches around cell centres (the network's input) and robust per-channel normalisation, streamed by region."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import Tissue

_BAND = 4  # band height in patch sizes: taller bands re-read fewer rows, shorter ones read less at a time


@dataclass
class Normalizer:
    """Per-channel linear scaling: `low` -> 0 and `high` -> 1 (percentiles of the section), clipped to [0, clip]."""

    low: np.ndarray
    high: np.ndarray
    channel_names: list[str]
    clip: float = 1.5  # keep some headroom above the high percentile (bright cells stay brighter)

    def __post_init__(self) -> None:
        self.low = np.asarray(self.low, np.float32).reshape(-1)
        self.high = np.asarray(self.high, np.float32).reshape(-1)
        if not (len(self.low) == len(self.high) == len(self.channel_names)):
            raise AgileInputError("Normalizer needs one low and one high value per channel name.")

    def to_dict(self) -> dict:
        """JSON-ready form (sessions store the normaliser they were fitted with)."""
        return {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "channel_names": list(self.channel_names),
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        """The normaliser `to_dict` wrote."""
        return cls(**d)

    def apply(self, block: np.ndarray) -> np.ndarray:
        """(C, ...) raw intensities -> float32 scaled and clipped, channel by channel."""
        block = np.asarray(block)
        if block.shape[0] != len(self.low):
            raise AgileInputError(f"Normalizer is for {len(self.low)} channels; the block has {block.shape[0]}.")
        shape = (-1,) + (1,) * (block.ndim - 1)
        scale = 1.0 / np.maximum(self.high - self.low, np.finfo(np.float32).tiny)
        out = block.astype(np.float32)
        out -= self.low.reshape(shape)
        out *= scale.reshape(shape)
        return np.clip(out, 0.0, self.clip, out=out)


def fit_normalizer(
    tissue: Tissue,
    q: tuple[float, float] = (1.0, 99.8),
    max_pixels: int = 2_000_000,
    seed: int = 0,
    tile: int = 256,
) -> Normalizer:
    """Per-channel percentiles `q` from random tiles over the whole section, so sections stained brighter or
    dimmer map to the same range; reads about `max_pixels` pixels per channel, never the whole image."""
    h, w = tissue.shape
    th, tw = min(tile, h), min(tile, w)
    n = max(1, min(max_pixels // (th * tw), (h // th) * (w // tw)))
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, h - th + 1, n)
    xs = rng.integers(0, w - tw + 1, n)
    sample = np.concatenate(
        [tissue.read_region(y, y + th, x, x + tw).reshape(tissue.n_channels, -1) for y, x in zip(ys, xs)], axis=1
    )
    sample = sample.astype(np.float32)
    if np.isfinite(sample).all():
        low, high = np.percentile(sample, q, axis=1)
    else:  # NaN/inf pixels (nothing imaged there) do not set the scale; the cells they touch are refused by name
        sample[~np.isfinite(sample)] = np.nan
        low, high = np.nan_to_num(np.nanpercentile(sample, q, axis=1))
    flat = high <= low
    high[flat] = low[flat] + 1.0  # a constant channel maps to 0 instead of dividing by zero
    return Normalizer(low, high, list(tissue.channel_names))


def check_finite(ids: np.ndarray, patches: np.ndarray) -> None:
    """A clear error naming the cells (of `ids`) whose `patches` hold NaN or infinite pixels."""
    bad = np.asarray(ids)[~np.isfinite(patches).reshape(len(patches), -1).all(1)]
    if len(bad):
        raise AgileInputError(
            f"{len(bad)} cells' patches hold missing (NaN) or infinite pixels, e.g. cells {bad[:5].tolist()}: "
            "replace them in the image (numpy.nan_to_num) or leave those cells out of the cell table."
        )


def at_border(cells: Cells, shape: tuple[int, int], size: int = 100) -> np.ndarray:
    """True for cells whose `size`² patch reaches outside an image of `shape` (rows, columns)."""
    top, left = _corners(cells.centroids, size)
    return (top < 0) | (left < 0) | (top + size > shape[0]) | (left + size > shape[1])


def extract_patches(
    tissue: Tissue,
    cells: Cells,
    size: int = 100,
    ids: Sequence[int] | None = None,
    normalizer: Normalizer | None = None,
    nucleus_mask: bool = False,
) -> np.ndarray:
    """float32 (N, C, size, size) patches centred on the cells `ids` (all by default), in that order.

    The cell centre lands on pixel (size // 2, size // 2); pixels outside the image are 0 after normalisation.
    With `nucleus_mask` each patch gains a last plane, 1 on its own cell's nucleus in the cells' label image.
    """
    chosen, top, left, order = _plan(tissue, cells, ids, size, normalizer)
    labels = _label_image(tissue, cells) if nucleus_mask else None
    out = np.empty((len(chosen), tissue.n_channels + nucleus_mask, size, size), np.float32)
    _cut(tissue, top[order], left[order], size, normalizer, out, order, labels, chosen[order])
    return out


def iter_patches(
    tissue: Tissue,
    cells: Cells,
    ids: Sequence[int] | None = None,
    size: int = 100,
    normalizer: Normalizer | None = None,
    batch_size: int = 512,
    nucleus_mask: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (ids, float32 (n, C, size, size) patches) in batches, reading only the regions around each batch.

    Cells are visited band by band (rows of a few patch heights, left to right), and each run of nearby cells is cut
    from one region read, so a memory-mapped whole section is never loaded. With `nucleus_mask` each patch gains a
    last plane, 1 on its own cell's nucleus in the cells' label image (C + 1 planes).
    """
    chosen, top, left, order = _plan(tissue, cells, ids, size, normalizer)
    labels = _label_image(tissue, cells) if nucleus_mask else None
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        out = np.empty((len(batch), tissue.n_channels + nucleus_mask, size, size), np.float32)
        _cut(tissue, top[batch], left[batch], size, normalizer, out, np.arange(len(batch)), labels, chosen[batch])
        yield chosen[batch], out


#: radius (px) of the disk that stands in for a nucleus the label image does not hold
FALLBACK_RADIUS = 7


def _label_image(tissue: Tissue, cells: Cells) -> np.ndarray:
    """The cells' label image, checked to cover the tissue."""
    if cells.labels is None:
        raise AgileInputError(
            "This model reads each cell's nucleus mask, but these cells have no label image: detect the nuclei "
            "(napari-agile detect --write-mask, or the widget's Detect), or make the cells from a mask you have "
            "(cells_from_labels, the widget's Nuclei choice); a meta-training recipe names them in [data] labels."
        )
    if tuple(cells.labels.shape) != tuple(tissue.shape):
        raise AgileInputError(
            f"The cells' label image is {tuple(cells.labels.shape)} px but the tissue is {tuple(tissue.shape)} px: "
            "give the label image made on this tissue."
        )
    return cells.labels


def _fallback_disk(size: int) -> np.ndarray:
    """The FALLBACK_RADIUS disk at the patch centre, for a cell absent from the label image."""
    r = np.arange(size) - size // 2
    return (r[:, None] ** 2 + r[None, :] ** 2) <= FALLBACK_RADIUS**2


def _plan(
    tissue: Tissue, cells: Cells, ids: Sequence[int] | None, size: int, normalizer: Normalizer | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked ids, patch corners, and the reading order (band of rows, then column)."""
    if size < 1:
        raise AgileInputError(f"Patch size must be a positive number of pixels; got {size}.")
    if normalizer is not None and list(normalizer.channel_names) != list(tissue.channel_names):
        raise AgileInputError(
            f"The normalizer was fitted on channels {normalizer.channel_names}, the tissue has "
            f"{tissue.channel_names}: fit it on this tissue (fit_normalizer) or select matching channels."
        )
    chosen = cells.ids if ids is None else cells.check_ids(ids)
    top, left = _corners(cells.table.loc[chosen, ["y", "x"]].to_numpy(np.float64), size)
    return chosen, top, left, np.lexsort((left, top // (_BAND * size)))


def _corners(centres: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left pixel of each patch so that the rounded centre sits at (size // 2, size // 2)."""
    centre = np.floor(centres + 0.5).astype(np.int64)
    return centre[:, 0] - size // 2, centre[:, 1] - size // 2


def _cut(
    tissue: Tissue,
    top: np.ndarray,
    left: np.ndarray,
    size: int,
    normalizer: Normalizer | None,
    out: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray | None = None,
    cell_ids: np.ndarray | None = None,
) -> None:
    """Write the patches at corners (`top`, `left`), sorted by band then column, into out[rows].

    One region is read and normalised per run of neighbouring cells; patches are then plain slices of it. With
    `labels`, each patch's last plane is its cell's (`cell_ids`) nucleus, cut from the same region of `labels`.
    """
    h, w = tissue.shape
    c = tissue.n_channels
    disk = _fallback_disk(size)
    band = top // (_BAND * size)
    # a new run starts at a new band or after a horizontal gap wider than two patches
    breaks = np.flatnonzero((np.diff(band) != 0) | (np.diff(left) > 2 * size)) + 1
    for run in np.split(np.arange(len(top)), breaks):
        if run.size == 0:
            continue
        y0, x0 = int(top[run].min()), int(left[run].min())
        y1, x1 = int(top[run].max()) + size, int(left[run].max()) + size
        block = tissue.read_region(y0, y1, x0, x1)
        block = normalizer.apply(block) if normalizer is not None else block.astype(np.float32, copy=False)
        pad = ((max(-y0, 0), max(y1 - h, 0)), (max(-x0, 0), max(x1 - w, 0)))
        region = labels[max(y0, 0) : y1, max(x0, 0) : x1] if labels is not None else None
        if any(p for pair in pad for p in pair):
            block = np.pad(block, ((0, 0), *pad))
            region = np.pad(region, pad) if region is not None else None
        for k, ty, tx, i in zip(rows[run], top[run] - y0, left[run] - x0, run):
            out[k, :c] = block[:, ty : ty + size, tx : tx + size]
            if region is not None and cell_ids is not None:  # both or neither (the callers pass them together)
                own = region[ty : ty + size, tx : tx + size] == cell_ids[i]
                out[k, c] = own if own.any() else disk

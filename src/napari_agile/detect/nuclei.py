"""Nucleus detection: nuclear channels -> local half-maximum threshold -> distance watershed, its small pieces joined
and its clumps of packed nuclei split, tiled without seams."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.images import open_label_image
from napari_agile.io.tissue import Tissue, nuclear_flags
from napari_agile.memory import short_of


def detect_nuclei(
    tissue: Tissue,
    channels: Sequence[str] | None = None,
    tile: int = 2048,
    overlap: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    diameter: float | None = None,
    min_area: int | None = None,
    max_area: int | None = None,
    sigma: float = 1.0,
    threshold: float | None = None,
    bin: int | None = None,
    out: Any = None,
) -> Cells:
    """Find every nucleus: a table (id, y, x, area, bbox, intensity) and an int32 instance mask with the same ids.

    The nuclear channels (by default those named as nuclear stains: DAPI, Hoechst, Histone, DNA, Ir191, ...) are
    summed and smoothed; a pixel is nucleus when it is above a global floor (a third of the way from background to
    Otsu, or `threshold`) and above half its local maximum (so dim and bright nuclei are cut at their own half
    height), with chromatin-texture nicks closed; touching nuclei are split by a watershed on the distance
    transform, touching pieces no larger together than 1.4 typical nuclei (`JOIN`) are one, and clumps of packed
    nuclei (`CLUMP`) are split at the stain's maxima. `diameter` is the typical nucleus width in pixels and sets the
    window sizes (None: measured on the section, `estimate_diameter`, so sections imaged at other resolutions need
    no setting); segmentation runs on the image binned by `bin` (default: 9-17 px per nucleus width, for speed) and
    the mask is scaled back up; areas are in full-resolution pixels (`min_area` default 5% of diameter²). The image
    is processed in `tile`² blocks with `overlap` pixels of context (default: 64, or the diameter if larger); a cell
    belongs to the tile whose core holds its centroid, so none is lost or doubled at seams. `progress(done, total)`
    is called after each tile. `out`: a (Y, X) int32 array to paint the mask into, e.g. a zarr array on disk for a
    section whose mask would not fit in memory (memory then grows with the tile, not the section); by default a new
    numpy array.
    """
    if isinstance(channels, str):
        channels = [channels]
    if tile < 1:
        raise AgileInputError(f"tile must be a positive number of pixels (got {tile}).")
    nuclear = _nuclear_channels(tissue, channels)
    idx = [tissue.index(n) for n in nuclear]
    samples = _sample_tiles(tissue, idx)
    if diameter is None:
        diameter = _diameter_from(samples)
    params = _Params.from_diameter(diameter, sigma, min_area, bin)
    overlap = max(64, int(np.ceil(diameter))) if overlap is None else overlap
    if overlap < diameter:
        raise AgileInputError(f"overlap ({overlap}) must be at least the nucleus diameter ({diameter}).")
    if diameter > min(tissue.shape):
        raise AgileInputError(
            f"diameter {diameter} px is wider than the image ({tissue.shape[0]} x {tissue.shape[1]} "
            "px): give the typical nucleus width in pixels (about 8-40 on most sections)."
        )
    b = params.bin
    tile, overlap = -(-tile // b) * b, -(-overlap // b) * b  # multiples of the bin: binned grids align across tiles
    min_area = params.min_area * b * b
    background, floor = _global_levels(samples, params)
    if threshold is not None:
        floor = float(threshold)
    params = replace(params, typical_area=_typical_area(samples, background, floor, params))

    h, w = tissue.shape
    if out is None and (free := short_of(4 * h * w)) is not None:
        raise AgileInputError(
            f"The nucleus mask of this {h:,} x {w:,} px section takes {4 * h * w / 1e9:.1f} GB and this machine has "
            f"{free / 1e9:.1f} GB free: detect on a part (tissue.crop(top, left, bottom, right)), give out= an int32 "
            "array on disk (e.g. a zarr array), or type whole sections with `napari-agile predict`, which holds a "
            "tile at a time."
        )
    labels = np.zeros((h, w), np.int32) if out is None else out
    if tuple(labels.shape) != (h, w) or np.dtype(labels.dtype) != np.int32:
        raise AgileInputError(f"out must be a ({h}, {w}) int32 array; got {labels.dtype} {tuple(labels.shape)}.")
    starts = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    tables = []
    next_id = 1
    for done, (y0, x0) in enumerate(starts, 1):
        y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
        ry0, rx0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
        img = _nuclear_image(tissue, idx, ry0, min(y1 + overlap, h), rx0, min(x1 + overlap, w))
        binned = _bin(img, b)
        lab = _segment(binned, background, floor, params)
        table = _measure(lab, binned, ry0, rx0, b)
        keep = (table.y >= y0) & (table.y < y1) & (table.x >= x0) & (table.x < x1) & (table.area >= min_area)
        if max_area is not None:
            keep &= table.area <= max_area
        core = table[keep]
        if len(core):
            # relabel kept cells to global consecutive ids and paint them where no earlier tile painted
            lut = np.zeros(int(lab.max()) + 1, np.int32)
            new_ids = np.arange(next_id, next_id + len(core), dtype=np.int32)
            lut[core["id"].to_numpy()] = new_ids
            painted = _unbin(lut[lab], b, img.shape)
            region = (slice(ry0, ry0 + img.shape[0]), slice(rx0, rx0 + img.shape[1]))
            view = np.asarray(labels[region])  # a view of a numpy mask, a copy of an on-disk one
            np.copyto(view, painted, where=(painted > 0) & (view == 0))
            labels[region] = view
            tables.append(core.assign(id=new_ids))
            next_id += len(core)
        if progress is not None:
            progress(done, len(starts))
    columns = ["id", "y", "x", "area", "ymin", "xmin", "ymax", "xmax", "intensity"]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    if not tables:
        noise = " (nothing stands above the pixel noise: a field off the tissue, or an empty channel?)"
        warnings.warn(
            f"No nuclei found in {nuclear}{noise if np.isinf(floor) else ''}: check that these stain every nucleus "
            f"(channels=...), that nuclei are about {diameter} px wide (diameter=...), or set a lower threshold.",
            stacklevel=2,
        )
    return Cells(table[columns].astype({"id": np.int64}), labels)


#: Otsu's bright and dim classes must differ by more than this many noise sds (of the smoothed image) to be nuclei on
#: background: pure noise splits at 1.5-2.3; nuclei 3 pixel-noise sds bright reach 4.4-8, even covering 2/3 of the section
MIN_CONTRAST = 3.0

#: touching pieces of the watershed are one nucleus while together no larger than this many typical nuclei (the median
#: segmented on the sampled tiles): 1.4 joins the pieces of elongated and textured nuclei but never two typical ones,
#: nor a typical one and a neighbour over 0.4 of its size (docs/nuclei.md: 1.0-1.6 measured)
JOIN = 1.4

#: a region over CLUMP typical nuclei whose solidity is under CLUMP_SOLIDITY, or over WHOLE_CLUMP typical nuclei, is a
#: clump of packed nuclei, split at the stain's maxima (docs/nuclei.md: a single large nucleus, as a neuron's among
#: glia, is convex and under WHOLE_CLUMP, so it stays whole; a packed islet may be convex but is far larger)
CLUMP = 4.0
CLUMP_SOLIDITY = 0.9
WHOLE_CLUMP = 16.0

#: the nucleus width (px) assumed where the section shows none to measure (a blank or noise-only field)
DEFAULT_DIAMETER = 24.0


def estimate_diameter(tissue: Tissue, channels: Sequence[str] | None = None) -> float:
    """The typical nucleus width in pixels, measured on the nuclear stains (`channels`, by default those named as
    such) over tiles sampled across the section: the median equivalent diameter of the bright blobs, a blob of
    touching nuclei counting once per peak of its distance transform.

    Blobs are found at full resolution against the detector's own floor, so chromatin texture inside a nucleus does
    not count as small nuclei. DEFAULT_DIAMETER when nothing stands above the noise."""
    return estimate_nuclei(tissue, channels).diameter


@dataclass(frozen=True)
class NucleusEstimate:
    """What the sampled tiles say before a detection: the typical nucleus width (px), and a floor on how many nuclei
    the whole section holds: the density of separate bright blobs on the tiles times the section's area (a clump
    of touching nuclei counts once; 0.2-0.5 of the nuclei on the real and simulated sections of docs/nuclei.md)."""

    diameter: float
    at_least: int


def estimate_nuclei(tissue: Tissue, channels: Sequence[str] | None = None) -> NucleusEstimate:
    """`estimate_diameter`'s width and a floor on the section's number of nuclei, from the same 16 sampled tiles
    (about a second on any section size), so a detection too large for memory is refused before it starts."""
    idx = [tissue.index(n) for n in _nuclear_channels(tissue, channels)]
    images = _sample_tiles(tissue, idx)
    census = _blob_census(images)
    if census is None or not len(census[0]):
        return NucleusEstimate(DEFAULT_DIAMETER, 0)
    widths, blobs = census
    h, w = tissue.shape
    return NucleusEstimate(_median_width(widths), int(blobs * h * w / sum(img.size for img in images)))


#: the largest nucleus id a mask may hold (typing paints through lookup tables as long as the largest id)
MAX_LABEL = 2**24

#: rows and columns of the blocks a nucleus mask is read and measured in (64 MB of int32)
MASK_TILE = 4096


def read_mask(path: str | Path) -> np.ndarray:
    """A nucleus label image from a TIFF file or a zarr label image (an OME-Zarr label folder, or a SpatialData store
    whose labels hold nuclei), with a clear error for a missing or unreadable file."""
    with open_mask(path) as mask:
        return np.asarray(mask)


@contextmanager
def open_mask(path: str | Path) -> Iterator[Any]:
    """`read_mask`'s label image opened lazily (only the regions sliced are read), for masks larger than memory:
    `cells_from_labels(mask, out=...)` measures and copies it block by block."""
    p = Path(path).expanduser()
    if not p.exists():
        raise AgileInputError(
            f"No nucleus label image at {p}: give the TIFF written by `napari-agile detect "
            "--write-mask` or your own segmentation's label image."
        )
    with open_label_image(p) as mask:
        yield mask


def cells_from_labels(
    labels: Any,
    shape: tuple[int, int] | None = None,
    *,
    out: Any = None,
    tile: int = MASK_TILE,
    progress: Callable[[int, int], None] | None = None,
) -> Cells:
    """Cells from a nucleus instance mask made elsewhere (StarDist, Cellpose, QuPath, a hand-painted napari layer):
    each label value is a cell id (0 is background), its centroid, area and box measured on the mask. `shape`: the
    tissue's (rows, columns), which the mask must match pixel for pixel.

    The mask is read in `tile`² blocks, so it may be a lazy array (`open_mask`) larger than memory: given `out`, a
    (Y, X) int32 array such as a zarr array on disk, the blocks are copied there and it becomes the cells' labels;
    otherwise the labels are the mask as an int32 numpy array. `progress(done, total)` is called per block."""
    lab = labels if hasattr(labels, "shape") and hasattr(labels, "dtype") else np.asarray(labels)
    if len(lab.shape) == 3 and 1 in (lab.shape[0], lab.shape[2]) and hasattr(lab, "reshape"):  # (1, Y, X), (Y, X, 1)
        lab = lab.reshape(tuple(n for n in lab.shape if n != 1) if lab.shape.count(1) == 1 else lab.shape[1:3])
    if len(lab.shape) != 2:
        raise AgileInputError(f"A nucleus mask is one 2D (rows, columns) label image; this one has shape {lab.shape}.")
    h, w = (int(n) for n in lab.shape)
    if shape is not None and (h, w) != tuple(shape):
        raise AgileInputError(
            f"The nucleus mask is {(h, w)} px but the tissue is {tuple(shape)} px: give the "
            "label image made on this section."
        )
    if not np.issubdtype(np.dtype(lab.dtype), np.integer):
        raise AgileInputError(
            f"A nucleus mask holds an integer id per nucleus (0 = background); this one is {lab.dtype}. A yes/no "
            "mask is not enough: label its nuclei first (e.g. skimage.measure.label)."
        )
    if out is not None and (tuple(out.shape) != (h, w) or np.dtype(out.dtype) != np.int32):
        raise AgileInputError(f"out must be a ({h}, {w}) int32 array; got {out.dtype} {tuple(out.shape)}.")
    fill = out is not None or not isinstance(lab, np.ndarray)  # a lazy mask is copied as it is read, not read twice
    if out is None:
        out = np.empty((h, w), np.int32) if fill else lab.astype(np.int32, copy=False)
    starts = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    parts = []
    for done, (y0, x0) in enumerate(starts, 1):
        block = np.asarray(lab[y0 : y0 + tile, x0 : x0 + tile])
        low, high = int(block.min()), int(block.max())
        if low < 0 or high > MAX_LABEL:
            raise AgileInputError(
                f"Nucleus ids in rows {y0}-{y0 + block.shape[0]}, columns {x0}-{x0 + block.shape[1]} run from {low} "
                f"to {high}; they must lie in 0..{MAX_LABEL}: renumber them (skimage.segmentation.relabel_sequential)."
            )
        block = block.astype(np.int32, copy=False)
        if fill:
            out[y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]] = block
        if high > 0:
            parts.append(_block_measures(block, y0, x0))
        if progress is not None:
            progress(done, len(starts))
    if not parts:
        raise AgileInputError("The nucleus mask labels no pixel: give the label image of the nuclei (0 = background).")
    table = _merge_measures(parts)
    _warn_giants(table)
    return Cells(table, out)


#: how far a nucleus mask's pixels must stand above the rest in the nuclear stain, as a share of its 1-99 % range
MASK_CONTRAST = 0.05


def mask_off_nuclei(tissue: Tissue, labels: Any, channels: Sequence[str] | None = None, size: int = 1024) -> str | None:
    """Why a nucleus mask does not sit on this section's nuclei (None: it does): over a central `size`² region, the
    nuclear stains (`channels`, by default those named as such) are no brighter inside the labels than outside
    them, as for a mask transposed, shifted or made on another section. A mask that labels nothing there, or a
    section with no nuclear stain by name, passes."""
    try:
        idx = [tissue.index(n) for n in _nuclear_channels(tissue, channels)]
    except AgileInputError:
        return None
    h, w = tissue.shape
    y0, x0 = max((h - size) // 2, 0), max((w - size) // 2, 0)
    y1, x1 = min(y0 + size, h), min(x0 + size, w)
    inside = np.asarray(labels[y0:y1, x0:x1]) > 0
    if inside.all() or not inside.any():
        return None
    stain = tissue.read_region(y0, y1, x0, x1)[idx].sum(axis=0, dtype=np.float32)
    if not np.isfinite(stain).all():  # missing pixels: named where they are met (patches, detection)
        return None
    low, high = np.percentile(stain, [1, 99])
    contrast = (float(stain[inside].mean()) - float(stain[~inside].mean())) / max(float(high - low), 1e-12)
    if contrast >= MASK_CONTRAST:
        return None
    return (
        f"The nucleus mask does not sit on the nuclei: in rows {y0}-{y1}, columns {x0}-{x1} the nuclear stain "
        f"{[tissue.channel_names[i] for i in idx]} is no brighter inside its labels than outside them ({contrast:+.2f} "
        "of its range). Is it transposed, shifted, or made on another section? Give the label image made on this one."
    )


#: a labelled region this many times the median nucleus's area is not one nucleus
GIANT = 25


def _warn_giants(table: pd.DataFrame) -> None:
    """A warning naming labels far larger than the median nucleus: a background or tissue region painted as one
    nucleus would be typed as a cell, and its patch would show nothing of one."""
    if len(table) < 10:
        return
    median = float(table["area"].median())
    giants = table.loc[table["area"] > GIANT * median, "id"].astype(int).tolist()
    if giants:
        warnings.warn(
            f"Nucleus label(s) {giants[:10]}{' ...' if len(giants) > 10 else ''} cover over {GIANT} times the "
            f"median nucleus ({median:.0f} px): a background or tissue region labelled as a nucleus? Set it to 0 in "
            "the mask, or check that the label image is the nuclei's.",
            stacklevel=3,
        )


def _block_measures(block: np.ndarray, y0: int, x0: int) -> pd.DataFrame:
    """`_measure` of one block of a mask whose ids may be large and sparse: measured on the block's ids renumbered
    1..n, then named back."""
    ids, inverse = np.unique(block, return_inverse=True)
    named = ids[ids != 0]
    compact = (inverse.reshape(block.shape) + int(ids[0] != 0)).astype(np.int32)
    part = _measure(compact, None, y0, x0, 1)
    return part.assign(id=named[part["id"].to_numpy() - 1])


def _merge_measures(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per id from the blocks' measures: areas summed, centroids weighted by area, boxes joined."""
    rows = pd.concat(parts, ignore_index=True)
    if len(parts) == 1:
        return rows
    rows = rows.assign(sy=rows["y"] * rows["area"], sx=rows["x"] * rows["area"])
    joined = rows.groupby("id", sort=True).agg(
        area=("area", "sum"),
        sy=("sy", "sum"),
        sx=("sx", "sum"),
        ymin=("ymin", "min"),
        xmin=("xmin", "min"),
        ymax=("ymax", "max"),
        xmax=("xmax", "max"),
    )
    return pd.DataFrame(
        {
            "id": joined.index.to_numpy(),
            "y": joined["sy"] / joined["area"],
            "x": joined["sx"] / joined["area"],
            "area": joined["area"],
            "ymin": joined["ymin"],
            "xmin": joined["xmin"],
            "ymax": joined["ymax"],
            "xmax": joined["xmax"],
        }
    ).reset_index(drop=True)


@dataclass(frozen=True)
class _Params:
    """Window sizes in pixels of the (binned) image the segmentation runs on."""

    window: int
    min_distance: int
    min_area: int
    sigma: float
    bin: int
    close: int
    typical_area: float = 0.0  # one typical nucleus (binned px), for joining pieces and splitting clumps; 0: neither

    @classmethod
    def from_diameter(cls, d: float, sigma: float, min_area: int | None, bin: int | None) -> _Params:
        if isinstance(d, bool) or not isinstance(d, (int, float, np.number)) or not 2 < d < np.inf:
            raise AgileInputError(f"diameter must be the nucleus width in pixels (> 2); got {d}.")
        b = max(int(round(d / 12)), 1) if bin is None else int(bin)  # 9-17 px per nucleus is enough to find it
        area = 0.05 * d * d if min_area is None else float(min_area)  # ~1/16 of a nucleus
        return cls(
            window=int(round(0.9 * d / b)) | 1,  # local-maximum window a bit under one nucleus: odd size
            min_distance=max(int(round(d / 4 / b)), 1),  # distance peaks closer than this are one nucleus
            min_area=max(int(round(area / b**2)), 1),
            sigma=sigma / b,
            bin=b,
            close=max(int(round(d / 12 / b)), 1),  # closing radius: seals chromatin-texture nicks (~2 px at d=24)
        )


def _nuclear_channels(tissue: Tissue, channels: Sequence[str] | None) -> list[str]:
    """The channels to sum: those asked for, else the nuclear stains named as such (`nuclear_flags`: DAPI, Hoechst,
    Histone, DNA1, Ir191, ...), as the Session and the widget pick them; a clear error when none."""
    if channels:
        for name in channels:
            tissue.index(name)  # names the missing channel and the ones there are
        return list(channels)
    found = [n for n, flag in zip(tissue.channel_names, nuclear_flags(tissue.channel_names)) if flag]
    if not found:
        raise AgileInputError(
            f"No nuclear stain found: nucleus detection looks for channels named as one (DAPI, Hoechst, Histone, "
            f"DNA, Ir191, ...), and this tissue has {tissue.channel_names}. Pass channels=[...] (CLI: --nuclear) "
            "naming the channel(s) that stain every nucleus, or rename the channels."
        )
    return found


def _nuclear_image(tissue: Tissue, idx: list[int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Sum of the nuclear channels over a region, float32, without its lone bright pixels (`_without_spikes`)."""
    block = tissue.read_region(y0, y1, x0, x1)[idx]
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        bad = [tissue.channel_names[i] for i, plane in zip(idx, block) if not np.isfinite(plane).all()]
        raise AgileInputError(
            f"Nuclear channel(s) {bad}{f' of {tissue.source}' if tissue.source else ''} hold NaN or infinite pixels "
            f"in rows {y0}-{y1}, columns {x0}-{x1}: replace them (e.g. numpy.nan_to_num, or 0 where nothing was "
            "imaged) before detecting nuclei."
        )
    return _without_spikes(block.sum(axis=0, dtype=np.float32))


#: a spike stands this many pixel-noise sds above the brightest of its neighbours (noise alone: under 5)
SPIKE_NOISE = 8.0


def _without_spikes(plane: np.ndarray) -> np.ndarray:
    """`plane` (float32) with its lone spikes held to the brightest of their 8 neighbours: a pixel standing more than
    twice as far above the plane's median as any neighbour, and SPIKE_NOISE noise sds above it. A hot pixel (a
    detector spike, common in IMC and MIBI) would otherwise lift the nucleus floor above real nuclei and count as a
    nucleus itself; nuclei, many pixels wide and smooth at that scale, keep every pixel."""
    plane = plane.astype(np.float32, copy=False)
    h, w = plane.shape
    if min(h, w) < 2:
        return plane
    rows = plane[:: max(h // 256, 1)]  # rows spread over the plane: its level and its pixel noise
    base = float(np.median(rows))
    step = np.diff(rows, axis=1)
    noise = 1.4826 * float(np.median(np.abs(step - np.median(step)))) / np.sqrt(2)
    # only a local maximum well above the plane's level can be a spike
    peaks = np.flatnonzero((plane >= _max3(plane)) & (plane - base > SPIKE_NOISE * noise))
    if not peaks.size:
        return plane
    y, x = np.unravel_index(peaks, plane.shape)
    padded = np.pad(plane, 1, mode="reflect")  # mirrored about the edge pixel: an edge pixel is not its neighbour
    around = np.max([padded[y + dy, x + dx] for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)], axis=0)
    value = plane.flat[peaks]
    spikes = (value - base > 2 * np.maximum(around - base, 0)) & (value - around > SPIKE_NOISE * noise)
    if not spikes.any():
        return plane
    out = plane.copy()
    out.flat[peaks[spikes]] = around[spikes]
    return out


def _max3(plane: np.ndarray) -> np.ndarray:
    """The brightest pixel of each pixel's 3 x 3 neighbourhood (itself included), by shifted maxima: ten times
    scipy's maximum_filter on float32."""
    rows = plane.copy()
    np.maximum(rows[1:], plane[:-1], out=rows[1:])
    np.maximum(rows[:-1], plane[1:], out=rows[:-1])
    out = rows.copy()
    np.maximum(out[:, 1:], rows[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], rows[:, 1:], out=out[:, :-1])
    return out


def _sample_tiles(tissue: Tissue, idx: list[int], n_tiles: int = 16, size: int = 512) -> list[np.ndarray]:
    """The nuclear image of `n_tiles` tiles of `size`² spread over the section, on which its levels are measured."""
    h, w = tissue.shape
    k = int(np.ceil(np.sqrt(n_tiles)))
    ys = np.unique(np.linspace(0, max(h - size, 0), k).astype(int))
    xs = np.unique(np.linspace(0, max(w - size, 0), k).astype(int))
    return [_nuclear_image(tissue, idx, y, y + size, x, x + size) for y in ys for x in xs]


def _diameter_from(images: list[np.ndarray]) -> float:
    """The median width of `_blob_census`, DEFAULT_DIAMETER where no blob stands above the noise."""
    census = _blob_census(images)
    return _median_width(census[0]) if census is not None and len(census[0]) else DEFAULT_DIAMETER


def _median_width(widths: np.ndarray) -> float:
    return float(max(np.median(widths), 4.0))


def _blob_census(images: list[np.ndarray]) -> tuple[np.ndarray, int] | None:
    """The blobs above the nucleus floor (full resolution, lightly smoothed): one width per nucleus, and how many
    blobs. A blob of touching nuclei is shared among the peaks of its distance transform, each peak counting the
    width of a disc of its share of the blob's area, so round nuclei in clumps count their own width and an
    elongated one its whole size. None when nothing stands above the noise."""
    params = _Params.from_diameter(DEFAULT_DIAMETER, 1.0, None, 1)
    _, floor = _global_levels(images, params)
    if not np.isfinite(floor):
        return None
    widths, n_blobs = [np.empty(0)], 0
    for img in images:
        blobs, n = ndi.label(ndi.binary_fill_holes(ndi.binary_opening(_smooth(img, params) > floor)))
        n_blobs += n - len(np.setdiff1d(np.r_[blobs[0], blobs[:, 0]], 0))  # a frame counts a blob cut by its top
        # or left edge in the tile beyond it (Gundersen's counting frame), so the density is the section's
        dist = ndi.distance_transform_edt(blobs > 0)
        peaks, n_peaks = ndi.label((dist == ndi.maximum_filter(dist, size=5)) & (dist >= 2))
        if n_peaks:
            owner = np.zeros(n_peaks + 1, np.int64)
            owner[peaks[peaks > 0]] = blobs[peaks > 0]  # the blob under each peak (a plateau lies in one blob)
            owner = owner[1:]
            shares = np.bincount(owner, minlength=n + 1)
            area = np.bincount(blobs.ravel(), minlength=n + 1)
            widths.append(np.sqrt(4 * area[owner] / (np.pi * shares[owner])))
    return np.concatenate(widths), n_blobs


def _global_levels(images: list[np.ndarray], params: _Params) -> tuple[float, float]:
    """Background (median) and nucleus floor from tiles sampled over the whole image (`_sample_tiles`), so all tiles
    agree; no floor (infinite) when Otsu's bright and dim classes differ by no more than the noise, as on a blank or
    noise-only field."""
    from skimage.filters import threshold_otsu

    values = np.concatenate([_smooth(_bin(img, params.bin), params).ravel() for img in images])
    background = float(np.median(values))
    if values.max() > values.min():
        otsu = float(threshold_otsu(values))
        contrast = float(values[values > otsu].mean() - values[values <= otsu].mean())
        if contrast > MIN_CONTRAST * _noise_sigma(images, params):
            return background, background + (otsu - background) / 3.0
    return background, np.inf  # blank, or noise only (off the tissue, an empty channel): nothing is a nucleus


def _typical_area(images: list[np.ndarray], background: float, floor: float, params: _Params) -> float:
    """The median area (binned px) of the nuclei segmented on the sampled tiles before any joining: the size up to
    which touching pieces are one nucleus, measured as the detector sees nuclei, so a width the user over- or
    under-states does not move it."""
    segmented = [_segment(_bin(img, params.bin), background, floor, params) for img in images]
    areas = np.concatenate([np.bincount(lab.ravel())[1:] for lab in segmented])
    areas = areas[areas >= params.min_area]
    return float(np.median(areas)) if len(areas) else 0.0


def _noise_sigma(images: list[np.ndarray], params: _Params) -> float:
    """Noise sd of the binned, smoothed image, from differences of neighbouring 2×2 means at full resolution: a
    median, so nuclei (wide at this scale) covering most of the section do not inflate it; 2×2 means, so integer
    images with under a grey level of noise still differ."""
    quads = [_bin(img, 2) for img in images]
    diffs = np.concatenate([np.diff(q, axis=axis).ravel() for q in quads for axis in (0, 1)])
    pixel = 2 * 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2)  # one full-res pixel's sd
    r = int(4 * params.sigma) + 2
    delta = np.zeros((2 * r + 1, 2 * r + 1), np.float32)
    delta[r, r] = 1.0
    kernel = _smooth(delta, params)  # white noise's sd is scaled by the kernel's norm, and by 1/bin by the binning
    return pixel / params.bin * float(np.sqrt((kernel**2).sum()))


def _bin(img: np.ndarray, b: int) -> np.ndarray:
    """Mean over b×b blocks; trailing rows/columns that do not fill a block are dropped."""
    if b == 1:
        return img
    h, w = (img.shape[0] // b) * b, (img.shape[1] // b) * b
    return img[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))


def _unbin(lab: np.ndarray, b: int, shape: tuple[int, int]) -> np.ndarray:
    """Binned labels back to full resolution `shape`; dropped trailing rows/columns repeat their neighbours."""
    if b == 1:
        return lab
    lab = np.repeat(np.repeat(lab, b, axis=0), b, axis=1)
    return np.pad(lab, ((0, shape[0] - lab.shape[0]), (0, shape[1] - lab.shape[1])), mode="edge")


def _smooth(img: np.ndarray, p: _Params) -> np.ndarray:
    return ndi.gaussian_filter(img, p.sigma) if p.sigma else img


def _segment(img: np.ndarray, background: float, floor: float, p: _Params) -> np.ndarray:
    """Instance labels of one (binned) tile."""
    from skimage.segmentation import watershed

    smooth = _smooth(img, p)
    background = min(background, floor)
    local_max = ndi.maximum_filter(smooth, size=p.window)
    mask = (smooth > floor) & (smooth - background > 0.5 * (local_max - background))
    # textured nuclei (dark nucleoplasm between bright chromocentres) leave nicks and pinholes below half maximum;
    # each nick makes a spurious distance peak (a split) -- close them before the distance transform
    mask |= ndi.binary_closing(mask, _disk(p.close))
    mask = _fill_holes(mask, max_hole=p.min_area * 8)
    components, n = ndi.label(mask)
    if n:
        sizes = np.bincount(components.ravel())
        small = sizes < p.min_area
        small[0] = False
        mask &= ~small[components]
    dist = ndi.distance_transform_edt(mask).astype(np.float32)
    ridge = ndi.gaussian_filter(dist, 1.0 / p.bin)
    # markers: local maxima of the smoothed distance (a plateau counts once), at least min_distance apart
    peaks = (ridge == ndi.maximum_filter(ridge, size=2 * p.min_distance + 1)) & mask
    markers, _ = ndi.label(peaks)
    lab = watershed(-dist, markers, mask=mask).astype(np.int32, copy=False)
    if not p.typical_area:
        return lab
    return _split_clumps(_join_fragments(lab, JOIN * p.typical_area), smooth, p.typical_area, p.window)


def _split_clumps(lab: np.ndarray, smooth: np.ndarray, typical: float, window: int) -> np.ndarray:
    """`lab` with each region larger than CLUMP `typical` nuclei (px) and not convex (solidity under CLUMP_SOLIDITY),
    or larger than WHOLE_CLUMP typical nuclei, split at the maxima of the stain (smoothed, `window` apart): densely packed
    nuclei that leave no background between them, so neither the half-maximum rule nor the distance transform can
    part them (islets, lymphoid aggregates)."""
    from skimage.measure import regionprops
    from skimage.segmentation import watershed

    size = np.bincount(lab.ravel())
    big = np.flatnonzero(size > CLUMP * typical)
    big = big[big > 0]
    if len(big):
        regions = regionprops(np.where(np.isin(lab, big), lab, 0))
        whole = WHOLE_CLUMP * typical
        big = np.array([r.label for r in regions if r.solidity < CLUMP_SOLIDITY or r.area > whole], dtype=np.int64)
    if not len(big):
        return lab
    clump = np.isin(lab, big)
    stain = ndi.gaussian_filter(smooth, 0.15 * window)  # chromatin texture is no nucleus of its own
    markers, _ = ndi.label((stain == ndi.maximum_filter(stain, size=window)) & clump)
    parts = watershed(-stain, markers, mask=clump)[clump]
    out = lab.copy()
    out[clump] = np.where(parts > 0, parts + lab.max(), lab[clump])  # a clump whose maxima all lie outside it stays
    return out


def _join_fragments(lab: np.ndarray, limit: float) -> np.ndarray:
    """`lab` with touching pieces joined while their union stays within `limit` pixels: a textured or elongated
    nucleus that the distance watershed cut at the bumps of its ridge, smallest unions first."""
    touching = []
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:])):
        edge = (a != b) & (a > 0) & (b > 0)
        touching.append(np.stack([a[edge], b[edge]], 1))
    pairs = np.unique(np.sort(np.concatenate(touching), 1), axis=0)
    if not len(pairs):
        return lab
    size = np.bincount(lab.ravel()).astype(np.float64)
    root = np.arange(len(size))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for a, b in pairs[np.argsort(size[pairs].sum(1), kind="stable")]:
        ra, rb = find(a), find(b)
        if ra != rb and size[ra] + size[rb] <= limit:
            root[rb] = ra
            size[ra] += size[rb]
    lut = np.array([find(i) for i in range(len(size))], np.int32)
    return lut[lab]


def _disk(radius: int) -> np.ndarray:
    """A disk-shaped structuring element of the given radius in pixels."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy * yy + xx * xx <= radius * radius


def _fill_holes(mask: np.ndarray, max_hole: int) -> np.ndarray:
    """Fill background pockets smaller than `max_hole` enclosed by the mask (faster than binary_fill_holes)."""
    background, n = ndi.label(~mask)
    if n == 0:
        return mask
    sizes = np.bincount(background.ravel())
    fill = sizes <= max_hole
    fill[0] = False
    edges = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    fill[edges] = False
    return mask | fill[background]


def _measure(lab: np.ndarray, img: np.ndarray | None, oy: int, ox: int, b: int) -> pd.DataFrame:
    """Per-label centroid, area, half-open bbox and (given `img`) mean nuclear intensity, in full-resolution global
    coordinates.

    `lab` and `img` are binned by `b`; a binned pixel stands for its b×b block, whose centre is b*i + (b-1)/2.
    """
    n = int(lab.max())
    flat = lab.ravel()
    area = np.bincount(flat, minlength=n + 1)
    rows = np.bincount(flat, np.repeat(np.arange(lab.shape[0], dtype=np.float64), lab.shape[1]), minlength=n + 1)
    cols = np.bincount(flat, np.tile(np.arange(lab.shape[1], dtype=np.float64), lab.shape[0]), minlength=n + 1)
    ids = np.flatnonzero(area[1:]) + 1
    slices = ndi.find_objects(lab)
    box = np.array([[s[0].start, s[1].start, s[0].stop, s[1].stop] for s in (slices[i - 1] for i in ids)])
    box = box.reshape(-1, 4) * b
    a = area[ids]
    centre = (b - 1) / 2
    table = pd.DataFrame(
        {
            "id": ids,
            "y": rows[ids] / a * b + centre + oy,
            "x": cols[ids] / a * b + centre + ox,
            "area": a * b * b,
            "ymin": box[:, 0] + oy,
            "xmin": box[:, 1] + ox,
            "ymax": box[:, 2] + oy,
            "xmax": box[:, 3] + ox,
        }
    )
    if img is not None:
        table["intensity"] = np.bincount(flat, img.ravel(), minlength=n + 1)[ids] / a
    return table

"""Tissue simulator: multiplexed rat-brain-like fields with ground truth, for tests, benchmarks and meta-training.

A field is drawn in expression units (1.0 = a typical positive cell's marker level), then imaged:
point-spread blur, stain variation across the section, bleed-through between channels, uneven
illumination, shot and read noise, a camera offset, and 16-bit counts. Geometry and marker
localisation follow shared/data/rat-brain-facts.md; `benchmarks/synth_facts.py` measures the match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import regionprops_table

from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import PAPER_CHANNELS, Tissue

CELL_TYPES = ("neuron", "astrocyte", "oligodendrocyte", "microglia", "endothelial")
MARKER_OF = {
    "neuron": "NeuN",
    "astrocyte": "S100",
    "oligodendrocyte": "Olig2",
    "microglia": "Iba1",
    "endothelial": "RECA1",
}
#: Brain-like but not too skewed, so every type has enough cells for a task.
DEFAULT_TYPE_FRACTIONS = {
    "neuron": 0.35,
    "astrocyte": 0.20,
    "oligodendrocyte": 0.20,
    "microglia": 0.12,
    "endothelial": 0.13,
}
_MARKERS = tuple(MARKER_OF[t] for t in CELL_TYPES)  # expression columns, in CELL_TYPES order
_NEURON, _ASTRO, _OLIGO, _MICROGLIA, _ENDO = range(len(CELL_TYPES))


class _Morph(NamedTuple):
    """Nucleus semi-axes (px), boundary irregularity, soma size (x nucleus) and DAPI density of a type."""

    major: float
    minor: float
    irregularity: float
    soma: float
    dapi: float


_MORPH = (
    _Morph(17.5, 15.5, 0.04, 1.8, 0.7),  # neuron: large, round, pale
    _Morph(14.5, 12.0, 0.07, 1.5, 1.0),  # astrocyte: medium, slightly irregular
    _Morph(11.0, 10.0, 0.03, 1.25, 1.5),  # oligodendrocyte: small, round, dense
    _Morph(15.0, 8.0, 0.12, 1.4, 1.3),  # microglia: small, elongated, irregular
    _Morph(18.0, 7.0, 0.05, 1.3, 1.2),  # endothelial: long and flat along the vessel
)
# Where each marker sits: weights of (nucleus, soma, membrane ring) per marker, in _MARKERS order.
_LOCALISATION = np.array(
    [
        [1.0, 0.2, 0.0],  # NeuN: nucleus, faint perinuclear cytoplasm
        [0.5, 0.7, 0.0],  # S100: soma (+ processes)
        [1.0, 0.0, 0.0],  # Olig2: nucleus
        [0.4, 0.8, 0.0],  # Iba1: soma (+ thin processes)
        [0.0, 0.0, 0.6],  # RECA1: plasma membrane (+ vessel walls)
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class SimParams:
    """Every knob of the simulator; defaults mimic the rat brain. Difficulty: expression_overlap, nonspecific_rate."""

    # Geometry
    density: float = 3.5  # nuclei per 100 x 100 px
    min_distance: float = 0.45  # centres at least this x (r_i + r_j) apart (hard core; < 1 lets nuclei touch/overlap)
    density_variation: float = 1.0  # sd of log cell density across the section (clusters, layers)
    satellite_fraction: float = 0.3  # oligodendrocytes moved to sit against a neuron (perineuronal satellites)
    nucleus_scale: float = 1.0  # multiplies every nucleus size
    size_spread: float = 0.15  # log-normal sd of nucleus size within a type
    stretch_x: float = 1.06  # section compression: nuclei this much wider than tall
    vessel_density: float = 10.0  # in-plane vessel segments per 1000 x 1000 px
    ring_density: float = 20.0  # capillary cross-sections (rings) per 1000 x 1000 px
    process_density: float = 2.0  # multiplies the number of astrocyte / microglia processes
    # Expression (1.0 = median positive cell)
    expression_overlap: float = 0.6  # 0: nonspecific negatives far below positives; 1: same distribution
    expression_spread: float = 0.45  # log-normal sd of a marker's level across cells
    nonspecific_rate: float = 0.4  # fraction of other-type cells with weak nonspecific signal per marker
    negative_level: float = 0.03  # marker level of clean negative cells
    vessel_level: float = 1.5  # RECA1 on vessel walls (per px of wall line, before blur)
    texture: float = 0.35  # chromatin texture contrast in nuclei
    nucleus_edge: float = 1.5  # width (px) of the stain falloff at a nucleus rim, before blur: touching nuclei dip
    autofluorescence: float = 0.04  # neuropil background in every channel
    # Imaging
    psf_sigma: float = 1.2  # point-spread blur (px)
    stain_variation: float = 0.2  # sd of log stain intensity across the section, per channel
    illumination: float = 0.3  # depth of the smooth illumination falloff (0 = flat)
    bleed_through: float = 0.04  # fraction of each channel leaking into the next one of the panel
    photons_per_unit: float = 300.0  # photons a unit signal collects (lower = more shot noise)
    read_noise: float = 0.01  # camera read noise, in units of a positive cell's signal
    signal_counts: float = 6000.0  # 16-bit counts of a unit signal
    offset: float = 200.0  # camera offset (counts)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not np.isfinite(value) or value < 0:
                raise AgileInputError(f"SimParams.{f.name} must be a finite number >= 0; got {value!r}.")
        for name in ("expression_overlap", "nonspecific_rate", "satellite_fraction", "illumination", "bleed_through"):
            if getattr(self, name) > 1:
                raise AgileInputError(f"SimParams.{name} is a fraction in [0, 1]; got {getattr(self, name)!r}.")
        for name in ("density", "nucleus_scale", "stretch_x", "photons_per_unit", "signal_counts"):
            if getattr(self, name) <= 0:
                raise AgileInputError(f"SimParams.{name} must be > 0; got {getattr(self, name)!r}.")

    def randomized(self, rng: np.random.Generator, strength: float = 1.0) -> SimParams:
        """A copy with imaging, size, density and contrast drawn widely around these values (domain randomisation)."""

        def scaled(name: str, lo: float, hi: float, top: float | None = None) -> float:
            # log-uniform factor in [lo, hi] ** strength around the current value
            f = np.exp(rng.uniform(np.log(lo), np.log(hi)) * strength)
            v = getattr(self, name) * f
            return float(min(v, top) if top is not None else v)

        return replace(
            self,
            density=scaled("density", 0.7, 1.3),
            nucleus_scale=scaled("nucleus_scale", 0.7, 1.4),
            stretch_x=scaled("stretch_x", 0.9, 1.1),
            process_density=scaled("process_density", 0.5, 2.0),
            expression_spread=scaled("expression_spread", 0.7, 1.4),
            texture=scaled("texture", 0.5, 2.0),
            autofluorescence=scaled("autofluorescence", 0.5, 3.0),
            psf_sigma=scaled("psf_sigma", 0.6, 2.0),
            stain_variation=scaled("stain_variation", 0.3, 2.0),
            illumination=scaled("illumination", 0.2, 2.5, top=0.9),
            bleed_through=scaled("bleed_through", 0.2, 3.0, top=0.5),
            photons_per_unit=scaled("photons_per_unit", 0.1, 3.0),
            read_noise=scaled("read_noise", 0.3, 4.0),
            signal_counts=scaled("signal_counts", 0.25, 1.6),
            offset=scaled("offset", 0.2, 3.0),
        )


@dataclass(frozen=True)
class MarkerPanel:
    """Another marker panel for simulated tissue: each output channel is a weighted sum of the simulator's own
    signals (DAPI, Histones, then the five types' markers, as they sit in the cell), taken before optics, so blur,
    stain variation, bleed-through between neighbouring channels and camera noise act on the panel's channels.
    A row with one marker weight is that type's own marker (dimmer when the weight is below 1), several make a
    marker shared between types, none (a zero row) a channel of background and noise only."""

    names: tuple[str, ...]
    weights: np.ndarray  # (channels, 7): rows in PAPER_CHANNELS order of the source signals

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        if np.shape(self.weights) != (len(self.names), len(PAPER_CHANNELS)):
            raise AgileInputError(
                f"MarkerPanel.weights must be ({len(self.names)}, {len(PAPER_CHANNELS)}): one row "
                f"per channel, one column per source signal {PAPER_CHANNELS}."
            )

    @classmethod
    def random(cls, n_channels: int, rng: np.random.Generator, keep: tuple[str, ...] = CELL_TYPES) -> MarkerPanel:
        """A random panel of `n_channels` (>= 2 + len(keep)): one or two nuclear stains, a possibly dimmed marker for
        each type in `keep`, then markers shared by two or more types, bleed-through mixes and background channels."""
        n_nuclear = 1 + int(rng.random() < 0.5)
        if n_channels < n_nuclear + len(keep):
            raise AgileInputError(
                f"A panel of {n_channels} channels cannot hold {n_nuclear} nuclear stain(s) and a "
                f"marker for each of {list(keep)}."
            )
        rows, names = [], []
        for k, stain in enumerate(rng.choice(["Hoechst", "DNA1", "DAPI", "Histone H3"], n_nuclear, replace=False)):
            rows.append(np.eye(7)[k] * rng.uniform(0.6, 1.0))
            names.append(str(stain))
        for t in keep:
            rows.append(np.eye(7)[2 + CELL_TYPES.index(t)] * rng.uniform(0.3, 1.0))
            names.append(f"{MARKER_OF[t]}-like")
        for k in range(n_channels - len(rows)):
            row = np.zeros(7)
            kind = rng.integers(4)
            if kind == 0:  # a marker of two or three types
                row[2 + rng.choice(len(CELL_TYPES), int(rng.integers(2, 4)), replace=False)] = rng.uniform(0.3, 1.0)
            elif kind == 1:  # one type's marker with another's bleeding in
                a, b = rng.choice(len(CELL_TYPES), 2, replace=False)
                row[2 + a], row[2 + b] = rng.uniform(0.5, 1.0), rng.uniform(0.1, 0.4)
            elif kind == 2:  # a weak stain of every nucleus
                row[0] = rng.uniform(0.05, 0.3)
            rows.append(row)  # kind 3: background only
            names.append(f"marker {k + 1:02d}")
        order = np.r_[np.arange(n_nuclear), n_nuclear + rng.permutation(len(rows) - n_nuclear)]
        return cls(tuple(names[i] for i in order), np.asarray(rows, np.float32)[order])


@dataclass
class Simulation:
    """A simulated field: the 7-channel image and its ground truth (nucleus mask + `cell_type` per cell)."""

    tissue: Tissue
    cells: Cells


class _Layout(NamedTuple):
    """Placed cells: centre (y, x), type index, nucleus semi-axes, orientation (rad) and boundary harmonics."""

    centres: np.ndarray  # (n, 2) float
    types: np.ndarray  # (n,) int
    axes: np.ndarray  # (n, 2) major, minor semi-axis (px)
    angles: np.ndarray  # (n,) direction of the major axis, (dy, dx) = (sin, cos)
    harmonics: np.ndarray  # (n, 4, 2) amplitude and phase of boundary modes k = 2..5


class _Vessels(NamedTuple):
    """Vessel wall points (RECA1), sites where endothelial nuclei can sit, and lumen discs to keep free."""

    wall: np.ndarray  # (m, 2) points along both walls
    wall_weight: np.ndarray  # (m,) RECA1 level per wall point
    sites: np.ndarray  # (s, 2) positions on the wall
    site_angles: np.ndarray  # (s,) wall tangent at each site
    lumen: np.ndarray  # (l, 2) lumen centre points
    lumen_radius: np.ndarray  # (l,)


def simulate_tissue(
    shape: tuple[int, int] = (1024, 1024),
    seed: int = 0,
    params: SimParams | None = None,
    type_fractions: dict[str, float] | None = None,
    panel: MarkerPanel | None = None,
) -> Simulation:
    """One multiplexed field (PAPER_CHANNELS, or `panel`'s channels; uint16) with its true nuclei and cell types;
    same seed, same field."""
    params = params or SimParams()
    shape = _check_shape(shape)
    fractions = _check_fractions(type_fractions)
    rng = np.random.default_rng(seed)
    vessels = _draw_vessels(rng, shape, params)
    layout = _place_cells(rng, shape, params, fractions, vessels)
    drawn = _draw_nuclei(layout, shape, params)
    cells = _truth(drawn, layout)
    image = _render(rng, shape, params, layout, drawn, vessels, panel)
    tissue = Tissue(
        image,
        list(PAPER_CHANNELS if panel is None else panel.names),
        source=f"simulated field (seed {seed})",
        metadata={"seed": seed, "params": asdict(params), "type_fractions": fractions},
    )
    return Simulation(tissue, cells)


def simulate_cell_pool(
    n_per_type: int = 800, seed: int = 0, params: SimParams | None = None, field: int = 1024
) -> list[Simulation]:
    """Fields with seeds seed, seed+1, ... until every type has >= n_per_type cells away (50 px) from the borders."""
    if field <= 100:
        raise AgileInputError(f"field must be > 100 px so cells away from the border exist; got {field}.")
    counts = dict.fromkeys(CELL_TYPES, 0)
    sims: list[Simulation] = []
    per_field = field * field / 1e4 * (params or SimParams()).density * min(DEFAULT_TYPE_FRACTIONS.values())
    max_fields = 20 + int(5 * n_per_type / max(per_field, 1.0))
    while min(counts.values()) < n_per_type:
        if len(sims) >= max_fields:
            raise AgileInputError(
                f"After {len(sims)} fields some types are still short of {n_per_type} cells ({counts}); "
                "raise `field` or the density, or ask for fewer cells."
            )
        sim = simulate_tissue((field, field), seed + len(sims), params)
        for name, n in inner_cells(sim).cells.table["cell_type"].value_counts().items():
            counts[name] += int(n)
        sims.append(sim)
    return sims


# ---------------------------------------------------------------- input checks


def inner_cells(sim: Simulation, margin: int = 50) -> Simulation:
    """The field with only its cells at least `margin` px from the border (whole 100 px patches)."""
    t, (rows, cols) = sim.cells.table, sim.tissue.shape
    inner = (t.y >= margin) & (t.x >= margin) & (t.y < rows - margin) & (t.x < cols - margin)
    return Simulation(sim.tissue, sim.cells.subset(t.index[inner]))


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 32:
        raise AgileInputError(f"shape must be (rows, columns), each >= 32 px; got {shape}.")
    return int(shape[0]), int(shape[1])


def _check_fractions(type_fractions: dict[str, float] | None) -> dict[str, float]:
    fractions = dict(DEFAULT_TYPE_FRACTIONS if type_fractions is None else type_fractions)
    unknown = sorted(set(fractions) - set(CELL_TYPES))
    if unknown:
        raise AgileInputError(f"Unknown cell types {unknown} in type_fractions; known: {list(CELL_TYPES)}.")
    values = np.array([fractions.get(t, 0.0) for t in CELL_TYPES], dtype=float)
    if (values < 0).any() or not np.isfinite(values).all() or values.sum() <= 0:
        raise AgileInputError(f"type_fractions must be >= 0 and not all zero; got {fractions}.")
    return {t: float(v) for t, v in zip(CELL_TYPES, values / values.sum())}


# ---------------------------------------------------------------- vessels and placement


def _draw_vessels(rng: np.random.Generator, shape: tuple[int, int], params: SimParams) -> _Vessels:
    """Smooth random in-plane capillaries (two wall lines) and capillary cross-sections (rings)."""
    area = shape[0] * shape[1] / 1e6
    parts = [_segment(rng, shape) for _ in range(rng.poisson(params.vessel_density * area))]
    parts += [_ring(rng, shape) for _ in range(rng.poisson(params.ring_density * area))]
    if not parts:
        e2, e1 = np.zeros((0, 2)), np.zeros(0)
        return _Vessels(e2, e1, e2, e1, e2, e1)
    cat = [np.concatenate(p) for p in zip(*parts)]
    return _Vessels(cat[0], cat[1] * params.vessel_level, *cat[2:])


def _segment(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    length = int(rng.uniform(300, 900))
    radius = float(np.clip(rng.lognormal(np.log(6.0), 0.3), 3.5, 14.0))
    turn = ndimage.gaussian_filter1d(rng.normal(0, 1, length), 40) * 0.08
    theta = rng.uniform(0, 2 * np.pi) + np.cumsum(turn)
    step = np.stack([np.sin(theta), np.cos(theta)], 1)
    centre = rng.uniform(0, 1, 2) * shape + np.cumsum(step, 0) - step.sum(0) / 2
    normal = np.stack([step[:, 1], -step[:, 0]], 1)
    side = np.repeat([[1.0], [-1.0]], length, 0)
    sites = np.concatenate([centre, centre]) + side * radius * np.concatenate([normal, normal])
    level = rng.lognormal(0, 0.3) * (1 + 0.3 * ndimage.gaussian_filter1d(rng.normal(0, 3, length), 40))
    level = np.clip(np.concatenate([level, level]), 0.1, None)
    angles = np.concatenate([theta, theta])
    return sites, level, sites, angles, centre, np.full(length, radius)


def _ring(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    radius = rng.uniform(4.0, 8.0)
    centre = rng.uniform(0, 1, 2) * shape
    phi = np.linspace(0, 2 * np.pi, int(2 * np.pi * radius), endpoint=False)
    wall = centre + radius * np.stack([np.sin(phi), np.cos(phi)], 1)
    level = np.full(len(phi), rng.lognormal(0, 0.3))
    return wall, level, wall, phi + np.pi / 2, centre[None], np.array([radius])


def _place_cells(
    rng: np.random.Generator,
    shape: tuple[int, int],
    params: SimParams,
    fractions: dict[str, float],
    vessels: _Vessels,
) -> _Layout:
    """Hard-core placement with per-type quotas; endothelial nuclei on vessel walls, oligodendrocyte satellites."""
    n = rng.poisson(params.density * shape[0] * shape[1] / 1e4)
    quota = rng.multinomial(n, [fractions[t] for t in CELL_TYPES])
    on_field = np.all((vessels.sites >= 0) & (vessels.sites < shape), axis=1)
    vessels = vessels._replace(sites=vessels.sites[on_field], site_angles=vessels.site_angles[on_field])
    if len(vessels.sites) == 0:
        quota[_ENDO] = 0
    cand = _candidates(rng, shape, params, quota * 4, vessels)
    keep = _hard_core(cand, quota, params.min_distance, vessels)
    layout = _Layout(*(a[keep] for a in cand))
    return _add_satellites(rng, layout, params.satellite_fraction)


def _candidates(
    rng: np.random.Generator, shape: tuple[int, int], params: SimParams, counts: np.ndarray, vessels: _Vessels
) -> _Layout:
    """Candidate cells (endothelial first, on vessel sites; the rest shuffled) with their nucleus shapes."""
    n_endo = counts[_ENDO]
    others = np.repeat(np.delete(np.arange(len(CELL_TYPES)), _ENDO), np.delete(counts, _ENDO))
    types = np.concatenate([np.full(n_endo, _ENDO), rng.permutation(others)]).astype(np.int64)
    n = len(types)
    site = rng.integers(0, max(len(vessels.sites), 1), n_endo)
    on_wall = vessels.sites[site] if n_endo else np.zeros((0, 2))
    centres = np.concatenate([on_wall, _clustered(rng, shape, params, n - n_endo)])
    angles = np.concatenate([vessels.site_angles[site] if n_endo else np.zeros(0), rng.uniform(0, np.pi, n - n_endo)])
    morph = np.array(_MORPH)[types]
    size = params.nucleus_scale * rng.lognormal(0, params.size_spread, n)
    aspect = rng.lognormal(0, 0.08, n)
    axes = np.stack([morph[:, 0] * size * np.sqrt(aspect), morph[:, 1] * size / np.sqrt(aspect)], 1)
    axes = np.maximum(axes, 2.0)
    amp = rng.normal(0, 1, (n, 4)) * morph[:, 2:3] / np.sqrt(np.arange(2, 6))
    harmonics = np.stack([amp, rng.uniform(0, 2 * np.pi, (n, 4))], 2)
    return _Layout(centres, types, axes, angles, harmonics)


def _clustered(rng: np.random.Generator, shape: tuple[int, int], params: SimParams, n: int) -> np.ndarray:
    """n uniform positions ordered so that denser parts of the section (a smooth random field) tend to come first."""
    yx = rng.uniform(0, 1, (n, 2)) * shape
    weight = np.exp(params.density_variation * _smooth_field(rng, shape, 300.0)[tuple(yx.astype(int).T)])
    return yx[np.argsort(-np.log(rng.random(n)) / weight)]  # weighted random order (Efraimidis-Spirakis)


def _hard_core(
    cand: _Layout, quota: np.ndarray, min_distance: float, vessels: _Vessels, endo_spacing: float = 55.0
) -> np.ndarray:
    """Candidates accepted in order: quota left, >= min_distance x summed radii from the accepted, not in a lumen."""
    radius = np.sqrt(cand.axes[:, 0] * cand.axes[:, 1])
    free = np.ones(len(radius), bool)
    if len(vessels.lumen):
        dist, idx = cKDTree(vessels.lumen).query(cand.centres)
        free = (cand.types == _ENDO) | (dist > vessels.lumen_radius[idx] + 0.5 * radius)
    tree = cKDTree(cand.centres)
    neighbours = tree.query_ball_point(cand.centres, max(min_distance * 2 * radius.max(initial=0.0), endo_spacing))
    left = quota.copy()
    accepted = np.zeros(len(radius), bool)
    for i in np.flatnonzero(free):
        t = cand.types[i]
        if left[t] == 0:
            continue
        nb = np.asarray(neighbours[i], dtype=np.int64)
        nb = nb[accepted[nb]]
        d = np.hypot(*(cand.centres[nb] - cand.centres[i]).T)
        need = min_distance * (radius[nb] + radius[i])
        if t == _ENDO:  # endothelial nuclei spread along the vessels
            need = np.where(cand.types[nb] == _ENDO, np.maximum(need, endo_spacing), need)
        if np.all(d >= need):
            accepted[i] = True
            left[t] -= 1
    return np.flatnonzero(accepted)


def _add_satellites(rng: np.random.Generator, layout: _Layout, fraction: float) -> _Layout:
    """Move a fraction of oligodendrocytes against their nearest neuron (within 80 px), as perineuronal satellites."""
    neurons = np.flatnonzero(layout.types == _NEURON)
    oligos = np.flatnonzero((layout.types == _OLIGO) & (rng.random(len(layout.types)) < fraction))
    if len(neurons) == 0 or len(oligos) == 0:
        return layout
    dist, j = cKDTree(layout.centres[neurons]).query(layout.centres[oligos], distance_upper_bound=80.0)
    oligos, host = oligos[np.isfinite(dist)], neurons[j[np.isfinite(dist)]]
    away = layout.centres[oligos] - layout.centres[host]
    away /= np.maximum(np.hypot(*away.T), 1e-6)[:, None]
    reach = layout.axes[host].mean(1) + layout.axes[oligos].mean(1)
    centres = layout.centres.copy()
    centres[oligos] = layout.centres[host] + away * reach[:, None] * 0.9
    angles = layout.angles.copy()
    angles[oligos] = np.arctan2(away[:, 0], away[:, 1]) + np.pi / 2  # flattened against the neuron
    return layout._replace(centres=centres, angles=angles)


# ---------------------------------------------------------------- nuclei, truth


def _window(centre: np.ndarray, half: int, shape: tuple[int, int]) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Slices of a (2 half + 1) window around `centre`, clipped to the image, and its pixel offsets from the centre."""
    cy, cx = np.round(centre).astype(int)
    y0, x0 = max(cy - half, 0), max(cx - half, 0)
    y1, x1 = max(min(cy + half + 1, shape[0]), y0), max(min(cx + half + 1, shape[1]), x0)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(centre[0])
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(centre[1])
    return slice(y0, y1), slice(x0, x1), dy, dx


def _rho(layout: _Layout, i: int, dy: np.ndarray, dx: np.ndarray, stretch_x: float) -> np.ndarray:
    """Normalised radius of each window pixel w.r.t. nucleus i's boundary (< 1 inside)."""
    a, b = layout.axes[i]
    c, s = np.cos(layout.angles[i]), np.sin(layout.angles[i])
    dx = dx / stretch_x
    u = dx * c + dy * s
    v = dy * c - dx * s
    z = (u + 1j * v) / np.maximum(np.hypot(u, v), 1e-6)  # e^(i phi)
    wobble, zk = 1.0, z
    for amp, ph in layout.harmonics[i]:  # modes k = 2..5: amp cos(k phi + ph)
        zk = zk * z
        wobble = wobble + amp * (zk * np.exp(1j * ph)).real
    return np.sqrt((u / a) ** 2 + (v / b) ** 2) / wobble


class _Drawn(NamedTuple):
    labels: np.ndarray  # (Y, X) int32, id = layout index + 1, every placed cell (the top nucleus per pixel)
    drawn_area: np.ndarray  # (n,) pixels each nucleus covered when drawn
    cover: list  # per nucleus (rows, cols, (h, w) float32 stain weight: 1 inside, falling to 0 over the rim)


def _draw_nuclei(layout: _Layout, shape: tuple[int, int], params: SimParams) -> _Drawn:
    """Paint nuclei, largest first, so small nuclei lying over large ones stay visible; keep each one's soft footprint."""
    labels = np.zeros(shape, np.int32)
    area = np.zeros(len(layout.types), np.int64)
    cover: list = [None] * len(layout.types)
    edge = np.float32(max(params.nucleus_edge, 1e-3))
    for i in np.argsort(-layout.axes.prod(1), kind="stable"):
        half = int(np.ceil(layout.axes[i, 0] * 1.5 * max(params.stretch_x, 1))) + 1
        ys, xs, dy, dx = _window(layout.centres[i], half, shape)
        rho = _rho(layout, i, dy, dx, params.stretch_x)
        inside = rho < 1
        labels[ys, xs][inside] = i + 1
        area[i] = inside.sum()
        # rho grows linearly along each ray from the centre, so the boundary lies at r / rho: depth = r (1 / rho - 1)
        depth = np.hypot(dy, dx) * (1 / np.maximum(rho, 1e-6) - 1)
        weight = np.clip((depth + 0.5) / edge, 0, 1).astype(np.float32)  # ~ pixel coverage, then a soft rim
        rows, cols = np.flatnonzero(weight.any(1)), np.flatnonzero(weight.any(0))
        if len(rows):
            r, c = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
            cover[i] = (np.arange(ys.start, ys.stop)[r], np.arange(xs.start, xs.stop)[c], weight[r, c])
    return _Drawn(labels, area, cover)


def _truth(drawn: _Drawn, layout: _Layout, keep_fraction: float = 0.4, min_area: int = 30) -> Cells:
    """The truth table and mask: cells whose visible nucleus is a sliver (a detector would merge it) are left out."""
    labels = _largest_parts(drawn.labels)
    props = pd.DataFrame(regionprops_table(labels, properties=("label", "area", "centroid", "bbox")))
    idx = props["label"].to_numpy() - 1
    cy = np.clip(np.round(props["centroid-0"]).astype(int), 0, labels.shape[0] - 1)
    cx = np.clip(np.round(props["centroid-1"]).astype(int), 0, labels.shape[1] - 1)
    ok = (props["area"] >= np.maximum(min_area, keep_fraction * drawn.drawn_area[idx])) & (
        labels[cy, cx] == props["label"]
    )
    props = props[ok.to_numpy()].reset_index(drop=True)
    lut = np.zeros(len(layout.types) + 1, np.int32)
    lut[props["label"].to_numpy()] = np.arange(1, len(props) + 1)
    table = pd.DataFrame(
        {
            "id": np.arange(1, len(props) + 1),
            "y": props["centroid-0"].to_numpy(),
            "x": props["centroid-1"].to_numpy(),
            "area": props["area"].astype(np.int64).to_numpy(),
            "ymin": props["bbox-0"].to_numpy(),
            "xmin": props["bbox-1"].to_numpy(),
            "ymax": props["bbox-2"].to_numpy(),
            "xmax": props["bbox-3"].to_numpy(),
            "cell_type": np.array(CELL_TYPES)[layout.types[props["label"].to_numpy() - 1]],
        }
    )
    return Cells(table, lut[labels])


def _largest_parts(labels: np.ndarray) -> np.ndarray:
    """`labels` with every nucleus cut in pieces by another reduced to its largest piece."""
    out = labels.copy()
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        own = labels[sl] == i
        parts, n = ndimage.label(own)
        if n > 1:
            sizes = np.bincount(parts.ravel())[1:]
            out[sl][own & (parts != 1 + sizes.argmax())] = 0
    return out


# ---------------------------------------------------------------- rendering


def _render(
    rng: np.random.Generator,
    shape: tuple[int, int],
    params: SimParams,
    layout: _Layout,
    drawn: _Drawn,
    vessels: _Vessels,
    panel: MarkerPanel | None = None,
) -> np.ndarray:
    """The (7, Y, X) uint16 image (or `panel`'s channels): biology in expression units, then optics and camera."""
    expr, stained = _expression(rng, layout.types, params)
    signal = _nuclear_signal(rng, shape, params, layout, drawn, expr)
    signal[2:] += _cell_bodies(shape, params, layout, expr * stained)
    signal[2 + _ASTRO] += _processes(rng, shape, params, layout, expr, _ASTRO)
    signal[2 + _MICROGLIA] += _processes(rng, shape, params, layout, expr, _MICROGLIA)
    signal[2 + _ENDO] += _splat(vessels.wall, vessels.wall_weight, shape)
    if panel is not None:
        signal = np.tensordot(panel.weights, signal, 1).astype(np.float32)
    return _camera(rng, params, _optics(rng, params, signal))


def _expression(rng: np.random.Generator, types: np.ndarray, params: SimParams) -> tuple[np.ndarray, np.ndarray]:
    """(n, 5) marker levels (positives ~1, some negatives nonspecific, the rest near 0) and which cells are stained."""
    n, k = len(types), len(_MARKERS)
    positive = types[:, None] == np.arange(k)[None, :]
    nonspecific = ~positive & (rng.random((n, k)) < params.nonspecific_rate)
    log_level = np.where(
        positive,
        0.0,
        np.where(nonspecific, (1 - params.expression_overlap) * np.log(0.08), np.log(max(params.negative_level, 1e-6))),
    )
    stained = positive | nonspecific
    spread = np.where(stained, params.expression_spread, 0.3)
    return np.exp(log_level + spread * rng.normal(0, 1, (n, k))).astype(np.float32), stained


def _nuclear_signal(
    rng: np.random.Generator,
    shape: tuple[int, int],
    params: SimParams,
    layout: _Layout,
    drawn: _Drawn,
    expr: np.ndarray,
) -> np.ndarray:
    """(7, Y, X) float32: DAPI, Histones and nuclear markers with chromatin texture, plus neuropil background.

    Stains are fluorescent, so where nuclei overlap in the section their signals add: each nucleus lays its own
    level x its own texture (a randomly shifted piece of the texture fields) over its soft footprint.
    """
    n = len(layout.types)
    dapi = np.array(_MORPH)[layout.types, 4] * rng.lognormal(0, 0.2, n)
    histones = dapi * rng.lognormal(0, 0.15, n)
    level = np.empty((n, 2 + len(_MARKERS)), np.float32)
    level[:, 0], level[:, 1] = dapi, histones
    level[:, 2:] = expr * _LOCALISATION[:, 0]
    grain = [_texture(rng, shape, params.texture) for _ in range(2)]
    shift = rng.integers(0, shape, (n, 2))
    signal = np.zeros((level.shape[1], *shape), np.float32)
    for i, footprint in enumerate(drawn.cover):
        if footprint is None:
            continue
        rows, cols, weight = footprint
        at = np.ix_((rows + shift[i, 0]) % shape[0], (cols + shift[i, 1]) % shape[1])
        g0, g1 = grain[0][at] * weight, grain[1][at] * weight
        window = signal[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        window[0] += level[i, 0] * g0
        window[1] += level[i, 1] * 0.5 * (g0 + g1)
        window[2:] += level[i, 2:, None, None] * (0.5 * (weight + g1))
    signal += params.autofluorescence * (0.7 + 0.3 * grain[1])
    return signal


def _texture(rng: np.random.Generator, shape: tuple[int, int], contrast: float) -> np.ndarray:
    """Chromatin-like texture around 1: smoothed grain plus sparse bright chromocentres."""
    grain = rng.standard_normal(shape, dtype=np.float32) * np.float32(contrast * 4.3)  # sd `contrast` once smoothed
    k = rng.poisson(shape[0] * shape[1] / 150)
    grain[rng.integers(0, shape[0], k), rng.integers(0, shape[1], k)] += 25.0 * contrast
    grain = ndimage.gaussian_filter(grain, 1.2)
    return np.clip(1.0 + grain, 0.1, None)


def _cell_bodies(shape: tuple[int, int], params: SimParams, layout: _Layout, expr: np.ndarray) -> np.ndarray:
    """(5, Y, X) soma and membrane signal: perinuclear NeuN, S100 / Iba1 somata (+ astrocyte haze), RECA1 membranes."""
    out = np.zeros((len(_MARKERS),) + shape, np.float32)
    soma_w = expr * _LOCALISATION[:, 1]
    ring_w = expr * _LOCALISATION[:, 2]
    haze_w = np.where(layout.types == _ASTRO, 0.15 * expr[:, _ASTRO], 0.0)
    for i, t in enumerate(layout.types):
        s = _MORPH[t].soma
        half = int(np.ceil(layout.axes[i, 0] * (3.0 if haze_w[i] else s + 0.3) * params.stretch_x)) + 1
        ys, xs, dy, dx = _window(layout.centres[i], half, shape)
        rho = _rho(layout, i, dy, dx, params.stretch_x)
        body = soma_w[i, :, None, None] * np.clip((s - rho) / 0.3 + 0.5, 0, 1)
        body += ring_w[i, :, None, None] * np.exp(-(((rho - 1.15) / 0.15) ** 2))
        if haze_w[i]:
            body[_ASTRO] += haze_w[i] * np.clip(1 - rho / 2.5, 0, None) ** 2
        out[:, ys, xs] += body
    return out


def _processes(
    rng: np.random.Generator, shape: tuple[int, int], params: SimParams, layout: _Layout, expr: np.ndarray, kind: int
) -> np.ndarray:
    """Branching processes of astrocytes (S100: thicker, bushy) or microglia (Iba1: thin, long, ramified)."""
    cells = np.flatnonzero(layout.types == kind)
    n_primary, length, weight, generations = (6, (20, 45), 1.5, 2) if kind == _ASTRO else (4, (30, 60), 1.0, 3)
    owner = np.repeat(cells, rng.poisson(n_primary * params.process_density, len(cells)))
    angle = rng.uniform(0, 2 * np.pi, len(owner))
    reach = layout.axes[owner, 0] * _MORPH[kind].soma
    start = layout.centres[owner] + reach[:, None] * np.stack([np.sin(angle), np.cos(angle)], 1)
    lengths = rng.uniform(*length, len(owner)) * params.nucleus_scale
    gain = weight * expr[owner, kind]
    points, weights = [], []
    for _ in range(generations):
        if len(owner) == 0:
            break
        pos, theta, frac = _walks(rng, start, angle, lengths)
        live = frac < 1
        points.append(pos[live])
        weights.append((gain[:, None] * (1 - 0.6 * frac))[live])
        parent = np.flatnonzero(rng.random(len(owner)) < 0.8)  # each walk spawns a branch with p = 0.8
        at = (rng.uniform(0.3, 0.8, len(parent)) * lengths[parent]).astype(int)
        start, owner = pos[parent, at], owner[parent]
        angle = theta[parent, at] + rng.choice([-1, 1], len(parent)) * rng.uniform(0.5, 1.1, len(parent))
        lengths, gain = lengths[parent] * rng.uniform(0.4, 0.7, len(parent)), gain[parent] * 0.7
    if not points:
        return np.zeros(shape, np.float32)
    return _splat(np.concatenate(points), np.concatenate(weights), shape)


def _walks(
    rng: np.random.Generator, start: np.ndarray, angle: np.ndarray, lengths: np.ndarray, turn: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Persistent random walks of unit steps: positions (n, L, 2), headings (n, L), fraction of own length (n, L)."""
    steps = int(np.ceil(lengths.max()))
    theta = angle[:, None] + np.cumsum(rng.normal(0, turn, (len(angle), steps)), 1)
    pos = start[:, None, :] + np.cumsum(np.stack([np.sin(theta), np.cos(theta)], 2), 1)
    return pos, theta, np.arange(steps)[None, :] / lengths[:, None]


def _splat(points: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sum `weights` at the nearest pixels of `points` (those inside the image)."""
    yx = np.round(points).astype(np.int64)
    inside = (yx[:, 0] >= 0) & (yx[:, 0] < shape[0]) & (yx[:, 1] >= 0) & (yx[:, 1] < shape[1])
    flat = yx[inside, 0] * shape[1] + yx[inside, 1]
    return np.bincount(flat, weights[inside], shape[0] * shape[1]).reshape(shape).astype(np.float32)


def _optics(rng: np.random.Generator, params: SimParams, signal: np.ndarray) -> np.ndarray:
    """Point-spread blur, per-channel stain variation, bleed-through into the next channel, uneven illumination."""
    shape = signal.shape[1:]
    for c in range(len(signal)):
        ndimage.gaussian_filter(signal[c], params.psf_sigma, output=signal[c])
        signal[c] *= np.exp(params.stain_variation * _smooth_field(rng, shape, 400.0))
    signal[1:] += params.bleed_through * signal[:-1].copy()
    signal *= 1.0 - params.illumination * 0.5 * (1.0 + _smooth_field(rng, shape, 700.0))
    return signal


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], length: float, waves: int = 6) -> np.ndarray:
    """A random field of unit variance varying over about `length` px: a sum of plane waves, as one matrix product."""
    k = rng.normal(0, 2 * np.pi / length, (2, waves))
    a = np.arange(shape[0])[:, None] * k[0] + rng.uniform(0, 2 * np.pi, waves)  # cos(a + b) = cos a cos b - sin a sin b
    b = np.arange(shape[1])[:, None] * k[1]
    rows = np.concatenate([np.cos(a), -np.sin(a)], 1).astype(np.float32)
    cols = np.concatenate([np.cos(b), np.sin(b)], 1).astype(np.float32)
    return (rows @ cols.T * np.float32(np.sqrt(2.0 / waves))).clip(-2.5, 2.5)


def _camera(rng: np.random.Generator, params: SimParams, signal: np.ndarray) -> np.ndarray:
    """Shot noise (Gaussian approximation of Poisson) and read noise, gain, offset, 16-bit counts."""
    np.maximum(signal, 0, out=signal)
    sd = np.sqrt(signal / np.float32(params.photons_per_unit) + np.float32(params.read_noise**2))
    signal += sd * rng.standard_normal(signal.shape, dtype=np.float32)
    signal *= np.float32(params.signal_counts)
    signal += np.float32(params.offset)
    return np.clip(signal, 0, 65535).astype(np.uint16)

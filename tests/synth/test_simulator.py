"""The tissue simulator: deterministic, truth matches the mask, markers where they belong, rat-brain geometry."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.synth.simulator import (
    CELL_TYPES,
    MARKER_OF,
    SimParams,
    simulate_cell_pool,
    simulate_tissue,
)


@pytest.fixture(scope="module")
def field():
    """One default 1024 x 1024 field, shared by the slower checks."""
    return simulate_tissue((1024, 1024), seed=0)


def test_same_seed_same_field_other_seed_other_field():
    a, b, c = (simulate_tissue((200, 260), seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.tissue.data, b.tissue.data)
    np.testing.assert_array_equal(a.cells.labels, b.cells.labels)
    assert a.cells.table.equals(b.cells.table)
    assert not np.array_equal(a.tissue.data, c.tissue.data)


def test_shapes_dtypes_and_channel_names():
    sim = simulate_tissue((200, 260), seed=1)
    assert sim.tissue.data.shape == (7, 200, 260) and sim.tissue.data.dtype == np.uint16
    assert sim.tissue.channel_names == list(PAPER_CHANNELS)
    assert sim.cells.labels.shape == (200, 260) and sim.cells.labels.dtype == np.int32
    assert set(sim.cells.table.cell_type) <= set(CELL_TYPES)
    assert list(sim.cells.table.columns[:8]) == ["id", "y", "x", "area", "ymin", "xmin", "ymax", "xmax"]


def test_a_field_too_small_to_hold_a_cell_is_simulated_empty():
    """The smallest fields allowed (32 px) often draw no cell at all: an empty truth, not an IndexError."""
    sims = [simulate_tissue((40, 40), seed=seed) for seed in range(4)]
    assert min(len(s.cells) for s in sims) == 0
    assert all(s.tissue.data.shape == (7, 40, 40) and s.cells.labels.max() == len(s.cells) for s in sims)


def test_truth_table_matches_the_mask(field):
    cells = field.cells
    t = cells.table
    assert t.id.min() == 1
    present = np.unique(cells.labels)
    np.testing.assert_array_equal(present[present > 0], np.sort(t.id.to_numpy()))
    np.testing.assert_array_equal(np.bincount(cells.labels.ravel())[t.id], t.area)
    cy, cx = np.round(t.y).astype(int), np.round(t.x).astype(int)
    np.testing.assert_array_equal(cells.labels[cy, cx], t.id)  # every centroid lies in its own nucleus
    boxes = ndimage.find_objects(cells.labels)
    for i in t.id[:50]:
        ys, xs = boxes[i - 1]
        assert (ys.start, xs.start, ys.stop, xs.stop) == tuple(t.loc[i, ["ymin", "xmin", "ymax", "xmax"]])


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_each_marker_is_brightest_in_its_own_cells(field, cell_type):
    t = field.cells.table
    # nucleus grown by 3 px so membrane markers (RECA1) are counted too
    grown = ndimage.grey_dilation(field.cells.labels, size=7)
    image = field.tissue.channel(MARKER_OF[cell_type]).astype(float)
    mean = np.asarray(ndimage.mean(image, grown, t.id))
    own = t.cell_type.to_numpy() == cell_type
    assert np.median(mean[own]) > 2 * np.median(mean[~own])
    for other in set(CELL_TYPES) - {cell_type}:
        assert mean[own].mean() > 1.5 * mean[t.cell_type.to_numpy() == other].mean()


def test_geometry_matches_the_rat_brain_facts(field):
    t = field.cells.table
    assert 3.0 <= len(t) / (1024 * 1024 / 1e4) <= 4.0  # 3.5 nuclei per 100 x 100 px
    yx = t[["y", "x"]].to_numpy()
    inner = (yx >= 60).all(1) & (yx < 1024 - 60).all(1)
    nn = cKDTree(yx).query(yx[inner], k=2)[0][:, 1]
    assert 23 <= np.median(nn) <= 31  # real: 27 px
    assert 25 <= np.median(t.xmax - t.xmin) <= 33  # real: 29 px
    counts = t.cell_type.value_counts(normalize=True)
    assert counts["neuron"] == pytest.approx(0.35, abs=0.07)
    assert counts["endothelial"] == pytest.approx(0.13, abs=0.06)


def test_type_fractions_are_obeyed_and_checked():
    sim = simulate_tissue((256, 256), seed=2, type_fractions={"neuron": 1.0, "microglia": 0.0})
    assert set(sim.cells.table.cell_type) == {"neuron"}
    with pytest.raises(AgileInputError, match="Unknown cell types"):
        simulate_tissue((64, 64), type_fractions={"pyramidal": 1.0})
    with pytest.raises(AgileInputError):
        simulate_tissue((64, 64), type_fractions={"neuron": 0.0})


def test_cell_pool_reaches_the_count_of_every_type():
    n, size = 15, 256
    sims = simulate_cell_pool(n_per_type=n, seed=5, field=size)
    assert [s.tissue.metadata["seed"] for s in sims] == list(range(5, 5 + len(sims)))
    counts = dict.fromkeys(CELL_TYPES, 0)
    for s in sims:
        t = s.cells.table
        inner = t[(t.y >= 50) & (t.x >= 50) & (t.y < size - 50) & (t.x < size - 50)]
        for k, v in inner.cell_type.value_counts().items():
            counts[k] += v
    assert min(counts.values()) >= n
    # one field fewer would not have been enough
    assert len(sims) == 1 or any(c - (sims[-1].cells.table.cell_type == k).sum() < n for k, c in counts.items())


def test_randomized_params_differ_but_stay_valid():
    base = SimParams()
    rng = np.random.default_rng(0)
    drawn = [base.randomized(rng) for _ in range(20)]
    assert len({p.nucleus_scale for p in drawn}) == 20
    assert all(0.69 <= p.nucleus_scale <= 1.41 and p.illumination <= 0.9 for p in drawn)
    assert base.randomized(rng, strength=0.0) == base
    sim = simulate_tissue((128, 128), seed=0, params=drawn[0])
    assert sim.tissue.metadata["params"] == asdict(drawn[0])


def test_bad_params_say_what_is_wrong():
    with pytest.raises(AgileInputError, match="density"):
        SimParams(density=-1.0)
    with pytest.raises(AgileInputError, match="expression_overlap"):
        SimParams(expression_overlap=1.5)
    with pytest.raises(AgileInputError, match="shape"):
        simulate_tissue((10, 10))


def test_expression_overlap_makes_negatives_brighter():
    """The difficulty knob: more overlap brings nonspecific negatives up towards the positives."""
    means = []
    for overlap in (0.0, 0.9):
        sim = simulate_tissue((512, 512), seed=3, params=SimParams(expression_overlap=overlap, nonspecific_rate=1.0))
        t = sim.cells.table
        olig2 = np.asarray(ndimage.mean(sim.tissue.channel("Olig2").astype(float), sim.cells.labels, t.id))
        own = (t.cell_type == "oligodendrocyte").to_numpy()
        means.append(np.median(olig2[~own]) / np.median(olig2[own]))
    assert means[1] > 2 * means[0]


def test_overlapping_nuclei_add_their_stain_and_touching_ones_dip():
    """Fluorescence adds where nuclei overlap; the soft rim leaves a dip between touching nuclei; mask shows the top one."""
    from napari_agile.synth.simulator import _draw_nuclei, _Layout, _nuclear_signal

    params = SimParams(texture=0.0, autofluorescence=0.0, stretch_x=1.0)
    centres = np.array([[40.0, 40.0], [40.0, 52.0], [40.0, 120.0], [40.0, 140.0]])  # overlapping pair, touching pair
    layout = _Layout(centres, np.zeros(4, int), np.full((4, 2), 10.0), np.zeros(4), np.zeros((4, 4, 2)))
    drawn = _draw_nuclei(layout, (80, 180), params)
    dapi = _nuclear_signal(np.random.default_rng(0), (80, 180), params, layout, drawn, np.zeros((4, 5), np.float32))[0]
    assert dapi[40, 46] == pytest.approx(dapi[40, 33] + dapi[40, 59], rel=1e-5)  # overlap = sum of both levels
    assert dapi[40, 130] < 0.8 * min(dapi[40, 125], dapi[40, 135])  # touching: a dip at the shared boundary
    assert drawn.labels[40, 46] in (1, 2) and tuple(drawn.labels[40, [125, 135, 100]]) == (3, 4, 0)

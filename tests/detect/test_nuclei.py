"""detect_nuclei: seams, the real-image crop, errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.measure import regionprops

from napari_agile.detect.nuclei import (
    DEFAULT_DIAMETER,
    cells_from_labels,
    detect_nuclei,
    estimate_diameter,
    estimate_nuclei,
    open_mask,
)
from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import Tissue

DATA = Path(__file__).resolve().parents[1] / "data"


def _f1(pred, truth, radius=10.0):
    d = np.linalg.norm(pred[:, None] - truth[None], axis=2)
    d[d > radius] = 1e6
    i, j = linear_sum_assignment(d)
    tp = (d[i, j] <= radius).sum()
    return 2 * tp / (len(pred) + len(truth))


def _touching_blobs(shape=(600, 600), seed=0):
    """Elliptical nuclei of varying brightness on a square lattice with jitter, many touching; plus noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = np.array([(y, x) for y in range(15, shape[0] - 5, 22) for x in range(15, shape[1] - 5, 22)], float)
    centres += rng.uniform(-3, 3, centres.shape)
    for y, x in centres:
        a, b = rng.uniform(9, 12, 2)
        r = np.sqrt(((yy - y) / a) ** 2 + ((xx - x) / b) ** 2)
        np.maximum(img, np.clip((1 - r) * 3, 0, 1) * rng.uniform(0.5, 1.5), out=img)
    img = img * 1000 + 200 + rng.normal(0, 20, shape)
    return Tissue(np.clip(img, 0, 65535).astype(np.uint16)[None], ["DAPI"]), centres


def test_tiled_equals_untiled_at_seams():
    tissue, centres = _touching_blobs()
    whole = detect_nuclei(tissue, tile=1024)
    tiled = detect_nuclei(tissue, tile=128, overlap=64)
    assert len(whole) == len(tiled) >= 0.97 * len(centres)
    a, b = whole.centroids, tiled.centroids
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    assert d.min(axis=1).max() <= 1.0 and d.min(axis=0).max() <= 1.0
    assert np.array_equal(tiled.ids, np.arange(1, len(tiled) + 1))
    assert set(np.unique(tiled.labels)) == {0, *tiled.ids}


def test_table_matches_labels():
    tissue, _ = _touching_blobs((200, 200))
    cells = detect_nuclei(tissue)
    row = cells.table.iloc[0]
    ys, xs = np.nonzero(cells.labels == row.id)
    assert row.area == len(ys) and row.ymin == ys.min() and row.xmax == xs.max() + 1
    assert abs(row.y - ys.mean()) < 0.6 and abs(row.x - xs.mean()) < 0.6


def test_real_crop_f1():
    img = tifffile.imread(DATA / "nuclei_crop_img.tif")
    truth = np.array([r.centroid for r in regionprops(tifffile.imread(DATA / "nuclei_crop_mask.tif"))])
    cells = detect_nuclei(Tissue(img[None], ["DAPI"]))
    assert _f1(cells.centroids, truth) >= 0.90  # measured 0.957 on this crop (0.963 on the full 512² image)


def test_cells_from_a_mask_made_elsewhere_run_a_session(tmp_path):
    from napari_agile.engine.model_file import AgileModel
    from napari_agile.engine.network import ModelConfig, init_params
    from napari_agile.session import Session

    mask = tifffile.imread(DATA / "nuclei_crop_mask.tif")  # the real crop's hand-made instance mask
    cells = cells_from_labels(mask)
    props = {r.label: r for r in regionprops(mask)}
    assert sorted(cells.ids) == sorted(props) and cells.labels is not None
    for cell_id, row in cells.table.iterrows():
        r = props[cell_id]
        assert row.area == r.area and (row.ymin, row.xmin, row.ymax, row.xmax) == r.bbox
        np.testing.assert_allclose((row.y, row.x), r.centroid)
    cfg = ModelConfig(channels=("DAPI",), centre_block="nucleus")  # reads each cell's marker inside this mask
    img = tifffile.imread(DATA / "nuclei_crop_img.tif")
    session = Session(Tissue(img[None], ["DAPI"]), cells, AgileModel(cfg, init_params(cfg)), store=tmp_path / "s")
    assert len(session.predict()) == len(props)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 8, 8), np.int32), "2D"),
        (np.ones((8, 8), np.float32), "integer id per nucleus"),
        (np.ones((8, 8), bool), "label its nuclei"),
        (np.zeros((8, 8), np.int32), "labels no pixel"),
        (np.full((8, 8), -1, np.int64), "renumber"),
    ],
)
def test_a_mask_that_is_not_an_instance_mask_is_a_clear_error(bad, message):
    with pytest.raises(AgileInputError, match=message):
        cells_from_labels(bad)


def test_no_nuclear_channel_is_a_clear_error():
    tissue = Tissue(np.zeros((2, 64, 64), np.uint16), ["NeuN", "S100"])
    with pytest.raises(AgileInputError, match="channels="):
        detect_nuclei(tissue)
    assert len(detect_nuclei(tissue, channels=["NeuN"])) == 0


@pytest.mark.parametrize("name", ["Hoechst 33342", "DNA1", "Ir191", "dsDNA"])
def test_nuclear_stains_of_other_platforms_are_found_by_name(name):
    """Detection picks the nuclear stain by name as the Session does: Hoechst, IMC's DNA1/Ir191, MIBI's dsDNA."""
    tissue, centres = _touching_blobs((200, 200))
    marker = np.zeros_like(np.asarray(tissue.data))
    tissue = Tissue(np.concatenate([marker, np.asarray(tissue.data)]), ["CD3", name])
    assert len(detect_nuclei(tissue)) >= 0.8 * len(centres)


def test_progress_reports_every_tile():
    tissue, _ = _touching_blobs((300, 300))
    calls = []
    detect_nuclei(tissue, tile=128, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 9) for i in range(1, 10)]


def test_nicked_textured_nucleus_is_not_split():
    """Dark nucleoplasm nicks at the rim (chromatin texture) must not cut one elongated nucleus into two."""
    yy, xx = np.mgrid[:80, :80]
    img = np.where(((yy - 40) / 7.5) ** 2 + ((xx - 40) / 18.0) ** 2 < 1, 1000.0, 0.0)
    img[33:37, 36:39] = 300.0  # nick from the top rim, halfway along
    img[44:48, 42:45] = 300.0  # and one from the bottom rim
    # one nucleus is no sample of a section's typical width: given, as a user who knows it would
    cells = detect_nuclei(Tissue((img + 200).astype(np.uint16)[None], ["DAPI"]), diameter=24)
    assert len(cells) == 1


def _round_and_elongated_nuclei(seed, bend):
    """36 textured nuclei 80 px apart: a third 44 x 12 px (as endothelial cells and microglia have) at random angles,
    bent by `bend`, the rest round, 24 px wide."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:480, :480]
    img = np.zeros((480, 480), np.float32)
    for i, y in enumerate(range(40, 480, 80)):
        for j, x in enumerate(range(40, 480, 80)):
            angle = rng.uniform(0, np.pi)
            u = (yy - y) * np.cos(angle) + (xx - x) * np.sin(angle)
            v = (xx - x) * np.cos(angle) - (yy - y) * np.sin(angle) - bend * u**2 / 22
            a, b = (22, 6) if (i + j) % 3 == 0 else (12, 12)
            img[(u / a) ** 2 + (v / b) ** 2 < 1] = 1000
    texture = ndi.gaussian_filter(rng.normal(0, 1, img.shape), 1.5)
    img = img * (1 + 0.15 * texture / texture.std()) + 200 + rng.normal(0, 20, img.shape)
    return Tissue(np.clip(img, 0, 65535).astype(np.uint16)[None], ["DAPI"])


def test_elongated_textured_nuclei_are_not_cut_into_pieces():
    """The distance watershed cuts a long nucleus at every bump of its ridge; touching pieces no larger together
    than 1.4 typical nuclei are joined."""
    found = [len(detect_nuclei(_round_and_elongated_nuclei(seed, bend))) for seed in range(3) for bend in (0, 0.5)]
    assert np.mean(found) <= 1.1 * 36 and min(found) >= 36


def _islet(seed=0):
    """50 sparse dome-shaped nuclei 13 px wide on the left, and on the right a packed islet of 255 more, 10-11 px
    apart, whose boundaries stay above half their maximum: no background between them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:400, :400]
    img = np.zeros((400, 400), np.float32)
    sparse = [(y, x) for y in range(20, 400, 40) for x in range(20, 200, 40)]
    packed = [(y + (x // 11 % 2) * 5.5, x) for y in range(110, 290, 11) for x in range(230, 380, 10)]
    centres = np.array(sparse + packed, float) + rng.uniform(-1, 1, (len(sparse) + len(packed), 2))
    for y, x in centres:
        r2 = (yy - y) ** 2 + (xx - x) ** 2
        np.maximum(img, np.sqrt(np.clip(1 - r2 / 6.5**2, 0, 1)) * rng.uniform(0.8, 1.2), out=img)
    img = img * 1000 + 200 + rng.normal(0, 15, img.shape)
    return Tissue(np.clip(img, 0, 65535).astype(np.uint16)[None], ["DAPI"]), centres, len(sparse)


def test_a_packed_islet_is_parted_into_its_nuclei():
    """No background parts packed nuclei, so the mask is one blob a few regions wide (4 regions for 255 nuclei
    before); a region far larger than a typical nucleus is split at the stain's maxima, and the sparse ones stay."""
    tissue, centres, n_sparse = _islet()
    cells = detect_nuclei(tissue)
    in_islet = cells.centroids[:, 1] > 220
    assert (~in_islet).sum() == n_sparse
    assert in_islet.sum() >= 0.6 * (len(centres) - n_sparse)
    assert _f1(cells.centroids, centres, radius=4) >= 0.65


def test_a_clump_with_no_stain_maximum_of_its_own_keeps_its_label():
    """A non-convex region whose stain rises towards a brighter neighbour holds no maximum to split at: it stays."""
    from napari_agile.detect.nuclei import _split_clumps

    lab = np.zeros((40, 40), np.int32)
    lab[5:35, 5:12] = lab[28:35, 5:35] = 1  # an L: large and not convex
    lab[20:26, 14:20] = 2  # a small bright neighbour beside it
    stain = np.where(lab == 2, 10.0, 1.0) + np.linspace(0, 1, 40)[None]  # rising towards the neighbour
    split = _split_clumps(lab, stain, typical=12.5, window=41)
    assert np.array_equal(split, lab)


def test_large_nuclei_get_enough_context_and_arguments_are_checked():
    tissue, _ = _touching_blobs()
    assert len(detect_nuclei(tissue, diameter=80, channels="DAPI")) > 0  # overlap follows the diameter; a name
    with pytest.raises(AgileInputError, match="overlap \\(64\\) must be at least"):
        detect_nuclei(tissue, diameter=80, overlap=64)
    with pytest.raises(AgileInputError, match="tile must be a positive"):
        detect_nuclei(tissue, tile=0)


def _disks(amplitude, spacing, radius=10, shape=(512, 512), noise=20.0, seed=0):
    """Uniform disk nuclei `amplitude` noise sds above a 500 background on a jittered lattice (spacing 21 at radius
    10: 71% of the pixels are nucleus, so the median pixel is nucleus), with Gaussian pixel noise; uint16."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[radius + 2 : shape[0] - radius : spacing, radius + 2 : shape[1] - radius : spacing]
    centres = np.stack([ys.ravel(), xs.ravel()], axis=1) + rng.uniform(-2, 2, (ys.size, 2))
    inside = np.zeros(shape, bool)
    for y, x in centres:  # each disk painted in its own window
        y0, x0 = max(int(y) - radius - 1, 0), max(int(x) - radius - 1, 0)
        yy, xx = np.mgrid[y0 : int(y) + radius + 2, x0 : int(x) + radius + 2]
        inside[y0 : y0 + yy.shape[0], x0 : x0 + yy.shape[1]] |= (yy - y) ** 2 + (xx - x) ** 2 <= radius * radius
    img = 500 + amplitude * noise * inside + rng.normal(0, noise, shape)
    return Tissue(img.astype(np.uint16)[None], ["DAPI"]), centres


def _noise(kind, level, offset, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "poisson":
        return (offset + rng.poisson(level, (512, 512))).astype(dtype)
    return (offset + rng.normal(0, level, (512, 512))).astype(dtype)


@pytest.mark.parametrize(
    "img",
    [
        _noise("gauss", 1.0, 100, np.uint16),  # an sCMOS camera's read noise, a few grey levels
        _noise("gauss", 30.0, 2000, np.uint16),
        _noise("gauss", 0.01, 0.0, np.float32),  # scaled to [0, 1], around zero
        _noise("gauss", 5.0, 300, np.float64),
        _noise("poisson", 0.3, 0, np.uint16),  # photon counting, mostly zeros
        _noise("poisson", 2, 0, np.uint16),  # shot noise of a dim field
        _noise("poisson", 40, 100, np.uint16),
        _noise("poisson", 1000, 0, np.float32),
        np.full((512, 512), 1000, np.uint16),  # a blank, constant slide
        np.zeros((512, 512), np.float32),
    ],
    ids=[
        "gauss1+100",
        "gauss30+2000",
        "gauss0.01f",
        "gauss5+300f",
        "poisson0.3",
        "poisson2",
        "poisson40+100",
        "poisson1000f",
        "constant",
        "zeros",
    ],
)
@pytest.mark.parametrize("diameter", [24.0, 12.0])
def test_noise_without_nuclei_finds_none_and_says_so(img, diameter):
    """Off the tissue or on an empty channel Otsu still splits the noise; that split is no nucleus."""
    with pytest.warns(UserWarning, match="No nuclei found in \\['DAPI'\\]"):
        assert len(detect_nuclei(Tissue(img[None], ["DAPI"]), diameter=diameter)) == 0


@pytest.mark.parametrize("amplitude, spacing, radius", [(3, 40, 10), (3, 21, 10), (5, 21, 10), (3, 11, 5)])
def test_dim_and_dense_sections_keep_their_nuclei(amplitude, spacing, radius):
    """Nuclei only 3-5 noise sds bright, or covering most of the section (median pixel inside nuclei), are found."""
    tissue, centres = _disks(amplitude, spacing, radius)
    assert _f1(detect_nuclei(tissue, diameter=2.4 * radius).centroids, centres) >= 0.95


def test_a_densely_packed_simulated_section_keeps_its_nuclei():
    from napari_agile.synth.simulator import SimParams, simulate_tissue

    sim = simulate_tissue((512, 512), seed=1, params=SimParams(density=12.0))
    assert _f1(detect_nuclei(sim.tissue, diameter=24).centroids, sim.cells.centroids) >= 0.7
    assert _f1(detect_nuclei(sim.tissue).centroids, sim.cells.centroids) >= 0.65  # width measured in the clumps


@pytest.mark.parametrize("radius, spacing", [(5, 30), (5, 11), (10, 21), (18, 40)])
def test_the_nucleus_width_is_measured_on_the_section(radius, spacing):
    """Sparse and touching disks of 10-36 px: the measured width is theirs, and detection at it finds them, where
    the 24 px default merges touching small ones."""
    tissue, centres = _disks(5, spacing, radius, shape=(512, 512))
    assert estimate_diameter(tissue) == pytest.approx(2 * radius, rel=0.2, abs=2)  # smoothing widens by a pixel
    assert _f1(detect_nuclei(tissue).centroids, centres) >= 0.95
    if radius == 5 and spacing == 11:
        assert _f1(detect_nuclei(tissue, diameter=24).centroids, centres) < 0.85


@pytest.mark.parametrize("spacing", [30, 21])
def test_the_count_estimated_before_a_detection_is_a_floor_on_the_nuclei_found(spacing):
    """Sparse disks count one blob each; touching ones (71 % of the pixels) merge into clumps that count once: the
    estimate stays at or under the true number, and not far under where nuclei stand apart."""
    tissue, centres = _disks(5, spacing, 10, shape=(1024, 1024))
    guess = estimate_nuclei(tissue)
    assert guess.at_least <= len(centres) * 1.05  # the sampled tiles' density, scaled: a little noise either way
    if spacing == 30:
        assert guess.at_least >= 0.8 * len(centres)
    assert guess.diameter == estimate_diameter(tissue)


def test_hot_pixels_leave_the_detection_as_it_was():
    """Lone detector spikes at the type's maximum (IMC, MIBI) in a dim nuclear stain: without care they lift the
    nucleus floor above real nuclei (recall fell to 0.2 with 20 of them) and count as nuclei themselves."""
    tissue, centres = _disks(5, 30, 10)
    clean = detect_nuclei(tissue)
    spiked = np.asarray(tissue.data).copy()
    rng = np.random.default_rng(1)
    spiked[0, rng.integers(0, 512, 100), rng.integers(0, 512, 100)] = 65535
    hot = detect_nuclei(Tissue(spiked, ["DAPI"]))
    assert _f1(clean.centroids, centres) >= 0.95
    assert len(hot) == len(clean) and _f1(hot.centroids, clean.centroids, radius=1.0) == 1.0
    assert estimate_diameter(Tissue(spiked, ["DAPI"])) == pytest.approx(estimate_diameter(tissue), abs=0.5)


def test_a_mask_saved_with_a_length_1_axis_is_read_and_a_giant_label_is_named():
    tissue, _ = _disks(5, 30, 10, shape=(200, 200))
    mask = detect_nuclei(tissue).labels
    assert len(cells_from_labels(mask[None])) == len(cells_from_labels(mask[..., None])) == mask.max()
    painted = mask.copy()
    painted[:150, :150] = 7777  # a tissue region painted as one label
    with pytest.warns(UserWarning, match=r"label\(s\) \[7777\] cover over 25 times the median nucleus"):
        cells_from_labels(painted)


def test_a_mask_larger_than_free_memory_is_refused_before_the_detection(monkeypatch):
    """detect_nuclei's own mask would not fit: a clear error naming the ways on (a crop, out=, the streamed
    batch), while out= given an array detects as before."""
    import napari_agile.memory as memory

    tissue, _ = _touching_blobs((200, 200))
    monkeypatch.setattr(memory, "free_memory", lambda: 4 * 200 * 200)  # 80 % of the mask's bytes may be planned
    with pytest.raises(AgileInputError, match=r"(?s)nucleus mask of this 200 x 200 px section.*crop.*out=.*predict"):
        detect_nuclei(tissue)
    assert len(detect_nuclei(tissue, out=np.zeros((200, 200), np.int32))) > 10


def test_a_field_without_nuclei_keeps_the_default_width():
    noise = np.random.default_rng(0).normal(500, 20, (512, 512)).astype(np.uint16)
    assert estimate_diameter(Tissue(noise[None], ["DAPI"])) == DEFAULT_DIAMETER
    assert estimate_nuclei(Tissue(noise[None], ["DAPI"])).at_least == 0


def test_a_mask_on_disk_is_measured_block_by_block_as_it_is_whole(tmp_path):
    """A user's mask larger than memory: read lazily, measured and copied in blocks, with the same cells as whole
    (nuclei crossing block edges joined; sparse large ids kept)."""
    from napari_agile.synth.simulator import simulate_tissue

    mask = simulate_tissue((600, 600), seed=1).cells.labels * 1000  # sparse ids up to a few 10^5
    whole = cells_from_labels(mask)
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, mask, tile=(128, 128), compression="zlib")
    out = np.zeros(mask.shape, np.int32)
    seen = []
    with open_mask(path) as lazy:
        assert not isinstance(lazy, np.ndarray)  # tiles are read as sliced
        blocks = cells_from_labels(lazy, mask.shape, out=out, tile=100, progress=lambda d, n: seen.append((d, n)))
    crossing = (whole.table.ymin // 100 != (whole.table.ymax - 1) // 100).sum()
    assert crossing > 10  # the test does cross block edges
    pd.testing.assert_frame_equal(blocks.table, whole.table, check_dtype=False)
    assert blocks.labels is out and np.array_equal(out, mask)
    assert seen == [(k, len(seen)) for k in range(1, len(seen) + 1)] and len(seen) == 6 * 6

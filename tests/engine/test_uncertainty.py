import numpy as np
import torch

from napari_agile.engine.network import ModelConfig, estimate_stats, init_params
from napari_agile.engine.uncertainty import (
    bald,
    binary_entropy,
    covering_cells,
    mc_full_probs,
    mc_head_probs,
    pick_spread,
    predictive_entropy,
    spread_picks,
    trunk_features,
)


def test_entropy_peaks_at_one_half_and_bald_separates_disagreement():
    assert np.isclose(binary_entropy(np.array([0.5]))[0], np.log(2))
    assert binary_entropy(np.array([0.01]))[0] < 0.1
    confident_but_split = np.array([[0.0], [1.0]] * 10).reshape(20, 1)  # passes disagree
    unsure_and_agreeing = np.full((20, 1), 0.5)  # passes agree on 0.5
    assert np.isclose(predictive_entropy(confident_but_split), predictive_entropy(unsure_and_agreeing)).all()
    assert bald(confident_but_split)[0] > 0.6 > bald(unsure_and_agreeing)[0]


def test_cached_head_sampling_matches_full_network_distribution():
    cfg = ModelConfig(channels=tuple("abc"), dropout=0.3)
    params = init_params(cfg, seed=1)
    params["head.weight"] = params["head.weight"] * 40  # make dropout matter
    x = torch.rand(16, 3, 50, 50)
    stats = estimate_stats(cfg, params, x)
    cached = mc_head_probs(cfg, params, trunk_features(cfg, params, stats, x), passes=2000, seed=0)
    full = mc_full_probs(cfg, params, stats, x, passes=400, seed=0)
    assert cached.shape == (2000, 16)
    assert np.allclose(cached.mean(0), full.mean(0), atol=0.05)  # same predictive mean, far fewer trunk passes


def test_pick_spread_skips_neighbours_then_falls_back():
    centroids = np.array([[0, 0], [5, 0], [100, 100], [200, 200]], float)
    score = np.array([0.9, 0.8, 0.7, 0.1])
    assert pick_spread(score, centroids, 3, min_distance=20).tolist() == [0, 2, 3]
    assert sorted(pick_spread(score, centroids, 4, min_distance=20).tolist()) == [0, 1, 2, 3]


def test_covering_cells_reach_every_cluster_of_unequal_size():
    rng = np.random.default_rng(0)
    sizes, centres = [400, 100, 60, 40], np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    feats = np.concatenate([c + rng.normal(0, 0.5, (k, 2)) for c, k in zip(centres, sizes)])
    cluster = np.repeat(np.arange(4), sizes)
    picked = covering_cells(feats, 4, seed=0)
    assert sorted(cluster[picked].tolist()) == [0, 1, 2, 3]  # 4 random picks: all four clusters 2% of the time
    assert len(set(picked.tolist())) == 4
    assert covering_cells(np.ones((5, 3)), 8).tolist() == [0, 1, 2, 3, 4]  # fewer cells than asked, all alike


def test_spread_picks_take_one_cell_of_each_kind_among_the_candidates():
    cfg = ModelConfig(channels=("a", "b"), centre_radius=8)  # features: trunk, then a 2-number centre block
    rng = np.random.default_rng(1)
    block = np.concatenate([c + rng.normal(0, 0.1, (k, 2)) for c, k in zip([[0, 0], [5, 0], [0, 5]], [30, 5, 5])])
    feats = torch.cat([torch.randn(len(block), cfg.trunk_size), torch.as_tensor(block, dtype=torch.float32)], 1)
    kind = np.repeat([0, 1, 2], [30, 5, 5])
    candidates = np.arange(40)[::-1].copy()  # best first: most of them of the common kind
    picked = spread_picks(cfg, feats, candidates, 3)
    assert set(picked.tolist()) <= set(candidates.tolist()) and sorted(kind[picked].tolist()) == [0, 1, 2]
    assert spread_picks(cfg, feats, candidates[:2], 3).tolist() == candidates[:2].tolist()  # too few: all

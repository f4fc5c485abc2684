from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_agile.engine.meta import adapt_params
from napari_agile.engine.network import ModelConfig, estimate_stats, features, forward, init_params
from napari_agile.engine.supervised import fresh_params, train_supervised
from napari_agile.engine.tasks import Augmentation, TaskTransform
from napari_agile.errors import AgileInputError

CFG = ModelConfig(channels=tuple("abcdefg"))


def test_paper_network_shape_and_size():
    params = init_params(CFG)
    n = sum(v.numel() for v in params.values())
    assert 25_000 < n < 40_000  # "about 32k parameters": 4 conv blocks of 32 filters + dense to 2
    x = torch.rand(3, 7, CFG.input_size, CFG.input_size)
    stats = estimate_stats(CFG, params, x)
    assert forward(CFG, params, x, stats).shape == (3, 2)
    assert features(CFG, params, x, stats).shape == (3, CFG.feature_size)


def test_tissue_statistics_normalise_each_layer():
    params = init_params(CFG)
    x = torch.rand(64, 7, 50, 50) * 5 + 3
    stats = estimate_stats(CFG, params, x, batch_size=16)
    z = torch.nn.functional.conv2d(x, params["conv0.weight"], params["conv0.bias"], padding=1)
    assert torch.allclose(stats["bn0.mean"], z.mean((0, 2, 3)), atol=1e-3)
    assert torch.allclose(stats["bn0.var"], z.var((0, 2, 3), unbiased=False), rtol=1e-3)


def test_second_order_gradient_flows_through_inner_update():
    params = {k: v.requires_grad_(True) for k, v in init_params(CFG).items()}
    x, y = torch.rand(4, 7, 50, 50), torch.tensor([0, 1, 0, 1])
    stats = estimate_stats(CFG, params, x)
    fast = adapt_params(CFG, params, stats, x, y, lr=0.01, create_graph=True)
    loss = torch.nn.functional.cross_entropy(forward(CFG, fast, x, stats, mc=False), y)
    (g,) = torch.autograd.grad(loss, [params["conv0.weight"]])
    first = adapt_params(CFG, params, stats, x, y, lr=0.01, create_graph=False)
    loss_fo = torch.nn.functional.cross_entropy(forward(CFG, first, x, stats, mc=False), y)
    (g_fo,) = torch.autograd.grad(loss_fo, [params["conv0.weight"]])
    assert g.abs().sum() > 0 and not torch.allclose(g, g_fo)  # second order differs from first order


def test_head_scope_adapts_dense_layer_only():
    params = init_params(CFG)
    x, y = torch.rand(4, 7, 50, 50), torch.tensor([0, 1, 0, 1])
    fast = adapt_params(CFG, params, estimate_stats(CFG, params, x), x, y, lr=0.1, scope="head")
    assert torch.equal(fast["conv0.weight"], params["conv0.weight"])
    assert not torch.equal(fast["head.weight"], params["head.weight"])


def test_task_transform_flips_shuffles_and_rotates_consistently():
    rng = np.random.default_rng(3)
    t = TaskTransform.draw(Augmentation(p=1.0), 7, rng)
    assert t.flip and t.perm is not None and t.rot in (1, 2, 3)
    x = torch.zeros(1, 7, 50, 50)
    x[0, 2, 0, 0] = 1.0  # channel 2, top-left corner
    out = t.images(x)
    ch = int(np.flatnonzero(t.perm == 2)[0])
    assert out[0, ch].sum() == 1 and out[0, ch, 0, 0] == 0  # moved channel, rotated away from the corner
    assert t.labels(torch.tensor([1, 0])).tolist() == [0, 1]
    none = TaskTransform.draw(Augmentation(p=0.0), 7, rng)
    assert torch.equal(none.images(x), x) and none.labels(torch.tensor([1])).tolist() == [1]
    # pf, ps and pr apart: each set alone to 1 while p = 0
    flip, shuffle, rotate = (
        TaskTransform.draw(Augmentation(p=0.0, **{k: 1.0}), 7, rng) for k in ("flip", "shuffle", "rotate")
    )
    assert (flip.flip, flip.perm, flip.rot) == (True, None, 0)
    assert not shuffle.flip and shuffle.perm is not None and shuffle.rot == 0
    assert (rotate.flip, rotate.perm) == (False, None) and rotate.rot in (1, 2, 3)


def test_prototype_models_start_with_a_zero_dense_layer_and_meta_models_do_not():
    assert not init_params(ModelConfig(channels=tuple("abc")))["head.weight"].any()
    assert init_params(ModelConfig(channels=tuple("abc"), head_init="meta"))["head.weight"].any()


def test_mc_dropout_is_stochastic_and_off_when_asked():
    cfg = ModelConfig(channels=tuple("abc"), dropout=0.5, head_init="meta")
    params = init_params(cfg)  # a random dense layer (prototype models start it at zero)
    x = torch.rand(8, 3, 50, 50)
    stats = estimate_stats(cfg, params, x)
    assert not torch.allclose(forward(cfg, params, x, stats), forward(cfg, params, x, stats))
    assert torch.equal(forward(cfg, params, x, stats, mc=False), forward(cfg, params, x, stats, mc=False))


def test_centre_block_reads_each_channel_at_the_centre_cell_standardised_on_the_tissue():
    cfg = ModelConfig(channels=tuple("abc"), centre_radius=14)
    params = init_params(cfg)
    x = torch.rand(32, 3, 50, 50)
    stats = estimate_stats(cfg, params, x)
    feats = features(cfg, params, x, stats)
    assert feats.shape == (32, cfg.trunk_size + 3) == (32, cfg.feature_size)
    centre = feats[:, cfg.trunk_size :] / params["centre.weight"]
    assert torch.allclose(centre.mean(0), torch.zeros(3), atol=1e-4)  # standardised on the tissue sample
    assert torch.allclose(centre.std(0, unbiased=False), torch.ones(3), atol=1e-3)
    bright = x.clone()
    bright[0, 1, 20:30, 20:30] += 5.0  # a bright centre in channel b only
    moved = features(cfg, params, bright, stats)[0, cfg.trunk_size :] / params["centre.weight"]
    assert moved[1] > centre[0, 1] + 5 and torch.allclose(moved[[0, 2]], centre[0, [0, 2]])
    far = x.clone()
    far[0, 1, :8, :8] += 5.0  # a neighbour's signal in the corner leaves the centre block alone
    assert torch.allclose(features(cfg, params, far, stats)[0, cfg.trunk_size :], feats[0, cfg.trunk_size :])


def test_whitened_centre_block_decorrelates_channels_and_follows_their_order():
    cfg = ModelConfig(channels=tuple("abc"), centre_radius=14, centre_whiten=True)
    params = init_params(cfg)
    x = torch.rand(64, 3, 50, 50)
    x[:, 1] = 0.7 * x[:, 0] + 0.3 * x[:, 1]  # channel b mostly repeats channel a (a shared stain, bleed-through)
    stats = estimate_stats(cfg, params, x)
    centre = features(cfg, params, x, stats)[:, cfg.trunk_size :] / params["centre.weight"]
    assert torch.allclose(torch.cov(centre.T, correction=0), torch.eye(3), atol=2e-2)
    perm = [2, 0, 1]  # whitening is symmetric (ZCA): reordering the channels reorders the block, nothing else
    x_perm = x[:, perm]
    moved = features(cfg, params, x_perm, estimate_stats(cfg, params, x_perm))[:, cfg.trunk_size :]
    assert torch.allclose(moved / params["centre.weight"], centre[:, perm], atol=1e-3)
    few = x[:8]  # under 4 cells per channel: no covariances, each channel only standardised
    (whiten,) = estimate_stats(cfg, params, few)["centre.whiten"]  # one ring, one matrix
    assert torch.allclose(whiten, torch.diag(whiten.diagonal())) and torch.isfinite(whiten).all()


def test_centre_rings_read_the_nucleus_core_and_its_rim_apart_each_whitened_on_its_own():
    cfg = ModelConfig(channels=tuple("abc"), centre_radius=14, centre_whiten=True, centre_rings=2)
    params = init_params(cfg)
    x = torch.rand(64, 3, 50, 50)
    x[:, 2] = 0.5 * x[:, 0] + 0.5 * x[:, 2]
    stats = estimate_stats(cfg, params, x)
    assert stats["centre.whiten"].shape == (2, 3, 3)
    centre = features(cfg, params, x, stats)[:, cfg.trunk_size :] / params["centre.weight"]
    assert centre.shape == (64, 6) and cfg.feature_size == cfg.trunk_size + 6
    for ring in (centre[:, :3], centre[:, 3:]):  # each ring white on its own
        assert torch.allclose(torch.cov(ring.T, correction=0), torch.eye(3), atol=2e-2)
    rim = x[:1].clone()  # binned pixel (24.5 + 5, 24.5) is 10 px from the centre: the outer ring (7-14 px) only
    rim[0, 1, 29:31, 23:27] += 5.0
    moved = features(cfg, params, rim, stats)[0, cfg.trunk_size :] / params["centre.weight"]
    delta = moved - centre[0]
    assert delta[3:].abs().max() > 1 and delta[:3].abs().max() < 1e-4
    with pytest.raises(ValueError, match="centre_rings"):
        ModelConfig(channels=("a",), centre_radius=14, centre_rings=8)


def test_centre_block_gain_is_meta_learned_and_kept_by_the_head_only_step():
    cfg = ModelConfig(channels=tuple("abc"), centre_radius=14)
    params = {k: v.requires_grad_(True) for k, v in init_params(cfg).items()}
    x, y = torch.rand(6, 3, 50, 50), torch.tensor([0, 1, 0, 1, 0, 1])
    stats = estimate_stats(cfg, params, x)
    fast = adapt_params(cfg, params, stats, x, y, lr=0.1, scope="head")
    assert fast["centre.weight"] is params["centre.weight"]
    loss = torch.nn.functional.cross_entropy(forward(cfg, fast, x, stats, mc=False), y)
    (g,) = torch.autograd.grad(loss, [params["centre.weight"]])
    assert g.abs().sum() > 0  # reaches the gain through the prototypes and the query features
    with pytest.raises(ValueError, match="centre_radius"):
        ModelConfig(channels=("a",), centre_radius=50)


NUCLEUS = ModelConfig(channels=tuple("abcdefg"), centre_block="nucleus", centre_whiten=True)


def test_nucleus_block_reads_the_channels_inside_the_mask_plane_and_the_trunk_ignores_it():
    params, gen = init_params(NUCLEUS), torch.Generator().manual_seed(0)
    x = torch.rand(64, NUCLEUS.planes, 50, 50, generator=gen)
    x[:, -1] = 0
    x[:, -1, 20:30, 22:28] = 1  # the nucleus
    stats = estimate_stats(NUCLEUS, params, x)
    f = features(NUCLEUS, params, x, stats)
    assert NUCLEUS.planes == 8 and f.shape == (64, NUCLEUS.trunk_size + 7)
    inside = x[:, :7, 20:30, 22:28].mean((2, 3))
    expect = (inside - inside.mean(0)) @ stats["centre.whiten"][0] * params["centre.weight"]
    torch.testing.assert_close(f[:, -7:], expect, rtol=1e-4, atol=1e-4)
    moved = x.clone()
    moved[:, -1] = torch.roll(x[:, -1], 5, dims=2)  # another nucleus: only the centre block changes
    g = features(NUCLEUS, params, moved, stats)
    assert torch.equal(g[:, :-7], f[:, :-7]) and not torch.allclose(g[:, -7:], f[:, -7:])


def test_centre_sqrt_reads_the_root_of_each_channel_mean_whitened_on_the_tissue():
    cfg = replace(NUCLEUS, centre_sqrt=True)
    params, gen = init_params(cfg), torch.Generator().manual_seed(1)
    x = torch.rand(64, cfg.planes, 50, 50, generator=gen)
    x[:, 0] -= 0.6  # below the low percentile: a mean under 0 reads as 0, not as NaN
    x[:, -1] = 0
    x[:, -1, 20:30, 22:28] = 1
    stats = estimate_stats(cfg, params, x)
    root = x[:, :7, 20:30, 22:28].mean((2, 3)).clamp_min(0).sqrt()
    assert torch.allclose(stats["centre.mean"], root.mean(0), atol=1e-5)
    expect = (root - root.mean(0)) @ stats["centre.whiten"][0] * params["centre.weight"]
    f = features(cfg, params, x, stats)
    assert torch.isfinite(f).all()
    torch.testing.assert_close(f[:, -7:], expect, rtol=1e-4, atol=1e-4)


def test_retired_options_are_read_at_the_shipped_value_and_refused_at_any_other():
    old = {"channels": ["a", "b"], "dropout_placement": "head", "mask_input": False}
    assert ModelConfig.from_dict(old, "old.safetensors config") == ModelConfig(channels=("a", "b"))
    with pytest.raises(AgileInputError, match=r"recipe.toml \[model\]: dropout_placement = 'blocks' is no longer"):
        ModelConfig.from_dict({**old, "dropout_placement": "blocks"}, "recipe.toml [model]")
    with pytest.raises(AgileInputError, match="mask_input = True is no longer an option"):
        ModelConfig.from_dict({**old, "mask_input": True}, "x")


def test_task_transform_only_rotates_a_mask_plane():
    t = TaskTransform.draw(Augmentation(p=1.0, intensity=0.3, blur=1.0), 7, np.random.default_rng(3))
    assert t.perm is not None and t.rot and t.gain is not None and t.blur_sigma > 0
    x = torch.rand(2, 8, 50, 50)
    x[:, -1] = 0
    x[:, -1, 0:5, 0:3] = 1
    out = t.images(x)
    torch.testing.assert_close(out[:, -1], torch.rot90(x[:, -1], t.rot, dims=(1, 2)))  # not permuted, blurred, scaled
    torch.testing.assert_close(out[:, :7], t.images(x[:, :7]))  # the markers as without the plane


def test_supervised_snapshots_are_the_shorter_runs():
    # Fig. 3(a)'s baseline curve is read off one training run: each snapshot must be what that many steps return
    x, y = torch.rand(12, 7, 50, 50), torch.tensor([0, 1] * 6)
    snaps = dict.fromkeys((0, 2, 3))
    torch.manual_seed(0)  # dropout draws from the global generator
    last = train_supervised(CFG, x, y, x, steps=3, batch_size=4, seed=5, snapshots=snaps)
    torch.manual_seed(0)
    two = train_supervised(CFG, x, y, x, steps=2, batch_size=4, seed=5)
    assert all(torch.equal(snaps[2][k], two[k]) and torch.equal(snaps[3][k], last[k]) for k in last)
    assert all(torch.equal(snaps[0][k], v) for k, v in fresh_params(CFG, 5).items())
    assert not torch.equal(snaps[2]["conv0.weight"], last["conv0.weight"])


def test_newton_head_takes_the_regularised_newton_step_of_the_logistic_loss():
    """Two classes: the logit difference moves by (F'WF + lam I)^-1 F'r on support-centred features, the exact
    Newton step of an L2 logistic loss (checked against the primal solve), and the bias by the intercept's step."""
    from napari_agile.engine.network import newton_head

    gen = torch.Generator().manual_seed(0)
    cfg = ModelConfig(channels=("a",), head_init="newton", head_ridge=0.2)
    feats = torch.randn(12, 40, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1] * 6)
    params = {
        "head.weight": 0.1 * torch.randn(2, 40, generator=gen, dtype=torch.float64),
        "head.bias": torch.zeros(2, dtype=torch.float64),
    }
    out = newton_head(cfg, params, feats, y)
    z = feats @ (params["head.weight"][1] - params["head.weight"][0])
    p = torch.sigmoid(z)
    w, r, fc = p * (1 - p), y.double() - p, feats - feats.mean(0)
    lam = 0.2 * (fc**2).sum() / 40
    expected = torch.linalg.solve(fc.T @ (w[:, None] * fc) + lam * torch.eye(40, dtype=torch.float64), fc.T @ r)
    moved = (out["head.weight"][1] - out["head.weight"][0]) - (params["head.weight"][1] - params["head.weight"][0])
    assert torch.allclose(moved, expected)
    intercept = (out["head.bias"][1] - out["head.bias"][0]) + moved @ feats.mean(0)
    assert torch.isclose(intercept, r.sum() / w.sum())


def test_newton_head_finds_the_marker_under_a_shared_nuisance_that_drowns_prototypes():
    """The structural reason for the Newton head: one feature separates the types; 200 others (every channel's
    reading of the nucleus's shape, say) share one factor that varies far more and separates nothing. Nearest
    prototypes of 16 labels drown the marker in that factor's sampling noise; the Newton step's curvature discounts
    the direction that varies without separating the labels (and it sees the labels only, not the test cells)."""
    from napari_agile.engine.network import head, newton_head, prototype_head

    gen = torch.Generator().manual_seed(1)
    y = torch.tensor([0, 1] * 8 + [0, 1] * 200)
    feats = torch.cat(
        [
            2.0 * y[:, None] + 0.5 * torch.randn(len(y), 1, generator=gen),
            3.0 * torch.randn(len(y), 1, generator=gen) + 0.3 * torch.randn(len(y), 200, generator=gen),
        ],
        1,
    )
    cfg = ModelConfig(channels=("a",), head_init="newton")
    params = {"head.weight": torch.zeros(2, 201), "head.bias": torch.zeros(2)}
    accuracy = {}
    for name, init in (("newton", newton_head), ("prototypes", prototype_head)):
        logits = head(cfg, init(cfg, params, feats[:16], y[:16]), feats[16:], mc=False)
        accuracy[name] = float((logits.argmax(1) == y[16:]).float().mean())
    assert accuracy["newton"] > 0.75 > accuracy["prototypes"] + 0.15, accuracy


def test_newton_head_takes_a_single_answer_without_failing():
    """One answer (the first click of a session): the support's features do not vary, the step is the bias's."""
    from napari_agile.engine.network import newton_head

    cfg = ModelConfig(channels=("a",), head_init="newton")
    params = {"head.weight": torch.zeros(2, 5), "head.bias": torch.zeros(2)}
    out = newton_head(cfg, params, torch.ones(1, 5), torch.tensor([1]))
    assert torch.isfinite(out["head.weight"]).all() and out["head.bias"][1] > out["head.bias"][0]


def _panel_config(channels: int, **kw) -> ModelConfig:
    """A per-channel model bound to `channels` channels, 4 trunk numbers and 2 centre parts each."""
    return ModelConfig(
        channels=tuple(f"m{i}" for i in range(channels)),
        nuclear=(True,) + (False,) * (channels - 1),
        encoder="per_channel",
        centre_block="nucleus",
        ring=8,
        trunk_pool=True,
        width=4,
        blocks=2,
        head_init="newton",
        **kw,
    )


def test_channel_weights_give_each_channel_its_share_of_the_step():
    """Every feature of a channel (its trunk numbers and its centre-block means, which sit apart in the feature
    vector) gets the norm of that channel's weights over the mean norm across channels."""
    from napari_agile.engine.network import channel_weights

    cfg = _panel_config(3)  # features: trunk m0 m0 m0 m0 m1 ... m2, then nucleus m0 m1 m2, then band m0 m1 m2
    step = torch.zeros(2, cfg.feature_size)
    step[1, 4:8] = 1.0  # m1's trunk: norm 2
    step[1, 12 + 3 + 1] = 8**0.5  # m1's band mean: with the trunk, norm sqrt(4 + 8) = sqrt(12)
    step[1, 12 + 2] = 3.0  # m2's nucleus mean: norm 3
    weights = channel_weights(cfg, step)
    norms = torch.tensor([0.0, 12**0.5, 3.0])
    share = (norms / norms.mean()).clamp_min(1e-3)
    expected = torch.cat([share.repeat_interleave(4), share, share])
    assert torch.allclose(weights, expected)


def test_newton_head_selecting_channels_solves_the_step_under_the_channels_weights():
    """With head_select the final step is the Newton step of an L2 logistic loss whose prior weighs each channel by
    its share of the previous solve: (F'WF + lam P^-1)^-1 F'r, lam from the trace of F P F' (primal check)."""
    from napari_agile.engine.network import channel_weights, newton_head

    gen = torch.Generator().manual_seed(3)
    cfg = _panel_config(5, head_select=1, head_ridge=0.5)
    feats = torch.randn(10, cfg.feature_size, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1] * 5)
    params = {"head.weight": torch.zeros(2, cfg.feature_size, dtype=torch.float64), "head.bias": torch.zeros(2)}
    params["head.bias"] = params["head.bias"].double()
    first = newton_head(replace(cfg, head_select=0), params, feats, y)["head.weight"]
    prior = channel_weights(cfg, first)
    fc, r, w = feats - feats.mean(0), y.double() - 0.5, torch.full((10,), 0.25, dtype=torch.float64)
    lam = 0.5 * ((fc * prior) @ fc.T).trace() / cfg.feature_size
    lhs = fc.T @ (w[:, None] * fc) + lam * torch.diag(1 / prior)
    expected = torch.linalg.solve(lhs, fc.T @ r)
    out = newton_head(cfg, params, feats, y)["head.weight"]
    assert torch.allclose(out[1] - out[0], expected)


def test_selecting_channels_finds_the_one_marker_of_forty():
    """The structural reason for head_select: 16 answers, 40 channels, one of which tells the type (in its nucleus
    mean) while every channel's other features vary as much and separate nothing. The plain step spreads its
    weight over all 720 features; re-weighting channels by the step's own use of them keeps the marker's."""
    from napari_agile.engine.network import head, newton_head

    gen = torch.Generator().manual_seed(4)
    cfg = _panel_config(40)
    y = torch.tensor([0, 1] * 8 + [0, 1] * 300)
    feats = torch.randn(len(y), cfg.feature_size, generator=gen)
    feats[:, cfg.trunk_size + 7] += 3.0 * y  # m7's nucleus mean: positives 3 SD brighter
    params = {"head.weight": torch.zeros(2, cfg.feature_size), "head.bias": torch.zeros(2)}
    accuracy = {}
    for select in (0, 3):
        step = newton_head(replace(cfg, head_select=select), params, feats[:16], y[:16])
        accuracy[select] = float((head(cfg, step, feats[16:], mc=False).argmax(1) == y[16:]).float().mean())
    assert accuracy[3] > 0.85 > 0.75 > accuracy[0], accuracy


def test_head_select_needs_a_per_channel_newton_model():
    with pytest.raises(AgileInputError, match="head_select"):
        ModelConfig(channels=("a", "b"), head_init="newton", head_select=2)
    with pytest.raises(AgileInputError, match="head_select"):
        _panel_config(3, head_select=-1)

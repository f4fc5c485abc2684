"""The model for any marker panel: a per-channel encoder, random panels per task, sessions on other panels."""

import numpy as np
import pytest
import torch

from napari_agile import AgileInputError, Session, load_model, simulate_tissue
from napari_agile.engine.meta import MetaConfig, draw_task
from napari_agile.engine.model_file import pick_model
from napari_agile.engine.network import ModelConfig, estimate_stats, features, forward, init_params, prototype_head
from napari_agile.engine.tasks import PanelAugmentation, PanelDraw, TaskPool
from napari_agile.io.tissue import PAPER_CHANNELS, nuclear_flags
from napari_agile.synth.simulator import MarkerPanel

ANY = ModelConfig(
    channels=(),
    encoder="per_channel",
    centre_block="nucleus",
    centre_whiten=True,
    ring=8,
    width=8,
    blocks=3,
    trunk_bin=2,
)


def _patches(c: int, n: int = 48, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c + 1, 50, 50, generator=gen)
    x[:, c] = 0
    x[:, c, 20:30, 20:30] = 1  # the nucleus-mask plane
    return x


@pytest.mark.parametrize("c", [2, 7, 13])
def test_one_set_of_weights_reads_any_panel_in_any_order(c):
    """Prototype-adapted logits do not depend on the order of the panel's channels, for any panel size."""
    params = init_params(ANY, seed=1)
    x, y = _patches(c), torch.tensor([1, 0] * 8)
    perm = torch.randperm(c, generator=torch.Generator().manual_seed(c))
    logits = []
    for order in (torch.arange(c), perm):
        cfg = ANY.for_panel([f"m{i}" for i in order.tolist()], [i == 0 for i in order.tolist()])
        xo = torch.cat([x[:, order], x[:, c:]], 1)
        stats = estimate_stats(cfg, params, xo)
        feats = features(cfg, params, xo, stats)
        assert feats.shape == (len(x), cfg.feature_size) and cfg.feature_size == c * ANY.head_width
        logits.append(forward(cfg, prototype_head(cfg, params, feats[:16], y), xo, stats, mc=False))
    assert torch.allclose(logits[0], logits[1], atol=1e-4)


def test_the_nuclear_flag_reaches_the_encoder():
    params = init_params(ANY, seed=1)
    x = _patches(3)
    a, b = (ANY.for_panel(["a", "b", "c"], flags) for flags in ([True, False, False], [False, False, True]))
    fa, fb = (features(cfg, params, x, estimate_stats(cfg, params, x)) for cfg in (a, b))
    assert not torch.allclose(fa, fb)


def test_a_drawn_panel_keeps_the_type_marker_and_builds_its_planes():
    aug = PanelAugmentation(markers=(3, 6), extra=0.5, dim=0.5)
    flags = nuclear_flags(PAPER_CHANNELS)
    rng = np.random.default_rng(0)
    for _ in range(20):
        draw = PanelDraw.draw(aug, PAPER_CHANNELS, flags, "S100", rng)
        markers = [r for r, f in zip(draw.recipes, draw.nuclear) if not f]
        assert 3 <= len(markers) <= 6 and 1 <= sum(draw.nuclear) <= 2
        assert any(r[0] in ("copy", "dim") and r[1] == PAPER_CHANNELS.index("S100") for r in markers)
        x = torch.rand(5, len(PAPER_CHANNELS) + 1, 50, 50)
        out = draw.images(x)
        assert out.shape == (5, len(draw.recipes) + 1, 50, 50) and torch.equal(out[:, -1], x[:, -1])


def test_meta_training_tasks_draw_their_own_panels():
    types = np.array(["neuron", "glia"] * 40)
    pool = TaskPool(torch.rand(80, 8, 50, 50).half(), types, np.zeros(80, int), PAPER_CHANNELS, {"neuron": "NeuN"})
    meta = MetaConfig(
        meta_types=("neuron",), k_max=2, n_query=4, n_unlabelled=8, panel=PanelAugmentation(markers=(1, 8))
    )
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    sizes = {draw_task(pool, meta, "neuron", rng, gen, n_channels=7).support_x.shape[1] for _ in range(12)}
    assert len(sizes) > 2  # panels of several sizes
    task = draw_task(pool, meta, "neuron", rng, gen, n_channels=7)
    assert task.config(ANY).channels and len(task.config(ANY).channels) == task.support_x.shape[1] - 1


def test_nuclear_stains_are_known_by_name():
    stains = ["DAPI", "Hoechst 33342", "DNA1", "Ir191", "Ir193Di", "Histone H3", "HH3", "cyc001_DAPI", "R0_DAPI"]
    others = ["CD3", "PI3K", "H3K27me3", "PanCK", "Cy5", "R1_CD45", "DNAse", "ch2-NeuN"]
    assert nuclear_flags(stains + others) == (True,) * len(stains) + (False,) * len(others)


@pytest.fixture(scope="module")
def other_panel():
    panel = MarkerPanel.random(6, np.random.default_rng(3), keep=("astrocyte", "endothelial"))
    return simulate_tissue((256, 256), seed=11, panel=panel)


def test_simulated_panels_name_their_channels(other_panel):
    names = other_panel.tissue.channel_names
    assert len(names) == 6 and "S100-like" in names and "RECA1-like" in names and any(nuclear_flags(names))


def test_the_paper_panel_named_in_other_case_gets_the_rat_brain_model():
    """'dapi', 'NEUN', ...: the rat-brain model reads them (Tissue.select ignores case), so it is the one picked."""
    assert pick_model([c.upper() for c in PAPER_CHANNELS]).config.channels == PAPER_CHANNELS


def test_the_bundled_any_panel_model_adapts_on_another_panel(other_panel, tmp_path):
    tissue, cells = other_panel.tissue, other_panel.cells
    assert not pick_model(tissue.channel_names).config.channels  # not the rat-brain model
    session = Session(tissue, cells, store=tmp_path / "s", mc_passes=4)
    truth = (cells.table.cell_type == "astrocyte").to_numpy()
    ids = session.suggest("astrocyte", n=12)
    session.annotate("astrocyte", ids, truth[cells.table.index.get_indexer(ids)])
    session.adapt("astrocyte")
    table = session.predict()
    assert table["p_astrocyte"].between(0, 1).all()
    reloaded = Session.load(tmp_path / "s", tissue)
    assert reloaded.config.channels == session.config.channels and reloaded.config.nuclear == session.config.nuclear
    assert np.allclose(reloaded.predict()["p_astrocyte"], table["p_astrocyte"], atol=1e-5)


@pytest.mark.parametrize("task, marker", [("astrocyte", "S100-like"), ("endothelial", "RECA1-like")])
def test_the_bundled_model_learns_which_channel_tells_the_type(other_panel, tmp_path, task, marker):
    """Adaptation says which channels matter: the adapted dense layer leans most on the type's own marker, of a
    panel of six the model never saw (channel_weights: each channel's share of the step)."""
    from napari_agile.engine.network import channel_weights, head_weight

    tissue, cells = other_panel.tissue, other_panel.cells
    session = Session(tissue, cells, store=tmp_path / "s", mc_passes=4)
    session.annotate(task, cells.ids.tolist(), (cells.table.cell_type == task).tolist())
    session.adapt(task)
    step = session.adapted_model(task).params["head.weight"] - head_weight(session.config, session.model.params)
    share = channel_weights(session.config, step)[: session.config.trunk_size : session.config.channel_trunk]
    assert session.config.channels[int(share.argmax())] == marker, dict(zip(session.config.channels, share.tolist()))


def test_a_chosen_subset_of_channels_is_what_the_model_reads(other_panel, tmp_path):
    tissue, cells = other_panel.tissue, other_panel.cells
    names = tissue.channel_names
    keep = [names[0], "S100-like", "RECA1-like"]
    session = Session(tissue, cells, load_model("any-panel"), store=tmp_path / "s", channels=keep, nuclear=[names[0]])
    assert session.config.channels == tuple(keep) and session.config.nuclear == (True, False, False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": ["S100-like", "nope"]}, "No channel"),
        ({"channels": ["S100-like", "S100-like", "RECA1-like"]}, "twice"),
        ({"channels": ["S100-like", "RECA1-like"]}, "nuclear stain"),
        (
            {"nuclear": ["S100-like", "RECA1-like", "marker 01", "marker 02"], "channels": ["S100-like", "RECA1-like"]},
            "not among",
        ),
    ],
)
def test_a_panel_that_cannot_work_is_refused_with_what_to_do(other_panel, tmp_path, kwargs, message):
    with pytest.raises(AgileInputError, match=message):
        Session(other_panel.tissue, other_panel.cells, load_model("any-panel"), store=tmp_path / "s", **kwargs)


def test_nuclear_stains_alone_cannot_type_cells(other_panel, tmp_path):
    names = other_panel.tissue.channel_names
    nuclear = [n for n, f in zip(names, nuclear_flags(names)) if f]
    with pytest.raises(AgileInputError, match="at least one marker"):
        Session(other_panel.tissue, other_panel.cells, load_model("any-panel"), store=tmp_path / "s", channels=nuclear)


def test_small_nuclei_are_cut_at_the_scale_the_model_knows(other_panel, tmp_path):
    """Nuclei a third of the model's size are magnified 3x (patches cut 3x smaller); the simulator's are not."""
    from napari_agile.engine.network import patch_scale

    cfg = load_model("any-panel").config
    assert patch_scale(cfg, other_panel.cells.table["area"]) == 1.0
    small = np.pi * (cfg.nucleus_px / 6) ** 2  # a third of the diameter
    assert patch_scale(cfg, [small] * 5) == pytest.approx(3.0)
    assert patch_scale(cfg, [small / 100] * 5) == 4.0  # clipped

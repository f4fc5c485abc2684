import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_agile import AgileInputError, Session, simulate_tissue
from napari_agile.detect.nuclei import detect_nuclei
from napari_agile.engine.model_file import AgileModel, load_model
from napari_agile.engine.network import ModelConfig, init_params
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import PAPER_CHANNELS, Tissue


@pytest.fixture(scope="module")
def sim():
    return simulate_tissue((320, 320), seed=7)


@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig(channels=PAPER_CHANNELS, centre_radius=14)  # the bundled model's shape
    return AgileModel(cfg, init_params(cfg, seed=3), inner_lr=0.1)


@pytest.fixture()
def session(sim, model, tmp_path):
    return Session(sim.tissue, sim.cells, model, store=tmp_path / "store", mc_passes=8)


def _truth(session, sim, name):
    return (sim.cells.table["cell_type"] == name).to_numpy()


def test_suggest_returns_unlabelled_cells_and_creates_the_type(session):
    ids = session.suggest("astrocyte", n=6)
    assert len(ids) == len(set(ids)) == 6 and set(ids) <= set(session.cells.ids.tolist())
    assert list(session.types) == ["astrocyte"]
    session.annotate("astrocyte", ids[:3], [True, False, True])
    again = session.suggest("astrocyte", n=6)
    assert not set(again) & set(ids[:3])  # answered cells are not asked again
    within = session.suggest("astrocyte", n=2, among=ids[3:])
    assert set(within) <= set(ids[3:])


def test_first_round_covers_the_section_then_entropy_takes_over(session):
    first = session.suggest("neuron", n=6)  # no answer yet: which cells are wanted is unknown
    assert first == session.suggest("neuron", n=6, method="cover")
    assert first != session.suggest("neuron", n=6, method="entropy")
    session.annotate("neuron", first, [True, False, False, True, False, False])
    assert session.suggest("neuron", n=6) == session.suggest("neuron", n=6, method="entropy")
    with pytest.raises(AgileInputError, match="Unknown suggestion method 'entropyy'"):
        session.suggest("neuron", n=6, method="entropyy")


def test_spread_rounds_ask_among_the_spread_times_n_most_uncertain(session):
    session.annotate("neuron", session.cells.ids[:4].tolist(), [True, False, False, True])
    session.adapt("neuron")
    _, entropy = session.probabilities("neuron")
    unlabelled = np.setdiff1d(np.arange(len(session.cells)), np.arange(4))
    ranked = session.cells.ids[unlabelled[np.argsort(-entropy[unlabelled], kind="stable")]]
    plain = session.suggest("neuron", n=4, method="entropy", spread=1, min_distance=0)
    assert plain == ranked[:4].tolist()  # the paper's round
    wide = session.suggest("neuron", n=4, method="entropy", spread=5, min_distance=0)
    assert len(set(wide)) == 4 and set(wide) <= set(ranked[:20].tolist()) and wide != plain
    with pytest.raises(AgileInputError, match="spread=0"):
        session.suggest("neuron", n=4, spread=0)


def test_suggest_uses_every_answer_so_far_without_an_adapt(session):
    """Suggest after answering ranks by weights adapted on those answers (as Adapt would make them), not by the
    meta-trained weights, and stores nothing: Predict still waits for an Adapt."""
    ids = session.cells.ids
    session.annotate("neuron", ids[:6].tolist(), [True, False, False, True, False, True])
    before_adapt = session.suggest("neuron", n=5, method="entropy", spread=1, min_distance=0)
    assert session.types["neuron"].params is None
    meta = session.suggest("unanswered", n=5, method="entropy", spread=1, min_distance=0, among=ids[6:].tolist())
    assert set(before_adapt) != set(meta)
    session.adapt("neuron")  # the same cells (their order among near-equal entropies may differ in the last bits)
    assert set(session.suggest("neuron", n=5, method="entropy", spread=1, min_distance=0)) == set(before_adapt)


def test_answers_reach_disk_immediately_and_undo_is_journaled(session):
    ids = session.cells.ids[:2].tolist()
    session.annotate("neuron", ids, ["yes", 0])
    lines = [json.loads(x) for x in (session.store / "answers.jsonl").read_text().splitlines()]
    assert lines == [
        {"type": "neuron", "id": ids[0], "answer": True},
        {"type": "neuron", "id": ids[1], "answer": False},
    ]
    assert session.undo() == ("neuron", ids[1])
    assert session.types["neuron"].answers == {ids[0]: True}
    reloaded = Session.load(session.store, session.tissue)  # as after a crash: no explicit save
    assert reloaded.types["neuron"].answers == {ids[0]: True}


def test_a_reloaded_session_undoes_the_answers_given_before(session):
    a, b, c = session.cells.ids[:3].tolist()
    session.annotate("neuron", [a], [True])
    session.annotate("neuron", [b], [False])
    session.undo()
    session.annotate("neuron", [c], [True])
    session.annotate("neuron", [a], [False])  # a changed answer: undo brings the first one back
    reloaded = Session.load(session.store, session.tissue)
    assert reloaded.undo() == ("neuron", a) and reloaded.types["neuron"].answers == {a: True, c: True}
    assert reloaded.undo() == ("neuron", c)
    again = Session.load(session.store, session.tissue)  # the undos of the reloaded session are journaled too
    assert again.types["neuron"].answers == {a: True}
    assert again.undo() == ("neuron", a) and again.undo() is None
    assert again.types["neuron"].answers == {}


def test_a_saved_copy_keeps_the_order_answers_were_given_in(session, tmp_path):
    a, b, c = session.cells.ids[:3].tolist()
    session.annotate("astrocyte", [a], [True])
    session.annotate("neuron", [b], [True])
    session.annotate("astrocyte", [c], [False])
    copy = Session.load(session.save(tmp_path / "copy"), session.tissue)
    assert copy.undo() == ("astrocyte", c) and copy.undo() == ("neuron", b) and copy.undo() == ("astrocyte", a)


def test_a_type_named_like_the_start_of_another_keeps_its_own_weights(session, tmp_path):
    session.annotate("CD4+", session.cells.ids[:2], [True, False])
    session.annotate("CD4+/CD8+", session.cells.ids[2:4], [True, False])
    session.adapt("CD4+/CD8+")
    again = Session.load(session.save(tmp_path / "copy"), session.tissue)
    assert again.types["CD4+"].params is None and again.types["CD4+/CD8+"].params is not None


def test_loading_on_another_section_of_the_same_size_warns(session, recwarn):
    session.annotate("neuron", session.cells.ids[:1], [True])
    Session.load(session.store, session.tissue)
    assert not [w for w in recwarn if "another section" in str(w.message)]  # its own section: no word
    other = simulate_tissue((320, 320), seed=8).tissue  # opened in napari: no file to compare
    with pytest.warns(UserWarning, match="looks like another section"):
        Session.load(session.store, other)
    with pytest.raises(AgileInputError, match="looks like another section"):  # the widget's way: refused
        Session.load(session.store, other, strict=True)


def test_loading_on_a_section_of_another_size_is_refused(session):
    session.annotate("neuron", session.cells.ids[:1], [True])
    other = Tissue(np.asarray(session.tissue.data)[:, :200, :250], session.tissue.channel_names)
    with pytest.raises(AgileInputError, match="made on a 320 x 320 px section, not on this 200 x 250 px one"):
        Session.load(session.store, other)


def test_type_colours_are_kept_with_the_session(session, tmp_path):
    session.set_color("neuron", "#FF8000")
    session.annotate("neuron", session.cells.ids[:1], [True])
    assert Session.load(session.store, session.tissue).colors == {"neuron": "#ff8000"}
    session.save(tmp_path / "copy")
    assert Session.load(tmp_path / "copy", session.tissue).colors == {"neuron": "#ff8000"}
    with pytest.raises(AgileInputError, match="rrggbb"):
        session.set_color("neuron", "orange")
    assert session.colors == {"neuron": "#ff8000"}


def test_bad_input_is_refused_and_leaves_the_session_unchanged(session):
    session.annotate("astrocyte", session.cells.ids[:1], [True])
    before = {n: dict(t.answers) for n, t in session.types.items()}
    with pytest.raises(AgileInputError, match="Unknown cell ids"):
        session.annotate("astrocyte", [10**9], [True])
    with pytest.raises(AgileInputError, match="one answer per cell"):
        session.annotate("astrocyte", session.cells.ids[:2], [True])
    with pytest.raises(AgileInputError, match="yes/no"):
        session.annotate("astrocyte", session.cells.ids[:1], ["maybe"])
    with pytest.raises(AgileInputError, match="knows \\['astrocyte'\\]"):
        session.adapt("astrocyt")
    with pytest.raises(AgileInputError, match="Unknown cell ids"):
        session.suggest("astrocyte", n=2, among=[10**9])
    with pytest.raises(AgileInputError, match="Unknown suggestion method 'entropie'"):
        session.suggest("astrocyte", n=2, method="entropie")
    session.suggest("microglia", n=1)
    with pytest.raises(AgileInputError, match="No answers for 'microglia'"):
        session.adapt("microglia")
    with pytest.raises(AgileInputError, match="whole numbers"):
        session.annotate("astrocyte", [session.cells.ids[1] + 0.5], [True])
    with pytest.raises(AgileInputError, match="whole numbers"):
        session.annotate("astrocyte", [str(session.cells.ids[1])], [True])
    with pytest.raises(AgileInputError, match="both yes and no"):
        session.annotate("astrocyte", [session.cells.ids[1]] * 2, [True, False])
    with pytest.raises(AgileInputError, match="positive step size"):
        session.adapt("astrocyte", lr=-1)
    assert {n: t.answers for n, t in session.types.items() if t.answers} == before


def test_a_new_type_named_like_a_known_one_warns(session):
    session.annotate("astrocyte", session.cells.ids[:1], [True])
    with pytest.warns(UserWarning, match="'astrocyt'.*next to 'astrocyte'"):
        session.annotate("astrocyt", session.cells.ids[1:2], [True])
    with pytest.warns(UserWarning, match="a typo"):
        session.suggest("Astrocytes", n=1)
    session.suggest("microglia", n=1)  # no warning: not like either
    assert set(session.types) == {"astrocyte", "astrocyt", "Astrocytes", "microglia"}  # still created: the user decides


def test_a_nucleus_mask_off_the_nuclei_is_warned_about(sim, model, tmp_path):
    """A mask transposed (or made on another section) labels pixels the nuclear stain does not light: a warning
    says so; the section's own mask gives none."""
    from napari_agile.detect.nuclei import cells_from_labels

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Session(sim.tissue, sim.cells, model, store=tmp_path / "right", mc_passes=2)
    with pytest.warns(UserWarning, match=r"does not sit on the nuclei.*\['DAPI', 'Histones'\].*transposed"):
        Session(sim.tissue, cells_from_labels(sim.cells.labels.T.copy()), model, store=tmp_path / "wrong", mc_passes=2)


def test_loading_a_session_on_a_path_instead_of_a_tissue_says_what_to_pass(sim, model, tmp_path):
    session = Session(sim.tissue, sim.cells, model, store=tmp_path / "s")
    with pytest.raises(AgileInputError, match=r"takes the section as a Tissue, not a str.*read_tissue\(image_path\)"):
        Session.load(session.store, "section.ome.tif")  # type: ignore[arg-type]


def test_a_section_too_large_for_memory_is_refused_before_any_patch_is_cut(sim, model, tmp_path, monkeypatch):
    """With less free memory than the patches and features need, a clear error says how to go on (a crop to teach
    on, the streamed batch for the whole), before any work and without a session folder left behind."""
    import napari_agile.memory as memory
    from napari_agile.session import session_bytes

    need = session_bytes(model.config, len(sim.cells), 8)
    monkeypatch.setattr(memory, "free_memory", lambda: need)  # 80 % of it may be planned: too little
    with pytest.raises(AgileInputError, match=r"(?s)cells: a session holds.*tissue\.crop.*napari-agile predict"):
        Session(sim.tissue, sim.cells, model, store=tmp_path / "s", mc_passes=8)
    assert not (tmp_path / "s").exists()
    monkeypatch.setattr(memory, "free_memory", lambda: 2 * need)
    assert len(Session(sim.tissue, sim.cells, model, store=tmp_path / "s", mc_passes=8).cells) == len(sim.cells)


def test_a_session_taught_on_part_of_a_section_loads_on_the_whole(sim, model, tmp_path):
    """Teaching on `tissue.crop(...)`: session.json keeps the region, and Session.load given the whole section
    takes that part again, answers and cells as they were."""
    part = sim.tissue.crop(40, 60, 240, 300)
    cells = detect_nuclei(part)
    session = Session(part, cells, model, store=tmp_path / "s", mc_passes=8)
    session.annotate("neuron", session.cells.ids[:2], [True, False])
    assert json.loads((tmp_path / "s" / "session.json").read_text())["region"] == [40, 60, 240, 300]
    again = Session.load(tmp_path / "s", sim.tissue)
    assert again.tissue.shape == (200, 240) and again.types["neuron"].answers == session.types["neuron"].answers
    np.testing.assert_array_equal(np.asarray(again.tissue.data), np.asarray(sim.tissue.data)[:, 40:240, 60:300])


def test_bald_and_random_rounds(session):
    session.annotate("neuron", session.cells.ids[:4], [True, False, True, False])
    session.adapt("neuron")
    among = [int(i) for i in session.cells.ids[4:24]]
    bald = session.suggest("neuron", n=3, method="bald", spread=1, among=among, min_distance=0)
    samples = session._mc_samples("neuron")[:, session._rows(among)]
    mean = samples.mean(0)
    info = -(mean * np.log(mean + 1e-12) + (1 - mean) * np.log(1 - mean + 1e-12)) + (
        samples * np.log(samples + 1e-12) + (1 - samples) * np.log(1 - samples + 1e-12)
    ).mean(0)
    assert set(bald) == set(np.asarray(among)[np.argsort(-info)[:3]].tolist())  # the 3 of most mutual information
    draws = {tuple(session.suggest("neuron", n=3, method="random", among=among)) for _ in range(2)}
    assert all(set(d) <= set(among) and len(set(d)) == 3 for d in draws)


def test_adapt_moves_predictions_towards_the_answers(session, sim):
    truth = _truth(session, sim, "neuron")
    rng = np.random.default_rng(0)
    rows = np.concatenate(
        [rng.choice(np.flatnonzero(truth), 8, replace=False), rng.choice(np.flatnonzero(~truth), 8, replace=False)]
    )
    ids = session.cells.ids[rows]
    session.annotate("neuron", ids, truth[rows])
    p0, _ = session.probabilities("neuron")
    session.adapt("neuron", steps=3)
    p1, h1 = session.probabilities("neuron")
    gap0 = p0[rows][truth[rows]].mean() - p0[rows][~truth[rows]].mean()
    gap1 = p1[rows][truth[rows]].mean() - p1[rows][~truth[rows]].mean()
    assert gap1 > gap0 + 0.05 and np.all((h1 >= 0) & (h1 <= np.log(2) + 1e-6))


def test_predict_reports_progress_through_the_network_pass(session):
    session.annotate("neuron", session.cells.ids[:2], [True, False])
    session.adapt("neuron")  # a whole-network step: every cell's features change
    calls = []
    session.predict(progress=lambda done, total: calls.append((done, total)))
    n = len(session.cells)
    assert calls[-1] == (n, n) and all(0 < d <= t == n for d, t in calls)


def test_a_head_only_step_reuses_every_cells_cached_features(sim, model, tmp_path):
    head_only = AgileModel(model.config, model.params, inner_lr=0.1, adapt_scope="head")
    session = Session(sim.tissue, sim.cells, head_only, store=tmp_path / "s", mc_passes=8)
    session.annotate("neuron", session.cells.ids[:4], [True, False, True, False])
    before = session.probabilities("neuron")[0]
    session.adapt("neuron")
    calls = []
    after = session.predict(progress=lambda done, total: calls.append(done))["p_neuron"].to_numpy()
    assert not calls  # no convolution ran: the trunk's features were computed when the session opened
    assert not np.allclose(before, after)
    session.annotate("astrocyte", session.cells.ids[4:8], [True, False, False, True])
    session.adapt("astrocyte")  # two adapted types now share the trunk's tensors
    reloaded = Session.load(session.save(tmp_path / "saved"), sim.tissue)
    assert np.allclose(reloaded.predict()["p_neuron"].to_numpy(), after)


def test_diverging_adaptation_is_refused(session):
    session.annotate("neuron", session.cells.ids[:4], [True, False, True, False])
    with pytest.raises(AgileInputError, match="diverged"):
        session.adapt("neuron", steps=3, lr=1e30)
    assert session.types["neuron"].params is None


def test_one_class_answers_warn(session):
    session.annotate("endothelial", session.cells.ids[:3], [False] * 3)
    with pytest.warns(UserWarning, match="at least one cell of each kind"):
        session.adapt("endothelial")


def test_predict_and_paint_agree(session):
    session.annotate("astrocyte", session.cells.ids[:2], [True, False])
    session.annotate("neuron", session.cells.ids[2:4], [True, False])
    session.adapt("astrocyte")
    session.adapt("neuron")
    table = session.predict()
    assert {"id", "y", "x", "p_astrocyte", "entropy_neuron", "cell_type"} <= set(table.columns)
    painted = session.paint(table)
    labels = session.cells.labels
    for cid, kind in zip(table["id"].to_numpy()[:50], table["cell_type"].to_numpy()[:50]):
        code = {"astrocyte": 1, "neuron": 2}.get(kind, 0)
        assert np.all(painted[labels == cid] == code)
    assert np.all(painted[labels == 0] == 0)


def test_only_adapted_types_claim_cells(session):
    session.suggest("neuron", n=4)  # named, never answered
    session.annotate("microglia", session.cells.ids[:2], [True, False])  # answered, not adapted
    session.annotate("astrocyte", session.cells.ids[2:4], [True, False])
    session.adapt("astrocyte")
    assert session.adapted == ["astrocyte"]
    session.threshold = 0.0  # every cell takes its most probable type
    with pytest.warns(UserWarning, match="Not adapted yet, so typing no cell: neuron, microglia"):
        table = session.predict()
    assert set(table["cell_type"]) == {"astrocyte"}
    assert not {"p_neuron", "p_microglia"} & set(table.columns)
    painted = session.paint(table)
    assert set(np.unique(painted)) == {0, 3}  # the astrocyte code: session order, as the legend has it


@pytest.mark.parametrize("scope", ["all", "head"])
def test_save_load_round_trip_keeps_answers_and_weights(sim, model, tmp_path, scope):
    model = AgileModel(model.config, model.params, model.inner_lr, adapt_scope=scope)
    session = Session(sim.tissue, sim.cells, model, store=tmp_path / "store", mc_passes=8)
    session.annotate("astrocyte", session.cells.ids[:4], [True, False, True, False])
    session.adapt("astrocyte")
    before = session.predict()
    path = session.save(tmp_path / "saved")
    stored = {k for k in load_file(str(path / "adapted.safetensors")) if k.startswith("type/")}
    changed = {"head.weight", "head.bias"} if scope == "head" else set(model.params)  # the rest is the model's
    assert stored == {f"type/astrocyte/{k}" for k in changed}
    calls = []
    again = Session.load(path, session.tissue, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(sim.cells), len(sim.cells))  # a long reload reports (and so can be cancelled)
    assert all(torch.equal(again.types["astrocyte"].params[k], v) for k, v in session.types["astrocyte"].params.items())
    assert again.types["astrocyte"].answers == session.types["astrocyte"].answers
    after = again.predict()
    assert np.allclose(before["p_astrocyte"], after["p_astrocyte"], atol=1e-5)
    on_new = Session.apply_saved(path, session.tissue, session.cells, store=tmp_path / "new")
    assert np.allclose(on_new.predict()["p_astrocyte"], before["p_astrocyte"], atol=1e-4)


def test_a_reopened_session_works_under_the_statistics_it_saved(sim, model, tmp_path, monkeypatch):
    # statistics from fewer cells than a reopened session draws: it takes the saved ones, for every feature
    session = Session(sim.tissue, sim.cells, model, store=tmp_path / "store", mc_passes=8, stats_cells=12)
    session.annotate("astrocyte", session.cells.ids[:4], [True, False, True, False])
    session.adapt("astrocyte")
    saved = session.save(tmp_path / "saved")
    monkeypatch.setattr("napari_agile.session.estimate_stats", lambda *a, **k: pytest.fail("statistics re-estimated"))
    again = Session.load(saved, session.tissue)
    assert all(torch.equal(again.stats[k], v) for k, v in session.stats.items())
    assert json.loads((tmp_path / "saved" / "session.json").read_text())["steps"] == {"astrocyte": 1}
    assert np.allclose(again.predict()["p_astrocyte"], session.predict()["p_astrocyte"], atol=1e-5)
    assert again.suggest("neuron", 6) == session.suggest("neuron", 6)  # a new type's covering round: same features


def test_model_files_are_safetensors_and_channel_mismatch_is_named(sim, model, tmp_path):
    path = model.save(tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.config == model.config and all(torch.equal(loaded.params[k], model.params[k]) for k in model.params)
    (tmp_path / "evil.safetensors").write_bytes(b"\x80\x04pickle-not-safetensors")
    with pytest.raises(AgileInputError, match="not a napari-agile model"):
        load_model(tmp_path / "evil.safetensors")
    other = sim.tissue.rename({"RECA1": "CD31"})
    with pytest.raises(AgileInputError, match="RECA1"):
        Session(other, sim.cells, model, store=tmp_path / "s")


def test_a_folder_holding_a_session_is_not_overwritten(session, sim, model):
    with pytest.raises(AgileInputError, match="already holds a session"):
        Session(sim.tissue, sim.cells, model, store=session.store)


def test_empty_cells_are_refused(sim, model, tmp_path):
    with pytest.raises(AgileInputError, match="no cells"):
        Session(sim.tissue, sim.cells.subset([]), model, store=tmp_path / "s")


def test_a_nucleus_block_model_runs_the_loop_and_needs_the_label_image(sim, tmp_path):
    cfg = ModelConfig(channels=PAPER_CHANNELS, centre_block="nucleus", centre_whiten=True)
    model = AgileModel(cfg, init_params(cfg, seed=3), inner_lr=0.1)
    session = Session(sim.tissue, sim.cells, model, store=tmp_path / "store", mc_passes=4)
    truth = _truth(session, sim, "neuron")
    ids = session.suggest("neuron", n=8)
    session.annotate("neuron", ids, truth[session.cells.table.index.get_indexer(ids)])
    session.adapt("neuron")
    assert len(session.predict()) == len(sim.cells)
    again = Session.load(session.save(tmp_path / "saved"), sim.tissue)
    np.testing.assert_allclose(again.probabilities("neuron")[0], session.probabilities("neuron")[0], atol=1e-5)
    bare = Cells(sim.cells.table, None)
    with pytest.raises(AgileInputError, match="no label image"):
        Session(sim.tissue, bare, model, store=tmp_path / "bare")


def test_saving_into_another_sessions_folder_is_refused_and_keeps_its_answers(sim, model, tmp_path):
    a = Session(sim.tissue, sim.cells, model, store=tmp_path / "a", mc_passes=8)
    a.annotate("astrocyte", a.cells.ids[:3], [True, False, True])
    b = Session(sim.tissue, sim.cells, model, store=tmp_path / "b", mc_passes=8)
    b.annotate("astrocyte", b.cells.ids[5:6], [False])
    journal = (tmp_path / "a" / "answers.jsonl").read_text()
    with pytest.raises(AgileInputError, match="already holds another session"):
        b.save(tmp_path / "a")
    (tmp_path / "file").write_text("x")
    with pytest.raises(AgileInputError, match="is a file"):
        b.save(tmp_path / "file")
    assert (tmp_path / "a" / "answers.jsonl").read_text() == journal and b.store == tmp_path / "b"
    assert b.save(tmp_path / "b") == tmp_path / "b"  # its own folder: saved again


def test_loading_on_another_section_warns_and_keeps_the_sessions_section(sim, model, tmp_path):
    for name in ("first.ome.tif", "second.ome.tif"):
        (tmp_path / name).touch()
    tissue = dataclasses.replace(sim.tissue, source=str(tmp_path / "first.ome.tif"))
    Session(tissue, sim.cells, model, store=tmp_path / "s", mc_passes=8).annotate("astrocyte", sim.cells.ids[:1], [1])
    other = dataclasses.replace(sim.tissue, source=str(tmp_path / "second.ome.tif"))
    with pytest.warns(UserWarning, match="made on .*first.ome.tif, not on .*second.ome.tif"):
        Session.load(tmp_path / "s", other)
    assert json.loads((tmp_path / "s" / "session.json").read_text())["tissue_source"] == tissue.source


def test_missing_pixels_in_a_cells_patch_are_named(sim, model, tmp_path):
    data = np.asarray(sim.tissue.data, np.float32).copy()
    y, x = np.round(sim.cells.centroids[3]).astype(int)
    data[:, y - 2 : y + 2, x - 2 : x + 2] = np.nan
    tissue = type(sim.tissue)(data, list(sim.tissue.channel_names))
    with pytest.raises(AgileInputError, match="missing \\(NaN\\) or infinite pixels"):
        Session(tissue, sim.cells, model, store=tmp_path / "s")


def test_cell_ids_that_are_not_the_masks_are_refused(sim, model, tmp_path):
    table = sim.cells.table.reset_index(drop=True).assign(id=np.arange(len(sim.cells)))  # 0-based, like a lab TSV
    shifted = Cells(table, sim.cells.labels)
    assert not np.array_equal(shifted.ids, sim.cells.ids)
    with pytest.raises(AgileInputError, match="do not match the nucleus mask"):
        Session(sim.tissue, shifted, model, store=tmp_path / "s")


def test_quality_holds_answers_out_and_names_the_answers_the_model_contradicts(sim, tmp_path):
    session = Session(sim.tissue, sim.cells, load_model(), store=tmp_path / "q")
    with pytest.raises(AgileInputError, match="not adapted yet"):
        session.quality("neuron")
    truth = sim.cells.table["cell_type"] == "neuron"
    ids = [*truth.index[truth][:8], *truth.index[~truth][:8]]
    session.annotate("neuron", ids, [bool(truth[i]) for i in ids])
    session.adapt("neuron")
    p, _ = session.probabilities("neuron")
    surest = max(ids[:8], key=lambda i: p[session.cells.table.index.get_loc(i)])
    session.annotate("neuron", [surest], [False])  # the clearest neuron answered "no": a slip of the key
    session.adapt("neuron")
    check = session.quality("neuron")
    assert check.n_answers == 16 and sum(check.confusion.values()) == 16
    assert check.agreement == (check.confusion["yes_said_yes"] + check.confusion["no_said_no"]) / 16
    assert check.agreement >= 0.75  # a type the model knows well, held out
    assert surest in check.contradicted and len(check.contradicted) <= 4
    assert "contradicts" in check.summary() and str(surest) in check.summary()
    session.annotate("astrocyte", ids[:3], [False, False, False])
    session.adapt("astrocyte")
    assert session.quality("astrocyte").agreement is None and "too few" in session.quality("astrocyte").summary()


def test_a_chosen_threshold_types_cells_is_saved_and_is_checked(session, tmp_path):
    session.annotate("neuron", session.cells.ids[:4].tolist(), [True, False, True, False])
    session.adapt("neuron")
    session.set_threshold("neuron", 0.0)
    assert (session.predict()["cell_type"] == "neuron").all()
    painted = session.paint_probability("neuron")
    p, _ = session.probabilities("neuron")
    labels = session.cells.labels
    first = session.cells.ids[0]
    assert np.allclose(painted[labels == first], p[0]) and painted[labels == 0].max() == 0
    assert Session.load(session.save(tmp_path / "saved"), session.tissue).type_thresholds["neuron"] == 0.0
    for bad in (1.5, -0.1, float("nan"), "high", True):
        with pytest.raises(AgileInputError, match="from 0 to 1"):
            session.set_threshold("neuron", bad)
    with pytest.raises(AgileInputError, match="No cell type 'neurons'"):
        session.set_threshold("neurons", 0.5)


def test_assign_gives_a_cell_one_type_across_the_session_and_reloads(session, tmp_path):
    session.annotate("neuron", [int(session.cells.ids[0])], [True])
    session.annotate("astrocyte", [int(session.cells.ids[1])], [False])
    a, b = (int(i) for i in session.cells.ids[:2])
    session.assign([a], "astrocyte")  # the neuron "yes" was wrong: it is an astrocyte
    assert session.types["astrocyte"].answers[a] is True and session.types["neuron"].answers[a] is False
    session.assign([b], "microglia")  # a new type on the way
    assert {n: session.types[n].answers[b] for n in session.types} == {
        "neuron": False,
        "astrocyte": False,
        "microglia": True,
    }
    session.assign([a], None)  # none of them
    assert not any(session.types[n].answers[a] for n in session.types)
    again = Session.load(session.store, session.tissue)
    assert {n: again.types[n].answers for n in again.types} == {n: session.types[n].answers for n in session.types}
    with pytest.raises(AgileInputError):
        session.assign([10**9], "neuron")


def test_a_type_can_be_renamed_or_deleted_and_a_reload_keeps_it(session, tmp_path):
    ids = session.cells.ids[:4].tolist()
    session.annotate("astrocyt", ids, [True, False, True, False])  # a typo
    session.adapt("astrocyt")
    session.set_color("astrocyt", "#ff0000")
    session.annotate("neuron", ids[:2], [False, True])
    before = session.predict()["p_astrocyt"].to_numpy()
    session.rename_type("astrocyt", "astrocyte")
    assert list(session.types) == ["astrocyte", "neuron"] and session.colors["astrocyte"] == "#ff0000"
    assert np.allclose(session.predict()["p_astrocyte"], before)  # same weights, new name
    with pytest.raises(AgileInputError, match="already a type"):
        session.rename_type("neuron", "astrocyte")
    session.delete_type("neuron")
    assert list(session.types) == ["astrocyte"] and session.undo()[0] == "astrocyte"  # neuron answers gone from undo
    session.annotate("astrocyte", [ids[3]], [False])
    again = Session.load(session.store, session.tissue)
    assert list(again.types) == ["astrocyte"] and again.types["astrocyte"].answers == session.types["astrocyte"].answers
    assert again.types["astrocyte"].params is not None and again.colors == {"astrocyte": "#ff0000"}
    assert np.allclose(again.predict()["p_astrocyte"], before)

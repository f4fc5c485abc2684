"""The AGILE dock widget in a real napari viewer (Xvfb): the whole loop, driven by buttons, keys and clicks."""

from __future__ import annotations

import json
import threading

import anndata
import numpy as np
import pytest
import spatialdata
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QFileDialog, QPushButton

from napari_agile._napari.controls import ticked
from napari_agile._napari.layers import CELLS, NUCLEI, SUGGESTED, TYPES, camera, text_overlay
from napari_agile._napari.reader import tissue_layer_data
from napari_agile._napari.tissue_panel import DETECT
from napari_agile._napari.widget import AgileWidget
from napari_agile.engine.model_file import AgileModel
from napari_agile.engine.network import ModelConfig, init_params
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.session import Session
from napari_agile.synth.simulator import simulate_tissue

pytestmark = pytest.mark.gui

SHAPE = (320, 320)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    cfg = ModelConfig(channels=PAPER_CHANNELS)
    return AgileModel(cfg, init_params(cfg)).save(tmp_path_factory.mktemp("model") / "model.safetensors")


@pytest.fixture(scope="module")
def sim():
    return simulate_tissue(SHAPE, seed=3)


def _open(viewer, sim, channels=PAPER_CHANNELS):
    for data, meta, _ in tissue_layer_data(sim.tissue.select(list(channels))):
        viewer.add_image(data, **meta)


@pytest.fixture
def widget(make_napari_viewer, qtbot, sim, model_path, tmp_path):
    viewer = make_napari_viewer(show=True)
    _open(viewer, sim)
    w = AgileWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.tissue.model_edit.setText(str(model_path))
    w.tissue.store_edit.setText(str(tmp_path / "session"))
    notification_manager.records.clear()
    yield w
    if w.jobs.worker is not None:
        qtbot.waitUntil(lambda: w.jobs.worker is None, timeout=30000)


def _wait(qtbot, w, timeout=30000):
    qtbot.waitUntil(lambda: w.jobs.worker is None, timeout=timeout)


def _errors():
    return [str(n.message) for n in notification_manager.records if n.severity.name in ("ERROR", "WARNING")]


def _canvas_pixel(viewer, yx):
    """(row, col) of a world (y, x) point in viewer.screenshot(canvas_only=True)."""
    shot = viewer.screenshot(canvas_only=True, flash=False)
    cy, cx = camera(viewer).center[-2:]
    zoom = camera(viewer).zoom
    h, w = shot.shape[:2]
    return shot, int(round((yx[0] - cy) * zoom + h / 2)), int(round((yx[1] - cx) * zoom + w / 2))


def test_whole_loop(widget, qtbot, tmp_path):
    w, viewer = widget, widget.viewer
    assert ticked(w.tissue.image_list) == list(PAPER_CHANNELS)
    assert ticked(w.tissue.nuclear_list) == ["DAPI", "Histones"]

    w.tissue.detect()
    _wait(qtbot, w)
    assert w.session is not None, _errors()
    cells, nuclei = viewer.layers[CELLS], viewer.layers[NUCLEI]
    n = len(w.session.cells)
    assert len(cells.data) == n > 10
    assert set(np.unique(nuclei.data)) - {0} == set(cells.features["id"])

    w.types.add_type("astrocyte", "#ff00ff")
    w.types.add_type("endothelial", "#00ff00")
    w.types.type_list.setCurrentRow(0)
    w.answers.n_spin.setValue(6)
    w.answers.suggest()
    _wait(qtbot, w)
    sugg = viewer.layers[SUGGESTED]
    assert len(sugg.data) == 6
    assert {"id", "entropy", "question", "answer"} <= set(sugg.features.columns)
    assert sugg.features["question"].iloc[0].startswith("Is cell") and "astrocyte" in sugg.features["question"].iloc[0]
    assert np.all(sugg.features["entropy"].to_numpy()[:-1] >= 0)
    # thin outlines around the cells, their colours following entropy within the round; the cell asked about thick
    assert np.allclose(sugg.face_color[:, 3], 0) and np.all(sugg.size >= 2 * w.session.cells.diameter)
    if sugg.features["entropy"].nunique() > 1:
        assert len({tuple(c) for c in np.round(sugg.border_color, 3)}) > 1
    assert sugg.border_width[0] > 2 * sugg.border_width[1:].max()
    first = w.answers.suggested[0]
    assert w.answers.cursor == 0 and np.allclose(camera(viewer).center[-2:], sugg.data[0])
    assert w.jobs.status.text().startswith(f"1 of 6: Is cell {first} an astrocyte?")  # the question, at once

    # answer by key presses on the canvas: y (yes), n (no) -> two answers, view moves on
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Y)
    qtbot.keyClick(canvas, Qt.Key.Key_N)
    answers = w.session.types["astrocyte"].answers
    assert answers == {w.answers.suggested[0]: True, w.answers.suggested[1]: False}
    row = cells.features.index[cells.features["id"] == first][0]
    assert np.allclose(cells.face_color[row], [1, 0, 1, 1])  # yes = the type's colour, at once
    assert cells.features.loc[row, "answer"] == "yes"
    assert list(sugg.features["answer"][:2]) == ["yes", "no"]

    # j jumps the view to the next suggested cell
    qtbot.keyClick(canvas, Qt.Key.Key_J)
    assert w.answers.cursor == 3 and np.allclose(camera(viewer).center[-2:], sugg.data[3])

    # undo by key, then answer again
    qtbot.keyClick(canvas, Qt.Key.Key_U)
    assert len(w.session.types["astrocyte"].answers) == 1

    # answer by clicking a nucleus in "click = yes" mode
    w.answers.click_mode.setCurrentIndex(1)
    target = w.answers.suggested[2]
    yx = w.session.cells.table.loc[target, ["y", "x"]].to_numpy(float)
    camera(viewer).center = tuple(yx)
    _, r, c = _canvas_pixel(viewer, yx)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(c, r))
    qtbot.waitUntil(lambda: target in w.session.types["astrocyte"].answers, timeout=3000)
    assert w.session.types["astrocyte"].answers[target] is True
    w.answers.click_mode.setCurrentIndex(0)
    fourth = w.answers.suggested[3]
    w.answers.answer(False, [fourth])

    journal = [json.loads(line) for line in (tmp_path / "session" / "answers.jsonl").read_text().splitlines()]
    assert journal[0] == {"type": "astrocyte", "id": first, "answer": True}
    assert journal[2]["answer"] is None  # the undo is journalled too
    assert len(journal) == 5

    w.results.adapt()
    _wait(qtbot, w)
    assert w.session.types["astrocyte"].params is not None, _errors()

    # Pick by / Spread choose the round as suggest(method=, spread=) does headless: the paper's round here
    w.answers.pick_combo.setCurrentText("entropy")
    w.answers.spread_spin.setValue(1)
    w.answers.suggest()
    _wait(qtbot, w)
    assert w.answers.suggested == w.session.suggest("astrocyte", 6, method="entropy", spread=1), _errors()
    p, h = w.session.probabilities("astrocyte")
    asked = np.isin(w.session.cells.ids, w.answers.suggested)
    unanswered = ~np.isin(w.session.cells.ids, list(w.session.types["astrocyte"].answers)) & ~asked
    assert np.median(h[asked]) > np.quantile(h[unanswered], 0.9)  # among the most uncertain (20 px apart)

    w.session.threshold = 0.0  # every cell takes its most probable type: the canvas check needs painted nuclei
    w.results.predict()
    _wait(qtbot, w)
    types = viewer.layers[TYPES]
    assert types.data.shape == SHAPE and types.data.max() >= 1, _errors()
    for col in ("p_astrocyte", "entropy_astrocyte", "cell_type", "answer"):
        assert col in cells.features.columns
    assert list(types.features["cell_type"]) == ["none", "astrocyte"]
    assert "astrocyte" in w.results.legend.text()
    n_astro = int((w.results.table["cell_type"] == "astrocyte").sum())
    assert (
        f"&nbsp;{n_astro}</td><td align='right'>&nbsp;{n_astro / len(w.results.table):.0%}" in w.results.legend.text()
    )
    w.types.add_type("astrocyte", "#00ffff")  # recoloured after Predict: the painting and the legend follow
    assert "#00ffff" in w.results.legend.text() and np.allclose(types.colormap.map(1)[..., :3], [0, 1, 1])
    w.types.add_type("astrocyte", "#ff00ff")

    # the painted colours are really on the canvas, where the nuclei are
    for layer in viewer.layers:
        layer.visible = layer is types
    types.opacity = 1.0
    viewer.reset_view()
    table = w.session.predict()
    big = w.session.cells.table.sort_values("area").index[-3:]
    for cid in big:
        yx = w.session.cells.table.loc[cid, ["y", "x"]].to_numpy(float)
        shot, r, c = _canvas_pixel(viewer, yx)
        want = {"astrocyte": [255, 0, 255], "none": [0, 0, 0]}[table.set_index("id").loc[cid, "cell_type"]]
        assert np.abs(shot[r, c, :3].astype(int) - want).max() < 40, (cid, shot[r, c])
    shot = viewer.screenshot(canvas_only=True, flash=False)
    magenta = np.all(np.abs(shot[..., :3].astype(int) - [255, 0, 255]) < 40, axis=-1)
    assert magenta.sum() > 200

    # a second detection into the same folder would mix two sessions: refused
    notification_manager.records.clear()
    w.tissue.detect()
    assert any("already holds a session" in e for e in _errors()) and w.jobs.worker is None

    # save, export, reload
    w.files.save_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    assert (tmp_path / "saved" / "session.json").exists()
    w.files.export_csv(str(tmp_path / "cells.csv"))
    _wait(qtbot, w)
    w.files.export_geojson(str(tmp_path / "cells.geojson"))
    _wait(qtbot, w)
    assert len((tmp_path / "cells.csv").read_text().splitlines()) == n + 1
    geo = json.loads((tmp_path / "cells.geojson").read_text())
    assert len(geo["features"]) == n
    w.files.export_anndata(str(tmp_path / "cells.h5ad"))
    _wait(qtbot, w)
    adata = anndata.read_h5ad(tmp_path / "cells.h5ad")
    assert adata.n_obs == n and adata.uns["cell_type_colors"][0] == "#ff00ff"
    w.files.export_spatialdata(str(tmp_path / "cells.zarr"))
    _wait(qtbot, w)
    store = spatialdata.read_zarr(tmp_path / "cells.zarr")
    assert store.tables["table"].n_obs == n and set(store.labels) == {"nuclei", "cell_types"}
    w.files.save_model(str(tmp_path / "astro.safetensors"))
    assert (tmp_path / "astro.safetensors").exists()
    w.ctl.colors.clear()  # as in a new viewer: the type colours come back with the session
    w.files.load_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    assert w.session.types["astrocyte"].answers == {first: True, target: True, fourth: False}
    assert w.ctl.colors["astrocyte"] == "#ff00ff"
    assert not [e for e in _errors() if "another section" in e]  # the same pixels, read back from the layers
    loaded = w.session
    w.files.load_session(str(tmp_path / "saved"))  # cutting every cell's patch again: Cancel stops it
    w.jobs.cancel()
    _wait(qtbot, w)
    assert w.session is loaded and any("cancelled" in str(n.message) for n in notification_manager.records)
    assert (viewer.layers[CELLS].features["answer"] != "").sum() == 3
    assert not [e for e in _errors() if "failed" in e], _errors()


def test_bad_input_is_a_notification(make_napari_viewer, qtbot, sim, model_path, tmp_path, monkeypatch):
    viewer = make_napari_viewer(show=True)
    w = AgileWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.tissue.model_edit.setText(str(model_path))
    w.tissue.store_edit.setText(str(tmp_path / "s"))
    notification_manager.records.clear()

    w.tissue.detect()  # no image layer
    assert any("No tissue image" in e for e in _errors())
    w.results.adapt()  # nothing detected yet
    assert any("Detect nuclei" in e for e in _errors())

    viewer.add_image(np.asarray(sim.tissue.data[0]), name="DAPI")  # a 2D single-channel image
    w.tissue.detect()
    assert any("Only one channel" in e for e in _errors())

    viewer.add_image(np.zeros((64, 64), np.uint16), name="NeuN")  # channels of different sizes
    w.tissue.detect()
    assert any("differ in size" in e for e in _errors())

    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    _open(viewer, sim, channels=PAPER_CHANNELS[:-1])  # a model that reads a channel the tissue lacks
    w.tissue.detect()
    assert any("RECA1" in e for e in _errors())
    assert w.jobs.worker is None and w.session is None

    monkeypatch.setattr(
        "napari_agile.engine.model_file._bundled_path", lambda name="rat-brain": tmp_path / "not-installed.safetensors"
    )
    w.tissue.model_edit.setText("")  # the bundled model missing: a clear message, no crash
    w.tissue.detect()
    assert any("bundled model" in e for e in _errors())

    w.tissue.model_edit.setText(str(model_path))
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    viewer.add_image(np.asarray(sim.tissue.data), name="section")  # one (C, Y, X) layer without channel names
    w.tissue.detect()
    assert any("section 0" in e for e in _errors())
    w.tissue.names_edit.setText(", ".join(PAPER_CHANNELS))  # the user names its channels
    w.tissue.detect()
    _wait(qtbot, w)
    assert w.session is not None and w.session.tissue.channel_names == list(PAPER_CHANNELS)
    w.types.add_type("microglia")
    notification_manager.records.clear()
    w.results.adapt()  # Adapt with no answers
    assert any("No answers" in e for e in _errors())
    assert w.jobs.worker is None
    w.files.load_session(str(tmp_path))  # an error raised inside a worker arrives as a notification too
    _wait(qtbot, w)
    assert any("not a napari-agile session folder" in e for e in _errors())


def test_close_viewer_while_working_loses_no_answers(make_napari_viewer, qtbot, sim, model_path, tmp_path):
    viewer = make_napari_viewer(show=True)
    _open(viewer, sim)
    w = AgileWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.tissue.model_edit.setText(str(model_path))
    w.tissue.store_edit.setText(str(tmp_path / "s"))
    w.tissue.detect()
    _wait(qtbot, w)
    w.types.add_type("neuron")
    ids = [int(i) for i in w.session.cells.ids[:2]]
    w.answers.answer(True, ids[:1])
    w.answers.answer(False, ids[1:])
    w.answers.suggest()  # still running (or just done) when the viewer closes
    worker = w.jobs.worker
    alive = w.alive
    viewer.close()
    qtbot.waitUntil(lambda: not alive["yes"], timeout=5000)  # the widget let go of the viewer
    assert {str(k) for k in viewer.keymap}.isdisjoint("YNUJK")
    assert all(cb.__name__ != "_on_click" for cb in viewer.mouse_drag_callbacks)
    if worker is not None:
        qtbot.waitUntil(lambda: not worker.is_running, timeout=30000)
    lines = (tmp_path / "s" / "answers.jsonl").read_text().splitlines()
    assert [json.loads(x)["answer"] for x in lines] == [True, False]
    reopened = Session.load(tmp_path / "s", sim.tissue)  # the headless twin picks up where the GUI stopped
    assert reopened.types["neuron"].answers == {ids[0]: True, ids[1]: False}


def test_answers_wait_while_a_job_reads_them(widget, qtbot):
    w = widget
    w.tissue.detect()
    _wait(qtbot, w)
    w.types.add_type("neuron")
    cid = int(w.session.cells.ids[0])
    w.answers.answer(True, [cid])
    release = threading.Event()
    w.jobs.run("Saving the session", lambda progress: release.wait(10), lambda _: None)  # a job that holds the answers
    notification_manager.records.clear()
    w.answers.answer(False, [int(w.session.cells.ids[1])])
    w.answers.undo()
    assert w.session.types["neuron"].answers == {cid: True}  # neither changed the answers under the job
    assert sum("answer again when it is done" in e for e in _errors()) == 2
    release.set()
    _wait(qtbot, w)
    w.answers.undo()
    assert w.session.types["neuron"].answers == {}


def test_cancel_stops_detection_without_a_session(widget, qtbot):
    w = widget
    w.tissue.detect()
    assert w.jobs.cancel_btn.isEnabled() and not w.tissue.detect_btn.isEnabled()
    w.jobs.cancel()
    _wait(qtbot, w)
    assert w.session is None and w.tissue.detect_btn.isEnabled()
    assert any("cancelled" in str(n.message) for n in notification_manager.records)


def test_nuclei_from_a_labels_layer_the_user_already_has(widget, qtbot, sim):
    w, viewer = widget, widget.viewer
    viewer.add_labels(np.zeros((10, 10), np.int32), name="other section")
    w.tissue.nuclei_combo.setCurrentText("other section")
    w.tissue.detect()
    _wait(qtbot, w)
    assert any("made on this section" in e for e in _errors()) and w.session is None
    mask = sim.cells.labels.copy()
    viewer.add_labels(mask, name="stardist")  # e.g. from StarDist, with its own ids
    assert w.tissue.nuclei_combo.findText("stardist") >= 0 and w.tissue.nuclei_combo.findText(NUCLEI) < 0
    w.tissue.nuclei_combo.setCurrentText("stardist")
    assert w.tissue.detect_btn.text() == "Use the nuclei in 'stardist'"
    assert not w.tissue.width_spin.isEnabled()  # the width only serves detection
    w.tissue.detect()
    _wait(qtbot, w)
    assert w.session is not None, _errors()
    assert sorted(w.session.cells.ids) == sorted(set(np.unique(mask)) - {0})
    assert NUCLEI not in viewer.layers and "stardist" in viewer.layers  # the user's layer stays, no copy of it
    dots = viewer.layers[CELLS]
    one = int(dots.features["id"][0])
    np.testing.assert_allclose(dots.data[0], np.argwhere(mask == one).mean(0))  # a dot at its nucleus' centre
    viewer.layers["stardist"].name = "cellpose"  # renaming a layer reaches the widget's choices
    assert w.tissue.nuclei_combo.findText("cellpose") >= 0 and w.tissue.nuclei_combo.findText("stardist") < 0
    viewer.layers["RECA1"].name = "CD31"
    assert ticked(w.tissue.image_list)[-1] == "CD31"
    w.tissue.nuclei_combo.setCurrentText(DETECT)
    assert w.tissue.detect_btn.text() == "Detect nuclei"
    assert w.tissue.width_spin.isEnabled() and w.tissue.width_spin.text() == "auto"


def test_a_nucleus_width_set_in_the_widget_reaches_detection(widget, qtbot, monkeypatch):
    from napari_agile._napari import tissue_panel

    widths = []
    detect = tissue_panel.detect_nuclei
    monkeypatch.setattr(tissue_panel, "detect_nuclei", lambda *a, **k: widths.append(k["diameter"]) or detect(*a, **k))
    w = widget
    w.tissue.width_spin.setValue(30)
    w.tissue.detect()
    _wait(qtbot, w)
    assert widths == [30.0] and w.session is not None, _errors()
    assert (
        f"cells, median nucleus {w.session.cells.diameter:.0f} px across" in w.jobs.status.text()
    )  # to judge the width


def test_reader_and_sample_feed_the_widget(make_napari_viewer, tmp_path, sim):
    from napari_agile.io.images import write_ome_tiff

    viewer = make_napari_viewer(show=True)
    w = AgileWidget(viewer)
    viewer.window.add_dock_widget(w)
    path = write_ome_tiff(sim.tissue, tmp_path / "section.ome.tif")
    viewer.open(str(path), plugin="napari-agile")
    assert [layer.name for layer in viewer.layers] == list(PAPER_CHANNELS)
    assert {layer.blending for layer in viewer.layers} == {"additive"}
    assert ticked(w.tissue.image_list) == list(PAPER_CHANNELS)
    assert w.tissue.tissue().shape == SHAPE
    viewer.layers.clear()
    viewer.open_sample("napari-agile", "simulated_rat_brain")
    assert ticked(w.tissue.image_list) == list(PAPER_CHANNELS) and w.tissue.tissue().n_channels == 7


def test_batch_labels_open_as_multiscale_layers_and_serve_as_nuclei(make_napari_viewer, qtbot, tmp_path, sim):
    from napari_agile.io.label_zarr import finish_label_image, paint_label_image, write_label_group

    viewer = make_napari_viewer(show=True)
    w = AgileWidget(viewer)
    viewer.window.add_dock_widget(w)
    _open(viewer, sim)
    group = tmp_path / "section.labels.zarr"  # as `napari-agile predict --labels` writes it
    paint_label_image(sim.cells.labels, np.arange(sim.cells.labels.max() + 1, dtype=np.int32), group / "nuclei", 128)
    finish_label_image(group / "nuclei")
    lut = np.zeros(sim.cells.labels.max() + 1, np.int32)
    lut[1:] = 1
    paint_label_image(sim.cells.labels, lut, group / "cell_types", 128)
    finish_label_image(group / "cell_types", {1: "any cell"}, {1: "#ff0000"})
    write_label_group(group, ["nuclei", "cell_types"])
    viewer.open(str(group), plugin="napari-agile")
    types = viewer.layers["cell_types"]
    assert types.multiscale and [level.shape for level in types.data] == [SHAPE, (160, 160), (80, 80)]
    for name in PAPER_CHANNELS:
        viewer.layers[name].visible = False
    viewer.layers["nuclei"].visible = False
    shot = viewer.screenshot(canvas_only=True, flash=False)
    red = (shot[..., 0] > 150) & (shot[..., 1] < 80) & (shot[..., 2] < 80)
    assert red.mean() > 0.02  # the nuclei painted in the type's colour
    w.tissue.nuclei_combo.setCurrentText("nuclei")  # a multiscale Labels layer as the nuclei: its full resolution
    w.tissue.detect()
    _wait(qtbot, w)
    assert w.session is not None and len(w.session.cells) == len(sim.cells), _errors()


def test_channel_layers_from_memory_maps_stay_lazy(tmp_path):
    from napari.layers import Image

    from napari_agile._napari.layers import tissue_from_layers

    small = [Image(np.full((64, 64), i, np.uint16), name=n) for i, n in enumerate("ab")]
    assert isinstance(tissue_from_layers(small).data, np.ndarray)  # small in-memory channels: one stack
    maps = []
    for i, name in enumerate("ab"):
        m = np.lib.format.open_memmap(tmp_path / f"{name}.npy", "w+", np.uint16, (64, 64))
        m[:] = i
        maps.append(Image(m, name=name))
    tissue = tissue_from_layers(maps)  # memory-mapped files: nothing read until a worker asks for a tile
    assert not isinstance(tissue.data, np.ndarray) and tissue.channel_names == ["a", "b"]
    assert np.asarray(tissue.data[:, :2, :2]).tolist() == [[[0, 0], [0, 0]], [[1, 1], [1, 1]]]


def _with_suggestions(w, qtbot):
    """Detect, add 'astrocyte' and take its first suggestions, as a user would."""
    w.tissue.detect()
    _wait(qtbot, w)
    w.types.add_type("astrocyte")
    w.answers.suggest()
    _wait(qtbot, w)
    return w


def _adapt_and_predict(w, qtbot, n):
    """Answer yes on the first n suggested cells and no on the next n, Adapt, then Predict."""
    w.answers.answer(True, w.answers.suggested[:n])
    w.answers.answer(False, w.answers.suggested[n : 2 * n])
    w.results.adapt()
    _wait(qtbot, w)
    w.results.predict()
    _wait(qtbot, w)


def test_j_moves_the_answer_to_the_suggested_cell_off_an_older_selection(widget, qtbot):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    cells = viewer.layers[CELLS]
    other = next(i for i in range(len(cells.data)) if int(cells.features["id"][i]) not in w.answers.suggested)
    viewer.layers.selection.active = cells  # the user picks a dot in 'cells' and answers it
    cells.selected_data = {other}
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_N)
    qtbot.keyClick(canvas, Qt.Key.Key_J)  # back to the suggestions: the question names the next suggested cell
    shown = w.answers.suggested[w.answers.cursor]
    qtbot.keyClick(canvas, Qt.Key.Key_Y)
    answers = w.session.types["astrocyte"].answers
    assert answers[shown] is True and answers[int(cells.features["id"][other])] is False


def test_a_job_cancelled_too_late_still_shows_its_result(widget, qtbot, monkeypatch, tmp_path):
    import napari_agile.session as session_module

    w, real = widget, session_module.trunk_features

    def cancel_during_features(*args, **kwargs):  # Cancel during the last stage, which has no progress steps
        w.jobs.cancel()
        return real(*args, **kwargs)

    monkeypatch.setattr(session_module, "trunk_features", cancel_during_features)
    w.tissue.detect()
    assert not w.types.type_list.isEnabled()  # a job's result belongs to the type it started for
    assert not w.types.type_edit.isEnabled()  # nor can a new type take over while it runs
    _wait(qtbot, w)
    assert w.session is not None and w.types.type_list.isEnabled() and not w.jobs.status.text().startswith("Cancelling")
    assert w.session.store == tmp_path / "session" and CELLS in widget.viewer.layers


def test_channel_names_typed_for_unnamed_channel_layers(widget, qtbot, sim):
    w, viewer = widget, widget.viewer
    for i, layer in enumerate(list(viewer.layers)):  # a file without channel names opens as channel_1, ...
        layer.name = f"channel_{i + 1}"
    w.tissue.detect()
    assert any("'Channel names'" in e for e in _errors()) and w.session is None
    w.tissue.names_edit.setText(", ".join(PAPER_CHANNELS[:-1]))
    w.tissue.refresh_channels()
    w.tissue.detect()
    assert any("lists 6 names for 7 ticked channel layers" in e for e in _errors())
    w.tissue.names_edit.setText(", ".join(PAPER_CHANNELS))
    w.tissue.refresh_channels()
    assert ticked(w.tissue.nuclear_list) == ["DAPI", "Histones"]
    w.tissue.detect()
    _wait(qtbot, w)
    assert w.session is not None and w.session.tissue.channel_names == list(PAPER_CHANNELS)


def test_deleted_renamed_or_namesake_layers_keep_the_widget_working(widget, qtbot, sim):
    w, viewer = widget, widget.viewer
    viewer.add_labels(sim.cells.labels, name=NUCLEI)  # the user's own mask, named like the widget's layer
    assert NUCLEI in [w.tissue.nuclei_combo.itemText(i) for i in range(w.tissue.nuclei_combo.count())]
    viewer.add_points([[5.0, 5.0]], name=CELLS)  # and their own points called 'cells'
    w.tissue.detect()
    _wait(qtbot, w)
    assert viewer.layers[CELLS].data.shape == (1, 2)  # left alone; the widget's layer sits beside it
    w.types.add_type("astrocyte")
    viewer.layers.remove(w.ctl.layer(SUGGESTED))  # the user tidies the empty rings away
    with qtbot.capture_exceptions() as raised:
        w.answers.suggest()
        _wait(qtbot, w)
    assert not raised and len(w.answers.suggested) == 8 and w.ctl.layer(SUGGESTED).data.shape == (8, 2)
    w.ctl.layer(SUGGESTED).name = "to ask"  # renamed: still the widget's
    w.answers.next_suggestion()
    first = w.answers.suggested[w.answers.cursor]
    w.answers.answer_yes()
    assert w.session.types["astrocyte"].answers == {first: True}
    viewer.layers.remove(w.ctl.layer(CELLS))
    with qtbot.capture_exceptions() as raised:
        w.results.predict()  # nothing adapted yet: a message, no painting
        assert any("No cell type is adapted yet" in e for e in _errors()) and w.jobs.worker is None
        w.results.adapt()
        _wait(qtbot, w)
        w.results.predict()
        _wait(qtbot, w)
    assert not raised and "astrocyte" in w.results.legend.text() and w.ctl.layer(CELLS) is not None  # drawn again
    w.types.add_type("neuron")
    w.tissue.store_edit.setText(w.tissue.store_edit.text() + "-2")
    w.tissue.detect()  # a new session lists only its own types
    _wait(qtbot, w)
    assert [w.types.type_list.item(i).text() for i in range(w.types.type_list.count())] == []


def test_answer_keys_work_with_an_image_layer_active_and_go_with_the_widget(widget, qtbot):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    viewer.layers.selection.active = viewer.layers["NeuN"]  # the user just set a channel's contrast
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Y)  # napari's Image layer has its own 'y'
    assert list(w.session.types["astrocyte"].answers.values()) == [True]
    w.close()
    assert not any(f.__doc__ and f.__doc__.startswith("napari-agile:") for f in viewer.layers["NeuN"].keymap.values())


def test_buttons_that_need_cells_wait_for_a_session_and_for_a_running_job(widget, qtbot):
    w = widget
    save = w.files.file_buttons["Save session…"]
    assert (
        not w.answers.suggest_btn.isEnabled()
        and not save.isEnabled()
        and w.files.file_buttons["Load session…"].isEnabled()
    )
    w.tissue.detect()
    assert not w.tissue.detect_btn.isEnabled() and not w.files.file_buttons["Load session…"].isEnabled()
    _wait(qtbot, w)
    assert w.answers.suggest_btn.isEnabled() and save.isEnabled()
    w.types.add_type("astrocyte")
    w.answers.suggest()
    assert not save.isEnabled() and not w.files.file_buttons["Export CSV…"].isEnabled()
    _wait(qtbot, w)
    assert save.isEnabled()


def test_closing_the_dock_with_its_button_unhooks_the_widget(widget, qtbot):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    viewer.window.remove_dock_widget(w)  # what the dock's close button does: the widget is not closed
    viewer.layers.selection.active = viewer.layers["NeuN"]
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Y)
    assert w.session.types["astrocyte"].answers == {}  # a hidden widget answers nothing into its session
    assert not any(f.__doc__ and f.__doc__.startswith("napari-agile:") for f in viewer.layers["NeuN"].keymap.values())


def test_the_question_follows_answers_and_undo(widget, qtbot):
    w = _with_suggestions(widget, qtbot)
    answers = w.session.types["astrocyte"].answers
    first = w.answers.suggested[0]
    w.answers.answer_yes()
    w.answers.undo()  # the question goes back to the cell taken back
    assert first not in answers and w.answers.suggested[w.answers.cursor] == first
    for _ in w.answers.suggested:
        w.answers.answer_no()
    assert w.answers.cursor == -1 and "All 8 suggested cells are answered" in w.jobs.status.text()
    w.answers.answer_yes()  # one key too many: no cell is in the question any more
    assert set(answers.values()) == {False} and len(answers) == 8
    w.results.predict()  # nothing adapted: refused, as Export is
    w.files.export_csv("never.csv")
    assert sum("No cell type is adapted yet" in e for e in _errors()) == 2


def test_enter_takes_the_picked_colour_and_unanswered_types_come_back(widget, qtbot, tmp_path):
    w = widget
    w.tissue.detect()
    _wait(qtbot, w)
    w.types.new_color = "#123456"  # as the colour button leaves it
    w.types.type_edit.setText("olig")
    qtbot.keyClick(w.types.type_edit, Qt.Key.Key_Return)
    assert w.ctl.colors["olig"] == "#123456"
    w.results.legend.setText("stale")
    w.ctl.colors.clear()
    w.files.load_session(str(tmp_path / "session"))  # the automatic folder, reopened
    _wait(qtbot, w)
    assert [w.types.type_list.item(i).text() for i in range(w.types.type_list.count())] == ["olig"]
    assert w.ctl.colors["olig"] == "#123456" and w.results.legend.text() == ""


@pytest.fixture(scope="module")
def any_panel_path(tmp_path_factory):
    """A small stand-in for the bundled model for any panel (a per-channel encoder), untrained."""
    cfg = ModelConfig(channels=(), encoder="per_channel", centre_block="nucleus", width=8, blocks=3, trunk_bin=2)
    return AgileModel(cfg, init_params(cfg), 0.01, "head").save(tmp_path_factory.mktemp("any") / "any.safetensors")


def _tick(widget, name, on=True):
    item = widget.findItems(name, Qt.MatchFlag.MatchExactly)[0]
    item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)


def test_a_panel_of_other_names_with_a_channel_left_out(make_napari_viewer, qtbot, sim, any_panel_path, tmp_path):
    viewer = make_napari_viewer(show=True)
    names = {"DAPI": "SYBR", "NeuN": "CD3", "S100": "CD20"}  # SYBR: a nuclear stain no name rule knows
    for data, meta, _ in tissue_layer_data(sim.tissue.select(list(names)).rename(names)):
        viewer.add_image(data, **meta)
    w = AgileWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.tissue.model_edit.setText(str(any_panel_path))
    w.tissue.store_edit.setText(str(tmp_path / "session"))
    notification_manager.records.clear()
    assert ticked(w.tissue.channel_list) == ["SYBR", "CD3", "CD20"] and ticked(w.tissue.nuclear_list) == []
    w.tissue.detect()  # no nuclear stain ticked: the message says where to tick one
    assert any("under 'Nuclear channels'" in e for e in _errors()) and w.jobs.worker is None and w.session is None

    _tick(w.tissue.channel_list, "CD20", False)  # the user leaves a channel out of the model
    _tick(w.tissue.nuclear_list, "SYBR")
    viewer.add_points([[5.0, 5.0]], name="pins")  # a layer event rebuilds the lists: the ticks stay
    assert ticked(w.tissue.channel_list) == ["SYBR", "CD3"] and ticked(w.tissue.nuclear_list) == ["SYBR"]
    w.tissue.detect()
    _wait(qtbot, w)
    session = w.session
    assert session is not None, _errors()
    assert session.config.channels == ("SYBR", "CD3") and session.config.nuclear == (True, False)
    assert session.tissue.channel_names == ["SYBR", "CD3"]

    w.types.add_type("T cell", "#ff00ff")
    w.answers.n_spin.setValue(4)
    w.answers.suggest()
    _wait(qtbot, w)
    assert len(w.answers.suggested) == 4, _errors()
    cd3 = session.tissue.data[1]
    for cid in list(w.answers.suggested):  # answered by the CD3 level under each nucleus
        w.answers.answer(bool(cd3[session.cells.labels == cid].mean() > np.median(cd3)), [cid])
    assert len(session.types["T cell"].answers) == 4
    w.results.adapt()
    _wait(qtbot, w)
    assert session.types["T cell"].params is not None, _errors()
    session.threshold = 0.0
    w.results.predict()
    _wait(qtbot, w)
    assert viewer.layers[TYPES].data.max() >= 1 and "T cell" in w.results.legend.text(), _errors()

    w.files.save_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    meta = json.loads((tmp_path / "saved" / "session.json").read_text())
    assert meta["channels"] == ["SYBR", "CD3"] and meta["nuclear"] == ["SYBR"]
    _tick(w.tissue.channel_list, "CD20")  # ticks changed since: a loaded session brings its own back
    _tick(w.tissue.nuclear_list, "CD3")
    w.files.load_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    assert w.session is not session and w.session.config.channels == ("SYBR", "CD3"), _errors()
    assert ticked(w.tissue.channel_list) == ["SYBR", "CD3"] and ticked(w.tissue.nuclear_list) == ["SYBR"]
    assert set(w.session.types["T cell"].answers) == set(session.types["T cell"].answers)

    _tick(w.tissue.channel_list, "CD3", False)  # only the nuclear stain left: refused, with what to tick
    w.tissue.store_edit.setText(str(tmp_path / "other"))
    notification_manager.records.clear()
    w.tissue.detect()
    assert any("tick at least one marker channel" in e for e in _errors()) and w.jobs.worker is None
    assert not [e for e in _errors() if "failed" in e]


def test_your_own_two_channel_image_picks_the_model_for_any_panel(
    make_napari_viewer, qtbot, sim, any_panel_path, model_path, tmp_path, monkeypatch
):
    import napari_agile.engine.model_file as modelio

    bundled = {"rat-brain": model_path, "any-panel": any_panel_path}
    monkeypatch.setattr(modelio, "_bundled_path", lambda name="rat-brain": bundled[name])
    viewer = make_napari_viewer(show=True)
    names = {"DAPI": "DNA", "NeuN": "CD3"}
    for data, meta, _ in tissue_layer_data(sim.tissue.select(list(names)).rename(names)):
        viewer.add_image(data, **meta)
    w = AgileWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.tissue.store_edit.setText(str(tmp_path / "session"))  # the Model field left empty: the bundled one for this panel
    notification_manager.records.clear()
    assert ticked(w.tissue.channel_list) == ["DNA", "CD3"] and ticked(w.tissue.nuclear_list) == ["DNA"]  # DNA: by name
    w.tissue.detect()
    _wait(qtbot, w)
    assert w.session is not None and w.session.model.config.per_channel, _errors()
    assert w.session.config.channels == ("DNA", "CD3") and w.session.config.nuclear == (True, False)
    w.types.add_type("T cell")
    w.answers.suggest()
    _wait(qtbot, w)
    _adapt_and_predict(w, qtbot, 1)
    assert TYPES in viewer.layers and not [e for e in _errors() if "failed" in e], _errors()

    w.tissue.model_edit.setText(str(model_path))  # the rat-brain model on this panel: what to do instead
    w.tissue.store_edit.setText(str(tmp_path / "other"))
    notification_manager.records.clear()
    w.tissue.detect()
    assert any("lacks" in e and "'Channel names'" in e for e in _errors()) and w.jobs.worker is None


def test_the_dock_fits_a_1280_by_800_window(widget, qtbot):
    w, window = widget, widget.viewer.window._qt_window
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.height() <= 800, timeout=3000)
    assert w.minimumSizeHint().height() < 400 and w.minimumSizeHint().width() < 400  # the dock scrolls
    canvas = widget.viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= 450  # the image keeps room beside the layer list and the dock
    qtbot.waitUntil(lambda: w.height() <= 800, timeout=3000)
    for part in (
        w.jobs.status,
        w.jobs.cancel_btn,
    ):  # the question and Cancel stay in view, however far the steps scroll
        top = part.mapTo(w, part.rect().topLeft()).y()
        assert part.isVisible() and 0 <= top and top + part.height() <= w.height()


def test_opened_before_the_image_it_ticks_every_nuclear_stain_and_forgets_them_for_a_new_image(make_napari_viewer, sim):
    viewer = make_napari_viewer(show=True)
    w = AgileWidget(viewer)  # the user guide's order: the widget first, then the image, one layer at a time
    viewer.window.add_dock_widget(w)
    _open(viewer, sim)
    assert ticked(w.tissue.nuclear_list) == ["DAPI", "Histones"]
    w.tissue.nuclear_list.item(1).setCheckState(Qt.CheckState.Unchecked)  # the user's choice for this image
    w.tissue.refresh_channels()
    assert ticked(w.tissue.nuclear_list) == ["DAPI"]
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    _open(viewer, sim, channels=("Histones", "DAPI", "NeuN"))  # another image: nuclear stains by name again
    assert ticked(w.tissue.nuclear_list) == ["Histones", "DAPI"]


def test_status_lines_follow_the_current_type_and_the_session_folder(widget, qtbot, tmp_path):
    w = _with_suggestions(widget, qtbot)
    assert "astrocyte" in w.jobs.status.text()
    w.types.add_type("oligodendrocyte")
    w.types.type_list.setCurrentRow(0)  # back to astrocyte: its suggestions are gone, so is the question
    assert "Is cell" not in w.jobs.status.text() and "astrocyte" in w.jobs.status.text()
    notification_manager.records.clear()
    w.answers.answer_yes()  # no cell in the question any more: says so
    assert any("Select a cell first" in str(n.message) for n in notification_manager.records)
    w.answers.answer(True, [int(w.session.cells.ids[0])])
    w.files.save_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    assert w.tissue.store_edit.text() == str(tmp_path / "saved")
    w.files.load_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    assert w.session is not None and w.tissue.store_edit.text() == str(w.session.store)
    assert "Add a cell type" not in w.jobs.status.text() and "astrocyte" in w.jobs.status.text()


def test_errors_show_in_the_status_line_and_buttons_wait_for_what_they_need(widget, qtbot):
    w = widget
    assert all(btn.toolTip() for btn in w.findChildren(QPushButton))
    w.tissue.detect()
    _wait(qtbot, w)
    w.types.add_type("astrocyte")
    assert not w.results.adapt_btn.isEnabled() and not w.results.predict_btn.isEnabled()  # no answers, nothing adapted
    assert not w.files.file_buttons["Export CSV…"].isEnabled()
    w.results.adapt()  # called anyway: the reason, in full, in the widget itself
    assert "No answers for 'astrocyte'" in w.jobs.status.text()
    w.answers.answer(True, [int(w.session.cells.ids[0])])
    assert w.results.adapt_btn.isEnabled() and not w.results.predict_btn.isEnabled()
    w.results.adapt()
    _wait(qtbot, w)
    assert w.results.predict_btn.isEnabled() and w.files.file_buttons["Export CSV…"].isEnabled()
    w.files.load_session(str(w.session.store.parent / "no-such-session"))  # an error inside a worker
    _wait(qtbot, w)
    assert "Error" in w.jobs.status.text() and "session" in w.jobs.status.text()


def test_load_brings_back_the_cell_types_layer_and_legend(widget, qtbot, tmp_path):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    _adapt_and_predict(w, qtbot, 2)
    painted, legend = np.asarray(viewer.layers[TYPES].data).copy(), w.results.legend.text()
    w.files.save_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    w.files.load_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    assert TYPES in viewer.layers and np.array_equal(viewer.layers[TYPES].data, painted)
    assert w.results.legend.text() == legend and "astrocyte" in legend
    types = viewer.layers[TYPES]
    assert types.mode == "pan_zoom" and viewer.layers.selection.active is not types  # nothing paints by mistake


def test_an_export_named_without_a_suffix_takes_the_chosen_format(widget, qtbot, tmp_path, monkeypatch):
    w = _with_suggestions(widget, qtbot)
    _adapt_and_predict(w, qtbot, 2)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a: (str(tmp_path / "cells"), a[-1]))
    w.files.file_buttons["Export GeoJSON…"].click()  # the dialog's answer: 'cells', typed without '.geojson'
    _wait(qtbot, w)
    geo = json.loads((tmp_path / "cells.geojson").read_text())
    assert len(geo["features"]) == len(w.session.cells) and not (tmp_path / "cells").exists()


def test_loading_a_session_on_another_section_of_the_same_size_is_refused(widget, qtbot, tmp_path):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    w.answers.answer(True, w.answers.suggested[:1])
    w.files.save_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    _open(viewer, simulate_tissue(SHAPE, seed=8))  # another section, the same size and channels
    w.files.load_session(str(tmp_path / "saved"))
    _wait(qtbot, w)
    assert "another section" in w.jobs.status.text()
    assert CELLS not in viewer.layers and NUCLEI not in viewer.layers  # the old nuclei are not drawn on it


def test_type_colours_stand_out_from_the_channel_colours(widget):
    w = widget
    shown = np.array([layer.colormap.colors[-1][:3] for layer in w.tissue.selected_layers()])
    for name in ("astrocyte", "neuron", "microglia"):
        w.types.add_type(name)
        rgb = np.array([int(w.ctl.colors[name][i : i + 2], 16) for i in (1, 3, 5)]) / 255
        assert np.linalg.norm(shown - rgb, axis=1).min() >= 0.5, (name, w.ctl.colors[name])


def test_after_adapt_the_answers_are_checked_and_a_contradicted_one_is_a_click_away(widget, qtbot):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    w.answers.answer(True, w.answers.suggested[:3])
    w.answers.answer(False, w.answers.suggested[3:6])
    w.results.adapt()
    _wait(qtbot, w)
    check = w.session.quality("astrocyte")  # the headless twin of what the widget shows
    assert (
        "held out" in w.results.quality_label.text()
        and f"of {check.n_answers} answers" in w.results.quality_label.text()
    )
    assert all(f"href='{cid}'" in w.results.quality_label.text() for cid in check.contradicted), (
        w.results.quality_label.text()
    )
    target = w.answers.suggested[3]  # answered no
    w.results.quality_label.linkActivated.emit(str(target))  # as a click on the cell's link does
    yx = w.session.cells.table.loc[target, ["y", "x"]].to_numpy(float)
    assert np.allclose(camera(viewer).center[-2:], yx) and f"Cell {target} (you said no)" in w.jobs.status.text()
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Y)
    assert w.session.types["astrocyte"].answers[target] is True


def test_h_and_the_question_button_show_the_keys_over_the_image(widget, qtbot):
    w, viewer = widget, widget.viewer
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_H)
    overlay = text_overlay(viewer)
    assert overlay.visible and all(f"{key}   " in overlay.text for key in ("y", "n", "u", "j", "k", "h"))
    qtbot.keyClick(canvas, Qt.Key.Key_H)
    assert not overlay.visible
    button = next(b for b in w.findChildren(QPushButton) if b.text() == "?")
    button.click()
    assert overlay.visible and "click = yes" in overlay.text


def test_the_threshold_slider_retypes_cells_and_the_probability_image_follows_the_type(widget, qtbot, tmp_path):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    panel = w.results.threshold_panel
    assert not panel.isEnabled()  # nothing predicted yet
    _adapt_and_predict(w, qtbot, 3)
    p = w.session.predict()["p_astrocyte"].to_numpy()
    assert panel.isEnabled() and f"of {len(p)} cells reach" in panel.histogram.text()
    panel.slider.setValue(0)  # as letting the slider go at 0 does: every cell reaches it
    _wait(qtbot, w)
    assert w.session.type_thresholds["astrocyte"] == 0.0
    assert f"{len(p)} of {len(p)} cells reach 0.00" in panel.histogram.text()
    assert (w.results.table["cell_type"] == "astrocyte").all(), _errors()
    saved = json.loads((tmp_path / "session" / "session.json").read_text())
    assert saved["thresholds"]["astrocyte"] == 0.0  # kept with the session
    panel.show_box.setChecked(True)
    image = viewer.layers["probability"]
    table = w.session.predict()
    row = table.index[0]
    y, x = np.round(table.loc[row, ["y", "x"]].to_numpy(float)).astype(int)
    assert image.visible and np.isclose(image.data[y, x], table.loc[row, "p_astrocyte"], atol=1e-6)
    assert "probability" not in [
        w.tissue.image_list.item(i).text() for i in range(w.tissue.image_list.count())
    ]  # not a channel
    w.types.add_type("endothelial")  # another type, not predicted: the view says so and the image hides
    w.types.type_list.setCurrentRow(1)
    assert not panel.isEnabled() and not image.visible


def test_t_gives_a_cell_the_current_type_and_no_other(widget, qtbot):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    cid = w.answers.suggested[0]
    w.answers.answer(True, [cid])  # said astrocyte...
    w.types.add_type("endothelial")  # ...but it is an endothelial cell
    w.results.show_cell(cid)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_T)
    types = w.session.types
    assert types["endothelial"].answers[cid] is True and types["astrocyte"].answers[cid] is False, _errors()


def test_a_type_is_renamed_and_deleted_from_the_widget_and_the_painting_follows(widget, qtbot, tmp_path):
    w, viewer = _with_suggestions(widget, qtbot), widget.viewer
    w.session.threshold = 0.0
    _adapt_and_predict(w, qtbot, 3)
    answers = dict(w.session.types["astrocyte"].answers)
    w.types.rename_type("astro")
    _wait(qtbot, w)
    assert [w.types.type_list.item(i).text() for i in range(w.types.type_list.count())] == ["astro"]
    assert w.session.types["astro"].answers == answers and "astro" in w.results.legend.text(), _errors()
    assert list(viewer.layers[TYPES].features["cell_type"]) == ["none", "astro"]
    journal = (tmp_path / "session" / "answers.jsonl").read_text()
    assert '"rename": "astro"' in journal
    w.types.add_type("endothelial")
    w.types.delete_type(confirm=False)
    assert [w.types.type_list.item(i).text() for i in range(w.types.type_list.count())] == ["astro"]
    w.types.type_list.setCurrentRow(0)
    w.types.delete_type(confirm=False)
    assert w.types.type_list.count() == 0 and not w.session.types and TYPES not in viewer.layers, _errors()
    assert Session.load(tmp_path / "session", w.session.tissue).types == {}


def test_other_images_are_typed_from_the_widget_with_a_table_each(widget, qtbot, tmp_path):
    import pandas as pd
    import tifffile

    from napari_agile.io.images import write_ome_tiff

    w = _with_suggestions(widget, qtbot)
    _adapt_and_predict(w, qtbot, 3)
    other = write_ome_tiff(simulate_tissue(SHAPE, seed=11).tissue, tmp_path / "other.ome.tif")
    blank = tmp_path / "blank.tif"  # no nucleus: named and skipped, the other still typed
    tifffile.imwrite(blank, np.zeros((7, *SHAPE), np.uint16), photometric="minisblack")
    w.files.type_images([str(other), str(blank)], str(tmp_path / "typed"))
    _wait(qtbot, w)
    assert (tmp_path / "typed" / "other.csv").exists(), (w.jobs.status.text(), _errors())
    table = pd.read_csv(tmp_path / "typed" / "other.csv")
    assert len(table) > 0 and "p_astrocyte" in table and table["cell_type"].isin(["astrocyte", "none"]).all()
    assert "Typed 1 of 2" in w.jobs.status.text() and "blank.tif" in w.jobs.status.text()


def test_teaching_on_the_part_in_view_places_everything_there_and_loads_again(widget, qtbot):
    """'Teach on: the part in view' (a section too large for every cell's patch): the session holds the part the
    canvas shows, its layers sit on that part of the image, a click answers the cell under it, and Load session
    takes the same part of the whole section again."""
    from napari_agile._napari.tissue_panel import IN_VIEW, WHOLE

    w, viewer = widget, widget.viewer
    cam, (height, width) = camera(viewer), viewer.canvas.size
    cam.center, cam.zoom = (110.0, 170.0), max(height, width) / 120  # about 120 px of the section across
    half = np.array([height, width]) / cam.zoom / 2
    top, left = np.floor(np.array([110.0, 170.0]) - half).astype(int)
    bottom, right = np.ceil(np.array([110.0, 170.0]) + half).astype(int)
    w.tissue.region_combo.setCurrentText(IN_VIEW)
    w.tissue.detect()
    _wait(qtbot, w)
    session = w.session
    assert session is not None, _errors()
    assert session.tissue.shape == (bottom - top, right - left) and session.tissue.metadata["region"][:2] == [top, left]
    dots = viewer.layers[CELLS]
    placed = dots.data + np.asarray(dots.translate)
    assert (placed >= (top, left)).all() and (placed < (bottom, right)).all() and len(placed) > 3
    np.testing.assert_allclose(viewer.layers[NUCLEI].translate, dots.translate)
    one = int(dots.features["id"][0])
    assert w.answers.cell_at(dots.data_to_world(dots.data[0])) == one  # the cell under the pointer, not an offset one
    w.tissue.region_combo.setCurrentText(WHOLE)
    w.files.load_session(str(session.store))
    _wait(qtbot, w)
    assert w.session is not session and w.session.tissue.shape == session.tissue.shape, _errors()
    np.testing.assert_allclose(viewer.layers[CELLS].translate, dots.translate)


def test_a_section_too_large_for_memory_is_refused_before_its_detection(widget, qtbot, sim, monkeypatch):
    """Detect counts the nuclei on sampled tiles first: when even that floor's session would not fit in free memory,
    the error says so (with 'Teach on: the part in view') before any detection runs, and no session opens."""
    import napari_agile._napari.tissue_panel as panel
    import napari_agile.memory as memory
    from napari_agile.detect.nuclei import estimate_nuclei

    ran = []
    monkeypatch.setattr(panel, "detect_nuclei", lambda *args, **kwargs: ran.append(args))
    monkeypatch.setattr(memory, "free_memory", lambda: 1_000_000)
    widget.tissue.detect()
    _wait(qtbot, widget)
    floor = estimate_nuclei(sim.tissue).at_least
    status = widget.jobs.status.text()
    assert not ran and widget.session is None
    assert f"At least {floor:,} nuclei (counted on sampled tiles)" in status and "the part in view" in status, status

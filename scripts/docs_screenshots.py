"""Drive a real napari viewer through the AGILE loop and save the user guide's screenshots in docs/images/.

Run under a display (or Xvfb):
    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1200x24" python scripts/docs_screenshots.py
The answers come from the simulator's ground truth, as a biologist who knows the tissue would give them.
Without the bundled model (or --model) an untrained network is used and the script says so: the screenshots
then show the interface, not the model's accuracy.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication, QScrollArea

from napari_agile._napari.layers import camera
from napari_agile._napari.sample_data import SAMPLE_SHAPE
from napari_agile.engine.model_file import AgileModel, load_model
from napari_agile.engine.network import ModelConfig, init_params
from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.synth.simulator import simulate_tissue

ROOT = Path(__file__).resolve().parents[1]


def _wait(widget, timeout: float = 300.0) -> None:
    """Let the event loop run until the widget's worker is done."""
    end = time.time() + timeout
    while widget.jobs.worker is not None and time.time() < end:
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()


def _model_path(arg: str | None, out: Path) -> str:
    """The model to use: --model, else the bundled one, else an untrained network (announced)."""
    if arg:
        return arg
    try:
        load_model()
        return ""
    except AgileInputError:
        print("NOTE: no bundled model installed; using an UNTRAINED network (predictions are not meaningful).")
        cfg = ModelConfig(channels=PAPER_CHANNELS)
        return str(AgileModel(cfg, init_params(cfg)).save(out / "untrained.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.add_argument("--session", type=Path, default=Path("/tmp/napari-agile-docs-session"))
    parser.add_argument("--type", default="astrocyte", help="cell type to teach (a simulator type)")
    parser.add_argument("--rounds", type=int, default=2, help="suggest/answer rounds before adapting")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.session, ignore_errors=True)  # a scratch session: a folder holding one is refused
    model = _model_path(args.model, args.session.parent)

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open_sample("napari-agile", "simulated_rat_brain")
    _, widget = viewer.window.add_plugin_dock_widget("napari-agile", "AGILE cell typing")
    widget.tissue.model_edit.setText(model)
    widget.tissue.store_edit.setText(str(args.session))
    truth = simulate_tissue(SAMPLE_SHAPE, seed=0).cells  # the sample's ground truth, to answer like an expert
    shot = lambda name: viewer.screenshot(str(args.out / name), canvas_only=False, flash=False)  # noqa: E731
    QApplication.processEvents()
    shot("01-open.png")

    widget.tissue.detect()
    _wait(widget)
    shot("02-detect.png")

    widget.types.add_type(args.type)
    widget.types.add_type("endothelial")
    widget.types.type_list.setCurrentRow(0)
    cells = widget.session.cells
    for round_ in range(args.rounds):
        widget.answers.suggest()
        _wait(widget)
        if round_ == 0:
            shot("03-suggest.png")
        for cid in list(widget.answers.suggested):
            y, x = cells.table.loc[cid, ["y", "x"]].round().astype(int)
            tid = truth.labels[y, x]
            is_type = tid > 0 and truth.table.loc[tid, "cell_type"] == args.type
            widget.answers.answer(bool(is_type), [cid])
            QApplication.processEvents()
        if round_ == 0:
            viewer.reset_view()
            camera(viewer).zoom *= 1.6
            shot("04-answers.png")

    widget.results.adapt()
    _wait(widget)
    widget.results.predict()
    _wait(widget)
    viewer.reset_view()
    viewer.layers["suggested cells"].visible = False
    # the answer check, legend, threshold
    widget.findChild(QScrollArea).ensureWidgetVisible(widget.results.threshold_panel)
    QApplication.processEvents()
    shot("05-predict.png")
    widget.results.threshold_panel.show_box.setChecked(True)  # the probability image of the current type...
    for layer in viewer.layers:
        layer.visible = layer.name in ("probability", "DAPI", "cells")
    widget.answers.toggle_help()  # ...and the keys over the image
    QApplication.processEvents()
    shot("07-probability.png")
    widget.answers.toggle_help()
    widget.results.threshold_panel.show_box.setChecked(False)
    viewer.layers["suggested cells"].visible = False
    for layer in viewer.layers:
        layer.visible = layer.name in ("cell types", "DAPI")
    viewer.screenshot(str(args.out / "06-types-canvas.png"), canvas_only=True, flash=False)
    widget.files.save_session(str(args.session / "saved"))
    _wait(widget)
    answers = widget.session.types[args.type].answers
    print(f"{len(answers)} answers ({sum(answers.values())} yes); screenshots in {args.out}")
    print(widget.session.predict()["cell_type"].value_counts().to_string())
    viewer.close()


if __name__ == "__main__":
    np.random.seed(0)
    main()

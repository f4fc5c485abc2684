"""Step 4 of the dock: adapt the current type on its answers (with a check of the answers held out), predict every
cell, paint the types with a legend, and set the current type's probability threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
from napari.layers import Labels
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QFormLayout, QGroupBox

from napari_agile._napari import layers as _layers
from napari_agile._napari.controller import Controller
from napari_agile._napari.controls import button, rich_label, spin
from napari_agile._napari.threshold_panel import ThresholdPanel
from napari_agile.engine.quality import AnswerQuality
from napari_agile.engine.thresholds import type_threshold
from napari_agile.errors import AgileInputError
from napari_agile.io.legend import legend_table

#: contradicted answers linked in the quality line (more are summed up as '…')
LINKS = 12


class ResultsPanel(QGroupBox):
    """4. Learn and predict."""

    def __init__(self, ctl: Controller) -> None:
        super().__init__("4. Learn and predict")
        self.ctl = ctl
        self.table: pd.DataFrame | None = None  # the last prediction (Session.predict's table)
        form = QFormLayout(self)
        self.steps_spin = spin("Gradient steps", 1, 100, 1, form)
        self.adapt_btn = button(
            "Adapt", self.adapt, "Teach the network the current type from its answers (needs an answer).", form
        )
        self.quality_label = rich_label(
            tip="After Adapt: each answer predicted by weights adapted on the other answers only, and the answers "
            "the model now contradicts: click one to check it (y / n changes the answer)."
        )
        self.quality_label.linkActivated.connect(lambda cid: self.show_cell(int(cid)))
        form.addRow(self.quality_label)
        self.predict_btn = button(
            "Predict", self.predict, "Paint every nucleus with its most probable type (needs an adapted type).", form
        )
        self.legend = rich_label()
        self.legend.setWordWrap(False)
        form.addRow(self.legend)
        guard = ctl.jobs.guard
        self.threshold_panel = ThresholdPanel(
            lambda value: guard(lambda: self._set_threshold(value)),
            lambda on: guard(lambda: self._show_probability(on)),
        )
        form.addRow(self.threshold_panel)

    def enable(self, busy: bool) -> None:
        """Adapt once the current type has answers, Predict once a type is adapted."""
        session = None if busy else self.ctl.session
        name = self.ctl.types.current_name()
        state = session.types.get(name) if session is not None and name else None
        self.adapt_btn.setEnabled(state is not None and bool(state.answers))
        self.predict_btn.setEnabled(session is not None and bool(session.adapted))

    # ---- adapt --------------------------------------------------------------------------------
    def adapt(self) -> None:
        """Adapt the current type's network from the meta-trained weights on all its answers (in a worker)."""
        self.ctl.jobs.guard(self._adapt)

    def _adapt(self) -> None:
        session, name, steps = self.ctl.need_session(), self.ctl.types.current(), self.steps_spin.value()
        if name not in session.types or not session.types[name].answers:
            raise AgileInputError(f"No answers for {name!r} yet: press Suggest and answer a few cells (y / n) first.")

        def work(progress):
            session.adapt(name, steps=steps)
            progress.phase("Checking the answers held out")
            return session.quality(name)

        self.ctl.jobs.run(f"Adapting {name}", work, self._on_adapted)

    def _on_adapted(self, check: AnswerQuality) -> None:
        """Say how the adapted type does on its own answers, with the contradicted ones as links to the cells."""
        self.ctl.say(
            f"{check.cell_type!r} adapted on {check.n_answers} answers. Predict to see every cell, or Suggest again."
        )
        links = ", ".join(f"<a href='{i}' style='color:#8fd3ff'>{i}</a>" for i in check.contradicted[:LINKS])
        more = " …" if len(check.contradicted) > LINKS else ""
        text = check.summary().split("; the model")[0]
        self.quality_label.setText(
            f"{text}; the model contradicts your answer on {links}{more}" if links else check.summary()
        )

    def show_cell(self, cell_id: int) -> None:
        """Centre the view on a cell and select it, so y / n answer it (the contradicted answers link here)."""
        ctl = self.ctl
        layer = ctl.cells_layer()
        rows = np.flatnonzero(layer.features["id"].to_numpy() == cell_id) if layer is not None else []
        if not len(rows):
            show_info(f"No cell {cell_id} in this session.")
            return
        layer.selected_data = {int(rows[0])}
        ctl.focus(layer, int(rows[0]))
        name = ctl.types.current_name()
        state = ctl.session.types.get(name) if ctl.session is not None and name else None
        answer = state.answers.get(cell_id) if state else None
        said = "no answer" if answer is None else f"you said {'yes' if answer else 'no'}"
        ctl.say(f"Cell {cell_id} ({said}): y / n to answer it again, t = this type and no other, u to undo.")

    # ---- predict ------------------------------------------------------------------------------
    def predict(self) -> None:
        """Predict every cell's type and paint the nuclei with the type colours (in a worker)."""
        self.ctl.jobs.guard(self._predict)

    def _predict(self) -> None:
        session = self.ctl.need_adapted()

        def work(progress):
            table = session.predict(progress=progress)
            return table, session.paint(table)

        self.ctl.jobs.run("Predicting cell types", work, self.on_predicted)

    def on_predicted(self, result: tuple[pd.DataFrame, np.ndarray]) -> None:
        """Show a prediction: the painted types below the suggestions, the legend, the cells' predicted columns."""
        ctl = self.ctl
        table, painted = result
        names = list(ctl.need_session().types)
        for name in names:
            if name not in ctl.colors:
                ctl.types.add_type(name)
        legend = legend_table(names, ctl.colors, table["cell_type"])
        if (layer := ctl.layer(_layers.TYPES)) is not None:
            layer.data = painted
        else:
            layer = Labels(painted, name=_layers.TYPES, opacity=0.8, **ctl.frame)
            above = ctl.layer(_layers.SUGGESTED)
            ctl.viewer.layers.insert(ctl.viewer.layers.index(above) if above else len(ctl.viewer.layers), layer)
            ctl.own[_layers.TYPES] = layer
        self.show_types(layer, legend)
        layer.mode = "pan_zoom"  # a look at the result, not a paint brush
        cells = ctl.cells_layer()
        cells.features = _layers.with_predictions(cells.features, table)
        ctl.viewer.layers.selection.active = cells  # clicks and keys answer cells, they do not paint
        self.table = table
        self.refresh_threshold()
        ctl.say("Painted every nucleus with its most probable type (legend under Predict).")

    def show_types(self, layer: Labels, legend: pd.DataFrame) -> None:
        """Colour the painted types and write the legend from the legend table (class id, type, colour, count)."""
        typed = legend[legend["index"] > 0]
        layer.colormap = _layers.type_colormap(list(typed["cell_type"]), dict(zip(typed["cell_type"], typed["color"])))
        layer.features = legend
        total = max(int(legend["n_cells"].sum()), 1)
        rows = [
            f"<tr><td><span style='color:{c}'>■</span> {n}</td><td align='right'>&nbsp;{k}</td>"
            f"<td align='right'>&nbsp;{k / total:.0%}</td><td>&nbsp;<span style='color:{c}'>"
            f"{'█' * round(20 * k / total)}</span></td></tr>"
            for n, c, k in typed[["cell_type", "color", "n_cells"]].itertuples(index=False)
        ]
        none = int(legend["n_cells"].iloc[0])
        rows.append(
            f"<tr><td>unassigned</td><td align='right'>&nbsp;{none}</td>"
            f"<td align='right'>&nbsp;{none / total:.0%}</td><td></td></tr>"
        )
        self.legend.setText("<table>" + "".join(rows) + "</table>")  # count, fraction and a bar per type

    def clear(self) -> None:
        """Forget the last prediction (another session): no legend, no threshold view."""
        self.legend.setText("")
        self.quality_label.setText("")
        self.table = None
        self.refresh_threshold()

    def retype(self) -> None:
        """A type renamed or deleted: type the cells again from the kept probabilities, or drop the painted types."""
        session = self.ctl.session
        if self.table is not None and session is not None and session.adapted:
            self.predict()
        elif (layer := self.ctl.layer(_layers.TYPES)) is not None:
            self.ctl.viewer.layers.remove(layer)
            self.legend.setText("")
            self.table = None

    # ---- threshold ----------------------------------------------------------------------------
    def refresh_threshold(self) -> None:
        """The threshold view for the current type: its last predicted probabilities, threshold, probability image."""
        session, name = self.ctl.session, self.ctl.types.current_name()
        column = f"p_{name}"
        known = session is not None and name in session.types
        p = self.table[column].to_numpy() if known and self.table is not None and column in self.table else None
        self.threshold_panel.show_type(p, type_threshold(session, name) if known else 0.5)
        self._show_probability(self.threshold_panel.show_box.isChecked() and p is not None)

    def _set_threshold(self, value: float) -> None:
        """The slider let go: the current type's threshold, saved, and every cell typed again (cached probabilities)."""
        session = self.ctl.need_adapted()
        session.set_threshold(self.ctl.types.current(), value)
        self.predict()

    def _show_probability(self, on: bool) -> None:
        """Paint (or hide) the 'probability' image: each nucleus its probability of the current type."""
        ctl = self.ctl
        layer = ctl.layer(_layers.PROBABILITY)
        if not on or self.table is None or ctl.session is None:
            if layer is not None:
                layer.visible = False
            return
        name = ctl.types.current()
        data = ctl.session.paint_probability(name, self.table)
        if layer is None:
            layer = ctl.add_own(_layers.PROBABILITY, _layers.probability_layer(data, ctl.frame))
        layer.data, layer.visible = data, True
        layer.metadata["cell_type"] = name

"""Step 3 of the dock: suggest the cells the model is least sure about, walk through them (j / k), answer them by
key or click (y / n / t, u to take back), each answer written to the session folder at once (Session.annotate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QPushButton

from napari_agile._napari import keys
from napari_agile._napari import layers as _layers
from napari_agile._napari.controller import Controller
from napari_agile._napari.controls import button, spin
from napari_agile.engine.uncertainty import SPREAD
from napari_agile.session import SUGGEST_METHODS, Session


class AnswersPanel(QGroupBox):
    """3. Label the suggested cells; its methods are also the answer keys' actions (keys.KEYS)."""

    def __init__(self, ctl: Controller) -> None:
        super().__init__("3. Label the suggested cells")
        self.ctl = ctl
        self.suggested: list[int] = []
        self.cursor = -1  # the suggestion in question (-1: none)
        form = QFormLayout(self)
        self.n_spin = spin("Cells to suggest", 1, 500, 8, form)
        self.pick_combo = QComboBox()
        self.pick_combo.addItems(SUGGEST_METHODS)
        self.pick_combo.setToolTip(
            "auto: cells covering the section's range first, then the most uncertain (entropy); "
            "bald and random as in docs/method.md; cover: the section's range only."
        )
        form.addRow("Pick by", self.pick_combo)
        self.spread_spin = spin("Spread", 1, 50, SPREAD, form)
        self.spread_spin.setToolTip(
            "A round asks the cells that cover the spread × N most uncertain (1: the N most uncertain, as the paper)."
        )
        self.suggest_btn = button(
            "Suggest", self.suggest, "Show the cells the model is least sure about for the current type.", form
        )
        self.click_mode = QComboBox()
        self.click_mode.addItems(keys.CLICK_MODES)
        self.click_mode.setToolTip("'click = yes/no': a click on a nucleus answers it at once.")
        form.addRow("Mouse", self.click_mode)
        help_label = QLabel(keys.help_html())
        help_label.setWordWrap(True)
        help_btn: QPushButton = button("?", self.toggle_help, "Show or hide the keys on the image (key h).")
        help_btn.setMaximumWidth(30)
        form.addRow(help_btn, help_label)
        self.undo_btn = button("Undo last answer", self.undo, "Take back the last answer (key u).", form)
        self.count_label = QLabel("no answers yet")
        form.addRow(self.count_label)

    def enable(self, busy: bool) -> None:
        ready = not busy and self.ctl.session is not None
        self.suggest_btn.setEnabled(ready)
        self.undo_btn.setEnabled(ready)

    def toggle_help(self) -> None:
        """Show or hide the answer keys (and the mouse modes) over the image."""
        keys.toggle_help(self.ctl.viewer)

    # ---- suggest ------------------------------------------------------------------------------
    def suggest(self) -> None:
        """Ask the session for the N cells it is least sure about for the current type (MC dropout, in a worker)."""
        self.ctl.jobs.guard(self._suggest)

    def _suggest(self) -> None:
        session, name, n = self.ctl.need_session(), self.ctl.types.current(), self.n_spin.value()
        method, spread = self.pick_combo.currentText(), self.spread_spin.value()

        def work(progress):
            ids = session.suggest(name, n, method=method, spread=spread, progress=progress)
            p, h = session.probabilities(name)
            return name, ids, p, h

        self.ctl.jobs.run(f"Finding uncertain {name} cells", work, self._on_suggested)

    def _on_suggested(self, result) -> None:
        name, ids, p, h = result
        session = self.ctl.need_session()
        if self.ctl.types.current_name() != name:
            self.ctl.types.add_type(name)  # answers go to the type the cells were suggested for
        if not ids:
            show_info(f"Every cell has an answer for {name!r}: nothing left to suggest.")
            return
        rows = session.cells.table.index.get_indexer(ids)
        features = _layers.suggestion_features(ids, p[rows], h[rows], name, session.types[name].answers)
        layer = self._suggestions_layer()
        _layers.show_suggestions(layer, session.cells.centroids[rows], features, session.cells.diameter)
        self.suggested, self.cursor = list(ids), -1
        self.ctl.viewer.layers.selection.active = layer
        self.next_suggestion()  # shows the first question

    def _suggestions_layer(self) -> Any:
        """The suggestions layer, made again (empty: the suggestions are gone) if the user deleted it."""
        layer = self.ctl.layer(_layers.SUGGESTED)
        if layer is None:
            self.suggested, self.cursor = [], -1
            layer = self.ctl.add_own(_layers.SUGGESTED, _layers.suggestions_layer(self.ctl.frame))
        return layer

    def clear(self) -> None:
        """Forget the suggestions (another type, or another session) and empty their layer."""
        if self.suggested and (layer := self.ctl.layer(_layers.SUGGESTED)) is not None:
            layer.selected_data = set()
            layer.data = np.empty((0, 2))
        self.suggested, self.cursor = [], -1

    def _jump(self, step: int) -> None:
        if not self.suggested:
            show_info("No suggested cells: press Suggest.")
            return
        layer = self.ctl.layer(_layers.SUGGESTED)
        if layer is None:
            self.suggested, self.cursor = [], -1
            show_info("The suggested cells layer was deleted: press Suggest to ask again.")
            return
        self.cursor = (self.cursor + step) % len(self.suggested)
        layer.selected_data = {self.cursor}
        _layers.mark_current(layer, self.cursor)
        if (cells := self.ctl.layer(_layers.CELLS)) is not None:  # the next answer is about this cell, not an older one
            cells.selected_data = set()
        self.ctl.focus(layer, self.cursor)
        question = layer.features["question"].iloc[self.cursor]
        self.ctl.say(f"{self.cursor + 1} of {len(self.suggested)}: {question}  (y / n, j = next)")

    def next_suggestion(self) -> None:
        """Centre the view on the next suggested cell and select it."""
        self._jump(+1)

    def previous_suggestion(self) -> None:
        """Centre the view on the previous suggested cell and select it."""
        self._jump(-1)

    # ---- answer -------------------------------------------------------------------------------
    def _targets(self) -> list[int]:
        """Cells the next answer is about: selected points of an active dock layer, else the current suggestion."""
        active = self.ctl.viewer.layers.selection.active
        ours = (self.ctl.layer(_layers.SUGGESTED), self.ctl.layer(_layers.CELLS))
        if active is not None and any(active is layer for layer in ours) and active.selected_data:
            rows = sorted(active.selected_data)
            return [int(i) for i in active.features["id"].to_numpy()[rows]]
        if 0 <= self.cursor < len(self.suggested):
            return [self.suggested[self.cursor]]
        return []

    def answer_yes(self) -> None:
        """Answer 'yes, this is the current type' for the selected cell(s)."""
        self.answer(True)

    def answer_no(self) -> None:
        """Answer 'no, this is not the current type' for the selected cell(s)."""
        self.answer(False)

    def answer(self, yes: bool, ids: list[int] | None = None) -> None:
        """Record an answer (written to the session folder at once), colour it, and move to the next suggestion."""
        self.ctl.jobs.guard(lambda: self._record(ids, lambda s, name, ids: s.annotate(name, ids, [yes] * len(ids))))

    def give_type(self, ids: list[int] | None = None) -> None:
        """Give the selected cell(s) the current type and no other: yes for it, no for every other type (one class
        per cell, the correction of a predicted type; Session.assign)."""
        self.ctl.jobs.guard(lambda: self._record(ids, lambda session, name, ids: session.assign(ids, name)))

    def _record(self, ids: list[int] | None, write: Callable[[Session, str, list[int]], None]) -> None:
        """Write answers on `ids` (default: the selected or asked cell) for the current type, then move on."""
        session, name = self.ctl.need_session(), self.ctl.types.current()
        ids = self._targets() if ids is None else ids
        if not ids:
            show_info("Select a cell first (press Suggest, or click a cell in the 'cells' layer).")
            return
        if self.ctl.jobs.in_use():
            return
        write(session, name, ids)
        self.ctl.answers_changed()
        if not (self.suggested and ids == [self.suggested[self.cursor]]):
            return
        todo = {i for i in self.suggested if i not in session.types[name].answers}
        if todo:
            step = next(s for s in range(1, len(self.suggested) + 1) if self._at(s) in todo)
            self._jump(step)
        else:  # no cell stays in the question, so one key too many changes nothing
            self.cursor = -1
            if (layer := self.ctl.layer(_layers.SUGGESTED)) is not None:
                layer.selected_data = set()
            self.ctl.say(
                f"All {len(self.suggested)} suggested cells are answered: Adapt, or Suggest again (j / k revisit them)."
            )

    def _at(self, step: int) -> int:
        return self.suggested[(self.cursor + step) % len(self.suggested)]

    def undo(self) -> None:
        """Take back the last answer (Session.undo); the question is that cell again when it was suggested."""
        self.ctl.jobs.guard(self._undo)

    def _undo(self) -> None:
        session = self.ctl.need_session()
        if self.ctl.jobs.in_use():
            return
        undone = session.undo()
        if undone is None:
            show_info("Nothing to undo.")
            return
        self.ctl.answers_changed()
        cell_type, cid = undone
        if cell_type == self.ctl.types.current() and cid in self.suggested:
            self._jump(self.suggested.index(cid) - self.cursor)
        self.ctl.say(f"Took back the answer on cell {cid} ({cell_type}): answer it again (y / n).")

    def on_click(self, viewer, event):
        """In 'click = yes/no' mode, a click (not a drag) on a nucleus answers it."""
        mode = self.click_mode.currentIndex()
        if mode == 0 or self.ctl.session is None or self.ctl.layer(_layers.CELLS) is None:
            return
        start = np.asarray(event.position)
        yield
        while event.type == "mouse_move":
            yield
        if np.abs(np.asarray(event.position) - start).max() * _layers.camera(viewer).zoom > 4:
            return  # a drag (pan), not a click
        cid = self.cell_at(event.position)
        if cid is None:
            show_info("No cell here: click on a nucleus.")
        else:
            self.answer(mode == 1, [cid])

    def cell_at(self, world_position) -> int | None:
        """The cell whose nucleus is under a world position, else the nearest centre within 10 pixels."""
        session = self.ctl.need_session()
        y, x = np.asarray(self.ctl.cells_layer().world_to_data(world_position))[-2:]
        labels = session.cells.labels
        iy, ix = int(round(y)), int(round(x))
        if labels is not None and 0 <= iy < labels.shape[0] and 0 <= ix < labels.shape[1] and labels[iy, ix] > 0:
            return int(labels[iy, ix])
        d = np.hypot(*(session.cells.centroids - (y, x)).T)
        return int(session.cells.ids[d.argmin()]) if d.size and d.min() <= 10 else None

    def refresh(self) -> None:
        """Colour the cells by their answers for the current type and update answer features and counts."""
        layer = self.ctl.cells_layer()
        if layer is None:
            return
        name = self.ctl.types.current_name()
        session = self.ctl.session
        state = session.types.get(name) if session is not None and name else None
        answers = state.answers if state else {}
        ids = layer.features["id"].to_numpy()
        layer.features["answer"] = _layers.answer_column(ids, answers)
        layer.face_color = _layers.answer_colors(ids, answers, self.ctl.colors.get(name or "", "#ffffff"))
        if self.suggested and (sugg := self.ctl.layer(_layers.SUGGESTED)) is not None:
            sugg.features["answer"] = _layers.answer_column(sugg.features["id"].to_numpy(), answers)
        yes = sum(answers.values())
        self.count_label.setText(f"{name}: {yes} yes, {len(answers) - yes} no" if name else "no answers yet")

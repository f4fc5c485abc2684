"""Step 2 of the dock: the cell types, each in its colour; add, recolour, rename and delete them (Session.set_color,
rename_type and delete_type keep the session folder in step)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QColorDialog,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

from napari_agile._napari import layers as _layers
from napari_agile._napari.controller import Controller
from napari_agile._napari.controls import button
from napari_agile.errors import AgileInputError
from napari_agile.io.export import NONE_TYPE, default_colors
from napari_agile.session import Session


class TypesPanel(QGroupBox):
    """2. Cell types."""

    def __init__(self, ctl: Controller) -> None:
        super().__init__("2. Cell types")
        self.ctl = ctl
        col = QVBoxLayout(self)
        row = QHBoxLayout()
        self.type_edit = QLineEdit()
        self.type_edit.setPlaceholderText("e.g. astrocyte")
        self.type_edit.returnPressed.connect(lambda: self.add_type(self.type_edit.text(), self.new_color))
        self.color_btn = QPushButton("colour")
        self.color_btn.setToolTip("Pick the new type's colour (else one that stands out from the channel colours).")
        self.color_btn.clicked.connect(self._pick_new_color)
        self.new_color: str | None = None
        add = button(
            "Add",
            lambda: self.add_type(self.type_edit.text(), self.new_color),
            "Add the typed cell type and make it the current one (Enter does the same).",
        )
        for w in (self.type_edit, self.color_btn, add):
            row.addWidget(w)
        col.addLayout(row)
        self.type_list = QListWidget()
        self.type_list.setMaximumHeight(110)
        self.type_list.currentTextChanged.connect(ctl.type_changed)
        col.addWidget(self.type_list)
        row = QHBoxLayout()
        row.addWidget(button("Rename…", self.rename_type, "Rename the current type (its answers and weights keep)."))
        row.addWidget(button("Delete…", self.delete_type, "Delete the current type with its answers and weights."))
        col.addLayout(row)

    def enable(self, busy: bool) -> None:
        self.setEnabled(not busy)  # a job's result belongs to the type it was started for

    def current(self) -> str:
        """The current type's name (a clear error when there is none)."""
        item = self.type_list.currentItem()
        if item is None:
            raise AgileInputError("Add a cell type first (type its name under '2. Cell types' and press Add).")
        return item.text()

    def current_name(self) -> str | None:
        item = self.type_list.currentItem()
        return item.text() if item else None

    def show_session(self, session: Session) -> None:
        """The session's types (a loaded one brings its own, in its colours, and those coloured but unanswered)."""
        self.type_list.clear()
        for name in [*session.types, *(n for n in session.colors if n not in session.types)]:
            self.add_type(name)
        self.type_list.setCurrentRow(0)  # the session's first type (no-op for a new session's empty list)

    def _pick_new_color(self) -> None:
        color = QColorDialog.getColor(parent=self)
        if color.isValid():
            self.new_color = color.name()
            self.color_btn.setStyleSheet(f"background-color: {self.new_color}")

    def add_type(self, name: str, color: str | None = None) -> None:
        """Add (or recolour) a cell type and make it the current one."""
        ctl = self.ctl
        name = name.strip()
        if not name or name == NONE_TYPE:
            ctl.jobs.fail(f"A cell type needs a name (not empty, not {NONE_TYPE!r}).")
            return
        if color is None and name not in ctl.colors:
            shown = [layer.colormap.colors[-1] for layer in ctl.tissue.selected_layers()]  # each channel's colour
            color = default_colors([*ctl.colors, name], avoid=shown)[name]
        if color is not None:
            ctl.colors[name] = color
        if ctl.session is not None and ctl.session.colors.get(name) != ctl.colors[name]:
            ctl.session.set_color(name, ctl.colors[name])  # saved with the session
        layer = ctl.layer(_layers.TYPES)
        if layer is not None and name in set(layer.features["cell_type"]):  # a painted type, recoloured
            legend = layer.features.copy()
            legend.loc[legend["cell_type"] == name, "color"] = ctl.colors[name]
            ctl.results.show_types(layer, legend)
        found = self.type_list.findItems(name, Qt.MatchFlag.MatchExactly)
        item = found[0] if found else QListWidgetItem(name)
        pix = QPixmap(12, 12)
        pix.fill(QColor(ctl.colors[name]))
        item.setIcon(QIcon(pix))
        if not found:
            self.type_list.addItem(item)
        self.type_list.setCurrentItem(item)
        self.type_edit.clear()
        self.new_color = None
        self.color_btn.setStyleSheet("")
        ctl.answers_changed()  # a new colour for the current type shows at once

    def rename_type(self, new: str | None = None) -> None:
        """Rename the current type (asks for the name when `new` is None); Session.rename_type keeps it on disk."""

        def go() -> None:
            old = self.current()
            name = new
            if name is None:
                name, ok = QInputDialog.getText(self, "Rename cell type", f"New name for {old!r}:", text=old)
                if not ok:
                    return
            name = name.strip()
            if name == old:
                return
            session = self.ctl.session
            if session is not None and old in session.types:
                session.rename_type(old, name)
            elif name in self.ctl.colors or not name or name == NONE_TYPE:
                raise AgileInputError(f"Cannot rename {old!r} to {name!r}: choose another name.")
            self.ctl.colors[name] = self.ctl.colors.pop(old)
            self.type_list.currentItem().setText(name)
            self.ctl.types_changed(f"Renamed {old!r} to {name!r}.")

        self.ctl.jobs.guard(go)

    def delete_type(self, confirm: bool = True) -> None:
        """Delete the current type with its answers and weights (asks first unless `confirm` is False)."""

        def go() -> None:
            name = self.current()
            session = self.ctl.session
            answers = len(session.types[name].answers) if session and name in session.types else 0
            if (
                confirm
                and QMessageBox.question(
                    self, "Delete cell type", f"Delete {name!r} and its {answers} answer(s)? No undo brings them back."
                )
                != QMessageBox.StandardButton.Yes
            ):
                return
            if session is not None and name in session.types:
                session.delete_type(name)
            self.ctl.colors.pop(name, None)
            self.type_list.takeItem(self.type_list.currentRow())
            self.ctl.types_changed(f"Deleted {name!r} ({answers} answer(s)).")

        self.ctl.jobs.guard(go)

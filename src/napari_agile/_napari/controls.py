"""Small Qt building blocks the dock's panels share: buttons and spin boxes in a form, tick lists, file dialogs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QWidget,
)


def button(text: str, slot: Callable[[], Any], tip: str, form: QFormLayout | None = None) -> QPushButton:
    """A push button that calls `slot()` (without Qt's `checked` argument), added as a row of `form` if given."""
    btn = QPushButton(text)
    btn.setToolTip(tip)
    btn.clicked.connect(lambda *_: slot())
    if form is not None:
        form.addRow(btn)
    return btn


def spin(text: str, low: int, high: int, value: int, form: QFormLayout) -> QSpinBox:
    """An integer spin box from `low` to `high`, set to `value`, added as the row `text` of `form`."""
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    form.addRow(text, box)
    return box


def rich_label(text: str = "", tip: str = "") -> QLabel:
    """A word-wrapped label that shows HTML (legends, links to cells)."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    if tip:
        label.setToolTip(tip)
    return label


def with_browse(edit: QLineEdit, slot: Callable[[], None]) -> QWidget:
    """A line edit with a '…' button beside it that calls `slot()` (a file or folder dialog)."""
    w = QWidget()
    row = QHBoxLayout(w)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit)
    btn = button("…", slot, "Browse…")
    btn.setMaximumWidth(30)
    row.addWidget(btn)
    return w


def ticked(widget: QListWidget) -> list[str]:
    """The texts of a tick list's ticked items, in list order."""
    return [
        widget.item(i).text() for i in range(widget.count()) if widget.item(i).checkState() == Qt.CheckState.Checked
    ]


def fill(widget: QListWidget, names: Iterable[str], on: set[str]) -> None:
    """Fill a tick list with `names`, ticking those in `on`, without emitting itemChanged."""
    widget.blockSignals(True)
    widget.clear()
    for name in names:
        item = QListWidgetItem(name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if name in on else Qt.CheckState.Unchecked)
        widget.addItem(item)
    widget.blockSignals(False)


def ask_path(parent: QWidget, title: str, save: bool, filter: str = "", folder: bool = False) -> str | None:
    """A path from a file or folder dialog (None when cancelled); a saved file gets the filter's suffix if it has
    none, so a name typed without '.csv' still picks the format."""
    if folder:
        path = QFileDialog.getExistingDirectory(parent, title)
    elif save:
        path, _ = QFileDialog.getSaveFileName(parent, title, "", filter)
        suffix = filter.partition("(*")[2].partition(")")[0].split()[0] if "(*" in filter else ""
        if path and suffix and not Path(path).suffix:
            path += suffix
    else:
        path, _ = QFileDialog.getOpenFileName(parent, title, "", filter)
    return path or None

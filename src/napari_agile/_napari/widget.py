"""The AGILE dock widget: wiring from buttons, keys and clicks to a Session, with layers and thread workers.

Every action here calls one Session method (or detect_nuclei / load_model) and shows the result
as layers; long work runs in thread workers with progress and cancel, and errors arrive as notifications.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QColorDialog,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_agile._napari import layers as _layers
from napari_agile._napari.threshold_panel import ThresholdPanel
from napari_agile.batch import Typed, type_sections
from napari_agile.detect.nuclei import cells_from_labels, detect_nuclei
from napari_agile.engine.model_file import AgileModel, check_channels, load_model, pick_model
from napari_agile.engine.quality import AnswerQuality
from napari_agile.engine.thresholds import type_threshold
from napari_agile.engine.uncertainty import SPREAD
from napari_agile.errors import AgileInputError
from napari_agile.io.export import NONE_TYPE, default_colors
from napari_agile.io.legend import legend_table
from napari_agile.io.tissue import Tissue, nuclear_flags
from napari_agile.session import SUGGEST_METHODS, Session, panel_choice, panel_config

log = logging.getLogger(__name__)

#: Keys bound on the viewer while the widget lives: key -> (widget method name, help text).
KEYS = {
    "y": ("answer_yes", "yes"),
    "n": ("answer_no", "no"),
    "u": ("undo", "undo"),
    "j": ("next_suggestion", "next suggested cell"),
    "k": ("previous_suggestion", "previous suggested cell"),
    "t": ("give_type", "this type and no other (to correct a prediction)"),
    "h": ("toggle_help", "show / hide these keys on the image"),
}
CLICK_MODES = ("select + keys", "click = yes", "click = no")
HELP_TITLE = "napari-agile keys (h hides this)"
#: the 'Nuclei' choice that finds them in the nuclear channels; the other choices are the viewer's Labels layers
DETECT = "detect in the nuclear channels"


class Cancelled(Exception):
    """Raised inside a worker (from the progress callback) when the user pressed Cancel."""


class _Relay(QObject):
    """Carries progress from a worker thread to the GUI thread (queued signal)."""

    progress = Signal(str, int, int)


class _Progress:
    """The engine's `progress(done, total)` callback, run in the worker: relays progress, raises when cancelled."""

    def __init__(self, relay: _Relay, cancel: threading.Event, label: str) -> None:
        self.relay, self.cancel, self.label = relay, cancel, label

    def __call__(self, done: int, total: int) -> None:
        if self.cancel.is_set():
            raise Cancelled
        self.relay.progress.emit(self.label, int(done), int(total))

    def phase(self, label: str) -> None:
        """Name the next stage of a job (shown in the progress bar) and start it undetermined."""
        self.label = label
        self(0, 0)


def _is_ours(func) -> bool:
    """Whether a key binding is one of the widget's answer keys (their handlers say so in their docstring)."""
    return (getattr(func, "__doc__", None) or "").startswith("napari-agile:")


def _detach(viewer, alive: dict, cancel: threading.Event, on_click, on_layers) -> None:
    """Unhook a widget from its viewer and cancel its job (no Qt calls: the widget may already be deleted)."""
    if not alive["yes"]:
        return
    alive["yes"] = False
    cancel.set()
    for key in KEYS:
        viewer.bind_key(key, None)
    for layer in viewer.layers:
        for key, func in list(layer.keymap.items()):
            if _is_ours(func):
                layer.bind_key(key, None)
    if on_click in viewer.mouse_drag_callbacks:
        viewer.mouse_drag_callbacks.remove(on_click)
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.moved, events.renamed):
        event.disconnect(on_layers)


class AgileWidget(QWidget):
    """Detect nuclei, name cell types, answer the suggested cells, adapt, predict, save and export."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session: Session | None = None
        self.colors: dict[str, str] = {}
        self.suggested: list[int] = []
        self.cursor = -1
        self.worker = None
        self.job = ""
        self._cancel = threading.Event()
        self._alive = {"yes": True}  # shared with worker and key callbacks: False once the widget is gone
        self._frame: dict = {"scale": (1.0, 1.0), "translate": (0.0, 0.0)}
        self._model_cache: tuple[str, AgileModel] | None = None
        self._pbar = None
        self._unticked: set[str] = set()
        self._excluded: set[str] = set()  # channels the user left out of the model (new channels come ticked)
        self._nuclear: tuple[list[str], set[str]] | None = None  # (channels, nuclear ticks) the user or a session chose
        self._own: dict[str, Any] = {}  # _layers.CELLS/NUCLEI/SUGGESTED/TYPES/PROBABILITY -> the layer it made
        self._table: pd.DataFrame | None = None  # the last prediction (Session.predict's table)
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._build()
        self._set_busy(False)
        self._bind_keys()
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        self.viewer.layers.events.inserted.connect(self._refresh_image_layers)
        self.viewer.layers.events.removed.connect(self._refresh_image_layers)
        self.viewer.layers.events.moved.connect(self._refresh_image_layers)
        self.viewer.layers.events.renamed.connect(self._refresh_image_layers)  # layer names are channel names
        hooks = (self.viewer, self._alive, self._cancel, self._on_click, self._refresh_image_layers)
        self.destroyed.connect(lambda *_: _detach(*hooks))  # the viewer closed, or the dock was removed
        self._refresh_image_layers()

    # ---- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        """The five steps in a scroll area, so the dock fits a laptop screen (a 1280 x 800 window)."""
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        scroll.setWidget(inner)
        root = QVBoxLayout(self)
        root.addWidget(scroll)
        outer = QVBoxLayout(inner)

        box = QGroupBox("1. Tissue and nuclei")
        form = QFormLayout(box)
        self.image_list = QListWidget()
        self.image_list.setToolTip(
            "Tick one (channels, rows, columns) image, or one 2D layer per channel (layer names = channel names)."
        )
        self.image_list.itemChanged.connect(self._on_image_ticked)
        self.image_list.setMinimumHeight(110)
        form.addRow("Image layers", self.image_list)
        self.names_edit = QLineEdit()
        self.names_edit.setPlaceholderText("from the layer names")
        self.names_edit.setToolTip(
            "Channel names in order, comma-separated (e.g. DAPI, Histones, NeuN, S100, Olig2, "
            "Iba1, RECA1), for layers whose names are not the channels' (channel_1, ...)."
        )
        self.names_edit.editingFinished.connect(self._refresh_channels)
        form.addRow("Channel names", self.names_edit)
        self.channel_list = QListWidget()
        self.channel_list.setToolTip(
            "Channels the model reads: untick one to leave it out (a model for any panel; "
            "the rat-brain model reads its own 7 channels)."
        )
        self.channel_list.setMinimumHeight(80)
        self.channel_list.itemChanged.connect(self._on_channel_ticked)
        form.addRow("Channels", self.channel_list)
        self.nuclear_list = QListWidget()
        self.nuclear_list.setToolTip(
            "Channels that stain every nucleus (DAPI, Hoechst, DNA, ...): summed for "
            "detection, and the model's nuclear stains."
        )
        self.nuclear_list.setMinimumHeight(80)
        self.nuclear_list.itemChanged.connect(self._on_nuclear_ticked)
        form.addRow("Nuclear channels", self.nuclear_list)
        self.nuclei_combo = QComboBox()
        self.nuclei_combo.setToolTip(
            "Detect nuclei here, or use a nucleus label image you already have (a Labels "
            "layer from StarDist, Cellpose, QuPath…: one integer id per nucleus)."
        )
        self.nuclei_combo.currentTextChanged.connect(self._on_nuclei_source)
        form.addRow("Nuclei", self.nuclei_combo)
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("bundled: rat-brain for its 7 channels, else any-panel")
        self.model_edit.setToolTip(
            "A model file (.safetensors), or a bundled model by name (rat-brain, any-panel); "
            "empty: rat-brain when its 7 channels are ticked, else the model for any panel."
        )
        form.addRow("Model", self._with_browse(self.model_edit, self._browse_model))
        self.store_edit = QLineEdit()
        self.store_edit.setPlaceholderText("automatic (~/.napari-agile/sessions/...)")
        self.store_edit.setToolTip("Every answer is written here the moment you give it.")
        form.addRow("Session folder", self._with_browse(self.store_edit, self._browse_store))
        self.detect_btn = self._button(
            "Detect nuclei",
            self.detect,
            form,
            "Find the nuclei in the ticked nuclear channels (or take the chosen Labels "
            "layer) and cut a patch around each cell.",
        )
        outer.addWidget(box)

        box = self.types_box = QGroupBox("2. Cell types")
        col = QVBoxLayout(box)
        row = QHBoxLayout()
        self.type_edit = QLineEdit()
        self.type_edit.setPlaceholderText("e.g. astrocyte")
        self.type_edit.returnPressed.connect(lambda: self.add_type(self.type_edit.text(), self._new_color))
        self.color_btn = QPushButton("colour")
        self.color_btn.setToolTip("Pick the new type's colour (else one that stands out from the channel colours).")
        self.color_btn.clicked.connect(self._pick_new_color)
        self._new_color: str | None = None
        add = QPushButton("Add")
        add.setToolTip("Add the typed cell type and make it the current one (Enter does the same).")
        add.clicked.connect(lambda: self.add_type(self.type_edit.text(), self._new_color))
        for w in (self.type_edit, self.color_btn, add):
            row.addWidget(w)
        col.addLayout(row)
        self.type_list = QListWidget()
        self.type_list.setMaximumHeight(110)
        self.type_list.currentTextChanged.connect(self._on_type_changed)
        col.addWidget(self.type_list)
        row = QHBoxLayout()
        for text, slot, tip in (
            ("Rename…", self.rename_type, "Rename the current type (its answers and weights keep)."),
            ("Delete…", self.delete_type, "Delete the current type with its answers and weights."),
        ):
            btn = QPushButton(text)
            btn.setToolTip(tip)
            btn.clicked.connect(lambda *_, slot=slot: slot())
            row.addWidget(btn)
        col.addLayout(row)
        outer.addWidget(box)

        box = QGroupBox("3. Label the suggested cells")
        form = QFormLayout(box)
        self.n_spin = self._spin("Cells to suggest", 1, 500, 8, form)
        self.pick_combo = QComboBox()
        self.pick_combo.addItems(SUGGEST_METHODS)
        self.pick_combo.setToolTip(
            "auto: cells covering the section's range first, then the most uncertain (entropy); "
            "bald and random as in docs/method.md; cover: the section's range only."
        )
        form.addRow("Pick by", self.pick_combo)
        self.spread_spin = self._spin("Spread", 1, 50, SPREAD, form)
        self.spread_spin.setToolTip(
            "A round asks the cells that cover the spread × N most uncertain (1: the N most uncertain, as the paper)."
        )
        self.suggest_btn = self._button(
            "Suggest", self.suggest, form, "Show the cells the model is least sure about for the current type."
        )
        self.click_mode = QComboBox()
        self.click_mode.addItems(CLICK_MODES)
        self.click_mode.setToolTip("'click = yes/no': a click on a nucleus answers it at once.")
        form.addRow("Mouse", self.click_mode)
        keys = QLabel("Keys: " + ", ".join(f"<b>{k}</b> {h}" for k, (_, h) in KEYS.items()))
        keys.setWordWrap(True)
        help_btn = QPushButton("?")
        help_btn.setMaximumWidth(30)
        help_btn.setToolTip("Show or hide the keys on the image (key h).")
        help_btn.clicked.connect(lambda *_: self.toggle_help())
        form.addRow(help_btn, keys)
        self.undo_btn = self._button("Undo last answer", self.undo, form, "Take back the last answer (key u).")
        self.count_label = QLabel("no answers yet")
        form.addRow(self.count_label)
        outer.addWidget(box)

        box = QGroupBox("4. Learn and predict")
        form = QFormLayout(box)
        self.steps_spin = self._spin("Gradient steps", 1, 100, 1, form)
        self.adapt_btn = self._button(
            "Adapt", self.adapt, form, "Teach the network the current type from its answers (needs an answer)."
        )
        self.quality_label = QLabel("")
        self.quality_label.setTextFormat(Qt.TextFormat.RichText)
        self.quality_label.setWordWrap(True)
        self.quality_label.setToolTip(
            "After Adapt: each answer predicted by weights adapted on the other answers "
            "only, and the answers the model now contradicts: click one to check it "
            "(y / n changes the answer)."
        )
        self.quality_label.linkActivated.connect(lambda cid: self.show_cell(int(cid)))
        form.addRow(self.quality_label)
        self.predict_btn = self._button(
            "Predict", self.predict, form, "Paint every nucleus with its most probable type (needs an adapted type)."
        )
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        form.addRow(self.legend)
        self.threshold_panel = ThresholdPanel(
            lambda value: self._guard(lambda: self._set_threshold(value)),
            lambda on: self._guard(lambda: self._show_probability(on)),
        )
        form.addRow(self.threshold_panel)
        outer.addWidget(box)

        box = QGroupBox("5. Save and export")
        grid = QVBoxLayout(box)
        self.file_buttons: dict[str, QPushButton] = {}
        tips = {
            "Save session…": "Write answers, adapted weights and cells to a folder you choose.",
            "Load session…": "Reopen a saved session folder on the ticked image layers.",
            "Export CSV…": "Write every cell's probabilities and type as a table (needs an adapted type).",
            "Export GeoJSON…": "Write every nucleus outline classified by its type, for QuPath "
            "(needs an adapted type).",
            "Export AnnData…": "Write an .h5ad for scanpy/squidpy: marker means per channel, types, "
            "probabilities, centres and answers (needs an adapted type and anndata).",
            "Save adapted model…": "Save the current type's adapted network, for `napari-agile predict`.",
            "Type other images…": "Type other image files with this session's adapted types: nuclei found, "
            "one cell table per image in a folder you choose (napari-agile predict).",
        }
        for pair in (
            ("Save session…", self.save_session, "Load session…", self.load_session),
            ("Export CSV…", self.export_csv, "Export GeoJSON…", self.export_geojson),
            ("Export AnnData…", self.export_anndata, "Save adapted model…", self.save_model),
            ("Type other images…", self.type_images, "", None),
        ):
            row = QHBoxLayout()
            for text, slot in zip(pair[::2], pair[1::2]):
                if text:
                    btn = QPushButton(text)
                    btn.setToolTip(tips[text])
                    btn.clicked.connect(lambda *_, s=slot: s())
                    row.addWidget(btn)
                    self.file_buttons[text] = btn
            grid.addLayout(row)
        outer.addWidget(box)

        row = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the running job at its next step (answers are already saved).")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        row.addWidget(self.bar)
        row.addWidget(self.cancel_btn)
        self.status = QLabel("Open a tissue image, tick its layers, then Detect nuclei.")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        font = self.status.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)  # the question the user answers: readable at a glance
        self.status.setFont(font)
        outer.addStretch(1)
        root.addLayout(row)  # below the scroll area: the job, Cancel and the question never scroll away
        root.addWidget(self.status)

    def _button(self, text: str, slot: Callable[[], Any], form: QFormLayout, tip: str) -> QPushButton:
        btn = QPushButton(text)
        btn.setToolTip(tip)
        btn.clicked.connect(lambda *_: slot())
        form.addRow(btn)
        return btn

    @staticmethod
    def _spin(text: str, low: int, high: int, value: int, form: QFormLayout) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setValue(value)
        form.addRow(text, spin)
        return spin

    def _with_browse(self, edit: QLineEdit, slot: Callable[[], None]) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit)
        btn = QPushButton("…")
        btn.setToolTip("Browse…")
        btn.setMaximumWidth(30)
        btn.clicked.connect(lambda *_: slot())
        row.addWidget(btn)
        return w

    def _bind_keys(self) -> None:
        for key, (method, _) in KEYS.items():
            self.viewer.bind_key(key, self._key_handler(method), overwrite=True)

    def _bind_image_keys(self) -> None:
        """The answer keys on each image layer too: an active layer's keys come first, and napari's Image layer
        takes 'y' (orient the plane along y, a 3D view's action), so a user who just set a channel's contrast
        would answer only 'no'."""
        for layer in self._image_layers():
            if not any(_is_ours(func) for func in layer.keymap.values()):
                for key, (method, _) in KEYS.items():
                    layer.bind_key(key, self._key_handler(method), overwrite=True)

    def _key_handler(self, method: str) -> Callable[[Any], None]:
        alive = self._alive

        def handler(viewer) -> None:
            if alive["yes"]:
                getattr(self, method)()

        handler.__doc__ = f"napari-agile: {method.replace('_', ' ')}"
        return handler

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        """Stop listening to the viewer and cancel running work; answers are already on disk."""
        _detach(self.viewer, self._alive, self._cancel, self._on_click, self._refresh_image_layers)
        super().closeEvent(event)

    def event(self, event) -> bool:  # noqa: A003 (Qt name)
        """The dock's close button only takes the widget out of its dock (napari's remove_dock_widget), without
        closing it: a widget that loses its dock stops listening too, so its keys cannot answer into its session."""
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif getattr(self, "_docked", False):
                _detach(self.viewer, self._alive, self._cancel, self._on_click, self._refresh_image_layers)
        return super().event(event)

    # ---- layer and channel choice -----------------------------------------------------------
    def _image_layers(self) -> list[Image]:
        """The viewer's image layers that can be tissue channels (not this widget's probability image)."""
        own = self._own.get(_layers.PROBABILITY)
        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and layer is not own]

    def _refresh_image_layers(self, *_: Any) -> None:
        if not self._alive["yes"]:
            return
        self._bind_image_keys()
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for layer in self._image_layers():
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = layer.name not in self._unticked
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.image_list.addItem(item)
        self.image_list.blockSignals(False)
        self._refresh_channels()
        self._refresh_nuclei_sources()

    def _refresh_nuclei_sources(self) -> None:
        """'detect', then every Labels layer that is not one of this widget's outputs; the choice is kept."""
        current = self.nuclei_combo.currentText()
        names = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and not any(layer is own for own in self._own.values())
        ]
        self.nuclei_combo.blockSignals(True)
        self.nuclei_combo.clear()
        self.nuclei_combo.addItems([DETECT, *names])
        self.nuclei_combo.setCurrentText(current if current in names else DETECT)
        self.nuclei_combo.blockSignals(False)
        self._on_nuclei_source(self.nuclei_combo.currentText())

    def _on_nuclei_source(self, source: str) -> None:
        self.detect_btn.setText("Detect nuclei" if source == DETECT else f"Use the nuclei in '{source}'")

    def _on_image_ticked(self, item: QListWidgetItem) -> None:
        """Remember layers the user unticked (new layers come ticked), then refresh the channel list."""
        if item.checkState() == Qt.CheckState.Checked:
            self._unticked.discard(item.text())
        else:
            self._unticked.add(item.text())
        self._refresh_channels()

    @staticmethod
    def _ticked(widget: QListWidget) -> list[str]:
        return [
            widget.item(i).text() for i in range(widget.count()) if widget.item(i).checkState() == Qt.CheckState.Checked
        ]

    def _selected_layers(self) -> list[Image]:
        names = self._ticked(self.image_list)
        return [layer for layer in self._image_layers() if layer.name in names]

    def _typed_names(self) -> list[str] | None:
        names = [n.strip() for n in self.names_edit.text().split(",") if n.strip()]
        return names or None

    def _channel_names(self) -> list[str]:
        layers = self._selected_layers()
        typed = self._typed_names()
        if len(layers) == 1 and layers[0].ndim == 3:
            return typed or list(layers[0].metadata.get("channel_names") or [])
        return typed if typed and len(typed) == len(layers) else [layer.name for layer in layers]

    def _refresh_channels(self) -> None:
        """List the channels twice, for the model (ticked unless the user left them out) and as nuclear stains
        (the ticks chosen for these very channels, else the nuclear stains by name: a choice made for other
        channels, before the last layer arrived or on another image, does not stick)."""
        names = self._channel_names()
        if self._nuclear is not None and self._nuclear[0] != names:
            self._nuclear = None
        on = self._nuclear[1] if self._nuclear else {n for n, flag in zip(names, nuclear_flags(names)) if flag}
        self._fill(self.channel_list, names, set(names) - self._excluded)
        self._fill(self.nuclear_list, names, on)

    @staticmethod
    def _fill(widget: QListWidget, names: list[str], on: set[str]) -> None:
        widget.blockSignals(True)
        widget.clear()
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in on else Qt.CheckState.Unchecked)
            widget.addItem(item)
        widget.blockSignals(False)

    def _on_channel_ticked(self, item: QListWidgetItem) -> None:
        """Remember channels the user left out of the model."""
        if item.checkState() == Qt.CheckState.Checked:
            self._excluded.discard(item.text())
        else:
            self._excluded.add(item.text())

    def _on_nuclear_ticked(self, item: QListWidgetItem) -> None:
        """Remember the user's nuclear stains for the channels listed now."""
        self._nuclear = (self._channel_names(), set(self._ticked(self.nuclear_list)))

    def _show_panel(self, session: Session) -> None:
        """Tick the channels a session reads and, for a model for any panel, its nuclear stains (a nuclear stain
        outside the model's channels, for detection only, keeps its tick)."""
        names = self._channel_names()
        cfg = session.config
        self._excluded = set(names) - set(cfg.channels)
        self._fill(self.channel_list, names, set(cfg.channels))
        if cfg.per_channel:
            outside = set(self._ticked(self.nuclear_list)) - set(cfg.channels)
            self._fill(self.nuclear_list, names, {c for c, flag in zip(cfg.channels, cfg.nuclear) if flag} | outside)
            self._nuclear = (names, set(self._ticked(self.nuclear_list)))

    def tissue(self) -> Tissue:
        """The Tissue made of the ticked image layers (clear errors for anything that is not one section)."""
        layers = self._selected_layers()
        tissue = _layers.tissue_from_layers(layers, self._typed_names())
        self._frame = _layers.frame_kwargs(layers[0])
        return tissue

    def model(self, channels: list[str] | None = None) -> AgileModel:
        """The chosen model file, or the bundled one for the ticked `channels` (pick_model; loaded once, cached)."""
        path = self.model_edit.text().strip()
        key = path or "\0" + "\0".join(channels or [])
        if self._model_cache is not None and self._model_cache[0] == key:
            return self._model_cache[1]
        try:
            model = load_model(path) if path else pick_model(channels or [])
        except AgileInputError as err:
            if path:
                raise
            raise AgileInputError(
                f"The bundled model for these channels is not installed with this copy of napari-agile ({err}): "
                "choose a model file next to 'Model' (…), or make one with `napari-agile meta-train`."
            ) from None
        self._model_cache = (key, model)
        return model

    # ---- workers ----------------------------------------------------------------------------
    def _run(self, label: str, work: Callable[[_Progress], Any], done: Callable[[Any], None]) -> None:
        """Run `work(progress)` in a thread worker; `done(result)` in the GUI thread; errors as notifications."""
        if self.worker is not None:
            show_warning(f"Still busy with '{self.job}': wait for it or press Cancel.")
            return
        self._cancel.clear()
        cancel, progress = self._cancel, _Progress(self._relay, self._cancel, label)
        alive = self._alive
        connect = {  # handlers check `alive`: the viewer may have closed while the worker ran
            "returned": lambda result: alive["yes"] and self._on_returned(label, cancel, done, result),
            "errored": lambda err: alive["yes"] and self._on_error(label, err),
            "warned": lambda w: alive["yes"] and show_warning(str(w[0])),
            "finished": lambda: alive["yes"] and self._on_finished(),
        }
        self.job = label
        self.worker = create_worker(work, progress, _start_thread=False, _connect=connect)
        self._set_busy(True, label)
        self.worker.start()

    @staticmethod
    def _on_returned(label: str, cancel: threading.Event, done: Callable[[Any], None], result: Any) -> None:
        """A job that finished is shown even if Cancel came too late to stop it (its work is done and saved)."""
        if cancel.is_set():
            show_info(f"{label} had finished before it could stop: its result is shown.")
        done(result)

    def _set_busy(self, busy: bool, label: str = "") -> None:
        """Enable what can run now: nothing that starts work or reads the answers during a job (the type list
        too: a job's result belongs to the type it was started for), and what needs cells only with a session."""
        self._enable(busy)
        self.cancel_btn.setEnabled(busy)
        self.bar.setVisible(busy)
        self.bar.setRange(0, 0)
        if busy:
            self.status.setText(f"{label}…")
            self._pbar = napari_progress(total=0, desc=label)
        elif self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def _enable(self, busy: bool) -> None:
        """Nothing that starts work or reads the answers during a job (the type list too: a job's result belongs to
        the type it was started for); what needs cells only with a session, Adapt only with answers for the current
        type, Predict and Export only once a type is adapted."""
        for w in (self.detect_btn, self.types_box, self.file_buttons["Load session…"]):
            w.setEnabled(not busy)
        ready = not busy and self.session is not None
        for btn in (
            self.suggest_btn,
            self.undo_btn,
            self.file_buttons["Save session…"],
            self.file_buttons["Save adapted model…"],
        ):
            btn.setEnabled(ready)
        item = self.type_list.currentItem()
        state = self.session.types.get(item.text()) if ready and item else None
        self.adapt_btn.setEnabled(state is not None and bool(state.answers))
        adapted = ready and bool(self.session.adapted)
        for btn in (
            self.predict_btn,
            self.file_buttons["Export CSV…"],
            self.file_buttons["Export GeoJSON…"],
            self.file_buttons["Export AnnData…"],
            self.file_buttons["Type other images…"],
        ):
            btn.setEnabled(adapted)

    def _on_progress(self, label: str, current: int, total: int) -> None:
        pbar = self._pbar  # updating it may run the event loop, where the job can finish and close it
        if not self._alive["yes"] or pbar is None:
            return
        self.bar.setRange(0, total)  # total 0: a stage of unknown length (busy indicator)
        self.bar.setValue(current)
        pbar.total = total
        pbar.n = current
        pbar.set_description(label)
        if self._pbar is pbar:
            pbar.refresh()

    def _on_error(self, label: str, err: Exception) -> None:
        if isinstance(err, Cancelled):
            show_info(f"{label}: cancelled.")
            self.status.setText(f"{label}: stopped.")
        elif isinstance(err, AgileInputError):
            self._fail(str(err))
        else:
            log.error("%s failed", label, exc_info=err)
            self._fail(f"{label} failed: {type(err).__name__}: {err}")

    def _on_finished(self) -> None:
        self.worker = None
        if self.status.text().startswith("Cancelling"):
            self.status.setText(f"{self.job}: stopped.")
        self._set_busy(False)

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress step; a job that finishes first is shown as done."""
        if self.worker is not None:
            self._cancel.set()
            self.status.setText(f"Cancelling {self.job}…")

    def _guard(self, action: Callable[[], None]) -> None:
        """Run a GUI-thread action; bad input becomes a notification."""
        try:
            action()
        except AgileInputError as err:
            self._fail(str(err))

    def _fail(self, message: str) -> None:
        """An error, in full in the widget's status line (a toast is cut off) and as a notification."""
        self.status.setText(f"Error: {message}")
        show_error(message)

    def _need_session(self) -> Session:
        if self.session is None:
            raise AgileInputError("No cells yet: tick the tissue layers and press 'Detect nuclei' (or load a session).")
        return self.session

    def _current_type(self) -> str:
        item = self.type_list.currentItem()
        if item is None:
            raise AgileInputError("Add a cell type first (type its name under '2. Cell types' and press Add).")
        return item.text()

    # ---- 1. detect --------------------------------------------------------------------------
    def detect(self) -> None:
        """Detect nuclei on the ticked layers, then build the session (patch extraction) in a worker."""
        self._guard(self._detect)

    def _detect(self) -> None:
        self._refresh_channels()  # names typed without Enter (or set from code) count too
        tissue = self.tissue()
        nuclear = self._ticked(self.nuclear_list)
        model = self.model([n for n in self._ticked(self.channel_list) if n in tissue.channel_names])
        if tissue.n_channels == 1 and len(model.channels) > 1:
            raise AgileInputError(
                f"Only one channel is ticked ({tissue.channel_names[0]!r}) but the model reads "
                f"{list(model.channels)}: tick one 2D layer per channel (open the image with channel_axis) "
                "or a (channels, rows, columns) image."
            )
        try:
            check_channels(model, tissue.channel_names)
        except AgileInputError as err:
            raise AgileInputError(
                f"{err} Here: rename the channel layers, or type the names in order under 'Channel names'."
            ) from None
        panel = panel_choice(model, tissue.channel_names, self._ticked(self.channel_list), nuclear)
        panel_config(model, tissue, panel.get("channels"), panel.get("nuclear"))  # refused now, not after detection
        channels = nuclear or None
        store = self.store_edit.text().strip() or None
        if store and (Path(store) / "session.json").exists():
            raise AgileInputError(
                f"The session folder {store} already holds a session: press 'Load session…' to continue it, or "
                "choose another folder (empty the field for a new automatic one)."
            )

        mask = self._nuclei_mask()

        def work(progress: _Progress) -> Session:
            if mask is None:
                cells = detect_nuclei(tissue, channels=channels, progress=progress)
            else:
                cells = cells_from_labels(mask, tissue.shape)
            progress.phase(f"Cutting patches around {len(cells)} cells")
            return Session(tissue, cells, model, store=store, progress=progress, **panel)

        if mask is None:
            self._run("Detecting nuclei", work, self._on_session)
        else:  # the user's own Labels layer stays the nuclei layer
            self._run("Reading the nuclei", work, lambda session: self._on_session(session, show_nuclei=False))

    def _nuclei_mask(self) -> np.ndarray | None:
        """The chosen Labels layer's data (None: detect)."""
        source = self.nuclei_combo.currentText()
        if source == DETECT or source not in self.viewer.layers:
            return None
        return np.asarray(self.viewer.layers[source].data)

    def _on_session(self, session: Session, show_nuclei: bool = True) -> None:
        self.session = session
        self._show_panel(session)  # a loaded session's channels, as session.json has them
        table = session.cells.table
        frame = self._frame
        for key in list(self._own):  # this widget's layers only: a user's layer named 'cells' stays
            if (layer := self._layer(key)) is not None:
                self.viewer.layers.remove(layer)
        self._own = {}
        if session.cells.labels is not None and show_nuclei:
            self._add_own(_layers.NUCLEI, _layers.nuclei_layer(session.cells.labels, frame))
        self._add_own(_layers.SUGGESTED, _layers.suggestions_layer(frame))
        self._add_own(_layers.CELLS, _layers.cells_layer(table, frame))
        self.type_list.clear()  # the types are this session's (a loaded one brings its own, in its colours)
        self.colors.update(session.colors)
        for name in [*session.types, *(n for n in session.colors if n not in session.types)]:  # coloured, unanswered
            self.add_type(name)
        self.type_list.setCurrentRow(0)  # the session's first type (no-op for a new session's empty list)
        self.legend.setText("")  # the painted types were the previous session's
        self._table = None
        self._refresh_threshold()
        self.suggested, self.cursor = [], -1
        self._refresh_answers()
        item = self.type_list.currentItem()
        self.status.setText(
            f"{len(table)} cells. Answers are saved in {session.store}. "
            + self._next_step(item.text() if item else None)
        )

    def _layer(self, key: str):
        """This widget's layer for `key` (_layers.CELLS, ...) while it is in the viewer, else None."""
        layer = self._own.get(key)
        return layer if layer is not None and layer in self.viewer.layers else None

    def _add_own(self, key: str, layer):
        self._own[key] = layer  # known as ours before the viewer announces it (the image list skips it)
        self.viewer.add_layer(layer)
        return layer

    def _cells_layer(self):
        """The cells layer, drawn again if the user deleted it."""
        layer = self._layer(_layers.CELLS)
        if layer is None and self.session is not None:
            layer = self._add_own(_layers.CELLS, _layers.cells_layer(self.session.cells.table, self._frame))
        return layer

    def _suggestions_layer(self):
        """The suggestions layer, made again (empty: the suggestions are gone) if the user deleted it."""
        layer = self._layer(_layers.SUGGESTED)
        if layer is None:
            self.suggested, self.cursor = [], -1
            layer = self._add_own(_layers.SUGGESTED, _layers.suggestions_layer(self._frame))
        return layer

    # ---- 2. cell types ----------------------------------------------------------------------
    def _pick_new_color(self) -> None:
        color = QColorDialog.getColor(parent=self)
        if color.isValid():
            self._new_color = color.name()
            self.color_btn.setStyleSheet(f"background-color: {self._new_color}")

    def add_type(self, name: str, color: str | None = None) -> None:
        """Add (or recolour) a cell type and make it the current one."""
        name = name.strip()
        if not name or name == NONE_TYPE:
            self._fail(f"A cell type needs a name (not empty, not {NONE_TYPE!r}).")
            return
        if color is None and name not in self.colors:
            shown = [layer.colormap.colors[-1] for layer in self._selected_layers()]  # each channel's colour
            color = default_colors([*self.colors, name], avoid=shown)[name]
        if color is not None:
            self.colors[name] = color
        if self.session is not None and self.session.colors.get(name) != self.colors[name]:
            self.session.set_color(name, self.colors[name])  # saved with the session
        layer = self._layer(_layers.TYPES)
        if layer is not None and name in set(layer.features["cell_type"]):  # a painted type, recoloured
            legend = layer.features.copy()
            legend.loc[legend["cell_type"] == name, "color"] = self.colors[name]
            self._show_types(layer, legend)
        found = self.type_list.findItems(name, Qt.MatchFlag.MatchExactly)
        item = found[0] if found else QListWidgetItem(name)
        pix = QPixmap(12, 12)
        pix.fill(QColor(self.colors[name]))
        item.setIcon(QIcon(pix))
        if not found:
            self.type_list.addItem(item)
        self.type_list.setCurrentItem(item)
        self.type_edit.clear()
        self._new_color = None
        self.color_btn.setStyleSheet("")
        self._refresh_answers()  # a new colour for the current type shows at once

    def rename_type(self, new: str | None = None) -> None:
        """Rename the current type (asks for the name when `new` is None); Session.rename_type keeps it on disk."""

        def go() -> None:
            old = self._current_type()
            name = new
            if name is None:
                name, ok = QInputDialog.getText(self, "Rename cell type", f"New name for {old!r}:", text=old)
                if not ok:
                    return
            name = name.strip()
            if name == old:
                return
            if self.session is not None and old in self.session.types:
                self.session.rename_type(old, name)
            elif name in self.colors or not name or name == NONE_TYPE:
                raise AgileInputError(f"Cannot rename {old!r} to {name!r}: choose another name.")
            self.colors[name] = self.colors.pop(old)
            self.type_list.currentItem().setText(name)
            self._after_types_changed(f"Renamed {old!r} to {name!r}.")

        self._guard(go)

    def delete_type(self, confirm: bool = True) -> None:
        """Delete the current type with its answers and weights (asks first unless `confirm` is False)."""

        def go() -> None:
            name = self._current_type()
            answers = len(self.session.types[name].answers) if self.session and name in self.session.types else 0
            if (
                confirm
                and QMessageBox.question(
                    self, "Delete cell type", f"Delete {name!r} and its {answers} answer(s)? No undo brings them back."
                )
                != QMessageBox.StandardButton.Yes
            ):
                return
            if self.session is not None and name in self.session.types:
                self.session.delete_type(name)
            self.colors.pop(name, None)
            self.type_list.takeItem(self.type_list.currentRow())
            self._after_types_changed(f"Deleted {name!r} ({answers} answer(s)).")

        self._guard(go)

    def _after_types_changed(self, message: str) -> None:
        """A type renamed or deleted: the painted types and the legend follow (typed again from kept probabilities)."""
        if self._table is not None and self.session is not None and self.session.adapted:
            self.predict()
        elif (layer := self._layer(_layers.TYPES)) is not None:
            self.viewer.layers.remove(layer)
            self.legend.setText("")
            self._table = None
        self._refresh_answers()
        self._refresh_threshold()
        self.status.setText(message)

    def _on_type_changed(self, name: str) -> None:
        """Another type: its suggestions are gone, and so is the question about the previous type."""
        if self.suggested and (layer := self._layer(_layers.SUGGESTED)) is not None:
            layer.selected_data = set()
            layer.data = np.empty((0, 2))
            self.suggested, self.cursor = [], -1
        self._refresh_answers()
        self._refresh_threshold()
        if name and self.session is not None and self.worker is None:
            self.status.setText(self._next_step(name))

    def _next_step(self, name: str | None) -> str:
        """What to do next for type `name` (None: no type yet)."""
        if not name:
            return "Add a cell type, then Suggest."
        return f"Current type: {name}. Suggest, then answer y / n for each suggested cell."

    # ---- 3. suggest and answer --------------------------------------------------------------
    def suggest(self) -> None:
        """Ask the session for the N cells it is least sure about for the current type (MC dropout, in a worker)."""
        self._guard(self._suggest)

    def _suggest(self) -> None:
        session, name, n = self._need_session(), self._current_type(), self.n_spin.value()
        method, spread = self.pick_combo.currentText(), self.spread_spin.value()

        def work(progress):
            ids = session.suggest(name, n, method=method, spread=spread, progress=progress)
            p, h = session.probabilities(name)
            return name, ids, p, h

        self._run(f"Finding uncertain {name} cells", work, self._on_suggested)

    def _on_suggested(self, result) -> None:
        name, ids, p, h = result
        session = self.session
        if self.type_list.currentItem() is None or self._current_type() != name:
            self.add_type(name)  # answers go to the type the cells were suggested for
        if not ids:
            show_info(f"Every cell has an answer for {name!r}: nothing left to suggest.")
            return
        rows = session.cells.table.index.get_indexer(ids)
        answers = session.types[name].answers
        features = _layers.suggestion_features(ids, p[rows], h[rows], name, answers)
        layer = self._suggestions_layer()
        _layers.show_suggestions(layer, session.cells.centroids[rows], features, session.cells.diameter)
        self.suggested, self.cursor = list(ids), -1
        self.viewer.layers.selection.active = layer
        self.next_suggestion()  # shows the first question

    def _jump(self, step: int) -> None:
        if not self.suggested:
            show_info("No suggested cells: press Suggest.")
            return
        layer = self._layer(_layers.SUGGESTED)
        if layer is None:
            self.suggested, self.cursor = [], -1
            show_info("The suggested cells layer was deleted: press Suggest to ask again.")
            return
        self.cursor = (self.cursor + step) % len(self.suggested)
        layer.selected_data = {self.cursor}
        _layers.mark_current(layer, self.cursor)
        if (cells := self._layer(_layers.CELLS)) is not None:  # the next answer is about this cell, not an older one
            cells.selected_data = set()
        self._focus(layer, self.cursor)
        question = layer.features["question"].iloc[self.cursor]
        self.status.setText(f"{self.cursor + 1} of {len(self.suggested)}: {question}  (y / n, j = next)")

    def toggle_help(self) -> None:
        """Show or hide the answer keys (and the mouse modes) over the image, in the viewer's text overlay."""
        overlay = _layers.text_overlay(self.viewer)
        if overlay.visible and overlay.text.startswith(HELP_TITLE):
            overlay.visible = False
            return
        lines = [f"{key}   {what}" for key, (_, what) in KEYS.items()]
        overlay.text = "\n".join([HELP_TITLE, *lines, "Mouse: " + " / ".join(CLICK_MODES) + " (dock, 3.)"])
        overlay.position, overlay.font_size, overlay.visible = "top_left", 9, True
        if hasattr(overlay, "box"):  # napari >= 0.5: a dark box keeps the text readable over bright tissue
            overlay.box = True

    def _focus(self, layer, row: int) -> None:
        """Make `layer` the active one and centre the view on its point `row`, zoomed to ~3 screen px a pixel."""
        self.viewer.layers.selection.active = layer
        cam = _layers.camera(self.viewer)
        cam.center = tuple(layer.data_to_world(np.asarray(layer.data[row], float)))
        cam.zoom = max(cam.zoom, 3.0 / float(layer.scale[-1]))

    def next_suggestion(self) -> None:
        """Centre the view on the next suggested cell and select it."""
        self._jump(+1)

    def previous_suggestion(self) -> None:
        """Centre the view on the previous suggested cell and select it."""
        self._jump(-1)

    def _targets(self) -> list[int]:
        """Cells the next answer is about: selected points of an active agile layer, else the current suggestion."""
        active = self.viewer.layers.selection.active
        ours = (self._layer(_layers.SUGGESTED), self._layer(_layers.CELLS))
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
        self._guard(lambda: self._answer(yes, ids))

    def give_type(self, ids: list[int] | None = None) -> None:
        """Give the selected cell(s) the current type and no other: yes for it, no for every other type (one class
        per cell, the correction of a predicted type; Session.assign)."""
        self._guard(lambda: self._record(ids, lambda session, name, ids: session.assign(ids, name)))

    def _answer(self, yes: bool, ids: list[int] | None) -> None:
        self._record(ids, lambda session, name, ids: session.annotate(name, ids, [yes] * len(ids)))

    def _record(self, ids: list[int] | None, write: Callable[[Session, str, list[int]], None]) -> None:
        """Write answers on `ids` (default: the selected or asked cell) for the current type, then move on."""
        session, name = self._need_session(), self._current_type()
        ids = self._targets() if ids is None else ids
        if not ids:
            show_info("Select a cell first (press Suggest, or click a cell in the 'cells' layer).")
            return
        if self._answers_in_use():
            return
        write(session, name, ids)
        self._refresh_answers()
        if not (self.suggested and ids == [self.suggested[self.cursor]]):
            return
        if self._unanswered():
            self._jump_to_unanswered()
        else:  # no cell stays in the question, so one key too many changes nothing
            self.cursor = -1
            if (layer := self._layer(_layers.SUGGESTED)) is not None:
                layer.selected_data = set()
            self.status.setText(
                f"All {len(self.suggested)} suggested cells are answered: Adapt, or Suggest again (j / k revisit them)."
            )

    def _unanswered(self) -> list[int]:
        answers = self.session.types[self._current_type()].answers
        return [i for i in self.suggested if i not in answers]

    def _jump_to_unanswered(self) -> None:
        todo = set(self._unanswered())
        for step in range(1, len(self.suggested) + 1):
            if self.suggested[(self.cursor + step) % len(self.suggested)] in todo:
                self._jump(step)
                return

    def undo(self) -> None:
        """Take back the last answer (Session.undo)."""
        self._guard(self._undo)

    def _answers_in_use(self) -> bool:
        """True (and says so) while a worker runs: it may be reading the answers (adapt, suggest, save, predict)."""
        if self.worker is None:
            return False
        show_warning(f"'{self.job}' is using the answers right now: answer again when it is done.")
        return True

    def _undo(self) -> None:
        session = self._need_session()
        if self._answers_in_use():
            return
        undone = session.undo()
        if undone is None:
            show_info("Nothing to undo.")
            return
        self._refresh_answers()
        cell_type, cid = undone
        if cell_type == self._current_type() and cid in self.suggested:  # the question is that cell again
            self._jump(self.suggested.index(cid) - self.cursor)
        self.status.setText(f"Took back the answer on cell {cid} ({cell_type}): answer it again (y / n).")

    def _on_click(self, viewer, event):
        """In 'click = yes/no' mode, a click (not a drag) on a nucleus answers it."""
        mode = self.click_mode.currentIndex() if self._alive["yes"] else 0
        if mode == 0 or self.session is None or self._layer(_layers.CELLS) is None:
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
        layer = self._cells_layer()
        y, x = np.asarray(layer.world_to_data(world_position))[-2:]
        labels = self.session.cells.labels
        iy, ix = int(round(y)), int(round(x))
        if labels is not None and 0 <= iy < labels.shape[0] and 0 <= ix < labels.shape[1] and labels[iy, ix] > 0:
            return int(labels[iy, ix])
        d = np.hypot(*(self.session.cells.centroids - (y, x)).T)
        return int(self.session.cells.ids[d.argmin()]) if d.size and d.min() <= 10 else None

    def _refresh_answers(self) -> None:
        """Colour the cells by their answers for the current type and update answer features and counts."""
        layer = self._cells_layer()
        if layer is None:
            return
        item = self.type_list.currentItem()
        name = item.text() if item else None
        state = self.session.types.get(name) if name else None
        answers = state.answers if state else {}
        ids = layer.features["id"].to_numpy()
        layer.features["answer"] = _layers.answer_column(ids, answers)
        layer.face_color = _layers.answer_colors(ids, answers, self.colors.get(name, "#ffffff"))
        if self.suggested and (sugg := self._layer(_layers.SUGGESTED)) is not None:
            sugg.features["answer"] = _layers.answer_column(sugg.features["id"].to_numpy(), answers)
        yes = sum(answers.values())
        self.count_label.setText(f"{name}: {yes} yes, {len(answers) - yes} no" if name else "no answers yet")
        self._enable(self.worker is not None)

    # ---- 4. adapt and predict ---------------------------------------------------------------
    def adapt(self) -> None:
        """Adapt the current type's network from the meta-trained weights on all its answers (in a worker)."""
        self._guard(self._adapt)

    def _adapt(self) -> None:
        session, name, steps = self._need_session(), self._current_type(), self.steps_spin.value()
        if name not in session.types or not session.types[name].answers:
            raise AgileInputError(f"No answers for {name!r} yet: press Suggest and answer a few cells (y / n) first.")

        def work(progress):
            session.adapt(name, steps=steps)
            progress.phase("Checking the answers held out")
            return session.quality(name)

        self._run(f"Adapting {name}", work, self._on_adapted)

    def _on_adapted(self, check: AnswerQuality) -> None:
        """Say how the adapted type does on its own answers, with the contradicted ones as links to the cells."""
        self.status.setText(
            f"{check.cell_type!r} adapted on {check.n_answers} answers. Predict to see every cell, or Suggest again."
        )
        links = ", ".join(f"<a href='{i}' style='color:#8fd3ff'>{i}</a>" for i in check.contradicted[:12])
        more = " …" if len(check.contradicted) > 12 else ""
        text = check.summary().split("; the model")[0]
        self.quality_label.setText(
            f"{text}; the model contradicts your answer on {links}{more}" if links else check.summary()
        )

    def show_cell(self, cell_id: int) -> None:
        """Centre the view on a cell and select it, so y / n answer it (the contradicted answers link here)."""
        layer = self._cells_layer()
        rows = np.flatnonzero(layer.features["id"].to_numpy() == cell_id)
        if not rows.size:
            show_info(f"No cell {cell_id} in this session.")
            return
        layer.selected_data = {int(rows[0])}
        self._focus(layer, int(rows[0]))
        state = self.session.types.get(self._current_type()) if self.session else None
        answer = state.answers.get(cell_id) if state else None
        said = "no answer" if answer is None else f"you said {'yes' if answer else 'no'}"
        self.status.setText(
            f"Cell {cell_id} ({said}): y / n to answer it again, t = this type and no other, u to undo."
        )

    def predict(self) -> None:
        """Predict every cell's type and paint the nuclei with the type colours (in a worker)."""
        self._guard(self._predict)

    def _need_adapted(self) -> Session:
        session = self._need_session()
        if not session.adapted:
            raise AgileInputError(
                "No cell type is adapted yet: answer a few suggested cells of a type and press "
                "Adapt, then Predict or Export."
            )
        return session

    def _predict(self) -> None:
        session = self._need_adapted()

        def work(progress):
            table = session.predict(progress=progress)
            return table, session.paint(table)

        self._run("Predicting cell types", work, self._on_predicted)

    def _on_predicted(self, result) -> None:
        table, painted = result
        names = list(self.session.types)
        for name in names:
            if name not in self.colors:
                self.add_type(name)
        legend = legend_table(names, self.colors, table["cell_type"])
        if (layer := self._layer(_layers.TYPES)) is not None:
            layer.data = painted
        else:
            layer = Labels(painted, name=_layers.TYPES, opacity=0.8, **self._frame)
            above = self._layer(_layers.SUGGESTED)
            self.viewer.layers.insert(self.viewer.layers.index(above) if above else len(self.viewer.layers), layer)
            self._own[_layers.TYPES] = layer
        self._show_types(layer, legend)
        layer.mode = "pan_zoom"  # a look at the result, not a paint brush
        cells = self._cells_layer()
        cells.features = _layers.with_predictions(cells.features, table)
        self.viewer.layers.selection.active = cells  # clicks and keys answer cells, they do not paint
        self._table = table
        self._refresh_threshold()
        self.status.setText("Painted every nucleus with its most probable type (legend under Predict).")

    def _refresh_threshold(self) -> None:
        """The threshold view for the current type: its last predicted probabilities, threshold, probability image."""
        item = self.type_list.currentItem()
        name = item.text() if item else None
        column = f"p_{name}"
        known = self.session is not None and name in self.session.types
        p = self._table[column].to_numpy() if known and self._table is not None and column in self._table else None
        self.threshold_panel.show_type(p, type_threshold(self.session, name) if known else 0.5)
        self._show_probability(self.threshold_panel.show_box.isChecked() and p is not None)

    def _set_threshold(self, value: float) -> None:
        """The slider let go: the current type's threshold, saved, and every cell typed again (cached probabilities)."""
        session = self._need_adapted()
        session.set_threshold(self._current_type(), value)
        self.predict()

    def _show_probability(self, on: bool) -> None:
        """Paint (or hide) the 'probability' image: each nucleus its probability of the current type."""
        layer = self._layer(_layers.PROBABILITY)
        if not on or self._table is None or self.session is None:
            if layer is not None:
                layer.visible = False
            return
        name = self._current_type()
        data = self.session.paint_probability(name, self._table)
        if layer is None:
            layer = self._add_own(_layers.PROBABILITY, _layers.probability_layer(data, self._frame))
        layer.data, layer.visible = data, True
        layer.metadata["cell_type"] = name

    def _show_types(self, layer: Labels, legend: pd.DataFrame) -> None:
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

    # ---- 5. save, load, export --------------------------------------------------------------
    def type_images(self, images: Sequence[str] | None = None, out: str | None = None) -> None:
        """Type other image files with this session's adapted types, in a worker with progress: one cell table per
        image in folder `out` (both asked for when None; batch.type_sections, as `napari-agile predict`)."""

        def go() -> None:
            session = self._need_adapted()
            files = list(
                images
                or QFileDialog.getOpenFileNames(
                    self, "Images to type", "", "Images (*.tif *.tiff *.zarr);;All files (*)"
                )[0]
            )
            folder = (out or self._ask_path("Folder for the cell tables", save=True, folder=True)) if files else None
            if not folder:
                return
            self._run(
                f"Typing {len(files)} image(s)",
                lambda progress: type_sections(session.store, files, folder, progress=progress),
                lambda results: self._on_typed(results, folder),
            )

        self._guard(go)

    def _on_typed(self, results: list[Typed], folder: str) -> None:
        """Say where the tables went, and name each image that was not typed with its reason."""
        skipped = [f"{r.image.name}: {r.error}" for r in results if r.error is not None]
        said = f"Typed {len(results) - len(skipped)} of {len(results)} image(s) into {folder}."
        if skipped:
            self._fail(f"{said} Not typed: " + " ".join(skipped))
        else:
            self.status.setText(f"{said} One cell table per image (id, y, x, p_<type>, cell_type).")

    def _ask_path(self, title: str, save: bool, filter: str = "", folder: bool = False) -> str | None:
        if folder:
            path = QFileDialog.getExistingDirectory(self, title)
        elif save:
            path, _ = QFileDialog.getSaveFileName(self, title, "", filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, title, "", filter)
        return path or None

    def _browse_model(self) -> None:
        path = self._ask_path("Choose a napari-agile model", save=False, filter="Model (*.safetensors)")
        if path:
            self.model_edit.setText(path)

    def _browse_store(self) -> None:
        path = self._ask_path("Folder for this session's answers", save=True, folder=True)
        if path:
            self.store_edit.setText(path)

    def save_session(self, path: str | None = None) -> None:
        """Write the whole session (answers, adapted weights, model, cells) to a folder (Session.save)."""
        self._guard(lambda: self._save_session(path))

    def _save_session(self, path: str | None) -> None:
        session = self._need_session()
        path = path or self._ask_path("Save the session in folder", save=True, folder=True)
        if path:
            self._run("Saving session", lambda progress: session.save(path), self._on_saved)

    def _on_saved(self, path: Path) -> None:
        self.store_edit.setText(str(path))
        self.status.setText(f"Answers are saved in {path}.")
        show_info(f"Session saved in {path}; later answers are saved there too.")

    def load_session(self, path: str | None = None) -> None:
        """Reopen a saved session folder on the ticked tissue layers (Session.load), with its layers."""
        self._guard(lambda: self._load_session(path))

    def _load_session(self, path: str | None) -> None:
        tissue = self.tissue()
        path = path or self._ask_path("Open a session folder", save=False, folder=True)
        if path:
            self._run("Loading session", lambda progress: self._open_session(path, tissue, progress), self._on_loaded)

    @staticmethod
    def _open_session(path: str, tissue: Tissue, progress: _Progress) -> tuple[Session, Any]:
        """The loaded session, with its prediction (table, painted types) when a type is adapted, else None."""
        session = Session.load(path, tissue, progress=progress, strict=True)  # not on another section
        if not session.adapted:
            return session, None
        progress.phase("Predicting cell types")
        table = session.predict(progress=progress)
        return session, (table, session.paint(table))

    def _on_loaded(self, result: tuple[Session, Any]) -> None:
        """Show a loaded session, its cell-types layer and legend too."""
        session, predicted = result
        self.store_edit.setText(str(session.store))  # later answers go there
        self._on_session(session)
        if predicted is not None:
            self._on_predicted(predicted)

    def export_csv(self, path: str | None = None) -> None:
        """Write every cell's probabilities, entropies and type as CSV."""
        self._export(path, "CSV (*.csv)")

    def export_geojson(self, path: str | None = None) -> None:
        """Write every cell as a GeoJSON nucleus outline classified by its type (QuPath: File > Import objects)."""
        self._export(path, "GeoJSON (*.geojson)")

    def export_anndata(self, path: str | None = None) -> None:
        """Write every cell as an AnnData .h5ad (marker means, type, probabilities, centres, answers) for scanpy."""
        self._export(path, "AnnData (*.h5ad)")

    def _export(self, path: str | None, filter: str) -> None:
        def go() -> None:
            session = self._need_adapted()
            target = path or self._ask_path("Export cells", save=True, filter=filter)
            if target:
                colors = dict(self.colors)
                self._run(
                    "Exporting cells",
                    lambda progress: session.export(target, colors=colors, progress=progress),
                    lambda p: show_info(f"Wrote {len(session.cells)} cells to {p}."),
                )

        self._guard(go)

    def save_model(self, path: str | None = None) -> None:
        """Save the current type's adapted network as a model file (for `napari-agile predict`)."""

        def go() -> None:
            session = self._need_session()
            if self._answers_in_use():
                return
            model = session.adapted_model(self._current_type())
            target = path or self._ask_path("Save the adapted model", save=True, filter="Model (*.safetensors)")
            if target:
                show_info(f"Saved the adapted model to {model.save(target)}.")

        self._guard(go)

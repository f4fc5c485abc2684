"""Step 1 of the dock: which image layers are the tissue, their channel names, the channels the model reads and the
nuclear stains, where the nuclei come from, the model and the session folder; Detect nuclei builds the Session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLineEdit, QListWidget, QListWidgetItem

from napari_agile._napari import layers as _layers
from napari_agile._napari.controller import Controller
from napari_agile._napari.controls import ask_path, button, fill, spin, ticked, with_browse
from napari_agile._napari.jobs import Progress
from napari_agile.detect.nuclei import cells_from_labels, detect_nuclei, estimate_nuclei
from napari_agile.engine.model_file import AgileModel, check_channels, load_model, pick_model
from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import Tissue, nuclear_flags
from napari_agile.session import Session, check_memory, panel_choice, panel_config

#: the 'Nuclei' choice that finds them in the nuclear channels; the other choices are the viewer's Labels layers
DETECT = "detect in the nuclear channels"
#: the 'Teach on' choices: every cell of the section, or only those in the part the viewer shows
WHOLE, IN_VIEW = "the whole section", "the part in view"


def _tick_list(form: QFormLayout, label: str, tip: str, height: int, on_tick: Any) -> QListWidget:
    """A list of tickable items added to ``form`` as row ``label``."""
    widget = QListWidget()
    widget.setToolTip(tip)
    widget.setMinimumHeight(height)
    widget.itemChanged.connect(on_tick)
    form.addRow(label, widget)
    return widget


class TissuePanel(QGroupBox):
    """1. Tissue and nuclei."""

    def __init__(self, ctl: Controller) -> None:
        super().__init__("1. Tissue and nuclei")
        self.ctl = ctl
        self._unticked: set[str] = set()  # image layers the user unticked (new layers come ticked)
        self._excluded: set[str] = set()  # channels the user left out of the model (new channels come ticked)
        self._nuclear: tuple[list[str], set[str]] | None = None  # (channels, nuclear ticks) the user or a session chose
        self._model_cache: tuple[str, AgileModel] | None = None
        form = QFormLayout(self)
        self.image_list = _tick_list(
            form,
            "Image layers",
            "Tick one (channels, rows, columns) image, or one 2D layer per channel (layer names = channel names).",
            110,
            self._on_image_ticked,
        )
        self.names_edit = QLineEdit()
        self.names_edit.setPlaceholderText("from the layer names")
        self.names_edit.setToolTip(
            "Channel names in order, comma-separated (e.g. DAPI, Histones, NeuN, S100, Olig2, "
            "Iba1, RECA1), for layers whose names are not the channels' (channel_1, ...)."
        )
        self.names_edit.editingFinished.connect(self.refresh_channels)
        form.addRow("Channel names", self.names_edit)
        self.channel_list = _tick_list(
            form,
            "Channels",
            "Channels the model reads: untick one to leave it out (a model for any panel; "
            "the rat-brain model reads its own 7 channels).",
            80,
            self._on_channel_ticked,
        )
        self.nuclear_list = _tick_list(
            form,
            "Nuclear channels",
            "Channels that stain every nucleus (DAPI, Hoechst, DNA, ...): summed for "
            "detection, and the model's nuclear stains.",
            80,
            self._on_nuclear_ticked,
        )
        self.nuclei_combo = QComboBox()
        self.nuclei_combo.setToolTip(
            "Detect nuclei here, or use a nucleus label image you already have (a Labels "
            "layer from StarDist, Cellpose, QuPath…: one integer id per nucleus)."
        )
        self.nuclei_combo.currentTextChanged.connect(self._on_nuclei_source)
        form.addRow("Nuclei", self.nuclei_combo)
        self.width_spin = spin("Nucleus width", 0, 400, 0, form)
        self.width_spin.setSpecialValueText("auto")  # 0: measured on the section (estimate_diameter)
        self.width_spin.setSuffix(" px")
        self.width_spin.setToolTip(
            "Typical nucleus width in pixels for detection; auto measures it on the nuclear channels, so sections "
            "imaged at any resolution need no setting."
        )
        self.region_combo = QComboBox()
        self.region_combo.addItems([WHOLE, IN_VIEW])
        self.region_combo.setToolTip(
            "The cells to teach on. For a section too large to hold every cell's patch, zoom to an area that has "
            "the cell types you want and choose the part in view; then type the whole section with 'Type other "
            "images…', which reads it tile by tile."
        )
        form.addRow("Teach on", self.region_combo)
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("bundled: rat-brain for its 7 channels, else any-panel")
        self.model_edit.setToolTip(
            "A model file (.safetensors), or a bundled model by name (rat-brain, any-panel); "
            "empty: rat-brain when its 7 channels are ticked, else the model for any panel."
        )
        form.addRow("Model", with_browse(self.model_edit, self._browse_model))
        self.store_edit = QLineEdit()
        self.store_edit.setPlaceholderText("automatic (~/.napari-agile/sessions/...)")
        self.store_edit.setToolTip("Every answer is written here the moment you give it.")
        form.addRow("Session folder", with_browse(self.store_edit, self._browse_store))
        self.detect_btn = button(
            "Detect nuclei",
            self.detect,
            "Find the nuclei in the ticked nuclear channels (or take the chosen Labels "
            "layer) and cut a patch around each cell.",
            form,
        )

    def enable(self, busy: bool) -> None:
        self.detect_btn.setEnabled(not busy)

    # ---- layers and channels ------------------------------------------------------------------
    def image_layers(self) -> list[Image]:
        """The viewer's image layers that can be tissue channels (not the dock's probability image)."""
        return [layer for layer in self.ctl.viewer.layers if isinstance(layer, Image) and not self.ctl.is_own(layer)]

    def refresh_layers(self) -> None:
        """The viewer's layers changed: list its image layers (new ones ticked) and its Labels layers as nuclei."""
        names = [layer.name for layer in self.image_layers()]
        fill(self.image_list, names, set(names) - self._unticked)
        self.refresh_channels()
        self._refresh_nuclei_sources()

    def _refresh_nuclei_sources(self) -> None:
        """'detect', then every Labels layer that is not one of the dock's outputs; the choice is kept."""
        current = self.nuclei_combo.currentText()
        names = [
            layer.name for layer in self.ctl.viewer.layers if isinstance(layer, Labels) and not self.ctl.is_own(layer)
        ]
        self.nuclei_combo.blockSignals(True)
        self.nuclei_combo.clear()
        self.nuclei_combo.addItems([DETECT, *names])
        self.nuclei_combo.setCurrentText(current if current in names else DETECT)
        self.nuclei_combo.blockSignals(False)
        self._on_nuclei_source(self.nuclei_combo.currentText())

    def _on_nuclei_source(self, source: str) -> None:
        self.detect_btn.setText("Detect nuclei" if source == DETECT else f"Use the nuclei in '{source}'")
        self.width_spin.setEnabled(source == DETECT)

    def _on_image_ticked(self, item: QListWidgetItem) -> None:
        """Remember layers the user unticked (new layers come ticked), then refresh the channel list."""
        if item.checkState() == Qt.CheckState.Checked:
            self._unticked.discard(item.text())
        else:
            self._unticked.add(item.text())
        self.refresh_channels()

    def selected_layers(self) -> list[Image]:
        names = ticked(self.image_list)
        return [layer for layer in self.image_layers() if layer.name in names]

    def _typed_names(self) -> list[str] | None:
        names = [n.strip() for n in self.names_edit.text().split(",") if n.strip()]
        return names or None

    def channel_names(self) -> list[str]:
        layers = self.selected_layers()
        typed = self._typed_names()
        if len(layers) == 1 and layers[0].ndim == 3:
            return typed or list(layers[0].metadata.get("channel_names") or [])
        return typed if typed and len(typed) == len(layers) else [layer.name for layer in layers]

    def refresh_channels(self) -> None:
        """List the channels twice, for the model (ticked unless the user left them out) and as nuclear stains
        (the ticks chosen for these very channels, else the nuclear stains by name: a choice made for other
        channels, before the last layer arrived or on another image, does not stick)."""
        names = self.channel_names()
        if self._nuclear is not None and self._nuclear[0] != names:
            self._nuclear = None
        on = self._nuclear[1] if self._nuclear else {n for n, flag in zip(names, nuclear_flags(names)) if flag}
        fill(self.channel_list, names, set(names) - self._excluded)
        fill(self.nuclear_list, names, on)

    def _on_channel_ticked(self, item: QListWidgetItem) -> None:
        """Remember channels the user left out of the model."""
        if item.checkState() == Qt.CheckState.Checked:
            self._excluded.discard(item.text())
        else:
            self._excluded.add(item.text())

    def _on_nuclear_ticked(self, item: QListWidgetItem) -> None:
        """Remember the user's nuclear stains for the channels listed now."""
        self._nuclear = (self.channel_names(), set(ticked(self.nuclear_list)))

    def show_panel(self, session: Session) -> None:
        """Tick the channels a session reads and, for a model for any panel, its nuclear stains (a nuclear stain
        outside the model's channels, for detection only, keeps its tick)."""
        names = self.channel_names()
        cfg = session.config
        self._excluded = set(names) - set(cfg.channels)
        fill(self.channel_list, names, set(cfg.channels))
        if cfg.per_channel:
            outside = set(ticked(self.nuclear_list)) - set(cfg.channels)
            fill(self.nuclear_list, names, {c for c, flag in zip(cfg.channels, cfg.nuclear) if flag} | outside)
            self._nuclear = (names, set(ticked(self.nuclear_list)))

    def tissue(self) -> Tissue:
        """The Tissue made of the ticked image layers (clear errors for anything that is not one section)."""
        layers = self.selected_layers()
        tissue = _layers.tissue_from_layers(layers, self._typed_names())
        self.ctl.frame = _layers.frame_kwargs(layers[0])
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

    def _browse_model(self) -> None:
        path = ask_path(self, "Choose a napari-agile model", save=False, filter="Model (*.safetensors)")
        if path:
            self.model_edit.setText(path)

    def _browse_store(self) -> None:
        path = ask_path(self, "Folder for this session's answers", save=True, folder=True)
        if path:
            self.store_edit.setText(path)

    # ---- detect -------------------------------------------------------------------------------
    def detect(self) -> None:
        """Detect nuclei on the ticked layers, then build the session (patch extraction) in a worker."""
        self.ctl.jobs.guard(self._detect)

    def _detect(self) -> None:
        self.refresh_channels()  # names typed without Enter (or set from code) count too
        tissue = self.tissue()
        nuclear = ticked(self.nuclear_list)
        model = self.model([n for n in ticked(self.channel_list) if n in tissue.channel_names])
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
        panel = panel_choice(model, tissue.channel_names, ticked(self.channel_list), nuclear)
        config = panel_config(model, tissue, panel.get("channels"), panel.get("nuclear"))  # refused now, not later
        channels = nuclear or None
        store = self.store_edit.text().strip() or None
        if store and (Path(store) / "session.json").exists():
            raise AgileInputError(
                f"The session folder {store} already holds a session: press 'Load session…' to continue it, or "
                "choose another folder (empty the field for a new automatic one)."
            )
        mask = self._nuclei_mask()
        if self.region_combo.currentText() == IN_VIEW:
            tissue, mask = self._in_view(tissue, mask)
        diameter = float(self.width_spin.value()) or None

        def work(progress: Progress) -> Session:
            if mask is None:  # a section too large for memory is refused in a second, not after its detection
                guess = estimate_nuclei(tissue, channels)
                check_memory(config, guess.at_least, mask_pixels=tissue.shape[0] * tissue.shape[1], estimated=True)
                cells = detect_nuclei(tissue, channels=channels, diameter=diameter or guess.diameter, progress=progress)
            else:
                cells = cells_from_labels(mask, tissue.shape)
            progress.phase(f"Cutting patches around {len(cells)} cells")
            return Session(tissue, cells, model, store=store, progress=progress, **panel)

        if mask is None:
            self.ctl.jobs.run("Detecting nuclei", work, self.ctl.open_session)
        else:  # the user's own Labels layer stays the nuclei layer
            self.ctl.jobs.run("Reading the nuclei", work, lambda session: self.ctl.open_session(session, False))

    def _in_view(self, tissue: Tissue, mask: np.ndarray | None) -> tuple[Tissue, np.ndarray | None]:
        """The part of `tissue` (and of the nucleus `mask`) the viewer shows (its layers are placed there when the
        session opens: Controller.open_session)."""
        top, left, bottom, right = _layers.view_box(self.ctl.viewer, self.ctl.frame, tissue.shape)
        if bottom - top < 1 or right - left < 1:
            raise AgileInputError("The view shows none of the section: pan to the part to teach on, or teach on all.")
        part = mask[top:bottom, left:right] if mask is not None and mask.shape == tissue.shape else mask
        return tissue.crop(top, left, bottom, right), part

    def _nuclei_mask(self) -> np.ndarray | None:
        """The chosen Labels layer's full-resolution data (None: detect)."""
        source = self.nuclei_combo.currentText()
        if source == DETECT or source not in self.ctl.viewer.layers:
            return None
        return np.asarray(_layers.finest_level(self.ctl.viewer.layers[source]))

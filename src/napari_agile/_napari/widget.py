"""The AGILE dock widget: the five steps as panels in a scroll area, the job row and status line below them, and
the hooks into the viewer (keys, clicks, layer changes) that live exactly as long as the dock.

Each panel wires its step to one Session method; the Controller holds what they share (controller.py)."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import QHBoxLayout, QScrollArea, QVBoxLayout, QWidget

from napari_agile._napari import keys
from napari_agile._napari.answers_panel import AnswersPanel
from napari_agile._napari.controller import Controller
from napari_agile._napari.files_panel import FilesPanel
from napari_agile._napari.jobs import Jobs
from napari_agile._napari.results_panel import ResultsPanel
from napari_agile._napari.tissue_panel import TissuePanel
from napari_agile._napari.types_panel import TypesPanel
from napari_agile.session import Session


class AgileWidget(QWidget):
    """Detect nuclei, name cell types, answer the suggested cells, adapt, predict, save and export.

    The steps are `tissue`, `types`, `answers`, `results` and `files` (one panel each); `jobs` runs long work.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.alive = {"yes": True}  # shared with worker and key callbacks: False once the dock is gone
        self.jobs = Jobs(self.alive, on_busy=lambda busy: self.ctl.enable(busy))
        self.ctl = Controller(napari_viewer, self.jobs)
        self.tissue = TissuePanel(self.ctl)
        self.types = TypesPanel(self.ctl)
        self.answers = AnswersPanel(self.ctl)
        self.results = ResultsPanel(self.ctl)
        self.files = FilesPanel(self.ctl)
        self.ctl.attach(self.tissue, self.types, self.answers, self.results, self.files)
        self._build()
        self.jobs.set_busy(False)
        self._hook()

    def _build(self) -> None:
        """The five steps in a scroll area, so the dock fits a laptop screen (a 1280 x 800 window); the job, Cancel
        and the question below it, where they never scroll away."""
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        steps = QVBoxLayout(inner)
        for panel in (self.tissue, self.types, self.answers, self.results, self.files):
            steps.addWidget(panel)
        steps.addStretch(1)
        scroll.setWidget(inner)
        root = QVBoxLayout(self)
        root.addWidget(scroll)
        row = QHBoxLayout()
        row.addWidget(self.jobs.bar)
        row.addWidget(self.jobs.cancel_btn)
        root.addLayout(row)
        root.addWidget(self.jobs.status)

    def _hook(self) -> None:
        """Keys on the viewer and its image layers, clicks on cells, and the layer list, until the dock goes."""
        alive = self.alive

        def on_click(viewer: Any, event: Any):
            if alive["yes"]:
                yield from self.answers.on_click(viewer, event)

        def on_layers(*_: Any) -> None:
            if alive["yes"]:
                keys.bind_layers(self.tissue.image_layers(), self.answers, alive)
                self.tissue.refresh_layers()

        self._on_click, self._on_layers = on_click, on_layers
        keys.bind(self.viewer, self.answers, alive)
        self.viewer.mouse_drag_callbacks.append(on_click)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.renamed):  # layer names are channels
            event.connect(on_layers)
        hooks = (self.viewer, alive, self.jobs.cancel_event, on_click, on_layers)
        self.destroyed.connect(lambda *_: keys.detach(*hooks))  # the viewer closed, or the dock was removed
        on_layers()

    def _detach(self) -> None:
        keys.detach(self.viewer, self.alive, self.jobs.cancel_event, self._on_click, self._on_layers)

    @property
    def session(self) -> Session | None:
        """The session the dock works on (None before Detect nuclei or Load session)."""
        return self.ctl.session

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        """Stop listening to the viewer and cancel running work; answers are already on disk."""
        self._detach()
        super().closeEvent(event)

    def event(self, event: Any) -> bool:  # noqa: A003 (Qt name)
        """The dock's close button only takes the widget out of its dock (napari's remove_dock_widget), without
        closing it: a widget that loses its dock stops listening too, so its keys cannot answer into its session."""
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif getattr(self, "_docked", False):
                self._detach()
        return super().event(event)

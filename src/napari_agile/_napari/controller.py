"""The dock's one controller: the Session and what every panel shares (the type colours, the layers the dock drew,
the job runner), and the few moves that change several panels at once (a new session, another type, new answers).

Panels call the Session for their own step through `ctl.session` and tell the controller what changed; the
controller tells the other panels. Nothing here builds a widget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_agile._napari import layers as _layers
from napari_agile._napari.jobs import Jobs
from napari_agile.errors import AgileInputError
from napari_agile.session import Session

if TYPE_CHECKING:
    from napari_agile._napari.answers_panel import AnswersPanel
    from napari_agile._napari.files_panel import FilesPanel
    from napari_agile._napari.results_panel import ResultsPanel
    from napari_agile._napari.tissue_panel import TissuePanel
    from napari_agile._napari.types_panel import TypesPanel


class Controller:
    """State shared by the dock's panels, and the moves between them."""

    tissue: TissuePanel
    types: TypesPanel
    answers: AnswersPanel
    results: ResultsPanel
    files: FilesPanel

    def __init__(self, viewer: Any, jobs: Jobs) -> None:
        self.viewer, self.jobs = viewer, jobs
        self.session: Session | None = None
        self.colors: dict[str, str] = {}
        self.frame: dict = {"scale": (1.0, 1.0), "translate": (0.0, 0.0)}  # the tissue layers' scale and offset
        self.own: dict[str, Any] = {}  # _layers.CELLS/NUCLEI/SUGGESTED/TYPES/PROBABILITY -> the layer it made

    def attach(self, tissue: TissuePanel, types: TypesPanel, answers: AnswersPanel, results: ResultsPanel,
               files: FilesPanel) -> None:  # fmt: skip
        """Know the panels (built after the controller, which each of them holds)."""
        self.tissue, self.types, self.answers, self.results, self.files = tissue, types, answers, results, files

    # ---- what the panels need -----------------------------------------------------------------
    def need_session(self) -> Session:
        if self.session is None:
            raise AgileInputError("No cells yet: tick the tissue layers and press 'Detect nuclei' (or load a session).")
        return self.session

    def need_adapted(self) -> Session:
        session = self.need_session()
        if not session.adapted:
            raise AgileInputError(
                "No cell type is adapted yet: answer a few suggested cells of a type and press "
                "Adapt, then Predict or Export."
            )
        return session

    def say(self, text: str) -> None:
        """Write the dock's status line (the question, the next step, what just happened)."""
        self.jobs.status.setText(text)

    def layer(self, key: str) -> Any:
        """The dock's layer for `key` (_layers.CELLS, ...) while it is in the viewer, else None."""
        layer = self.own.get(key)
        return layer if layer is not None and layer in self.viewer.layers else None

    def add_own(self, key: str, layer: Any) -> Any:
        self.own[key] = layer  # known as ours before the viewer announces it (the image list skips it)
        self.viewer.add_layer(layer)
        return layer

    def is_own(self, layer: Any) -> bool:
        return any(layer is own for own in self.own.values())

    def cells_layer(self) -> Any:
        """The cells layer, drawn again if the user deleted it."""
        layer = self.layer(_layers.CELLS)
        if layer is None and self.session is not None:
            layer = self.add_own(_layers.CELLS, _layers.cells_layer(self.session.cells.table, self.frame))
        return layer

    def focus(self, layer: Any, row: int) -> None:
        """Make `layer` the active one and centre the view on its point `row`, zoomed to ~3 screen px a pixel."""
        self.viewer.layers.selection.active = layer
        cam = _layers.camera(self.viewer)
        cam.center = tuple(layer.data_to_world(np.asarray(layer.data[row], float)))
        cam.zoom = max(cam.zoom, 3.0 / float(layer.scale[-1]))

    # ---- moves across panels ------------------------------------------------------------------
    def open_session(self, session: Session, show_nuclei: bool = True) -> None:
        """Show a new or loaded session: its channels, cells, types (in their colours) and nothing of the last one."""
        self.session = session
        if region := session.tissue.metadata.get("region"):  # taught on part of the section: its layers go there
            scale, translate = self.frame["scale"], self.frame["translate"]
            corner = (translate[0] + region[0] * scale[0], translate[1] + region[1] * scale[1])
            self.frame = {"scale": scale, "translate": corner}
        self.tissue.show_panel(session)  # a loaded session's channels, as session.json has them
        for key in list(self.own):  # the dock's layers only: a user's layer named 'cells' stays
            if (layer := self.layer(key)) is not None:
                self.viewer.layers.remove(layer)
        self.own = {}
        if session.cells.labels is not None and show_nuclei:
            self.add_own(_layers.NUCLEI, _layers.nuclei_layer(session.cells.labels, self.frame))
        self.add_own(_layers.SUGGESTED, _layers.suggestions_layer(self.frame))
        self.add_own(_layers.CELLS, _layers.cells_layer(session.cells.table, self.frame))
        self.answers.clear()
        self.results.clear()  # the painted types were the previous session's
        self.colors.update(session.colors)
        self.types.show_session(session)
        self.answers_changed()
        name = self.types.current_name()
        wide = f", median nucleus {session.cells.diameter:.0f} px across" if "area" in session.cells.table else ""
        self.say(f"{len(session.cells)} cells{wide}. Answers are saved in {session.store}. " + next_step(name))

    def type_changed(self, name: str) -> None:
        """Another current type: its suggestions are gone, and so is the question about the previous type."""
        self.answers.clear()
        self.answers_changed()
        self.results.refresh_threshold()
        if name and self.session is not None and not self.jobs.busy:
            self.say(next_step(name))

    def types_changed(self, message: str) -> None:
        """A type renamed or deleted: the painted types and the legend follow."""
        self.results.retype()
        self.answers_changed()
        self.results.refresh_threshold()
        self.say(message)

    def answers_changed(self) -> None:
        """Answers (or the current type, or its colour) changed: the cells show them, and buttons follow."""
        self.answers.refresh()
        self.enable(self.jobs.busy)

    def enable(self, busy: bool) -> None:
        """Each panel enables what can run now (nothing that starts work or reads the answers during a job)."""
        for panel in (self.tissue, self.types, self.answers, self.results, self.files):
            panel.enable(busy)


def next_step(name: str | None) -> str:
    """What to do next for type `name` (None: no type yet)."""
    if not name:
        return "Add a cell type, then Suggest."
    return f"Current type: {name}. Suggest, then answer y / n for each suggested cell."

"""Step 5 of the dock: save and reopen the session folder, export the cells (CSV, GeoJSON, AnnData, SpatialData),
save the adapted network as a model file, and type other image files with it (batch.type_sections)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_info
from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout

from napari_agile._napari.controller import Controller
from napari_agile._napari.controls import ask_path, button
from napari_agile._napari.jobs import Progress
from napari_agile.batch import Typed, type_sections
from napari_agile.io.tissue import Tissue
from napari_agile.session import Session

TIPS = {
    "Save session…": "Write answers, adapted weights and cells to a folder you choose.",
    "Load session…": "Reopen a saved session folder on the ticked image layers.",
    "Export CSV…": "Write every cell's probabilities and type as a table (needs an adapted type).",
    "Export GeoJSON…": "Write every nucleus outline classified by its type, for QuPath (needs an adapted type).",
    "Export AnnData…": "Write an .h5ad for scanpy/squidpy: marker means per channel, types, probabilities, centres "
    "and answers (needs an adapted type and anndata).",
    "Export SpatialData…": "Write a SpatialData .zarr: the image, the nucleus and cell-type labels and the AnnData "
    "table (needs an adapted type and spatialdata).",
    "Save adapted model…": "Save the current type's adapted network, for `napari-agile predict`.",
    "Type other images…": "Type other image files with this session's adapted types: nuclei found, one cell table "
    "per image in a folder you choose (napari-agile predict).",
}
#: buttons that need a session, and those that need an adapted type (Load needs neither)
NEED_SESSION = ("Save session…", "Save adapted model…")
NEED_ADAPTED = ("Export CSV…", "Export GeoJSON…", "Export AnnData…", "Export SpatialData…", "Type other images…")


class FilesPanel(QGroupBox):
    """5. Save and export."""

    def __init__(self, ctl: Controller) -> None:
        super().__init__("5. Save and export")
        self.ctl = ctl
        col = QVBoxLayout(self)
        self.file_buttons: dict[str, QPushButton] = {}
        rows: tuple[tuple[tuple[str, Callable[[], None]], ...], ...] = (
            (("Save session…", self.save_session), ("Load session…", self.load_session)),
            (("Export CSV…", self.export_csv), ("Export GeoJSON…", self.export_geojson)),
            (("Export AnnData…", self.export_anndata), ("Export SpatialData…", self.export_spatialdata)),
            (("Save adapted model…", self.save_model), ("Type other images…", self.type_images)),
        )
        for pair in rows:
            row = QHBoxLayout()
            for text, slot in pair:
                self.file_buttons[text] = button(text, slot, TIPS[text])
                row.addWidget(self.file_buttons[text])
            col.addLayout(row)

    def enable(self, busy: bool) -> None:
        session = None if busy else self.ctl.session
        self.file_buttons["Load session…"].setEnabled(not busy)
        for text in NEED_SESSION:
            self.file_buttons[text].setEnabled(session is not None)
        for text in NEED_ADAPTED:
            self.file_buttons[text].setEnabled(session is not None and bool(session.adapted))

    # ---- the session folder -------------------------------------------------------------------
    def save_session(self, path: str | None = None) -> None:
        """Write the whole session (answers, adapted weights, model, cells) to a folder (Session.save)."""
        self.ctl.jobs.guard(lambda: self._save_session(path))

    def _save_session(self, path: str | None) -> None:
        session = self.ctl.need_session()
        path = path or ask_path(self, "Save the session in folder", save=True, folder=True)
        if path:
            self.ctl.jobs.run("Saving session", lambda progress: session.save(path), self._on_saved)

    def _on_saved(self, path: Path) -> None:
        self.ctl.tissue.store_edit.setText(str(path))
        self.ctl.say(f"Answers are saved in {path}.")
        show_info(f"Session saved in {path}; later answers are saved there too.")

    def load_session(self, path: str | None = None) -> None:
        """Reopen a saved session folder on the ticked tissue layers (Session.load), with its layers."""
        self.ctl.jobs.guard(lambda: self._load_session(path))

    def _load_session(self, path: str | None) -> None:
        tissue = self.ctl.tissue.tissue()
        path = path or ask_path(self, "Open a session folder", save=False, folder=True)
        if path:
            self.ctl.jobs.run(
                "Loading session", lambda progress: _open_session(path, tissue, progress), self._on_loaded
            )

    def _on_loaded(self, result: tuple[Session, Any]) -> None:
        """Show a loaded session, its cell-types layer and legend too."""
        session, predicted = result
        self.ctl.tissue.store_edit.setText(str(session.store))  # later answers go there
        self.ctl.open_session(session)
        if predicted is not None:
            self.ctl.results.on_predicted(predicted)

    # ---- exports ------------------------------------------------------------------------------
    def export_csv(self, path: str | None = None) -> None:
        """Write every cell's probabilities, entropies and type as CSV."""
        self._export(path, "CSV (*.csv)")

    def export_geojson(self, path: str | None = None) -> None:
        """Write every cell as a GeoJSON nucleus outline classified by its type (QuPath: File > Import objects)."""
        self._export(path, "GeoJSON (*.geojson)")

    def export_anndata(self, path: str | None = None) -> None:
        """Write every cell as an AnnData .h5ad (marker means, type, probabilities, centres, answers) for scanpy."""
        self._export(path, "AnnData (*.h5ad)")

    def export_spatialdata(self, path: str | None = None) -> None:
        """Write a SpatialData .zarr store: the tissue image, nucleus and cell-type labels, and the AnnData table."""
        self._export(path, "SpatialData (*.zarr)")

    def _export(self, path: str | None, filter: str) -> None:
        def go() -> None:
            session = self.ctl.need_adapted()
            target = path or ask_path(self, "Export cells", save=True, filter=filter)
            if target:
                colors = dict(self.ctl.colors)
                self.ctl.jobs.run(
                    "Exporting cells",
                    lambda progress: session.export(target, colors=colors, progress=progress),
                    lambda p: show_info(f"Wrote {len(session.cells)} cells to {p}."),
                )

        self.ctl.jobs.guard(go)

    # ---- models and other images --------------------------------------------------------------
    def save_model(self, path: str | None = None) -> None:
        """Save the current type's adapted network as a model file (for `napari-agile predict`)."""

        def go() -> None:
            session = self.ctl.need_session()
            if self.ctl.jobs.in_use():
                return
            model = session.adapted_model(self.ctl.types.current())
            target = path or ask_path(self, "Save the adapted model", save=True, filter="Model (*.safetensors)")
            if target:
                show_info(f"Saved the adapted model to {model.save(target)}.")

        self.ctl.jobs.guard(go)

    def type_images(self, images: Sequence[str] | None = None, out: str | None = None) -> None:
        """Type other image files with this session's adapted types, in a worker with progress: one cell table per
        image in folder `out` (both asked for when None; batch.type_sections, as `napari-agile predict`), replacing
        the tables already there: the session may have been adapted since."""

        def go() -> None:
            session = self.ctl.need_adapted()
            files = list(
                images
                or QFileDialog.getOpenFileNames(
                    self, "Images to type", "", "Images (*.tif *.tiff *.zarr);;All files (*)"
                )[0]
            )
            folder = (out or ask_path(self, "Folder for the cell tables", save=True, folder=True)) if files else None
            if not folder:
                return
            self.ctl.jobs.run(
                f"Typing {len(files)} image(s)",
                lambda progress: type_sections(session.store, files, folder, progress=progress, overwrite=True),
                lambda results: self._on_typed(results, folder),
            )

        self.ctl.jobs.guard(go)

    def _on_typed(self, results: list[Typed], folder: str) -> None:
        """Say where the tables went, and name each image that was not typed with its reason."""
        skipped = [f"{r.image.name}: {r.error}" for r in results if r.error is not None]
        said = f"Typed {len(results) - len(skipped)} of {len(results)} image(s) into {folder}."
        if skipped:
            self.ctl.jobs.fail(f"{said} Not typed: " + " ".join(skipped))
        else:
            self.ctl.say(f"{said} One cell table per image (id, y, x, p_<type>, cell_type).")


def _open_session(path: str, tissue: Tissue, progress: Progress) -> tuple[Session, Any]:
    """The loaded session, with its prediction (table, painted types) when a type is adapted, else None."""
    session = Session.load(path, tissue, progress=progress, strict=True)  # not on another section
    if not session.adapted:
        return session, None
    progress.phase("Predicting cell types")
    table = session.predict(progress=progress)
    return session, (table, session.paint(table))

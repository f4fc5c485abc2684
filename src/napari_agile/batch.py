"""Typing other sections with a saved session: nuclei found (or read from a mask), the session's adapted types
applied, one cell table per image. `napari-agile predict` and the widget's "Type other images…" call this."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import Tissue

Progress = Callable[[int, int], None]


#: the table formats batch typing writes, by file extension
SUFFIXES = (".csv", ".geojson", ".h5ad", ".zarr")


@dataclass(frozen=True)
class Typed:
    """What became of one image: its table's path and cell count, or why it was skipped."""

    image: Path
    table: Path | None
    n_cells: int = 0
    error: str | None = None
    labels: Path | None = None  # the OME-Zarr nucleus and cell-type labels, when asked for


def image_stem(image: str | Path) -> str:
    """An image's name without its file extension ("s1.ome.tif" -> "s1", "s1.a.tif" -> "s1.a")."""
    image = Path(image)
    stem = image.stem if image.suffix else image.name
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def type_sections(
    session: str | Path,
    images: Sequence[str | Path],
    out: str | Path,
    *,
    masks: Sequence[str | Path] | None = None,
    names: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    nuclear: Sequence[str] | None = None,
    diameter: float = 24.0,
    suffix: str = ".csv",
    labels: bool = False,
    progress: Progress | None = None,
    on_typed: Callable[[Typed], None] | None = None,
) -> list[Typed]:
    """Type every image with the saved `session`'s adapted types, writing `out/<image><suffix>`: .csv (id, y, x,
    p_<type>, entropy_<type>, cell_type), .geojson (QuPath detections), .h5ad (AnnData) or .zarr (SpatialData: the
    image, nucleus and type labels and the table), see Session.export; with `labels`, a .csv table gets its nucleus and
    cell-type label images beside it (`out/<image>.labels.zarr`, OME-Zarr, chunked, with a multiscale pyramid).
    A bad image is skipped with its reason (the others are still typed); bad arguments are refused before any
    image is opened. `progress(done, total)` counts images; `on_typed` hears of each as it is done."""
    from napari_agile.session import Session

    images, out = [Path(i) for i in images], Path(out)
    if suffix not in SUFFIXES:
        raise AgileInputError(f"Cannot write {suffix!r} tables: choose one of {', '.join(SUFFIXES)}.")
    if labels and suffix != ".csv":
        raise AgileInputError(
            f"Label images are written beside .csv tables (a {suffix} output holds what it holds): choose csv."
        )
    if suffix in (".h5ad", ".zarr"):
        from napari_agile.scverse import require_anndata, require_spatialdata

        require_anndata() if suffix == ".h5ad" else require_spatialdata()  # a clear message before the long work
    if masks is not None and len(masks) != len(images):
        raise AgileInputError(
            f"{len(masks)} nucleus label images for {len(images)} images: give one per image "
            "(--masks), in the same order."
        )
    dests = [out / f"{image_stem(image)}{suffix}" for image in images]
    if len(set(dests)) < len(dests):
        same = sorted({d.name for d in dests if dests.count(d) > 1})
        raise AgileInputError(
            f"Several images would write {', '.join(same)}: rename them, or type each group into its own output folder."
        )
    saved = Session.check_saved(session)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for k, (image, dest) in enumerate(zip(images, dests)):
        mask = None if masks is None else masks[k]
        result = type_section(
            saved,
            image,
            dest,
            mask=mask,
            names=names,
            channels=channels,
            nuclear=nuclear,
            diameter=diameter,
            labels=labels,
        )
        results.append(result)
        if on_typed is not None:
            on_typed(result)
        if progress is not None:
            progress(k + 1, len(images))
    return results


def type_section(
    saved: Path,
    image: str | Path,
    dest: Path,
    *,
    mask: str | Path | None = None,
    names: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    nuclear: Sequence[str] | None = None,
    diameter: float = 24.0,
    labels: bool = False,
) -> Typed:
    """Type one image with the checked saved session `saved`, writing `dest` whole or not at all (under a temporary
    name, renamed at the end: a crash leaves no half-written table); a bad image gives a Typed with its reason.

    A .csv table is made tile by tile (streamed.type_cells; the nucleus mask on disk), so memory does not grow with
    the section; with `labels`, the nucleus and cell-type label images go beside it as an OME-Zarr labels group,
    `<image>.labels.zarr`. The other formats hold the whole section's mask and patches (Session.export)."""
    from napari_agile.io.images import read_tissue

    labels_dest = dest.with_name(f"{image_stem(image)}.labels.zarr") if labels else None
    partial, labels_partial = _partial(dest), _partial(labels_dest) if labels_dest else None
    try:  # one bad image is named and skipped; the others are still typed
        with read_tissue(image, channel_names=names) as tissue, tempfile.TemporaryDirectory() as scratch:
            for path in (partial, labels_partial):
                _remove(path)
            nuclei = _Nuclei(mask, nuclear, diameter)
            if dest.suffix == ".csv":
                labels_path = labels_partial or Path(scratch) / "labels"
                n_cells = _type_streamed(saved, tissue, nuclei, partial, labels_path, channels)
            else:
                n_cells = _type_in_memory(saved, tissue, nuclei, partial, scratch, channels)
        for path, final in ((partial, dest), (labels_partial, labels_dest)):
            if path is not None and final is not None and path.exists():
                _remove(final)
                path.rename(final)
    except AgileInputError as exc:
        for path in (partial, labels_partial):
            _remove(path)
        return Typed(Path(image), None, error=str(exc))
    return Typed(Path(image), dest, n_cells, labels=labels_dest)


@dataclass(frozen=True)
class _Nuclei:
    """How a batch finds each image's nuclei: read from `mask`, else detected in the `nuclear` stains."""

    mask: str | Path | None
    nuclear: Sequence[str] | None
    diameter: float

    def find(self, tissue: Tissue, saved: Path, out: Any = None) -> Cells:
        """The image's cells, with the detected mask painted into `out` when given (detect_nuclei)."""
        from napari_agile.detect.nuclei import cells_from_labels, detect_nuclei, read_mask

        if self.mask is not None:
            cells = cells_from_labels(read_mask(self.mask), tissue.shape)
            if out is not None:
                out[:] = cells.labels
            return cells
        nuclear = self.nuclear or json.loads((saved / "session.json").read_text()).get("nuclear") or None
        return detect_nuclei(tissue, channels=nuclear, diameter=self.diameter, out=out)


def _type_streamed(
    saved: Path, tissue: Tissue, nuclei: _Nuclei, table_path: Path, labels_path: Path, channels: Sequence[str] | None
) -> int:
    """The .csv path: the nucleus mask in an OME-Zarr label image at `labels_path`/nuclei, cells typed batch by batch,
    the table written, the types painted into `labels_path`/cell_types; returns the number of cells."""
    from napari_agile.io.export import default_colors, export_table
    from napari_agile.io.label_zarr import (
        create_label_image,
        finish_label_image,
        open_level,
        paint_label_image,
        write_label_group,
    )
    from napari_agile.streamed import SavedTypes, type_cells

    types = SavedTypes.load(saved)
    cells = nuclei.find(tissue, saved, out=create_label_image(labels_path / "nuclei", tissue.shape))
    finish_label_image(labels_path / "nuclei")
    cells = Cells(cells.table.reset_index(drop=True), open_level(labels_path / "nuclei"))  # the mask leaves memory
    table = type_cells(types, tissue, cells, channels=channels, nuclear=nuclei.nuclear)
    colors = {**default_colors(types.meta["types"]), **types.colors}
    export_table(table, table_path, colors)
    codes = {name: k + 1 for k, name in enumerate(types.meta["types"])}
    lut = np.zeros(int(table["id"].max()) + 1 if len(table) else 1, np.int32)
    lut[table["id"].to_numpy()] = [codes.get(t, 0) for t in table["cell_type"]]
    paint_label_image(cells.labels, lut, labels_path / "cell_types")
    finish_label_image(
        labels_path / "cell_types", {c: n for n, c in codes.items()}, {c: colors[n] for n, c in codes.items()}
    )
    write_label_group(labels_path, ["nuclei", "cell_types"])
    return len(cells)


def _type_in_memory(
    saved: Path, tissue: Tissue, nuclei: _Nuclei, dest: Path, scratch: str, channels: Sequence[str] | None
) -> int:
    """The .geojson, .h5ad and .zarr path: a Session on the whole section, exported; returns the number of cells."""
    from napari_agile.session import Session

    cells = nuclei.find(tissue, saved)
    typed = Session.apply_saved(saved, tissue, cells, store=scratch, channels=channels, nuclear=nuclei.nuclear)
    typed.export(dest, typed.predict())  # inside: an .h5ad reads the tissue's marker means
    return len(typed.cells)


def _partial(path: Path) -> Path:
    """Where `path` is written before it is complete."""
    return path.with_name(f".{path.name}.partial{path.suffix}")


def _remove(path: Path | None) -> None:
    """Delete a file or a folder (a .zarr store) if it is there."""
    if path is None:
        return
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()

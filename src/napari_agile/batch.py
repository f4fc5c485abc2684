"""Typing other sections with a saved session: nuclei found (or read from a mask), the session's adapted types
applied, one cell table per image. `napari-agile predict` and the widget's "Type other images…" call this."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_agile.errors import AgileInputError

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
    progress: Progress | None = None,
    on_typed: Callable[[Typed], None] | None = None,
) -> list[Typed]:
    """Type every image with the saved `session`'s adapted types, writing `out/<image><suffix>`: .csv (id, y, x,
    p_<type>, entropy_<type>, cell_type), .geojson (QuPath detections), .h5ad (AnnData) or .zarr (SpatialData: the
    image, nucleus and type labels and the table), see Session.export.
    A bad image is skipped with its reason (the others are still typed); bad arguments are refused before any
    image is opened. `progress(done, total)` counts images; `on_typed` hears of each as it is done."""
    from napari_agile.session import Session

    images, out = [Path(i) for i in images], Path(out)
    if suffix not in SUFFIXES:
        raise AgileInputError(f"Cannot write {suffix!r} tables: choose one of {', '.join(SUFFIXES)}.")
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
            saved, image, dest, mask=mask, names=names, channels=channels, nuclear=nuclear, diameter=diameter
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
) -> Typed:
    """Type one image with the checked saved session `saved`, writing `dest` whole or not at all (under a temporary
    name, renamed at the end: a crash leaves no half-written table); a bad image gives a Typed with its reason."""
    from napari_agile.detect.nuclei import cells_from_labels, detect_nuclei, read_mask
    from napari_agile.io.images import read_tissue
    from napari_agile.session import Session

    saved_nuclear = json.loads((saved / "session.json").read_text()).get("nuclear") or None
    partial = dest.with_name(f".{dest.name}.partial{dest.suffix}")
    try:  # one bad image is named and skipped; the others are still typed
        with read_tissue(image, channel_names=names) as tissue, tempfile.TemporaryDirectory() as scratch:
            if mask is None:
                cells = detect_nuclei(tissue, channels=nuclear or saved_nuclear, diameter=diameter)
            else:
                cells = cells_from_labels(read_mask(mask), tissue.shape)
            typed = Session.apply_saved(saved, tissue, cells, store=scratch, channels=channels, nuclear=nuclear)
            _remove(partial)
            typed.export(partial, typed.predict())  # inside: an .h5ad reads the tissue's marker means
        _remove(dest)
        partial.rename(dest)
    except AgileInputError as exc:
        _remove(partial)
        return Typed(Path(image), None, error=str(exc))
    return Typed(Path(image), dest, len(typed.cells))


def _remove(path: Path) -> None:
    """Delete a file or a folder (a .zarr store) if it is there."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()

"""Typing other sections with a saved session: nuclei found (or read from a mask), the session's adapted types
applied, one cell table per image. `napari-agile predict` and the widget's "Type other images…" call this."""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import Tissue

if TYPE_CHECKING:
    from distributed import Client

Progress = Callable[[int, int], None]
#: stage ("nuclei" or "cells"), done, total: how far one image has got
StageProgress = Callable[[str, int, int], None]


#: the table formats batch typing writes, by file extension
SUFFIXES = (".csv", ".geojson", ".h5ad", ".zarr")
#: the outputs that can have the nucleus and cell-type label images beside them (a .zarr holds them already)
LABELS_BESIDE = (".csv", ".geojson", ".h5ad")


@dataclass(frozen=True)
class Typed:
    """What became of one image: its table's path and cell count, or why it was skipped; `resumed`: the table was
    already in the output folder from an earlier run and was kept as it was (its cells not counted again)."""

    image: Path
    table: Path | None
    n_cells: int = 0
    error: str | None = None
    labels: Path | None = None  # the OME-Zarr nucleus and cell-type labels, when asked for
    resumed: bool = False


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
    diameter: float | None = None,
    suffix: str = ".csv",
    labels: bool = False,
    progress: Progress | None = None,
    on_typed: Callable[[Typed], None] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    overwrite: bool = False,
    stages: StageProgress | None = None,
) -> list[Typed]:
    """Type every image with the saved `session`'s adapted types, writing `out/<image><suffix>`: .csv (id, y, x,
    p_<type>, entropy_<type>, cell_type), .geojson (QuPath detections), .h5ad (AnnData) or .zarr (SpatialData: the
    image, nucleus and type labels and the table), see Session.export; with `labels`, a .csv, .geojson or .h5ad table
    gets its nucleus and cell-type label images beside it (`out/<image>.labels.zarr`, OME-Zarr, chunked, with a
    multiscale pyramid).
    A bad image is skipped with its reason (the others are still typed); bad arguments are refused before any
    image is opened. An image whose table is already in `out` is kept, not typed again (a Typed with `resumed`: a
    rerun after a crash goes on where it stopped), unless `overwrite`.
    `scheduler`: None types one image after another in this process; "local" starts a dask.distributed cluster of
    `workers` processes here (default: one per core, at most one per image) and closes it at the end; an address
    ("tcp://host:8786") uses that running cluster, whose workers must see the files at the same paths. There each
    image is one task, run again up to `retries` times if it fails or its worker dies; one that still fails is a
    Typed with the reason. `progress(done, total)` counts images and `on_typed` hears of each as it is done (in the
    order they finish); the list returned is in the order of `images`. `stages(stage, done, total)` follows each image
    typed in this process: "nuclei" counts detection tiles, "cells" cells typed."""
    from napari_agile.session import Session

    paths, out = [Path(i) for i in images], Path(out)
    if suffix not in SUFFIXES:
        raise AgileInputError(f"Cannot write {suffix!r} tables: choose one of {', '.join(SUFFIXES)}.")
    if labels and suffix not in LABELS_BESIDE:
        raise AgileInputError(
            f"Label images are written beside .csv, .geojson and .h5ad tables (a {suffix} output holds what it holds): "
            "choose csv, geojson or h5ad."
        )
    if suffix in (".h5ad", ".zarr"):
        from napari_agile.scverse import require_anndata, require_spatialdata

        require_anndata() if suffix == ".h5ad" else require_spatialdata()  # a clear message before the long work
    if masks is not None and len(masks) != len(images):
        raise AgileInputError(
            f"{len(masks)} nucleus label images for {len(images)} images: give one per image "
            "(--masks), in the same order."
        )
    if workers is not None and (scheduler != "local" or workers < 1):
        raise AgileInputError(
            f"{workers} workers: give a number of worker processes of 1 or more, with --scheduler local (a running "
            "cluster has its own workers)."
        )
    dests = [out / f"{image_stem(image)}{suffix}" for image in paths]
    if len(set(dests)) < len(dests):
        same = sorted({d.name for d in dests if dests.count(d) > 1})
        raise AgileInputError(
            f"Several images would write {', '.join(same)}: rename them, or type each group into its own output folder."
        )
    saved = Session.check_saved(session).absolute()  # absolute paths: a worker's folder is not this one
    out.mkdir(parents=True, exist_ok=True)
    jobs: dict[int, partial[Typed]] = {}
    results: dict[int, Typed] = {}
    for k, (image, dest) in enumerate(zip(paths, dests)):
        _remove(_partial(dest))  # a crashed run's half-written table
        if dest.exists() and (not labels or dest.with_suffix(".labels.zarr").exists()) and not overwrite:
            results[k] = Typed(image, dest, resumed=True)
        else:
            mask = None if masks is None else Path(masks[k]).absolute()
            jobs[k] = partial(
                type_section,
                saved,
                image.absolute(),
                dest.absolute(),
                mask=mask,
                names=names,
                channels=channels,
                nuclear=nuclear,
                diameter=diameter,
                labels=labels,
                stages=stages if scheduler is None else None,  # a worker's progress stays on the worker
            )
    with _connect(scheduler if jobs else None, workers or len(jobs), retries) as client:
        for done, (k, result) in enumerate(chain(list(results.items()), _typed(client, jobs, retries)), 1):
            results[k] = replace(result, image=paths[k])  # as the caller named it, not the absolute path
            if on_typed is not None:
                on_typed(results[k])
            if progress is not None:
                progress(done, len(paths))
    return [results[k] for k in range(len(paths))]


def _check_main_guard() -> None:
    """Refuse a LocalCluster started from a script without a main guard: its worker processes import the script
    again (spawn), start clusters of their own and the call waits for ever."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if path and str(path).endswith(".py") and Path(path).is_file():
        if "__main__" not in Path(path).read_text(errors="replace"):
            raise AgileInputError(
                f"scheduler='local' starts worker processes, which import {path} again: put the code that types "
                'the sections under `if __name__ == "__main__":` (see the multiprocessing docs, "Safe importing '
                'of main module"), or run without a scheduler.'
            )


@contextmanager
def _connect(scheduler: str | None, workers: int, retries: int) -> Iterator[Client | None]:
    """A dask.distributed client: None for `scheduler` None (in this process), a LocalCluster of `workers` processes
    (at most one per core) for "local", where a task whose workers die more than `retries` times fails, else the
    running cluster at that address."""
    if scheduler is None:
        yield None
        return
    from dask.system import CPU_COUNT
    from distributed import Client, LocalCluster

    if scheduler == "local":
        _check_main_guard()
        with (
            LocalCluster(
                n_workers=min(workers, CPU_COUNT),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                scheduler_kwargs={"allowed_failures": retries},
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler)
    except (ValueError, OSError) as exc:  # a malformed address, or no scheduler answering there
        raise AgileInputError(
            f"No dask scheduler at {scheduler!r} ({exc}): give the address `dask scheduler` prints (tcp://HOST:8786) "
            "once it runs and its workers are started (`dask worker tcp://HOST:8786`), or --scheduler local."
        ) from None
    with client:
        yield client


def _typed(client: Client | None, jobs: dict[int, partial[Typed]], retries: int) -> Iterator[tuple[int, Typed]]:
    """Run each job, yielding (its key, its Typed) as it finishes: one after another here when `client` is None,
    else as tasks on the cluster, where a task that still fails after `retries` tries is a Typed naming the error."""
    if client is None:
        for k, job in jobs.items():
            yield k, job()
        return
    from distributed import as_completed

    futures = {client.submit(_on_worker, job, retries=retries, pure=False): k for k, job in jobs.items()}
    for future in as_completed(futures):
        k, image = futures[future], jobs[futures[future]].args[1]
        try:
            result, heard = future.result()
        except Exception as exc:  # e.g. KilledWorker: the others go on
            error = f"{image} was not typed on the cluster: {type(exc).__name__}: {exc}"
            result, heard = Typed(image, None, error=error), []
        for category, message in heard:
            warnings.warn(message, category, stacklevel=2)
        yield k, result


def _on_worker(job: partial[Typed]) -> tuple[Typed, list[tuple[type[Warning], str]]]:
    """Run a job on a dask worker, with the warnings it gave (said again here, as in this process), on dask's
    synchronous scheduler: the section's own dask arrays (its tiles) are computed in that worker, not sent back to
    the cluster as tasks of their own."""
    import dask

    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings(record=True) as heard:
        return job(), [(w.category, str(w.message)) for w in heard]


def type_section(
    saved: Path,
    image: str | Path,
    dest: Path,
    *,
    mask: str | Path | None = None,
    names: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    nuclear: Sequence[str] | None = None,
    diameter: float | None = None,
    labels: bool = False,
    stages: StageProgress | None = None,
) -> Typed:
    """Type one image with the checked saved session `saved`, writing `dest` whole or not at all (under a temporary
    name, renamed at the end: a crash leaves no half-written table); a bad image gives a Typed with its reason.

    Every format is made tile by tile (`_type_streamed`; the nucleus mask on disk), so memory does not grow with the
    section; with `labels`, the nucleus and cell-type label images go beside it as an OME-Zarr labels group,
    `<image>.labels.zarr`."""
    from napari_agile.io.images import read_tissue

    labels_dest = dest.with_suffix(".labels.zarr") if labels else None
    table_partial, labels_partial = _partial(dest), _partial(labels_dest) if labels_dest else None
    try:  # one bad image is named and skipped; the others are still typed
        with read_tissue(image, channel_names=names) as tissue, tempfile.TemporaryDirectory() as scratch:
            for path in (table_partial, labels_partial):
                _remove(path)
            nuclei = _Nuclei(mask, nuclear, diameter, _stage(stages, "nuclei"))
            labels_path = labels_partial or Path(scratch) / "labels"
            n_cells = _type_streamed(saved, tissue, nuclei, table_partial, labels_path, channels, stages)
        for path, final in ((labels_partial, labels_dest), (table_partial, dest)):  # the table last: it marks done
            if path is not None and final is not None and path.exists():
                _remove(final)
                path.rename(final)
    except AgileInputError as exc:
        for path in (table_partial, labels_partial):
            _remove(path)
        return Typed(Path(image), None, error=str(exc))
    return Typed(Path(image), dest, n_cells, labels=labels_dest)


@dataclass(frozen=True)
class _Nuclei:
    """How a batch finds each image's nuclei: read from `mask`, else detected in the `nuclear` stains."""

    mask: str | Path | None
    nuclear: Sequence[str] | None
    diameter: float | None
    progress: Progress | None = None  # detection tiles done

    def find(self, tissue: Tissue, saved_nuclear: Sequence[str] | None, out: Any = None) -> Cells:
        """The image's cells, with the detected mask painted into `out` when given (detect_nuclei); without
        `nuclear` stains of its own, detected in the saved session's (`saved_nuclear`, its session.json "nuclear")."""
        from napari_agile.detect.nuclei import cells_from_labels, detect_nuclei, open_mask

        if self.mask is not None:  # read block by block, into `out` when given: never whole in memory
            with open_mask(self.mask) as mask:
                return cells_from_labels(mask, tissue.shape, out=out, progress=self.progress)
        nuclear = self.nuclear or saved_nuclear or None
        return detect_nuclei(tissue, channels=nuclear, diameter=self.diameter, out=out, progress=self.progress)


def _type_streamed(
    saved: Path,
    tissue: Tissue,
    nuclei: _Nuclei,
    table_path: Path,
    labels_path: Path,
    channels: Sequence[str] | None,
    stages: StageProgress | None,
) -> int:
    """Type one section in memory that does not grow with it: the nucleus mask in an OME-Zarr label image at
    `labels_path`/nuclei, cells typed batch by batch, the types painted into `labels_path`/cell_types, then the table
    written (.csv; .geojson with outlines drawn block by block; .h5ad with marker means read tile by tile and the
    saved session's settings in uns; .zarr, a SpatialData store, with the image and both label images copied chunk
    by chunk); returns the number of cells."""
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
    cells = nuclei.find(tissue, types.meta.get("nuclear"), out=create_label_image(labels_path / "nuclei", tissue.shape))
    finish_label_image(labels_path / "nuclei")
    cells = Cells(cells.table.reset_index(drop=True), open_level(labels_path / "nuclei"))  # the mask leaves memory
    table = type_cells(
        types, tissue, cells, channels=channels, nuclear=nuclei.nuclear, progress=_stage(stages, "cells")
    )
    colors = {**default_colors(types.meta["types"]), **types.colors}
    codes = {name: k + 1 for k, name in enumerate(types.meta["types"])}
    lut = np.zeros(int(table["id"].max()) + 1 if len(table) else 1, np.int32)
    lut[table["id"].to_numpy()] = [codes.get(t, 0) for t in table["cell_type"]]
    paint_label_image(cells.labels, lut, labels_path / "cell_types")
    finish_label_image(
        labels_path / "cell_types", {c: n for n, c in codes.items()}, {c: colors[n] for n, c in codes.items()}
    )
    write_label_group(labels_path, ["nuclei", "cell_types"])
    if table_path.suffix in (".h5ad", ".zarr"):  # the answers stay with the saved session
        from napari_agile.scverse import write_anndata, write_spatialdata
        from napari_agile.session import export_info

        cfg = types.config(tissue, channels, nuclei.nuclear)
        read = tissue.select(cfg.channels)
        info = export_info(types.meta, cfg, types.model, read, tissue.source)
        if table_path.suffix == ".h5ad":
            write_anndata(table, table_path, read, cells, colors, info=info)
        else:
            painted = open_level(labels_path / "cell_types")
            write_spatialdata(table, table_path, read, cells, painted, colors, info=info)
    else:
        export_table(table, table_path, colors, labels=cells.labels)
    return len(cells)


def _stage(stages: StageProgress | None, stage: str) -> Progress | None:
    """`stages` as a progress(done, total) for one stage."""
    return None if stages is None else lambda done, total: stages(stage, done, total)


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

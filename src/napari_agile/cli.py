"""Command line: `napari-agile <command>`; each command is a small function registered in COMMANDS."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from napari_agile.errors import AgileInputError


class _LazyBar:
    """A tqdm bar drawn from its first progress(done, total) on: an error before any work prints no empty bar."""

    def __init__(self, desc: str, unit: str, leave: bool = False) -> None:
        self.options = {"desc": desc, "unit": unit, "leave": leave}
        self.bar = None

    def __call__(self, done: int, total: int, info: dict | None = None) -> None:
        """Show `done` of `total` (and `info` as the bar's postfix)."""
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, **self.options)
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if info:
            self.bar.set_postfix(info)

    @property
    def n(self) -> int:
        """How far the bar has got (0 before it is drawn)."""
        return 0 if self.bar is None else self.bar.n

    def write(self, message: str, file=None) -> None:
        """Print a line above the bar, which is drawn again below it (or plainly when no bar is drawn)."""
        from tqdm import tqdm

        tqdm.write(message, file=file)

    def close(self) -> None:
        """Remove the bar (a no-op when it was never drawn)."""
        if self.bar is not None:
            self.bar.close()


class _StageBar:
    """One lazy bar per stage of the image being typed ("nuclei" tiles, then "cells"), each replacing the last."""

    UNITS = {"nuclei": ("nuclei", "tile"), "cells": ("typing cells", "cell")}

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: _LazyBar | None = None  # none before the first stage's progress

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Show `done` of `total` in `stage`, starting a new bar when the stage changes or starts again (the next
        image's)."""
        if self.bar is None or stage != self.stage or done < self.bar.n:
            self.close()
            self.stage, self.bar = stage, _LazyBar(*self.UNITS.get(stage, (stage, "it")))
        self.bar(done, total)

    def close(self) -> None:
        """Remove the current stage's bar (a no-op before any)."""
        if self.bar is not None:
            self.bar.close()


def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shape",
        type=int,
        nargs=2,
        default=(1024, 1024),
        metavar=("ROWS", "COLS"),
        help="size of the simulated section in pixels (default 1024 1024)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same tissue")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="image file to write: a multi-channel OME-TIFF (e.g. tissue.ome.tif) that napari opens",
    )
    p.add_argument(
        "--cells",
        type=Path,
        default=None,
        help="optional table of the true cells: .csv holds every column (id, position, cell_type); "
        ".tsv the lab's detection format, which has no cell types",
    )


def _run_synth(args: argparse.Namespace) -> None:
    from napari_agile.io.cells import write_cell_table
    from napari_agile.io.images import write_ome_tiff
    from napari_agile.synth.simulator import simulate_tissue

    _check_tiff_name(args.out, "--out")
    sim = simulate_tissue(shape=tuple(args.shape), seed=args.seed)
    write_ome_tiff(sim.tissue, args.out)
    print(f"wrote {args.out} ({sim.tissue.n_channels} channels: {', '.join(sim.tissue.channel_names)})")
    if args.cells:
        path = write_cell_table(sim.cells, args.cells)
        lab = path.suffix.lower() in (".tsv", ".txt")
        print(
            f"wrote {path} ({len(sim.cells)} cells"
            + (", the lab's detection columns: no cell types; write .csv for the true types)" if lab else ")")
        )


def _check_tiff_name(path: Path, option: str) -> None:
    """Refuse a file name that does not end like a TIFF (the file written is one whatever its name)."""
    from napari_agile.batch import image_stem
    from napari_agile.io.images import TIFF_SUFFIXES

    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise AgileInputError(
            f"{option} {path.name}: this writes a TIFF, so name it .tif (e.g. "
            f"{image_stem(path)}{'.ome' if option == '--out' else ''}.tif)."
        )


def _add_detection_options(
    p: argparse.ArgumentParser,
    default: str = "the channels named as nuclear stains: DAPI, Hoechst, Histone, DNA, ...",
    also: str = "",
    flags: tuple[str, ...] = ("--nuclear",),
) -> None:
    p.add_argument(
        *flags,
        dest="nuclear",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"channel(s) that stain every nucleus, summed for detection{also} (default: {default})",
    )
    p.add_argument(
        "--diameter",
        type=float,
        default=None,
        help="typical nucleus width in pixels (default: measured on the nuclear channels)",
    )


def _add_panel_options(p: argparse.ArgumentParser, default: str) -> None:
    """--channels: the channels a model for any panel reads (a fixed-panel model reads its own)."""
    p.add_argument(
        "--channels",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the channels the model reads, nuclear stains among them (a model for any panel; the "
        f"rat-brain model reads its own 7) (default: {default})",
    )


def _add_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "image",
        type=Path,
        help="the tissue image: an OME-TIFF, a (channels, rows, columns) TIFF, a folder with one TIFF "
        "per channel, or a .zarr folder",
    )
    p.add_argument(
        "--names",
        nargs="+",
        default=None,
        metavar="NAME",
        help="channel names in file order, for images that do not name their channels "
        "(e.g. --names DAPI Histones NeuN)",
    )
    _add_detection_options(p, flags=("--nuclear", "--channels"))  # --channels: detect's older name for it
    p.add_argument(
        "--out",
        type=Path,
        default=Path("cells.csv"),
        help="table of detected nuclei, one row per cell (id, centre y/x, area, box); "
        ".csv, or .tsv for the lab format (default cells.csv)",
    )
    p.add_argument(
        "--write-mask",
        "--labels",
        dest="labels",
        type=Path,
        default=None,
        metavar="TIFF",
        help="also write the nucleus mask to this TIFF: each nucleus painted with its id, 0 = background "
        "(--labels: the older name)",
    )


def _run_detect(args: argparse.Namespace) -> None:
    import tifffile

    from napari_agile.detect.nuclei import detect_nuclei
    from napari_agile.io.cells import _table_format, write_cell_table
    from napari_agile.io.images import read_tissue

    _table_format(args.out, None)  # an unknown table format is refused before the detection, not after
    if args.labels is not None:
        _check_tiff_name(args.labels, "--write-mask")
    bar = _LazyBar("detecting nuclei", "tile")
    with read_tissue(args.image, channel_names=args.names) as tissue:
        try:
            cells = detect_nuclei(tissue, channels=args.nuclear, diameter=args.diameter, progress=bar)
        finally:
            bar.close()
    write_cell_table(cells, args.out)
    print(f"found {len(cells)} nuclei, {cells.diameter:.1f} px wide (median); wrote {args.out}")
    if args.labels:
        tifffile.imwrite(args.labels, cells.labels, compression="zlib")
        print(f"wrote {args.labels}")


def _add_weak_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path, help="the tissue image (any format `detect` reads)")
    p.add_argument("cells", type=Path, help="its cell table with each nucleus's box: `detect`'s .csv or the lab's .tsv")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME", help="channel names for unnamed images")
    p.add_argument(
        "--marker",
        nargs="+",
        default=None,
        metavar="TYPE=CHANNEL",
        help="the cell type each marker channel stands for (default: the paper's neuron=NeuN "
        "astrocyte=S100 oligodendrocyte=Olig2 microglia=Iba1 endothelial=RECA1)",
    )
    p.add_argument(
        "--top",
        type=float,
        default=0.05,
        help="fraction of the brightest cells kept per marker (default 0.05, as the lab's topN)",
    )
    p.add_argument("--inset", type=int, default=10, help="pixels cut from each side of a nucleus box (default 10)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("weak-labels.csv"),
        help="CSV of the kept cells with their cell_type: a [data] source = 'labelled' table for meta-train",
    )


def _run_weak_labels(args: argparse.Namespace) -> None:
    from napari_agile.bench.weak_labels import lab_labelled
    from napari_agile.io.cells import read_cell_table, write_cell_table
    from napari_agile.io.images import read_tissue

    if args.out.suffix.lower() != ".csv":
        raise AgileInputError(f"Write the labels as .csv (got {args.out.name}): the lab's .tsv has no type column.")
    markers = None
    if args.marker:
        pairs = [m.split("=", 1) for m in args.marker]
        if any(len(p) != 2 or not all(x.strip() for x in p) for p in pairs):
            raise AgileInputError(f"--marker takes TYPE=CHANNEL pairs, e.g. astrocyte=S100; got {args.marker}.")
        markers = {t.strip(): c.strip() for t, c in pairs}
    with read_tissue(args.image, channel_names=args.names) as tissue:
        ((_, kept),) = lab_labelled([(tissue, read_cell_table(args.cells))], args.top, args.inset, markers)
    write_cell_table(kept, args.out, format="csv")
    counts = kept.table["cell_type"].value_counts()
    print(f"kept {len(kept)} cells ({', '.join(f'{n} {t}' for t, n in counts.items())}); wrote {args.out}")


def _add_meta_train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        required=True,
        help="TOML recipe: network, schedule and data (see configs/bundled-model.toml); "
        "[data] source = 'simulated' or 'labelled' with your own images and cell tables",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for model.safetensors, history.json and the checkpoint; "
        "run the same command again to resume after an interruption",
    )
    p.add_argument("--iterations", type=int, default=None, help="override the recipe's number of meta-iterations")
    p.add_argument(
        "--device",
        default=None,
        help="auto (default: CUDA, then Apple MPS, else CPU; or $NAPARI_AGILE_DEVICE), cpu, cuda, mps; "
        "a run resumes on any device",
    )


def _run_meta_train(args: argparse.Namespace) -> None:
    import signal
    import threading

    from napari_agile.engine.training import train_from_config

    bar = _LazyBar("meta-training", "it", leave=True)
    shown: dict[str, float] = {}  # the postfix keeps the last validation accuracy between validations
    stop = threading.Event()

    def progress(done: int, total: int, info: dict) -> None:
        shown.update({k: round(v, 3) for k, v in info.items() if k != "iteration"})
        bar(done, total, shown)

    def interrupt(signum, frame) -> None:
        if stop.is_set():  # a second Ctrl-C: stop at once (the last checkpoint stays)
            raise KeyboardInterrupt
        stop.set()
        bar.write("Stopping after this iteration and saving a checkpoint (Ctrl-C again to stop at once).")

    before = signal.signal(signal.SIGINT, interrupt)
    try:
        model = train_from_config(args.config, args.out, progress, args.iterations, args.device, stop.is_set)
    finally:
        signal.signal(signal.SIGINT, before)
        bar.close()
    total = args.iterations or model.info["config"]["meta"].get("iterations")
    if stop.is_set():
        print(
            f"stopped at iteration {model.info['iterations_done']} of {total}: {args.out / 'checkpoint.pt'} holds it; "
            "run the same command again to resume."
        )
    print(
        f"wrote {args.out / 'model.safetensors'} ({model.n_parameters()} parameters, "
        f"validation accuracy {model.info['final_val_acc']})"
    )


def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", type=Path, help="a saved session folder (from the widget's Save or Session.save)")
    p.add_argument("images", type=Path, nargs="+", help="tissue images to type (same channels as the session's)")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME", help="channel names for unnamed images")
    p.add_argument(
        "--masks",
        type=Path,
        nargs="+",
        default=None,
        metavar="MASK",
        help="nucleus label images (TIFF, one integer id per nucleus), one per image in the same order, "
        "instead of detecting the nuclei",
    )
    _add_panel_options(p, "the saved session's")
    _add_detection_options(
        p, default="the saved session's, else those named as nuclear stains", also=", and the model's nuclear stains"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("predictions"),
        help="folder for one table per image, <image>.csv (cell id, position, p_<type>, entropy, "
        "cell_type) or as --format says (default: predictions, in the current folder)",
    )
    p.add_argument(
        "--format",
        choices=("csv", "geojson", "h5ad", "zarr"),
        default="csv",
        help="csv (default); geojson: QuPath detections with nucleus outlines; h5ad: AnnData for "
        "scanpy/squidpy with marker means per channel; zarr: a SpatialData store (a copy of the image, the "
        "nucleus and cell-type labels, that table); both need pip install 'napari-agile[scverse]'",
    )
    p.add_argument(
        "--labels",
        action="store_true",
        help="also write each image's nucleus and cell-type label images beside its csv, geojson or h5ad table, as "
        "<image>.labels.zarr (OME-Zarr, chunked, with a multiscale pyramid; napari opens it)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="type again the images whose table is already in --out (default: keep those and type the others, so "
        "that running the same command again after a crash or Ctrl-C goes on where it stopped)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="local|ADDRESS",
        help="type the images in parallel with dask.distributed, one task per image: local starts worker processes "
        "on this machine (closed at the end); an address (tcp://HOST:8786, as `dask scheduler` prints it) uses that "
        "running cluster, whose workers must see the images, masks, session and --out at the same paths "
        "(default: one image after another in this process)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="with --scheduler local: how many worker processes, each typing one image at a time (default: one per "
        "CPU core, at most one per image)",
    )


def _run_predict(args: argparse.Namespace) -> None:
    from napari_agile.batch import type_sections

    bar = _LazyBar("images", "image")  # drawn once an image is done; gone at the end
    stages = _StageBar()  # how far the image being typed has got (typed in this process)

    def report(result) -> None:
        if result.resumed:
            bar.write(f"{result.image}: already typed -> {result.table} (kept; --overwrite types it again)")
        elif result.error is None:
            bar.write(f"{result.image}: {result.n_cells} cells -> {result.table}")
        else:
            bar.write(f"{result.image}: skipped: {result.error}", file=sys.stderr)

    try:
        results = type_sections(
            args.session,
            args.images,
            args.out,
            masks=args.masks,
            names=args.names,
            channels=args.channels,
            nuclear=args.nuclear,
            diameter=args.diameter,
            suffix=f".{args.format}",
            labels=args.labels,
            progress=bar,
            on_typed=report,
            scheduler=args.scheduler,
            workers=args.workers,
            overwrite=args.overwrite,
            stages=stages,
        )
    finally:
        stages.close()
        bar.close()
    failed = [str(r.image) for r in results if r.error is not None]
    if failed:
        raise AgileInputError(
            f"{len(failed)} of {len(results)} images were not typed ({', '.join(failed)}): "
            "the reason for each is printed above."
        )


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("agile-demo"),
        help="folder for every output (default agile-demo); an earlier demo's outputs there are replaced",
    )
    _add_panel_options(p, "all 7, read by the rat-brain model; fewer: the model for any panel")
    p.add_argument(
        "--nuclear",
        nargs="+",
        default=None,
        metavar="NAME",
        help="which of --channels stain every nucleus (default: by name: DAPI, Hoechst, Histone, DNA, ...)",
    )


def _run_demo(args: argparse.Namespace) -> None:
    from napari_agile.demo import run_demo

    run_demo(args.out, channels=args.channels, nuclear=args.nuclear)


def _add_benchmark(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/benchmark"),
        help="folder for results.json and the meta-training checkpoints (rerun to resume)",
    )
    p.add_argument("--quick", action="store_true", help="the few-minute version: fewer cells, repeats and iterations")
    p.add_argument(
        "--label-source",
        choices=("truth", "lab"),
        default="truth",
        help="cell types to score against: the simulator's truth, or the lab's weak labels that the "
        "paper's tables used (brightest 5%% of cells per marker, typed by their brightest marker)",
    )
    p.add_argument(
        "--centre-block",
        choices=("rings", "nucleus"),
        default=None,
        help="how every method's network reads the centre cell: channel means in rings around the centre, "
        "or inside each cell's nucleus mask (default: the bundled recipe's)",
    )
    p.add_argument(
        "--spread",
        type=int,
        default=None,
        metavar="S",
        help="phase II rounds ask the cells covering the S x batch most uncertain (default 1: the paper's "
        "round; 9 with --quick, the Session's default)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="N",
        help="repeats per task (default 10, 3 with --quick); more than a folder holds extend its runs",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="METHOD",
        help="run only these rows (e.g. agile_phase2 agile_phase2_160; label_curve: Fig. 3(b)) (default: all)",
    )
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="MARKDOWN",
        help="also write the results as markdown with PNG plots beside it (e.g. docs/benchmarks-quick.md)",
    )
    p.add_argument(
        "--no-run",
        action="store_true",
        help="only render what --out holds so far (a long run's state, while it runs or after a stop)",
    )


def _run_benchmark(args: argparse.Namespace) -> None:
    import json
    from dataclasses import replace

    from napari_agile.bench.protocol import BenchConfig, run_benchmark, summaries

    if args.no_run:
        saved = args.out / "results.json"
        if not saved.exists() or not args.render:
            raise AgileInputError(f"--no-run renders {saved}, which must exist, to the page --render names.")
        results = json.loads(saved.read_text())
        results["summary"] = summaries(results)
    else:
        bench = replace(BenchConfig.quick() if args.quick else BenchConfig(), label_source=args.label_source)
        if args.centre_block:
            bench = replace(bench, centre_block=args.centre_block)
        if args.spread is not None:
            if args.spread < 1:
                raise AgileInputError(f"--spread {args.spread}: use 1 (the paper's round) or more (a wider choice).")
            bench = replace(bench, al_spread=args.spread)
        if args.repeats is not None:
            if args.repeats < 2:
                raise AgileInputError(
                    f"--repeats {args.repeats}: use 2 or more (a confidence interval needs two runs)."
                )
            bench = replace(bench, repeats=args.repeats)
        results = run_benchmark(bench, args.out, methods=args.methods)
    if args.render:
        from napari_agile.bench.report import render

        print(f"wrote {render(results, args.render, args.out)}")


def _add_clean_sessions(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--older-than",
        type=float,
        default=7.0,
        metavar="DAYS",
        help="remove the session folders unchanged for this many days (default 7; 0: all of them)",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def _run_clean_sessions(args: argparse.Namespace) -> None:
    from napari_agile.io.session_folders import auto_sessions, clean_sessions, sessions_dir

    stale = clean_sessions(args.older_than, dry_run=args.dry_run)
    for s in stale:
        print(
            f"{'would remove' if args.dry_run else 'removed'} {s.path} ({s.age_days:.1f} days old, "
            f"{s.answers} answers, {s.size_bytes / 2**20:.1f} MiB)"
        )
    kept = len(auto_sessions())
    size = sum(s.size_bytes for s in stale) / 2**20
    print(
        f"{sessions_dir()}: {len(stale)} session folders ({size:.1f} MiB) {'to remove' if args.dry_run else 'removed'}"
        f", {kept - len(stale) if args.dry_run else kept} newer than {args.older_than:g} days kept."
    )


#: name -> (help line, add arguments, run).
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "synth": (
        "simulate a multiplexed tissue section with known cell types (for trying things out)",
        _add_synth,
        _run_synth,
    ),
    "detect": ("find every nucleus in a tissue image and write a cell table", _add_detect, _run_detect),
    "demo": (
        "run the whole AGILE loop headless on the bundled sample tissue and write every output",
        _add_demo,
        _run_demo,
    ),
    "weak-labels": (
        "type the brightest cells of each marker as the paper's lab did, for meta-training on your panel",
        _add_weak_labels,
        _run_weak_labels,
    ),
    "meta-train": (
        "meta-train a model (AGILE phase I) from a recipe, on simulated tissue or your labelled cells",
        _add_meta_train,
        _run_meta_train,
    ),
    "predict": (
        "type every cell of more images with the cell types adapted in a saved session",
        _add_predict,
        _run_predict,
    ),
    "benchmark": ("reproduce the paper's Table 2 and Fig. 3 on simulated tissue", _add_benchmark, _run_benchmark),
    "clean-sessions": (
        "list and remove the automatic session folders (a Session made without a folder) left in "
        "$NAPARI_AGILE_HOME/sessions (default ~/.napari-agile/sessions)",
        _add_clean_sessions,
        _run_clean_sessions,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per COMMANDS entry."""
    parser = argparse.ArgumentParser(
        prog="napari-agile",
        description="Teach a network a new cell type in a few clicks (AGILE). Run `napari-agile COMMAND --help`.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_line, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_line, description=help_line[0].upper() + help_line[1:] + ".")
        add(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, print warnings as plain lines, and turn bad input into a message and exit code 2."""
    args = build_parser().parse_args(argv)

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"napari-agile {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning  # one plain line, not Python's file, line and source
            args.run(args)
    except AgileInputError as exc:
        print(f"napari-agile {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

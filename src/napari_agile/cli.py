"""Command line: `napari-agile <command>`; each command is a small function registered in COMMANDS."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import AgileInputError


def _tqdm_progress(desc: str):
    """A progress(done, total) callable drawing a tqdm bar, and the bar (close it when done)."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="tile", leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return progress, bar


def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shape", type=int, nargs=2, default=(1024, 1024), metavar=("ROWS", "COLS"),
                   help="size of the simulated section in pixels (default 1024 1024)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same tissue")
    p.add_argument("--out", type=Path, required=True,
                   help="image file to write: a multi-channel OME-TIFF (e.g. tissue.ome.tif) that napari opens")
    p.add_argument("--cells", type=Path, default=None,
                   help="optional table of the true cells (id, position, cell_type): .csv, or .tsv for the lab format")


def _run_synth(args: argparse.Namespace) -> None:
    from .cells import write_cell_table
    from .synth import simulate_tissue
    from .tissue_io import write_ome_tiff

    sim = simulate_tissue(shape=tuple(args.shape), seed=args.seed)
    write_ome_tiff(sim.tissue, args.out)
    print(f"wrote {args.out} ({sim.tissue.n_channels} channels: {', '.join(sim.tissue.channel_names)})")
    if args.cells:
        write_cell_table(sim.cells, args.cells)
        print(f"wrote {args.cells} ({len(sim.cells)} cells)")


def _add_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path,
                   help="the tissue image: an OME-TIFF, a (channels, rows, columns) TIFF, a folder with one TIFF "
                        "per channel, or a .zarr folder")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME",
                   help="channel names in file order, for images that do not name their channels "
                        "(e.g. --names DAPI Histones NeuN)")
    p.add_argument("--channels", nargs="+", default=None, metavar="NAME",
                   help="channel(s) that stain every nucleus, summed for detection (default: DAPI and Histones)")
    p.add_argument("--diameter", type=float, default=24.0, help="typical nucleus width in pixels (default 24)")
    p.add_argument("--out", type=Path, default=Path("cells.csv"),
                   help="table of detected nuclei, one row per cell (id, centre y/x, area, box); "
                        ".csv, or .tsv for the lab format (default cells.csv)")
    p.add_argument("--labels", type=Path, default=None,
                   help="optional TIFF of the nucleus mask: each nucleus painted with its id, 0 = background")


def _run_detect(args: argparse.Namespace) -> None:
    import tifffile

    from .cells import write_cell_table
    from .nuclei import detect_nuclei
    from .tissue_io import read_tissue

    tissue = read_tissue(args.image, channel_names=args.names)
    progress, bar = _tqdm_progress("detecting nuclei")
    try:
        cells = detect_nuclei(tissue, channels=args.channels, diameter=args.diameter, progress=progress)
    finally:
        bar.close()
    write_cell_table(cells, args.out)
    print(f"found {len(cells)} nuclei; wrote {args.out}")
    if args.labels:
        tifffile.imwrite(args.labels, cells.labels, compression="zlib")
        print(f"wrote {args.labels}")


#: name -> (help line, add arguments, run); later commands (meta-train, predict, demo, benchmark) register here.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "synth": ("simulate a multiplexed tissue section with known cell types (for trying things out)",
              _add_synth, _run_synth),
    "detect": ("find every nucleus in a tissue image and write a cell table", _add_detect, _run_detect),
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
    """Entry point: parse, run, and turn bad input into a plain message and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except AgileInputError as exc:
        print(f"napari-agile {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

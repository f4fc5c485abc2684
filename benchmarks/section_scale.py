"""Whole sections in bounded memory: peak resident memory and time of `napari-agile predict` as the section grows.

Run:  python benchmarks/section_scale.py --out runs/section-scale [--sizes 4096x4096 16384x16384 29000x43000]
          [--compare-in-memory 4096x4096] [--user-masks 16384x16384] [--h5ad 16384x16384] [--geojson 16384x16384]
          [--spatialdata 16384x16384] [--json PATH]
      python benchmarks/section_scale.py --out runs/section-scale --sizes --workers 1 2 [--batch 4x4096x4096]

Each section is an OME-Zarr (7 channels, uint16, 1024² chunks) written tile by tile from a pool of simulated fields
(flipped and rotated at random, so no field repeats in place); the paper's sections are 29,000 x 43,000 px. A saved
session (two types adapted on 16 answers each, the bundled rat-brain model) types it in a child process, whose peak
resident memory (ru_maxrss) and wall time are reported with the cells typed. `--compare-in-memory` also types the
given sizes through a Session (the path the .zarr output takes, and the only path before streaming) in a child
process. `--user-masks` types the given sizes again with the streamed run's nucleus labels as the user's own mask
(`--masks`, an OME-Zarr label image read block by block); `--h5ad` writes an AnnData instead of the csv (marker means
read tile by tile as well), `--geojson` QuPath detections (nucleus outlines drawn block by block), `--spatialdata` a
SpatialData .zarr (the image and label images copied chunk by chunk). `--workers` types
a batch of sections (`--batch N x size`) on a dask LocalCluster of each number of workers (`napari-agile predict
--scheduler local --workers W`), started before the clock. Figures depend on the load:
the report prints the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from napari_agile.engine.model_file import load_model
from napari_agile.io.tissue import PAPER_CHANNELS
from napari_agile.session import Session
from napari_agile.synth.simulator import simulate_tissue

FIELD = 1024  # side of one simulated field and of the store's chunks
POOL = 8  # distinct simulated fields the section is tiled from
TABLES = {
    "h5ad": ".h5ad",
    "geojson": ".geojson",
    "spatialdata": ".zarr",
}  # streamed outputs other than the csv, by their option


def write_section(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """An OME-Zarr section of `height` x `width` px, written one 1024² tile at a time (never whole in memory)."""
    import zarr

    if (path / ".zattrs").exists():
        return path  # made by an earlier run: same size, same seed
    rng = np.random.default_rng(seed)
    fields = [simulate_tissue((FIELD, FIELD), seed=seed + k).tissue.data for k in range(POOL)]
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    level = group.create_array("0", shape=(7, height, width), chunks=(1, FIELD, FIELD), dtype="uint16", fill_value=0)
    for y in range(0, height, FIELD):
        for x in range(0, width, FIELD):
            tile = np.rot90(fields[rng.integers(POOL)], k=int(rng.integers(4)), axes=(1, 2))
            tile = tile[:, :, ::-1] if rng.integers(2) else tile
            level[:, y : y + FIELD, x : x + FIELD] = tile[:, : min(FIELD, height - y), : min(FIELD, width - x)]
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]
    group.attrs.update(
        {
            "multiscales": [{"version": "0.4", "axes": axes, "datasets": datasets}],
            "omero": {"channels": [{"label": name} for name in PAPER_CHANNELS]},
        }
    )
    return path


def make_session(folder: Path) -> Path:
    """A saved session: neuron and astrocyte adapted on 8 + 8 true answers each, on one simulated field."""
    if (folder / "adapted.safetensors").exists():
        return folder
    sim = simulate_tissue((1536, 1536), seed=101)
    session = Session(sim.tissue, sim.cells, load_model(), store=folder)
    kinds = sim.cells.table["cell_type"]
    for name in ("neuron", "astrocyte"):
        ids = [*kinds.index[kinds == name][:8], *kinds.index[kinds != name][:8]]
        session.annotate(name, ids, [True] * 8 + [False] * 8)
        session.adapt(name)
    session.save(folder)
    return folder


def child(mode: str, session: Path, section: Path, out: Path, mask: Path | None = None) -> None:
    """Type `section` (in this process; nuclei from `mask` when given), then print its figures as one JSON line."""
    start = time.perf_counter()
    if mode in ("streamed", "user-mask", *TABLES):
        from napari_agile.batch import type_sections

        suffix = TABLES.get(mode, ".csv")
        [typed] = type_sections(
            session, [section], out, labels=suffix != ".zarr", masks=None if mask is None else [mask], suffix=suffix
        )
        if typed.error:
            raise SystemExit(typed.error)
        cells = typed.n_cells
    else:
        from napari_agile.detect.nuclei import detect_nuclei
        from napari_agile.io.images import read_tissue

        tissue = read_tissue(section)
        found = detect_nuclei(tissue)
        typed_session = Session.apply_saved(session, tissue, found, store=out / "session")
        cells = len(typed_session.predict())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "cells": cells, "seconds": seconds, "peak_mb": peak}))


def measure(mode: str, session: Path, section: Path, out: Path, mask: Path | None = None) -> dict:
    """Run `child` in a fresh process (its peak memory is its own) and read its figures."""
    subprocess.run(["rm", "-rf", str(out)], check=True)  # an earlier run's outputs: typed afresh
    cmd = [sys.executable, __file__, "--child", mode, str(session), str(section), str(out), *([str(mask)] * bool(mask))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{mode} on {section} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def workers_speedup(session: Path, out: Path, batch: str, workers: list[int]) -> list[dict]:
    """Time one batch of sections typed on a LocalCluster of each number of `workers` (cluster start excluded)."""
    from distributed import Client, LocalCluster

    from napari_agile.batch import type_sections

    n, h, w = (int(v) for v in batch.split("x"))
    sections = [write_section(out / f"batch-{k}-{h}x{w}.ome.zarr", h, w, seed=1000 * (k + 1)) for k in range(n)]
    print(f"\n{n} sections of {h:,} x {w:,} px on a LocalCluster (one thread per worker)\n")
    print("| workers | cells | seconds | cells/s | speed-up |")
    print("|---|---|---|---|---|")
    rows: list[dict] = []
    for count in workers:
        with LocalCluster(n_workers=count, threads_per_worker=1, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                start = time.perf_counter()
                typed = type_sections(
                    session, sections, out / f"batch-typed-{count}", scheduler=client.scheduler.address, overwrite=True
                )
                seconds = time.perf_counter() - start
        cells = sum(t.n_cells for t in typed)
        if any(t.error for t in typed):
            raise SystemExit(f"typing failed: {[t.error for t in typed if t.error]}")
        rows.append({"workers": count, "cells": cells, "seconds": seconds})
        speedup = rows[0]["seconds"] / seconds
        print(f"| {count} | {cells:,} | {seconds:,.0f} | {cells / seconds:,.0f} | {speedup:.2f}x |", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/section-scale"))
    parser.add_argument("--sizes", nargs="*", default=["4096x4096", "16384x16384", "29000x43000"])
    parser.add_argument("--compare-in-memory", nargs="*", default=["4096x4096"], metavar="SIZE")
    parser.add_argument("--user-masks", nargs="*", default=[], metavar="SIZE", help="also type with a mask given")
    parser.add_argument("--h5ad", nargs="*", default=[], metavar="SIZE", help="also type into an .h5ad")
    parser.add_argument("--geojson", nargs="*", default=[], metavar="SIZE", help="also type into a .geojson")
    parser.add_argument("--spatialdata", nargs="*", default=[], metavar="SIZE", help="also type into a SpatialData")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the generated sections (they take disk space)")
    parser.add_argument("--workers", nargs="*", type=int, default=[], help="also time a batch on 1, 2, ... workers")
    parser.add_argument("--batch", default="4x4096x4096", help="the batch --workers types: N x rows x columns")
    parser.add_argument("--child", nargs="+", metavar="MODE SESSION SECTION OUT [MASK]", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, session, section, out, *mask = args.child
        child(mode, Path(session), Path(section), Path(out), Path(mask[0]) if mask else None)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    session = make_session(args.out / "session")
    print(
        f"{time.strftime('%Y-%m-%dT%H:%M:%S')} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores"
    )
    print(f"load average at start {os.getloadavg()}")
    if args.sizes:
        print("\n| section (px) | Mpx | path | cells | seconds | cells/s | cells/s per core | µs/px | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        section = write_section(args.out / f"section-{size}.ome.zarr", h, w)
        modes = ["streamed"] + (["in-memory"] if size in args.compare_in_memory else [])
        modes += ["user-mask"] if size in args.user_masks else []
        modes += [mode for mode in TABLES if size in getattr(args, mode)]
        for mode in modes:
            mask = (
                next((args.out / f"typed-{size}-streamed").glob("*.labels.zarr")) / "nuclei"
                if mode == "user-mask"
                else None
            )
            row = {
                "size": size,
                "mpx": h * w / 1e6,
                **measure(mode, session, section, args.out / f"typed-{size}-{mode}", mask),
            }
            rows.append(row)
            rate = row["cells"] / row["seconds"]
            print(
                f"| {h:,} x {w:,} | {row['mpx']:,.0f} | {mode} | {row['cells']:,} | {row['seconds']:,.0f} | {rate:,.0f} "
                f"| {rate / (os.cpu_count() or 1):,.0f} | {row['seconds'] / (h * w) * 1e6:.3f} | {row['peak_mb']:,.0f} |",
                flush=True,
            )
        if not args.keep:
            subprocess.run(["rm", "-rf", str(section)], check=True)
    if args.workers:
        rows += workers_speedup(session, args.out, args.batch, args.workers)
    print(f"\nload average at end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

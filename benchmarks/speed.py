"""Speed of napari-agile on this machine: CNN inference, MC-dropout suggestion, the Session loop, meta-training,
nucleus detection and patch extraction; a markdown report on stdout and, with --json PATH, the numbers as JSON.

Run:  python benchmarks/speed.py [--quick] [--json PATH] [--field-sizes 1024 4096 16384]

Every timing is the median of repeats after a warm-up run, with torch's default thread count. Simulated tissue
stands in for real sections (fields larger than one simulation are tiles of it). On a machine shared with other
jobs the figures are contended: the report prints the load average before and after. Sections 1-4 run where the
engine would ($NAPARI_AGILE_DEVICE, else CUDA, then MPS, else the CPU) and report each operation's peak memory
there; detection and patch extraction (section 5) are CPU work.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import inspect
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from napari_agile.detect.nuclei import detect_nuclei
from napari_agile.detect.patches import fit_normalizer, iter_patches
from napari_agile.engine.device import pick_device
from napari_agile.engine.meta import MetaConfig, meta_train
from napari_agile.engine.model_file import AgileModel, load_model
from napari_agile.engine.network import ModelConfig, bin_patches, estimate_stats, forward, head, init_params
from napari_agile.engine.tasks import pool_from_tissues
from napari_agile.engine.uncertainty import mc_full_probs, mc_head_probs, trunk_features
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import PAPER_CHANNELS, Tissue
from napari_agile.session import Session
from napari_agile.synth.simulator import Simulation, simulate_tissue


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; `quick()` is the under-a-minute version."""

    repeats: int = 3
    infer_patches: int = 2048  # patches per timed run, network as used (binned)
    baseline_patches: int = 512  # patches per timed run, full-resolution baselines
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 256)
    compile: bool = True
    mc_cells: int = 10_000
    mc_full_cells: int = 1_000  # re-running the network T times is timed on these and scaled to mc_cells
    mc_passes: int = 20
    session_field: int = 2400  # simulated side: about 2,000 cells
    session_tiles: tuple[int, int] = (2, 3)  # the big session's field: this many copies of it (>= 10,000 cells)
    session_labels: int = 16
    meta_tasks: tuple[int, ...] = (12, 4)
    meta_iterations: int = 4  # the first is the warm-up
    meta_k_max: int = 8  # support 1..k_max per class (MetaConfig default)
    meta_n_query: int = 16
    field_sizes: tuple[int, ...] = (1024, 4096, 16384)
    field_tile: int = 1024  # fields are tiles of one simulated field this big

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            repeats=1,
            infer_patches=64,
            baseline_patches=16,
            batch_sizes=(8, 16),
            compile=False,
            mc_cells=256,
            mc_full_cells=16,
            mc_passes=20,
            session_field=512,
            session_tiles=(1, 2),
            session_labels=8,
            meta_tasks=(2,),
            meta_iterations=2,
            meta_k_max=2,
            meta_n_query=2,
            field_sizes=(256,),
            field_tile=256,
        )


# ---------------------------------------------------------------- machine and timing


def machine() -> dict:
    """CPU model, cores, clock, SIMD width and the fp32 peak they imply; torch version; date; load."""
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    except (OSError, subprocess.CalledProcessError):
        pass
    cores = int(info.get("Core(s) per socket", 0) or 0) * int(info.get("Socket(s)", 1) or 1) or os.cpu_count() or 1
    mhz, clock_source = None, None
    for key in ("CPU max MHz", "CPU MHz"):
        if info.get(key):
            mhz, clock_source = float(info[key]), f"lscpu {key}"
            break
    if mhz is None and Path("/proc/cpuinfo").exists():
        found = re.search(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
        if found:
            mhz, clock_source = float(found.group(1)), "/proc/cpuinfo cpu MHz (nominal; turbo not visible)"
    flags = set(info.get("Flags", "").split())
    if "avx512f" in flags:
        simd, per_cycle = "AVX-512 (2 FMA units assumed)", 64
    elif {"avx2", "fma"} <= flags:
        simd, per_cycle = "AVX2 + FMA", 32
    else:
        simd, per_cycle = "SSE (no FMA)", 8
    ghz = (mhz or 2000.0) / 1000
    return {
        "cpu": info.get("Model name", platform.processor() or "unknown"),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "ghz": ghz,
        "clock_source": clock_source or "unknown (2 GHz assumed)",
        "simd": simd,
        "fp32_flop_per_cycle_per_core": per_cycle,
        "peak_gflops": cores * ghz * per_cycle,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "load_average_start": os.getloadavg(),
    }


#: where sections 1-4 run: $NAPARI_AGILE_DEVICE, else CUDA, then MPS, else the CPU (scripts/gpu_check.sh sets cuda)
DEVICE = pick_device()


def _per_block_pages() -> bool:
    """glibc: blocks of 64 KiB and more get their own pages, returned when freed, so the resident-memory rise of an
    operation is its own allocations, not reuse of pages an earlier one left (what `peak_mb` needs). Set once, at
    the start of the memory pass: it makes every large allocation a fresh mapping, which slows the network 3-4x on
    CPU, so the timings come from a pass without it."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 64 * 1024)) and bool(libc.mallopt(-1, 128 * 1024))  # M_MMAP_, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


#: True in the memory pass (a child process `run` starts on the CPU): `peak_mb` reads memory there only
MEMORY_PASS = False


def _sync() -> None:
    """Wait for queued GPU work, so a timer or memory reading sees it done (nothing to wait for on the CPU)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    """Seconds of `fn()`: median and min of `repeats` runs after `warmup` untimed ones (once in the memory pass,
    whose timings are not used)."""
    if MEMORY_PASS:
        repeats, warmup = 1, 0
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        runs.append(time.perf_counter() - start)
    return {"median_s": float(np.median(runs)), "min_s": float(min(runs)), "runs_s": runs}


def peak_mb(fn: Callable[[], object]) -> float:
    """Memory `fn()` takes at its peak beyond what was held before, in MB: GPU memory on CUDA, else resident
    memory (Linux's peak mark, reset first) in the memory pass; the CPU timing pass runs `fn` and gives NaN, filled
    in from the memory pass by `run`."""
    if DEVICE.type == "cuda":
        _sync()
        torch.cuda.reset_peak_memory_stats(DEVICE)
        before = torch.cuda.memory_allocated(DEVICE)
        fn()
        _sync()
        return (torch.cuda.max_memory_allocated(DEVICE) - before) / 2**20
    if not (MEMORY_PASS and _reset_peak()):
        fn()
        return float("nan")
    before = _rss_mb("VmRSS")
    fn()
    return _rss_mb("VmHWM") - before


def gflop_per_patch(cfg: ModelConfig) -> float:
    """Analytic conv + dense GFLOP (2 x multiply-accumulates) of one patch; BN, ReLU and pooling not counted."""
    side, c_in, macs = cfg.input_size, len(cfg.channels), 0
    for _ in range(cfg.blocks):
        macs += side * side * cfg.width * c_in * 9  # 3x3 'same' convolution
        side, c_in = side // 2, cfg.width
    macs += cfg.feature_size * cfg.n_classes
    return 2 * macs / 1e9


def tiled(sim: Simulation, rows: int, cols: int) -> Simulation:
    """A rows x cols mosaic of one simulated field, cells (ids, centres, boxes, mask) shifted to each copy."""
    data = np.asarray(sim.tissue.data)
    h, w = data.shape[1:]
    table, n = sim.cells.table.reset_index(drop=True), int(sim.cells.ids.max())
    parts, k = [], 0
    for r in range(rows):
        for c in range(cols):
            t = table.copy()
            t["id"] += k * n
            for cols_, shift in ((["y", "ymin", "ymax"], r * h), (["x", "xmin", "xmax"], c * w)):
                present = [col for col in cols_ if col in t]
                t[present] += shift
            parts.append(t)
            k += 1
    labels = None
    if sim.cells.labels is not None:
        offsets = (np.arange(rows * cols, dtype=np.int32) * n).reshape(rows, cols)
        base = sim.cells.labels.astype(np.int32)
        labels = np.block([[np.where(base > 0, base + offsets[r, c], 0) for c in range(cols)] for r in range(rows)])
    tissue = Tissue(np.tile(data, (1, rows, cols)), list(sim.tissue.channel_names), source="tiled simulation")
    return Simulation(tissue, Cells(pd.concat(parts, ignore_index=True), labels))


# ---------------------------------------------------------------- 1. CNN inference


def bench_inference(sz: Sizes, mach: dict) -> dict:
    """Patches/s of the network as used (binned, channels-last trunk + head) against plain eager NCHW at 100 px."""
    torch.manual_seed(0)
    used = ModelConfig(channels=PAPER_CHANNELS)
    full = ModelConfig(channels=PAPER_CHANNELS, bin=1)
    raw = torch.rand(max(sz.infer_patches, sz.baseline_patches), len(PAPER_CHANNELS), 100, 100) * 1.5
    x_used = bin_patches(raw[: sz.infer_patches], used.bin).half().to(DEVICE)  # what a Session keeps
    x_full = raw[: sz.baseline_patches].contiguous().to(DEVICE)
    p_used, p_full = ({k: v.to(DEVICE) for k, v in init_params(c).items()} for c in (used, full))
    s_used, s_full = estimate_stats(used, p_used, x_used[:256].float()), estimate_stats(full, p_full, x_full[:64])

    def as_used(bs: int) -> Callable[[], object]:
        return lambda: head(used, p_used, trunk_features(used, p_used, s_used, x_used, batch_size=bs), mc=False)

    def eager_nchw(cfg, p, s, x, bs=256) -> Callable[[], object]:
        net = plain_module(cfg, p, s)

        def run():
            with torch.no_grad():
                return [net(xb.float().contiguous()) for xb in torch.split(x, bs)]

        return run

    rows = []

    def add(name, cfg, n, fn, **extra):
        t = timed(fn, sz.repeats)
        rate = n / t["median_s"]
        rows.append(
            {
                "variant": name,
                "bin": cfg.bin,
                "input": cfg.input_size,
                "patches": n,
                **extra,
                "patches_per_s": rate,
                "gflop_per_patch": gflop_per_patch(cfg),
                "gflops": rate * gflop_per_patch(cfg),
                "peak_fraction": _of_peak(rate * gflop_per_patch(cfg), mach),
                "peak_mb": peak_mb(fn),
                **t,
            }
        )

    add(
        "baseline: eager forward, NCHW, no binning",
        full,
        len(x_full),
        eager_nchw(full, p_full, s_full, x_full),
        batch=256,
        layout="NCHW",
    )
    add(
        "no binning, channels_last trunk_features + head",
        full,
        len(x_full),
        lambda: head(full, p_full, trunk_features(full, p_full, s_full, x_full, batch_size=256), mc=False),
        batch=256,
        layout="channels_last",
    )
    add(
        "binned 2x2, eager forward NCHW",
        used,
        len(x_used),
        eager_nchw(used, p_used, s_used, x_used),
        batch=256,
        layout="NCHW",
    )
    for bs in sz.batch_sizes:
        add(
            f"as used: binned, trunk_features + head, batch {bs}",
            used,
            len(x_used),
            as_used(bs),
            batch=bs,
            layout="channels_last",
        )
    default_bs = inspect.signature(trunk_features).parameters["batch_size"].default
    if default_bs not in sz.batch_sizes:
        add(
            f"as used: binned, trunk_features + head, batch {default_bs} (default)",
            used,
            len(x_used),
            as_used(default_bs),
            batch=default_bs,
            layout="channels_last",
        )
    compiled = _compiled_rate(used, p_used, s_used, x_used, sz) if sz.compile else {"skipped": "not asked (--quick)"}
    if "patches_per_s" in compiled:
        rows.append(
            {
                "variant": "binned, torch.compile(forward), channels_last",
                "bin": used.bin,
                "input": used.input_size,
                "patches": len(x_used),
                "batch": 64,
                "layout": "channels_last",
                "gflop_per_patch": gflop_per_patch(used),
                "gflops": compiled["patches_per_s"] * gflop_per_patch(used),
                "peak_fraction": _of_peak(compiled["patches_per_s"] * gflop_per_patch(used), mach),
                **compiled,
            }
        )
    base = rows[0]["patches_per_s"]
    for r in rows:
        r["speedup"] = r["patches_per_s"] / base
    as_used_default = next(r for r in rows if r["variant"].startswith("as used") and r["batch"] == default_bs)
    return {
        "rows": rows,
        "compile": compiled if "patches_per_s" not in compiled else {"ok": True},
        "default_batch": default_bs,
        "speedup_as_used": as_used_default["speedup"],
        "target_speedup": 4.0,
        "device": str(DEVICE),
    }


def plain_module(cfg: ModelConfig, params, stats) -> torch.nn.Module:
    """The network as plain eager PyTorch would write it (nn.Sequential, NCHW, eval mode), holding the same weights
    and batch-norm statistics: the baseline the engine's path is measured against (the paper's network: no centre
    block)."""
    assert not cfg.centre_parts, "the plain baseline is the paper's network, without a centre block"
    layers: list[torch.nn.Module] = []
    for b in range(cfg.blocks):
        conv = torch.nn.Conv2d(cfg.trunk_planes if b == 0 else cfg.width, cfg.width, 3, padding=1)
        bn = torch.nn.BatchNorm2d(cfg.width, eps=1e-5)
        with torch.no_grad():
            conv.weight.copy_(params[f"conv{b}.weight"])
            conv.bias.copy_(params[f"conv{b}.bias"])
            bn.weight.copy_(params[f"bn{b}.weight"])
            bn.bias.copy_(params[f"bn{b}.bias"])
            bn.running_mean.copy_(stats[f"bn{b}.mean"])
            bn.running_var.copy_(stats[f"bn{b}.var"])
        layers += [conv, bn, torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
    dense = torch.nn.Linear(cfg.feature_size, cfg.n_classes)
    with torch.no_grad():
        dense.weight.copy_(params["head.weight"])
        dense.bias.copy_(params["head.bias"])
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), dense).to(params["head.weight"].device).eval()


def _of_peak(gflops: float, mach: dict) -> float:
    """Achieved GFLOP/s as a fraction of the CPU's fp32 peak (NaN on a GPU: the peak estimate is the CPU's)."""
    return gflops / mach["peak_gflops"] if DEVICE.type == "cpu" else float("nan")


def _compiled_rate(cfg: ModelConfig, params, stats, x, sz: Sizes) -> dict:
    """torch.compile of the inference forward; any failure is reported, not raised."""
    try:
        fn = torch.compile(lambda xb: forward(cfg, params, xb, stats, mc=False), dynamic=False)
        bs = 64
        chunks = [c.float().contiguous(memory_format=torch.channels_last) for c in torch.split(x, bs) if len(c) == bs]
        start = time.perf_counter()
        with torch.no_grad():
            fn(chunks[0])
        compile_s = time.perf_counter() - start

        def run():
            with torch.no_grad():
                return [fn(c) for c in chunks]

        t = timed(run, sz.repeats)
        return {"patches_per_s": bs * len(chunks) / t["median_s"], "compile_s": compile_s, **t}
    except Exception as err:  # noqa: BLE001 - compile support varies by machine; report why it was skipped
        return {"skipped": f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}


# ---------------------------------------------------------------- 2. MC dropout


def bench_mc(sz: Sizes) -> dict:
    """T-pass MC dropout over mc_cells: cached trunk + head re-sampling vs the whole network T times."""
    torch.manual_seed(1)
    cfg = ModelConfig(channels=PAPER_CHANNELS)
    params = {k: v.to(DEVICE) for k, v in init_params(cfg).items()}
    x = bin_patches(torch.rand(sz.mc_cells, len(PAPER_CHANNELS), 100, 100) * 1.5, cfg.bin).half().to(DEVICE)
    stats = estimate_stats(cfg, params, x[:256].float())
    trunk = timed(lambda: trunk_features(cfg, params, stats, x), sz.repeats)
    feats = trunk_features(cfg, params, stats, x)
    heads = timed(lambda: mc_head_probs(cfg, params, feats, sz.mc_passes), sz.repeats)
    cached_mb = peak_mb(lambda: mc_head_probs(cfg, params, trunk_features(cfg, params, stats, x), sz.mc_passes))
    sub = x[: sz.mc_full_cells]
    mc_full_probs(cfg, params, stats, sub[:64], 1)  # warm-up; the T-pass run is long, so it is timed once
    full = timed(lambda: mc_full_probs(cfg, params, stats, sub, sz.mc_passes), 1, warmup=0)
    cached_s = trunk["median_s"] + heads["median_s"]
    full_s = full["median_s"] * sz.mc_cells / sz.mc_full_cells
    return {
        "cells": sz.mc_cells,
        "passes": sz.mc_passes,
        "trunk_s": trunk["median_s"],
        "heads_s": heads["median_s"],
        "cached_s": cached_s,
        "full_measured_cells": sz.mc_full_cells,
        "full_measured_s": full["median_s"],
        "full_scaled_s": full_s,
        "speedup": full_s / cached_s,
        "cached_peak_mb": cached_mb,
        "device": str(DEVICE),
    }


# ---------------------------------------------------------------- 3. the Session loop


def _answer(session: Session, truth: pd.DataFrame, cell_type: str, n: int, seed: int) -> None:
    """Annotate n cells (half of them `cell_type`) with their true answers, like a user would."""
    rng = np.random.default_rng(seed)
    is_type = truth["cell_type"].to_numpy() == cell_type
    pos = rng.choice(truth["id"].to_numpy()[is_type], n // 2, replace=False)
    neg = rng.choice(truth["id"].to_numpy()[~is_type], n - n // 2, replace=False)
    session.annotate(cell_type, np.concatenate([pos, neg]), [True] * len(pos) + [False] * len(neg))


def _make_session(sim: Simulation, model: AgileModel, store: Path) -> tuple[Session, dict]:
    """A Session on `sim`, timing its creation and (from its progress calls) the patch extraction part."""
    marks = []
    start = time.perf_counter()
    session = Session(
        sim.tissue,
        sim.cells,
        model,
        store=store,
        device=str(DEVICE),
        progress=lambda done, total: marks.append(time.perf_counter()),
    )
    _sync()
    total = time.perf_counter() - start
    extraction = (marks[-1] - start) if marks else float("nan")
    return session, {
        "cells": len(sim.cells),
        "create_s": total,
        "create_patches_s": extraction,
        "create_rest_s": total - extraction,
    }


def bench_session(sz: Sizes, tmp: Path) -> tuple[dict, Simulation]:
    """Adapt + re-predict latency on ~2,000 cells; suggest and whole-field predict on >= 10,000 cells."""
    model = load_model()  # the bundled model: its recipe (head-only step) decides what stays cached
    sim = simulate_tissue((sz.session_field, sz.session_field), seed=0)
    truth = sim.cells.table.reset_index(drop=True)
    small, small_info = _make_session(sim, model, tmp / "small")
    _answer(small, truth, "astrocyte", sz.session_labels, 0)

    def adapt_predict():
        t0 = time.perf_counter()
        small.adapt("astrocyte")
        _sync()
        t1 = time.perf_counter()
        small.predict()
        return t1 - t0, time.perf_counter() - t1  # predict returns a table: the GPU work is done

    adapt_predict()  # warm-up
    parts = [adapt_predict() for _ in range(sz.repeats)]
    loop = {
        **small_info,
        "adapt_s": float(np.median([a for a, _ in parts])),
        "predict_s": float(np.median([p for _, p in parts])),
        "adapt_predict_s": float(np.median([a + p for a, p in parts])),
        "target_s": 1.0,
        "labels": sz.session_labels,
        "adapt_predict_peak_mb": peak_mb(adapt_predict),
        "device": str(DEVICE),
    }

    big_sim = tiled(sim, *sz.session_tiles)
    big, big_info = _make_session(big_sim, model, tmp / "big")
    big_truth = big_sim.cells.table.reset_index(drop=True)
    _answer(big, big_truth, "astrocyte", sz.session_labels, 1)

    def after_adapt(step: Callable[[], object]) -> float:
        """Seconds of `step` right after an (untimed) adapt, which drops everything cached for the type."""
        big.adapt("astrocyte")
        t0 = time.perf_counter()
        step()
        return time.perf_counter() - t0

    after_adapt(big.predict)  # warm-up
    suggest_s = float(np.median([after_adapt(lambda: big.suggest("astrocyte", n=8)) for _ in range(sz.repeats)]))
    predict_s = float(np.median([after_adapt(big.predict) for _ in range(sz.repeats)]))
    first_s = timed(lambda: big.suggest("a new type", n=8), sz.repeats)["median_s"]  # no answers: always covers
    big.adapt("astrocyte")
    suggest_mb = peak_mb(lambda: big.suggest("astrocyte", n=8))
    saved = big.save(tmp / "saved")
    start = time.perf_counter()  # what `napari-agile predict` does per image: detect, cut, trunk, predict
    found = detect_nuclei(big_sim.tissue)
    detect_s = time.perf_counter() - start
    Session.apply_saved(saved, big_sim.tissue, found, store=tmp / "new", device=str(DEVICE)).predict()
    new_section = {"cells": len(found), "detect_s": detect_s, "total_s": time.perf_counter() - start}
    suggestion = {
        **big_info,
        "mc_passes": big.mc_passes,
        "suggest_s": suggest_s,
        "target_s": 5.0,
        "suggest_peak_mb": suggest_mb,
        "first_suggest_s": first_s,
        "predict_one_type_s": predict_s,
        "predict_cells_per_s": len(big_sim.cells) / predict_s,
        "new_section": new_section,
    }
    return {"adapt_predict": loop, "suggest": suggestion}, sim


# ---------------------------------------------------------------- 4. meta-training


def bench_meta(sz: Sizes, sim: Simulation) -> dict:
    """Seconds per meta-iteration (median after the first) for each meta-batch size, first and second order,
    for the bundled recipe (prototype head, head-only step) and the paper's (learned head, whole-network step)."""
    recipes = {"bundled": ("prototypes", "head"), "paper": ("meta", "all")}
    pool = pool_from_tissues([(sim.tissue, sim.cells)], ModelConfig(channels=PAPER_CHANNELS))
    rows = []
    for (recipe, (head_init, scope)), tasks, first_order in itertools.product(
        recipes.items(), sz.meta_tasks, (True, False)
    ):
        cfg = ModelConfig(channels=PAPER_CHANNELS, head_init=head_init)
        meta = MetaConfig(
            iterations=sz.meta_iterations,
            tasks_per_batch=tasks,
            first_order=first_order,
            adapt_scope=scope,
            k_max=sz.meta_k_max,
            n_query=sz.meta_n_query,
            checkpoint_seconds=1e9,
        )
        stamps = [time.perf_counter()]  # progress comes after each step, once its loss is read (GPU work done)
        mb = peak_mb(  # called at once, inside this iteration: the loop variables are the current ones
            lambda: meta_train(  # noqa: B023
                cfg,  # noqa: B023
                meta,  # noqa: B023
                pool,
                progress=lambda i, n, info: stamps.append(time.perf_counter()),  # noqa: B023
                device=str(DEVICE),
            )
        )
        per_iter = np.diff(stamps)[1:] if len(stamps) > 2 else np.diff(stamps)
        rows.append(
            {
                "recipe": recipe,
                "tasks": tasks,
                "order": "first" if first_order else "second",
                "k_max": meta.k_max,
                "n_query": meta.n_query,
                "n_unlabelled": meta.n_unlabelled,
                "s_per_iteration": float(np.median(per_iter)),
                "iterations_timed": len(per_iter),
                "peak_mb": mb,
            }
        )
    return {"rows": rows, "pool_cells": len(pool), "device": str(DEVICE)}


# ---------------------------------------------------------------- 5. fields: detection and patch extraction


def _rss_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux); NaN elsewhere."""
    try:
        found = re.search(rf"{field}:\s*(\d+) kB", Path("/proc/self/status").read_text())
        return int(found.group(1)) / 1024 if found else float("nan")
    except OSError:
        return float("nan")


def _reset_peak() -> bool:
    """Reset the peak-RSS mark (Linux >= 4.0), so each phase's own peak can be read."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def field_worker(size: int, tile: int) -> dict:
    """In a fresh process: build a `size`² 7-channel uint16 field, detect nuclei, extract every patch; time + memory."""
    sim = simulate_tissue((min(size, tile),) * 2, seed=0)
    reps = -(-size // tile)
    data = np.ascontiguousarray(np.tile(np.asarray(sim.tissue.data), (1, reps, reps))[:, :size, :size])
    tissue = Tissue(data, list(PAPER_CHANNELS))
    del sim
    out = {"size": size, "field_mb": data.nbytes / 2**20}
    phases = {}
    peak_ok = True
    for name in ("detect", "extract"):
        peak_ok &= _reset_peak()
        before = _rss_mb("VmRSS")
        start = time.perf_counter()
        if name == "detect":
            cells = detect_nuclei(tissue)
            count = len(cells)
        else:
            norm = fit_normalizer(tissue)
            count = sum(len(ids) for ids, _ in iter_patches(tissue, cells, normalizer=norm))
        seconds = time.perf_counter() - start
        phases[name] = {
            "count": count,
            "s": seconds,
            "per_s": count / seconds,
            "extra_peak_mb": _rss_mb("VmHWM") - before if peak_ok else float("nan"),
        }
        if name == "detect":
            phases[name]["labels_mb"] = cells.labels.nbytes / 2**20
    out.update(phases)
    out["peak_rss_mb"] = _rss_mb("VmHWM") if peak_ok else None
    import resource

    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["session_patches_mb"] = phases["detect"]["count"] * len(PAPER_CHANNELS) * 50 * 50 * 2 / 2**20
    return out


def bench_fields(sz: Sizes, sizes: tuple[int, ...]) -> list[dict]:
    """One fresh subprocess per field size (clean memory figures); sizes that would not fit are skipped."""
    results = []
    for size in sizes:
        need = 7 * size * size * 2 * 3  # field + mask + working copies, roughly
        avail = _meminfo_available()
        if avail is not None and need > avail:
            results.append({"size": size, "skipped": f"needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} available"})
            continue
        proc = subprocess.run(
            [sys.executable, __file__, "--_field", str(size), str(sz.field_tile)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            results.append({"size": size, "skipped": f"worker failed: {proc.stderr.strip().splitlines()[-1:]}"})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def _meminfo_available() -> int | None:
    try:
        found = re.search(r"MemAvailable:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        return int(found.group(1)) * 1024 if found else None
    except OSError:
        return None


# ---------------------------------------------------------------- report


def run(sz: Sizes, field_sizes: tuple[int, ...] | None = None, only: set[str] | None = None) -> dict:
    """Every measurement (or those named in `only`), as one JSON-ready dict: sections 1-4 timed here, their CPU
    memory from a second pass in a child process (see `_per_block_pages`)."""
    want = (lambda k: True) if only is None else (lambda k: k in only)
    report = {"machine": machine(), "sizes": asdict(sz)}
    sections = [k for k in SECTIONS if want(k)]
    report.update(_sections(sz, sections, report["machine"]))
    if sections and DEVICE.type == "cpu":
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--_memory", json.dumps(asdict(sz)), *sections],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            memory = json.loads(proc.stdout.strip().splitlines()[-1])
            _fill_peaks(report, memory)
            report["fixed_mmap_threshold"] = memory["fixed_mmap_threshold"]
        else:
            report["memory_pass_error"] = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    if want("fields"):
        report["fields"] = bench_fields(sz, tuple(field_sizes or sz.field_sizes))
    report["machine"]["load_average_end"] = os.getloadavg()
    return report


SECTIONS = ("inference", "mc", "session", "meta")


def _sections(sz: Sizes, sections: Sequence[str], mach: dict) -> dict:
    """Sections 1-4 (those named), run in this process."""
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "inference" in sections:
            out["inference"] = bench_inference(sz, mach)
        if "mc" in sections:
            out["mc"] = bench_mc(sz)
        sim = None
        if "session" in sections:
            out["session"], sim = bench_session(sz, Path(tmp))
        if "meta" in sections:
            sim = sim or simulate_tissue((sz.session_field, sz.session_field), seed=0)
            out["meta"] = bench_meta(sz, sim)
    return out


def _fill_peaks(into: object, memory: object) -> None:
    """Copy every `*peak_mb` figure of the memory pass into the same place of the timing pass's report."""
    if isinstance(into, list):
        for a, b in zip(into, memory):
            _fill_peaks(a, b)
    elif isinstance(into, dict):
        for k, v in memory.items():
            if k.endswith("peak_mb"):
                into[k] = v
            elif k in into:
                _fill_peaks(into[k], v)


def _memory_pass_words(report: dict) -> str:
    """How sections 1-4's CPU memory was read, in words (nothing to say where no such section ran on the CPU)."""
    if "memory_pass_error" in report:
        return f"; the memory pass failed ({report['memory_pass_error'][0]}), so sections 1-4 show none."
    if "fixed_mmap_threshold" not in report:
        return "."
    return (
        ", on the CPU in a separate run with glibc giving large blocks their own pages; timings run with the "
        "allocator's usual reuse"
        + (
            "."
            if report["fixed_mmap_threshold"]
            else "; glibc's allocator could not be set here, so CPU figures may read low."
        )
    )


def _f(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or v != v else f"{v:,.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"


def markdown(report: dict) -> str:
    """The report as markdown tables."""
    m = report["machine"]
    lines = [
        "# napari-agile speed",
        "",
        f"{m['date']} · {m['cpu']} · {m['cores']} cores ({m['logical_cpus']} logical) · torch {m['torch']} "
        f"({m['torch_threads']} threads) · Python {m['python']}",
        f"Peak fp32 estimate: {m['cores']} cores × {m['ghz']:.2f} GHz ({m['clock_source']}) × "
        f"{m['fp32_flop_per_cycle_per_core']} FLOP/cycle ({m['simd']}) = {m['peak_gflops']:.0f} GFLOP/s.",
        f"Load average (1, 5, 15 min) at start {tuple(round(v, 2) for v in m['load_average_start'])}, "
        f"at end {tuple(round(v, 2) for v in m.get('load_average_end', ()))}: above ~0 other jobs share the cores "
        "and every figure is contended.",
        "Peak MB: memory an operation takes at its peak beyond what was held before it (resident memory on the CPU, "
        "GPU memory on CUDA)" + _memory_pass_words(report),
        "",
    ]
    if "inference" in report:
        inf = report["inference"]
        lines += [
            f"## 1. CNN inference (7 channels, 100 px patches; on {inf.get('device', 'cpu')})",
            "",
            "| variant | input | batch | patches/s | GFLOP/patch | GFLOP/s | % of CPU peak | speed-up | peak MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in inf["rows"]:
            lines.append(
                f"| {r['variant']} | {r['input']}² | {r['batch']} | {_f(r['patches_per_s'])} | "
                f"{r['gflop_per_patch']:.4f} | {_f(r['gflops'])} | {_f(100 * r['peak_fraction'], 3)} | "
                f"{r['speedup']:.2f}× | {_f(r.get('peak_mb'))} |"
            )
        if "skipped" in inf["compile"]:
            lines.append(f"\ntorch.compile: skipped ({inf['compile']['skipped']}).")
        else:
            c = next(r for r in inf["rows"] if "compile" in r["variant"])
            lines.append(f"\ntorch.compile: first call (compilation) {c['compile_s']:.1f} s.")
        ok = "meets" if inf["speedup_as_used"] >= inf["target_speedup"] else "misses"
        lines += [
            f"As used (batch {inf['default_batch']}, the trunk_features default) vs baseline: "
            f"{inf['speedup_as_used']:.2f}× ({ok} the ≥ {inf['target_speedup']:.0f}× target).",
            "",
        ]
    if "mc" in report:
        mc = report["mc"]
        lines += [
            f"## 2. MC-dropout suggestion, {mc['cells']:,} cells, T = {mc['passes']} (on {mc.get('device', 'cpu')})",
            "",
            "| method | seconds | peak MB |",
            "|---|---|---|",
            f"| trunk once ({_f(mc['trunk_s'])} s) + head re-sampled T times ({_f(mc['heads_s'])} s) | "
            f"{_f(mc['cached_s'])} | {_f(mc.get('cached_peak_mb'))} |",
            f"| whole network T times (measured on {mc['full_measured_cells']:,} cells: "
            f"{_f(mc['full_measured_s'])} s; scaled) | {_f(mc['full_scaled_s'])} | |",
            "",
            f"Speed-up of the cached trunk: {mc['speedup']:.1f}×.",
            "",
        ]
    if "session" in report:
        a, s = report["session"]["adapt_predict"], report["session"]["suggest"]
        lines += [
            f"## 3. Session loop (simulated fields, real Session API, the bundled model and its recipe; on "
            f"{a.get('device', 'cpu')})",
            "",
            "Creating a session cuts every cell's patch and runs the trunk over every cell once; each later "
            "step is timed right after an adapt, which drops what was cached for the type.",
            "",
            "| step | cells | seconds | target | peak MB |",
            "|---|---|---|---|---|",
            f"| create session (patches {_f(a['create_patches_s'])} s + normaliser, stats, trunk features, files) | "
            f"{a['cells']:,} | {_f(a['create_s'])} | | |",
            f"| adapt one type ({a['labels']} labels, 1 step) | {a['cells']:,} | {_f(a['adapt_s'])} | | |",
            f"| predict after adapt | {a['cells']:,} | {_f(a['predict_s'])} | | |",
            f"| **adapt + predict** | {a['cells']:,} | **{_f(a['adapt_predict_s'])}** | ≤ {a['target_s']:g} | "
            f"{_f(a.get('adapt_predict_peak_mb'))} |",
            f"| create session (patches {_f(s['create_patches_s'])} s + normaliser, stats, trunk features, files) | "
            f"{s['cells']:,} | {_f(s['create_s'])} | | |",
            f"| **suggest** after adapt (T = {s['mc_passes']}) | {s['cells']:,} | **{_f(s['suggest_s'])}** | "
            f"≤ {s['target_s']:g} | {_f(s.get('suggest_peak_mb'))} |",
            f"| first suggest for a new type (covering round: k-means, no MC passes) | {s['cells']:,} | "
            f"{_f(s['first_suggest_s'])} | | |",
            f"| predict one adapted type | {s['cells']:,} | {_f(s['predict_one_type_s'])} "
            f"({_f(s['predict_cells_per_s'])} cells/s) | | |",
        ]
        if "new_section" in s:
            n = s["new_section"]
            lines.append(
                f"| a new section as `napari-agile predict` types it: detect ({_f(n['detect_s'])} s), cut, "
                f"trunk, predict | {n['cells']:,} | {_f(n['total_s'])} ({_f(n['cells'] / n['total_s'])} "
                "cells/s) | | |"
            )
        lines.append("")
    if "meta" in report:
        r0 = report["meta"]["rows"][0]
        device = report["meta"].get("device", "cpu")
        lines += [
            f"## 4. Meta-iteration (pool of {report['meta']['pool_cells']:,} cells; support 1-{r0['k_max']} per class, "
            f"query {r0['n_query']} per class, {r0['n_unlabelled']} unlabelled for BN stats; on {device})",
            "",
            "| recipe | tasks per meta-batch | order | s / iteration | iterations timed | peak MB |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.get('recipe', 'paper')} | {r['tasks']} | {r['order']} | {_f(r['s_per_iteration'])} | "
            f"{r['iterations_timed']} | {_f(r.get('peak_mb'))} |"
            for r in report["meta"]["rows"]
        ]
        lines.append("")
    if "fields" in report:
        lines += [
            "## 5. Fields: nucleus detection and patch extraction (fresh process per size)",
            "",
            "| side | field MB | cells | detect s | cells/s | detect extra peak MB | patches/s | "
            "extract extra peak MB | peak RSS MB | Session float16 patches MB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["fields"]:
            if "skipped" in r:
                lines.append(f"| {r['size']:,} | skipped: {r['skipped']} |||||||||")
                continue
            d, e = r["detect"], r["extract"]
            lines.append(
                f"| {r['size']:,} | {_f(r['field_mb'])} | {d['count']:,} | {_f(d['s'])} | {_f(d['per_s'])} | "
                f"{_f(d['extra_peak_mb'])} | {_f(e['per_s'])} | {_f(e['extra_peak_mb'])} | "
                f"{_f(r['peak_rss_mb'])} | {_f(r['session_patches_mb'])} |"
            )
        done = [r for r in report["fields"] if "skipped" not in r]
        if len(done) > 1:
            a, b = done[0], done[-1]
            px = (b["size"] / a["size"]) ** 2
            lines.append(
                f"\n{a['size']} → {b['size']} px side ({px:.0f}× pixels): detection time "
                f"×{b['detect']['s'] / a['detect']['s']:.1f}, extraction time ×{b['extract']['s'] / a['extract']['s']:.1f}, "
                f"detection extra memory ×{b['detect']['extra_peak_mb'] / max(a['detect']['extra_peak_mb'], 1e-9):.1f}."
            )
        lines.append(
            "Fields larger than one simulation are tiles of one simulated field; each size runs once, "
            "in its own process."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: under a minute, for smoke tests")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    parser.add_argument(
        "--field-sizes", type=int, nargs="+", help="field sides for section 5 (default 1024 4096 16384)"
    )
    parser.add_argument("--only", nargs="+", choices=["inference", "mc", "session", "meta", "fields"])
    parser.add_argument("--_field", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_memory", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._field:
        print(json.dumps(field_worker(*args._field)))
        return
    if args._memory:  # the memory pass: sizes as JSON, then the sections
        global MEMORY_PASS
        MEMORY_PASS, fixed = True, _per_block_pages()
        sizes = Sizes(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args._memory[0]).items()})
        print(json.dumps({**_sections(sizes, args._memory[1:], machine()), "fixed_mmap_threshold": fixed}))
        return
    report = run(Sizes.quick() if args.quick else Sizes(), args.field_sizes, set(args.only) if args.only else None)
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Meta-training from a TOML config: build the task pools (simulated or the user's labelled cells), train, save.

`napari-agile meta-train --config FILE --out DIR` calls `train_from_config`; configs/bundled-model.toml is
the recipe of the model shipped with the package. Output: DIR/model.safetensors, DIR/history.json and a
resumable DIR/checkpoint.pt (rerun the same command to continue after an interruption).
"""

from __future__ import annotations

import json
import platform
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_agile.detect.nuclei import read_mask
from napari_agile.engine.device import pick_device
from napari_agile.engine.meta import MetaConfig, meta_train
from napari_agile.engine.model_file import AgileModel
from napari_agile.engine.network import ModelConfig
from napari_agile.engine.tasks import TaskPool, pool_from_tissues
from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells, read_cell_table
from napari_agile.io.images import read_tissue
from napari_agile.io.settings import check_types
from napari_agile.synth.simulator import MARKER_OF, SimParams, simulate_tissue


@dataclass(frozen=True)
class DataKeys:
    """The types of the [data] section's keys (checked when a recipe is read; the defaults live in build_pools)."""

    source: str = "simulated"
    fields: int = 16
    field_size: int = 768
    per_type: int | None = None
    seed: int = 1000
    randomize: float = 0.0
    val_fields: int = 2
    val_seed: int = 5000
    sim_params: SimParams | None = None
    images: tuple[str, ...] = ()
    cells: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


def load_config(path: str | Path) -> dict:
    """Parse a meta-training TOML file; a clear error for a missing file or a missing section. Relative paths in
    [data] are read from the config file's folder."""
    path = Path(path)
    if not path.exists():
        raise AgileInputError(f"No config file at {path}; see configs/bundled-model.toml for an example.")
    try:
        config = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise AgileInputError(f"{path} is not valid TOML ({err}); compare with configs/bundled-model.toml.") from None
    for section in ("model", "meta", "data"):
        if section not in config:
            raise AgileInputError(f"{path} has no [{section}] section; see configs/bundled-model.toml.")
    data = config["data"]
    check_types(DataKeys, data, f"{path} [data]")
    for key in ("images", "cells", "labels"):  # a recipe's files are found next to it, from any working folder
        if isinstance(data.get(key), list):
            data[key] = [str(path.parent / Path(f).expanduser()) if isinstance(f, str) else f for f in data[key]]
    return config


def simulated_fields(data: dict, seed: int, n_fields: int) -> list:
    """`n_fields` simulated sections; each draws its own imaging and staining when `randomize` > 0."""
    rng = np.random.default_rng(seed)
    size = int(data.get("field_size", 768))
    base = SimParams(**data.get("sim_params", {}))
    strength = float(data.get("randomize", 0.0))
    out = []
    for i in range(n_fields):
        params = base.randomized(rng, strength) if strength > 0 else base
        sim = simulate_tissue((size, size), seed=seed + i, params=params)
        out.append((sim.tissue, sim.cells))
    return out


def build_pools(config: dict, cfg: ModelConfig) -> tuple[TaskPool, TaskPool]:
    """(training pool, validation pool) as the [data] section says."""
    data = config["data"]
    per_type = data.get("per_type")
    source = data.get("source", "simulated")
    if source not in ("simulated", "labelled"):
        raise AgileInputError(f'[data] source = {source!r}: use "simulated" or "labelled" (your cell tables).')
    if source == "simulated":
        train = simulated_fields(data, int(data.get("seed", 1000)), int(data.get("fields", 16)))
        val = simulated_fields(data, int(data.get("val_seed", 5000)), int(data.get("val_fields", 2)))
    else:
        if "images" not in data or len(data.get("cells", ())) != len(data["images"]):
            raise AgileInputError(
                '[data] with source = "labelled" needs images = [...] and cells = [...], one cell '
                "table per image, in the same order (napari-agile weak-labels or your own labels)."
            )
        masks = data.get("labels", [None] * len(data["images"]))
        if len(masks) != len(data["images"]):
            raise AgileInputError(
                f"[data] labels names {len(masks)} nucleus label images for {len(data['images'])} "
                "images: give one per image, in the same order (napari-agile detect --write-mask)."
            )
        if len(data["images"]) < 2:
            raise AgileInputError(
                "Meta-training on your own cells needs at least two labelled sections (one is held out for validation)."
            )
        pairs = [(read_tissue(i), _cells_with_mask(c, m)) for i, c, m in zip(data["images"], data["cells"], masks)]
        train, val = pairs[:-1], pairs[-1:]
    try:
        pools = pool_from_tissues(train, cfg, per_type), pool_from_tissues(val, cfg, per_type)
        if source == "simulated":  # a drawn panel keeps the task type's own marker
            for pool in pools:
                pool.markers = dict(MARKER_OF)
        return pools
    finally:  # the pools hold copies of the patches: files read from can be closed
        for tissue, _ in train + val:
            tissue.close()


def _cells_with_mask(table: str | Path, mask: str | Path | None) -> Cells:
    """A cell table, with its nucleus label image when one is given (a nucleus-block model needs it)."""
    cells = read_cell_table(table)
    return cells if mask is None else Cells(cells.table, read_mask(mask).astype(np.int32))


def train_from_config(
    config_path: str | Path,
    out_dir: str | Path,
    progress: Callable[[int, int, dict], None] | None = None,
    iterations: int | None = None,
    device: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AgileModel:
    """Run (or resume) the meta-training a config describes, on `device` (default: the fastest present), and
    write the model with its card facts; `should_stop()` ends it early at an iteration's end (checkpoint kept)."""
    config = load_config(config_path)
    meta_dict = dict(config["meta"])
    if iterations is not None:
        meta_dict["iterations"] = iterations
    check_types(ModelConfig, config["model"], f"{config_path} [model]")
    check_types(MetaConfig, meta_dict, f"{config_path} [meta]")
    try:
        cfg = ModelConfig.from_dict(config["model"], f"{config_path} [model]")
        meta = MetaConfig.from_dict(meta_dict)
    except (TypeError, AgileInputError) as err:  # an unknown or misspelt key, or a value out of its range
        raise AgileInputError(
            f"{config_path}: {str(err).rstrip('.')}. The keys each section takes are in "
            "configs/bundled-model.toml and docs/method.md."
        ) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pool, val_pool = build_pools(config, cfg)
    data_seconds = time.time() - t0
    dev = pick_device(device)
    params, history = meta_train(
        cfg, meta, pool, val_pool, out, progress=progress, should_stop=should_stop, device=str(dev)
    )
    (out / "history.json").write_text(json.dumps(history))
    info = {
        "config": config,
        "iterations_done": len(history),
        "pool_cells": len(pool),
        "final_val_acc": next((h["val_acc"] for h in reversed(history) if "val_acc" in h), None),
        "data_seconds": round(data_seconds, 1),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "device": str(dev),
    }
    model = AgileModel(cfg, params, meta.inner_lr, meta.adapt_scope, info)
    model.save(out / "model.safetensors")
    return model

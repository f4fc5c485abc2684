"""Typing a whole section with a saved session's adapted types in memory that grows with the batch, not the section.

A Session keeps every cell's patch for the interactive loop (about 40 kB a cell: 40 GB for a million cells); typing
other sections needs none of that. Here patches are cut band by band from the lazily read image and its nucleus
mask (a zarr array on disk for a large section), each batch goes through the trunk and every type's head, and only
the per-cell table is kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from napari_agile.detect.patches import Normalizer, check_finite, extract_patches, fit_normalizer, iter_patches
from napari_agile.engine.device import pick_device
from napari_agile.engine.likeness import section_profile, unlike_message
from napari_agile.engine.model_file import AgileModel, load_model
from napari_agile.engine.network import ModelConfig, Params, estimate_stats, network_input
from napari_agile.engine.thresholds import assign_types
from napari_agile.engine.uncertainty import mc_head_probs, predictive_entropy, trunk_features
from napari_agile.errors import AgileInputError
from napari_agile.io.cells import Cells
from napari_agile.io.tissue import Tissue
from napari_agile.session import (
    STATS_CELLS,
    Session,
    cell_scale,
    cut_size,
    panel_config,
    read_adapted_weights,
    read_session_meta,
    saved_panel,
    saved_type_params,
    stats_sample,
)

Progress = Callable[[int, int], None]

#: cells whose patches are cut and typed together: about 40 MB of float32 patches for 7 channels
BATCH = 512


@dataclass
class SavedTypes:
    """What typing needs from a saved session: its model, its adapted types' weights and its settings."""

    model: AgileModel
    meta: dict
    weights: dict[str, torch.Tensor]

    @classmethod
    def load(cls, path: str | Path) -> SavedTypes:
        """The saved session at `path`, checked (a clear error if it has no adapted types or is damaged)."""
        folder = Session.check_saved(path)
        return cls(
            load_model(folder / "model.safetensors"),
            read_session_meta(folder),
            read_adapted_weights(folder / "adapted.safetensors"),
        )

    @property
    def colors(self) -> dict[str, str]:
        """The colour the user chose per type, where they chose one."""
        return dict(self.meta.get("colors", {}))

    def config(
        self, tissue: Tissue, channels: Sequence[str] | None = None, nuclear: Sequence[str] | None = None
    ) -> ModelConfig:
        """The model laid out over `tissue`'s panel: the saved session's channels and nuclear stains, or `channels`
        (of which `nuclear`) where this tissue names them otherwise."""
        return panel_config(self.model, tissue, *saved_panel(self.meta, self.model, channels, nuclear))

    def threshold(self, name: str) -> float:
        """The probability a type must reach to claim a cell: its own, else the session's."""
        own = self.meta.get("thresholds", {}).get(name)
        return float(self.meta["threshold"] if own is None else own)


def type_cells(
    saved: SavedTypes,
    tissue: Tissue,
    cells: Cells,
    *,
    channels: Sequence[str] | None = None,
    nuclear: Sequence[str] | None = None,
    device: str | None = None,
    batch_size: int = BATCH,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Per cell: id, y, x, p_<type>, entropy_<type> for every adapted type and the most probable `cell_type`, as
    Session.predict gives them (the same numbers: MC-dropout masks are chosen by cell id), computed batch by batch.

    `cells.labels` may be any array that slices to numpy (a zarr array on disk): only the regions around each batch
    are read. Batch-norm statistics are estimated on the same sample of cells a Session would take.
    """
    if len(cells) == 0:
        raise AgileInputError("This tissue has no cells: run nucleus detection first (or check its channels).")
    cells.check_inside(tissue.shape)
    meta = saved.meta
    cfg = saved.config(tissue, channels, nuclear)
    tissue = tissue.select(cfg.channels)
    dev = torch.device(pick_device(device))
    init = {k: v.to(dev) for k, v in saved.model.params.items()}
    types = {name: saved_type_params(init, saved.weights, name) for name in meta["types"]}
    adapted = {name: params for name, params in types.items() if params is not None}
    if not adapted:
        raise AgileInputError("The saved session has no adapted cell type: adapt one and save it again.")
    normalizer = fit_normalizer(tissue, seed=meta["seed"])
    size = cut_size(cfg, cell_scale(cfg, cells))
    stats = _section_stats(cfg, init, tissue, cells, size, normalizer, meta, dev)
    shared_trunk = saved.model.adapt_scope == "head"  # a head-only adaptation keeps the meta-trained trunk

    n = len(cells)
    probs = {name: np.empty(n, np.float32) for name in adapted}
    entropy = {name: np.empty(n, np.float32) for name in adapted}
    rows_of = cells.table.index
    done = 0
    for ids, batch in iter_patches(
        tissue, cells, size=size, normalizer=normalizer, batch_size=batch_size, nucleus_mask=cfg.nucleus_mask
    ):
        check_finite(ids, batch)
        x = _as_stored(network_input(cfg, torch.from_numpy(batch)), dev)
        rows = rows_of.get_indexer(ids)
        trunk = trunk_features(cfg, init, stats, x) if shared_trunk else None
        for name, params in adapted.items():
            feats = trunk if trunk is not None else trunk_features(cfg, params, stats, x)
            samples = mc_head_probs(cfg, params, feats, meta["mc_passes"], meta["seed"], keys=ids).cpu().numpy()
            probs[name][rows], entropy[name][rows] = samples.mean(0), predictive_entropy(samples)
        done += len(ids)
        if progress is not None:
            progress(done, n)
    table = pd.DataFrame({"id": cells.ids, "y": cells.table["y"].to_numpy(), "x": cells.table["x"].to_numpy()})
    for name in adapted:
        table[f"p_{name}"], table[f"entropy_{name}"] = probs[name], entropy[name]
    names = list(adapted)
    table["cell_type"] = assign_types(
        np.stack([probs[name] for name in names], 1), names, [saved.threshold(name) for name in names]
    )
    return table


def _section_stats(
    cfg: ModelConfig,
    init: Params,
    tissue: Tissue,
    cells: Cells,
    size: int,
    normalizer: Normalizer,
    meta: dict,
    device: torch.device,
    n: int = STATS_CELLS,
) -> Params:
    """Batch-norm statistics of this section from the `n` cells a Session would sample (its seed and count), and a
    warning when the section looks unlike the one the types were taught on."""
    ids = cells.ids[stats_sample(len(cells), n, meta["seed"])]
    patches = extract_patches(tissue, cells, size, ids, normalizer, nucleus_mask=cfg.nucleus_mask)
    check_finite(ids, patches)
    x = _as_stored(network_input(cfg, torch.from_numpy(patches)), device)
    unlike = unlike_message(meta.get("profile", {}), section_profile(cfg, x, list(cfg.channels)))
    if unlike:
        warnings.warn(unlike, stacklevel=3)
    return estimate_stats(cfg, init, x)


def _as_stored(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Network input rounded to float16 as a Session stores it, so both see the same numbers."""
    return x.half().to(device).float()

"""napari-agile: teach a deep network a new cell type in a few clicks (AGILE: task-augmented active meta-learning).

The public API below is headless: importing it never imports napari or Qt.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it; loaded on first use so `import napari_agile` stays cheap.
_API = {
    "Tissue": "io.tissue",
    "PAPER_CHANNELS": "io.tissue",
    "Cells": "io.cells",
    "AgileInputError": "errors",
    "read_tissue": "io.images",
    "write_ome_tiff": "io.images",
    "detect_nuclei": "detect.nuclei",
    "estimate_diameter": "detect.nuclei",
    "estimate_nuclei": "detect.nuclei",
    "mask_off_nuclei": "detect.nuclei",
    "cells_from_labels": "detect.nuclei",
    "open_mask": "detect.nuclei",
    "read_mask": "detect.nuclei",
    "read_cell_table": "io.cells",
    "write_cell_table": "io.cells",
    "extract_patches": "detect.patches",
    "iter_patches": "detect.patches",
    "fit_normalizer": "detect.patches",
    "Normalizer": "detect.patches",
    "CELL_TYPES": "synth.simulator",
    "SimParams": "synth.simulator",
    "Simulation": "synth.simulator",
    "simulate_tissue": "synth.simulator",
    "simulate_cell_pool": "synth.simulator",
    "AgileModel": "engine.model_file",
    "load_model": "engine.model_file",
    "ModelConfig": "engine.network",
    "MetaConfig": "engine.meta",
    "Augmentation": "engine.tasks",
    "TaskPool": "engine.tasks",
    "export_table": "io.export",
    "write_geojson": "io.export",
    "write_anndata": "scverse",
    "write_spatialdata": "scverse",
    "to_spatialdata": "scverse",
    "read_spatialdata": "scverse",
    "to_anndata": "scverse",
    "marker_means": "detect.markers",
    "meta_train": "engine.meta",
    "Session": "session",
    "type_sections": "batch",
    "type_cells": "streamed",
    "SavedTypes": "streamed",
    "read_label_levels": "io.label_zarr",
    "weak_labels": "bench.weak_labels",
    "sessions_dir": "io.session_folders",
    "auto_sessions": "io.session_folders",
    "clean_sessions": "io.session_folders",
}

__all__ = sorted(_API)


#: The subpackages, reachable as attributes too (`agile.io`, `agile.engine`); `napari_agile._napari` is left out
#: on purpose: it is the only part that imports napari and Qt.
_MODULES = {"io", "detect", "engine", "synth", "bench", "session", "batch", "streamed", "cli", "demo", "errors"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    if name in _MODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'napari_agile' has no attribute {name!r}")

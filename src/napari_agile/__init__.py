"""napari-agile: teach a deep network a new cell type in a few clicks (AGILE: task-augmented active meta-learning).

The public API below is headless: importing it never imports napari or Qt.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it; loaded on first use so `import napari_agile` stays cheap.
_API = {
    "Tissue": "tissue",
    "PAPER_CHANNELS": "tissue",
    "Cells": "cells",
    "AgileInputError": "errors",
    "read_tissue": "tissue_io",
    "write_ome_tiff": "tissue_io",
    "detect_nuclei": "nuclei",
    "cells_from_labels": "nuclei",
    "read_cell_table": "cells",
    "write_cell_table": "cells",
    "extract_patches": "patches",
    "iter_patches": "patches",
    "fit_normalizer": "patches",
    "Normalizer": "patches",
    "CELL_TYPES": "synth",
    "SimParams": "synth",
    "Simulation": "synth",
    "simulate_tissue": "synth",
    "simulate_cell_pool": "synth",
    "AgileModel": "modelio",
    "load_model": "modelio",
    "ModelConfig": "model",
    "MetaConfig": "meta",
    "Augmentation": "tasks",
    "TaskPool": "tasks",
    "export_table": "export",
    "write_geojson": "export",
    "write_anndata": "scverse",
    "to_anndata": "scverse",
    "marker_means": "markers",
    "meta_train": "meta",
    "Session": "session",
    "type_sections": "batch",
}

__all__ = sorted(_API)


#: Modules reachable as attributes too (`agile.export.write_geojson`, `agile.weak_labels.weak_labels`).
_MODULES = {"tissue", "cells", "tissue_io", "nuclei", "patches", "synth", "modelio", "model", "meta", "tasks",
            "session", "export", "scverse", "markers", "weak_labels", "uncertainty", "store"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    if name in _MODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'napari_agile' has no attribute {name!r}")

"""Pick the torch device: CUDA when there is one, then Apple MPS, else CPU; overridable."""

from __future__ import annotations

import os

import torch

from napari_agile.errors import AgileInputError


def pick_device(preference: str | None = None) -> torch.device:
    """`preference` (or $NAPARI_AGILE_DEVICE) wins: 'cpu', 'cuda', 'cuda:1', 'mps'; else the fastest present."""
    pref = preference or os.environ.get("NAPARI_AGILE_DEVICE") or "auto"
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(pref)
    except (RuntimeError, TypeError):  # TypeError: not a name at all (e.g. Cells passed where device goes)
        what = repr(pref) if isinstance(pref, str) else f"of type {type(pref).__name__}"
        raise AgileInputError(f"Unknown device {what}: use 'auto', 'cpu', 'cuda' or 'mps'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AgileInputError("CUDA was asked for but torch sees no CUDA GPU here: use device='cpu'.")
    return device

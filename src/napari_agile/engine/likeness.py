"""Whether a section looks like the one a session's answers came from: each channel's level inside the nuclei.

A session keeps, per channel, the median and interquartile range over its cells of the channel's mean inside each
nucleus (the normalised patches the network reads). A new section whose median moves by more than SHIFT_LIMIT of
those ranges, or whose range grows or shrinks past SPREAD_LIMIT times, is named in a warning: its cells are not
those the answers taught (another stain, tissue or panel order, e.g. swapped channel names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from napari_agile.engine.network import ModelConfig, centre_block

#: a channel's median may move this many of the answered section's interquartile ranges (chosen on sections seeded
#: 30,000-30,002: other default sections moved up to 0.39, sections drawn at 1.5x the training randomisation 0.63)
SHIFT_LIMIT = 0.6
#: a channel's interquartile range may grow or shrink this many times
SPREAD_LIMIT = 2.0


def section_profile(cfg: ModelConfig, x: torch.Tensor, names: Sequence[str], batch: int = 512) -> dict[str, list]:
    """channel -> [median, interquartile range] over the cells of their mean inside the nucleus (patches `x`)."""
    block = torch.cat([centre_block(cfg, xb.float()) for xb in torch.split(x, batch)]).cpu().numpy()
    q1, med, q3 = np.percentile(block[:, : len(names)], [25, 50, 75], axis=0)
    return {name: [float(m), float(hi - lo)] for name, m, lo, hi in zip(names, med, q1, q3)}


def unlike_channels(saved: Mapping[str, Sequence[float]], new: Mapping[str, Sequence[float]]) -> list[str]:
    """The channels whose profile in `new` is beyond the limits of the `saved` one, each with its numbers."""
    out = []
    for name, (med, iqr) in saved.items():
        if name not in new:
            continue
        new_med, new_iqr = new[name]
        shift = abs(new_med - med) / max(iqr, 1e-6)
        spread = max(new_iqr, 1e-6) / max(iqr, 1e-6)
        if shift > SHIFT_LIMIT or not 1 / SPREAD_LIMIT <= spread <= SPREAD_LIMIT:
            out.append(f"{name} (median {med:.2f} -> {new_med:.2f}, spread {iqr:.2f} -> {new_iqr:.2f})")
    return out


def unlike_message(saved: Mapping[str, Sequence[float]], new: Mapping[str, Sequence[float]]) -> str | None:
    """A warning naming what makes the new section unlike the answered one, or None when it looks alike."""
    channels = unlike_channels(saved, new)
    if not channels:
        return None
    return (
        f"This section looks unlike the one the session's answers came from, in {', '.join(channels)} (each "
        "channel's level inside the nuclei): check the channel names and order, or answer a few cells of this "
        "section (a new session on it) before trusting its types."
    )

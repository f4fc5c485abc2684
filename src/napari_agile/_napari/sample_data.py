"""npe2 sample data: a simulated 7-channel rat brain field, small enough to open in a second."""

from __future__ import annotations

from napari_agile._napari.reader import LayerData, tissue_layer_data
from napari_agile.synth.simulator import simulate_tissue

SAMPLE_SHAPE = (512, 512)


def simulated_tissue() -> list[LayerData]:
    """A 512×512 simulated section (PAPER_CHANNELS), one additive layer per channel."""
    return tissue_layer_data(simulate_tissue(SAMPLE_SHAPE, seed=0).tissue)

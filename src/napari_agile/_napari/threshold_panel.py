"""The dock's threshold view for the current type: a histogram of its predicted probabilities, a slider for the
probability it must reach to claim a cell, and a switch for the probability image (Session.set_threshold and
Session.paint_probability are the headless twins)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QFormLayout, QLabel, QSlider, QWidget

BARS = "▁▂▃▄▅▆▇█"
#: histogram bins over 0..1
BINS = 20


def histogram_text(p: np.ndarray, threshold: float) -> str:
    """A one-line histogram of probabilities `p` over 0..1 (BINS bars, scaled to the fullest bin, on a square-root
    scale so a few cells still show), with '|' where the threshold cuts, and how many cells reach it."""
    p = np.asarray(p, float)
    counts, _ = np.histogram(p, bins=BINS, range=(0.0, 1.0))
    heights = np.sqrt(counts / max(counts.max(), 1))
    bars = [" " if c == 0 else BARS[min(int(h * len(BARS)), len(BARS) - 1)] for c, h in zip(counts, heights)]
    cut = int(round(threshold * BINS))
    line = "".join(bars[:cut]) + "|" + "".join(bars[cut:])
    return f"0 {line} 1   {int(np.sum(p >= threshold))} of {len(p)} cells reach {threshold:.2f}"


class ThresholdPanel(QWidget):
    """Histogram, threshold slider and probability switch; calls back with the chosen threshold or switch state."""

    def __init__(self, on_threshold: Callable[[float], None], on_show: Callable[[bool], None]) -> None:
        super().__init__()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.histogram = QLabel("Predict to see the probabilities of the current type.")
        self.histogram.setWordWrap(True)
        self.histogram.setToolTip(
            "How many cells get each probability of the current type (0 left, 1 right); "
            "'|' is the threshold a cell must reach to take the type."
        )
        form.addRow(self.histogram)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setTracking(False)  # one repaint when the slider is let go, not one per pixel dragged
        self.slider.setToolTip(
            "The probability the current type must reach to claim a cell (chosen at Adapt from "
            "your answers; the next Adapt chooses it again)."
        )
        self.slider.valueChanged.connect(lambda value: on_threshold(value / 100))
        form.addRow("Threshold", self.slider)
        self.show_box = QCheckBox("Show the probability image")
        self.show_box.setToolTip("Paint every nucleus with its probability of the current type (layer 'probability').")
        self.show_box.toggled.connect(on_show)
        form.addRow(self.show_box)
        self.setEnabled(False)

    def show_type(self, p: np.ndarray | None, threshold: float) -> None:
        """Show the current type's probabilities (None: not predicted yet) and threshold, without calling back."""
        self.setEnabled(p is not None)
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(threshold * 100)))
        self.slider.blockSignals(False)
        self.histogram.setText(
            "Predict to see the probabilities of the current type." if p is None else histogram_text(p, threshold)
        )

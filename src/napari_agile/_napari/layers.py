"""napari layers for the AGILE widget: the tissue from image layers, and the cells/suggestions/types layers it draws.

No math and no file formats: a Tissue is assembled from what the viewer holds, and the engine's tables and
arrays are shown as layers (one data assignment each, never per-object updates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Points
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.colormaps.standardize_color import transform_color

from napari_agile.errors import AgileInputError
from napari_agile.io.tissue import Tissue

CELLS = "cells"
NUCLEI = "nuclei"
SUGGESTED = "suggested cells"
TYPES = "cell types"
PROBABILITY = "probability"

UNANSWERED = (1.0, 1.0, 1.0, 0.35)  # translucent white dot: no answer yet for the current type
NO = (0.15, 0.15, 0.15, 1.0)  # dark dot with a white border: "no"
#: channel layers up to this size are stacked in memory; larger ones (or memory maps) are stacked lazily
SMALL_STACK_BYTES = 256 * 2**20


def camera(viewer):
    """The viewer's camera: `viewer.scene.camera` from napari 0.9 on (`viewer.camera` is deprecated there)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def text_overlay(viewer):
    """The viewer's text overlay: `viewer.canvas.overlays["text"]` from napari 0.9 on (`viewer.text_overlay` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays["text"] if canvas is not None else viewer.text_overlay


def finest_level(layer: Image | Labels):
    """A layer's full-resolution data (level 0 of a multiscale layer)."""
    return layer.data[0] if layer.multiscale else layer.data


def tissue_from_layers(layers: Sequence[Image], channel_names: Sequence[str] | None = None) -> Tissue:
    """A Tissue from one (C, Y, X) image layer (names: `channel_names`, else its metadata) or 2D channel layers
    (names: `channel_names`, else the layer names)."""
    if not layers:
        raise AgileInputError(
            "No tissue image: open one (File > Open, or File > Open Sample > napari-agile) and tick its "
            "layer(s) under 'Image layers'."
        )
    rgb = [layer.name for layer in layers if layer.rgb]
    if rgb:
        raise AgileInputError(f"{rgb} are RGB images, not one channel per marker: split the colour channels first.")
    if len(layers) == 1 and layers[0].ndim == 3:
        layer = layers[0]
        data = finest_level(layer)
        names = channel_names or layer.metadata.get("channel_names")
        names = names or [f"{layer.name} {i}" for i in range(len(data))]
        return Tissue(data, list(names), source=f"layer {layer.name!r}")
    not_2d = [f"{layer.name} {layer.data.shape}" for layer in layers if layer.ndim != 2]
    if not_2d:
        raise AgileInputError(
            f"Tick either one (channels, rows, columns) image or several 2D channel layers; {not_2d} are neither."
        )
    shapes = {layer.name: tuple(finest_level(layer).shape) for layer in layers}
    if len(set(shapes.values())) > 1:
        raise AgileInputError(
            f"The ticked channel layers differ in size {shapes}: tick the layers of one section only."
        )
    arrays = [finest_level(layer) for layer in layers]
    # stacking copies every pixel, here on the GUI thread: only for small in-memory channels; memory-mapped files
    # and large sections stay lazy and are read tile by tile in the workers
    in_memory = all(type(a) is np.ndarray for a in arrays)
    if in_memory and sum(a.nbytes for a in arrays) <= SMALL_STACK_BYTES:
        data = np.stack(arrays)
    else:
        import dask.array as da

        data = da.stack([da.asarray(a) for a in arrays])
    names = [layer.name for layer in layers]
    if channel_names:
        if len(channel_names) != len(layers):
            raise AgileInputError(
                f"'Channel names' lists {len(channel_names)} names for {len(layers)} ticked channel "
                "layers: give one per layer, in their order, or empty it to use the layer names."
            )
        names = list(channel_names)
    return Tissue(data, names, source="image layers")


def frame_kwargs(reference: Image) -> dict:
    """scale/translate of the tissue layers, so the engine's pixel coordinates land on the image."""
    return {"scale": tuple(reference.scale[-2:]), "translate": tuple(reference.translate[-2:])}


def view_box(viewer: Any, frame: dict, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) pixels of a (rows, columns) `shape` image placed by `frame` that the canvas shows:
    the camera's centre, half the canvas over the zoom either way, clipped to the image."""
    canvas = getattr(viewer, "canvas", None)
    size = np.asarray(canvas.size if canvas is not None else viewer._canvas_size, float)  # (height, width)
    cam = camera(viewer)
    centre, half = np.asarray(cam.center[-2:], float), size / float(cam.zoom) / 2
    scale, translate = np.asarray(frame["scale"], float), np.asarray(frame["translate"], float)
    lo = np.clip(np.floor((centre - half - translate) / scale), 0, shape).astype(int)
    hi = np.clip(np.ceil((centre + half - translate) / scale), 0, shape).astype(int)
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


def _answered_rows(ids: np.ndarray, answers: Mapping[int, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `ids` answered yes, and answered no (vectorised: a section holds tens of thousands of cells)."""
    if not answers:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    known = np.fromiter(answers.keys(), np.int64)
    said = np.fromiter(answers.values(), bool)
    pos = pd.Index(ids).get_indexer(known)
    ok = pos >= 0
    return pos[ok & said], pos[ok & ~said]


def answer_colors(ids: np.ndarray, answers: Mapping[int, bool], color: str) -> np.ndarray:
    """(N, 4) RGBA per cell: the type's colour for yes, dark for no, translucent white when not answered."""
    out = np.tile(np.asarray(UNANSWERED, np.float32), (len(ids), 1))
    yes, no = _answered_rows(ids, answers)
    out[yes] = transform_color(color)[0]
    out[no] = NO
    return out


def answer_column(ids: np.ndarray, answers: Mapping[int, bool]) -> np.ndarray:
    """'yes' / 'no' / '' per cell, for layer features."""
    out = np.full(len(ids), "", dtype=object)
    yes, no = _answered_rows(ids, answers)
    out[yes], out[no] = "yes", "no"
    return out


def cells_layer(table: pd.DataFrame, frame: dict) -> Points:
    """All detected cells as small dots; features = the cell table (later: predictions and answers)."""
    features = table.reset_index(drop=True).assign(answer="")
    return Points(
        table[["y", "x"]].to_numpy(),
        name=CELLS,
        features=features,
        size=7,
        symbol="disc",
        face_color=list(UNANSWERED),
        border_color="white",
        border_width=0.1,
        **frame,
    )


def nuclei_layer(labels: np.ndarray, frame: dict) -> Labels:
    """The nucleus instance mask (ids = cell ids), drawn as outlines so painted types show through."""
    layer = Labels(labels, name=NUCLEI, opacity=0.6, **frame)
    layer.contour = 1
    return layer


def suggestion_features(
    ids: Sequence[int], p: np.ndarray, entropy: np.ndarray, cell_type: str, answers: Mapping[int, bool]
) -> pd.DataFrame:
    """One row per suggested cell: id, entropy, probability, the question asked and the answer so far."""
    ids = np.asarray(ids, np.int64)
    article = "an" if cell_type[:1].lower() in "aeiou" else "a"
    return pd.DataFrame(
        {
            "id": ids,
            "entropy": entropy,
            "probability": p,
            "question": [f"Is cell {i} {article} {cell_type}?" for i in ids],
            "answer": answer_column(ids, answers),
        }
    )


def suggestions_layer(frame: dict) -> Points:
    """Thin circles around the cells to label, coloured by entropy, wide enough to leave the cell itself in view."""
    return Points(
        np.empty((0, 2)),
        name=SUGGESTED,
        size=30,
        symbol="o",
        face_color="transparent",
        border_colormap="plasma",
        border_width=RING,
        border_width_is_relative=True,
        **frame,
    )


#: a suggestion's outline, as a fraction of its size; the cell in question is drawn CURRENT thick
RING, CURRENT = 0.04, 0.1


def show_suggestions(layer: Points, centroids: np.ndarray, features: pd.DataFrame, diameter: float) -> None:
    """Replace the suggestions in one go: circles 2.5 nucleus diameters wide, coloured from the least uncertain of
    this batch (dark) to the most (bright), so a round of near-equal entropies still tells its cells apart."""
    layer.selected_data = set()
    layer.data = centroids
    layer.features = features
    layer.size = 2.5 * diameter
    layer.border_width = RING
    layer.border_color = "entropy"
    layer.border_colormap = "plasma"
    low, high = (float(features["entropy"].min()), float(features["entropy"].max())) if len(features) else (0, 1)
    layer.border_contrast_limits = (low, high) if high > low else (low - 1e-6, high + 1e-6)
    layer.refresh_colors(update_color_mapping=False)


def mark_current(layer: Points, index: int) -> None:
    """Draw the suggestion the question is about with a thick outline, the others thin."""
    width = np.full(len(layer.data), RING)
    width[index] = CURRENT
    layer.border_width = width


def probability_layer(data: np.ndarray, frame: dict) -> Image:
    """Each nucleus painted with its probability of the current type, on a fixed 0..1 scale (0 stays black)."""
    return Image(data, name=PROBABILITY, colormap="magma", contrast_limits=(0.0, 1.0), blending="additive", **frame)


def type_colormap(names: Sequence[str], colors: Mapping[str, str]) -> DirectLabelColormap:
    """Class id i+1 -> colour of names[i]; 0 (no type) and unknown ids transparent."""
    color_dict = {None: "transparent", 0: "transparent"}
    color_dict.update({i + 1: colors[name] for i, name in enumerate(names)})
    return DirectLabelColormap(color_dict=color_dict)


def with_predictions(features: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The cells layer's features (cell table + answers) with Session.predict's columns joined on by id."""
    pred = table.drop(columns=["y", "x"]).set_index("id").reindex(features["id"].to_numpy())
    kept = features.drop(columns=[c for c in pred.columns if c in features.columns]).reset_index(drop=True)
    return pd.concat([kept, pred.reset_index(drop=True)], axis=1)

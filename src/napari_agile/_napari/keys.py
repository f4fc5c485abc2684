"""The dock's key bindings in one place: which key does what, binding them on the viewer and its image layers,
unbinding them when the dock goes, and the help overlay that lists them (`h`: napari has no key code for `?`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari_agile._napari import layers as _layers

#: key -> (the dock's action, help text); the viewer and each image layer get them while the dock lives
KEYS = {
    "y": ("answer_yes", "yes"),
    "n": ("answer_no", "no"),
    "u": ("undo", "undo"),
    "j": ("next_suggestion", "next suggested cell"),
    "k": ("previous_suggestion", "previous suggested cell"),
    "t": ("give_type", "this type and no other (to correct a prediction)"),
    "h": ("toggle_help", "show / hide these keys on the image"),
}
CLICK_MODES = ("select + keys", "click = yes", "click = no")
HELP_TITLE = "napari-agile keys (h hides this)"


def is_ours(func: Any) -> bool:
    """Whether a key binding is one of the dock's (their handlers say so in their docstring)."""
    return (getattr(func, "__doc__", None) or "").startswith("napari-agile:")


def handler(actions: Any, method: str, alive: dict) -> Callable[[Any], None]:
    """A key handler that calls `actions.<method>()` while the dock lives."""

    def on_key(viewer: Any) -> None:
        if alive["yes"]:
            getattr(actions, method)()

    on_key.__doc__ = f"napari-agile: {method.replace('_', ' ')}"
    return on_key


def bind(target: Any, actions: Any, alive: dict) -> None:
    """Bind every key on a viewer or a layer (a layer's own keys come first: napari's Image layer takes 'y')."""
    for key, (method, _) in KEYS.items():
        target.bind_key(key, handler(actions, method, alive), overwrite=True)


def bind_layers(layers: Any, actions: Any, alive: dict) -> None:
    """Bind the keys on each of `layers` that does not have them yet."""
    for layer in layers:
        if not any(is_ours(func) for func in layer.keymap.values()):
            bind(layer, actions, alive)


def detach(viewer: Any, alive: dict, cancel: threading.Event, on_click: Any, on_layers: Any) -> None:
    """Unhook a dock from its viewer and cancel its job (no Qt calls: the dock may already be deleted)."""
    if not alive["yes"]:
        return
    alive["yes"] = False
    cancel.set()
    for key in KEYS:
        viewer.bind_key(key, None)
    for layer in viewer.layers:
        for key, func in list(layer.keymap.items()):
            if is_ours(func):
                layer.bind_key(key, None)
    if on_click in viewer.mouse_drag_callbacks:
        viewer.mouse_drag_callbacks.remove(on_click)
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.moved, events.renamed):
        event.disconnect(on_layers)


def help_html() -> str:
    """The keys as one line of the dock."""
    return "Keys: " + ", ".join(f"<b>{k}</b> {h}" for k, (_, h) in KEYS.items())


def toggle_help(viewer: Any) -> None:
    """Show or hide the keys (and the mouse modes) over the image, in the viewer's text overlay."""
    overlay = _layers.text_overlay(viewer)
    if overlay.visible and overlay.text.startswith(HELP_TITLE):
        overlay.visible = False
        return
    lines = [f"{key}   {what}" for key, (_, what) in KEYS.items()]
    overlay.text = "\n".join([HELP_TITLE, *lines, "Mouse: " + " / ".join(CLICK_MODES) + " (dock, 3.)"])
    overlay.position, overlay.font_size, overlay.visible = "top_left", 9, True
    if hasattr(overlay, "box"):  # napari >= 0.5: a dark box keeps the text readable over bright tissue
        overlay.box = True

"""The package's architecture, checked: each layer imports only the layers below it, and only
`napari_agile._napari` imports napari, Qt or magicgui."""

import ast
from pathlib import Path

import napari_agile

PACKAGE = Path(napari_agile.__file__).parent
GUI = {"napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy"}
#: what each subpackage may import from napari_agile at run time (type-only imports are free)
#: errors and memory (free memory) are leaves every layer may use
BELOW = {
    "io": {"errors", "memory", "io"},
    "detect": {"errors", "memory", "io", "detect"},
    "synth": {"errors", "memory", "io", "synth"},
    "engine": {"errors", "memory", "io", "detect", "synth", "engine"},
    "bench": {"errors", "memory", "io", "detect", "synth", "engine", "bench"},
}


def _imports(path: Path) -> set[str]:
    """Dotted names of the modules `path` imports at run time (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(), str(path))
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for n in ast.walk(node)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 35  # the checks must see the whole package, not an empty glob
    return found


def test_only_the_napari_face_imports_napari_or_qt():
    outside = [p for p in _modules() if "_napari" not in p.relative_to(PACKAGE).parts]
    offenders = {str(p.relative_to(PACKAGE)): sorted({n.split(".")[0] for n in _imports(p)} & GUI) for p in outside}
    assert {name: gui for name, gui in offenders.items() if gui} == {}


def test_each_layer_imports_only_the_layers_below_it():
    wrong = {}
    for path in _modules():
        layer = path.relative_to(PACKAGE).parts[0]
        if layer not in BELOW:
            continue
        ours = {n.split(".")[1] for n in _imports(path) if n.startswith("napari_agile.")}
        if ours - BELOW[layer]:
            wrong[str(path.relative_to(PACKAGE))] = sorted(ours - BELOW[layer])
    assert wrong == {}


def test_the_checks_see_imports():
    """The same parser finds a dock panel's napari and Qt imports and skips type-only ones, so the checks can fail."""
    assert {"napari.layers", "qtpy.QtCore"} <= _imports(PACKAGE / "_napari" / "tissue_panel.py")
    quality = _imports(PACKAGE / "engine" / "quality.py")
    assert "napari_agile.session" not in quality and "napari_agile.engine.thresholds" in quality

"""The package's architecture, checked: only `napari_agile._napari` may import napari, Qt or magicgui."""

import ast
from pathlib import Path

import napari_agile

PACKAGE = Path(napari_agile.__file__).parent
GUI = {"napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_napari_face_imports_napari_or_qt():
    engine_modules = [p for p in PACKAGE.rglob("*.py") if "_napari" not in p.relative_to(PACKAGE).parts]
    assert len(engine_modules) > 30  # the check must see the whole engine, not an empty glob
    offenders = {str(p.relative_to(PACKAGE)): sorted(_imported_roots(p) & GUI) for p in engine_modules}
    assert {name: gui for name, gui in offenders.items() if gui} == {}


def test_the_check_sees_the_napari_face():
    """The same parser finds the widget's napari and Qt imports, so the check above can fail."""
    assert {"napari", "qtpy"} <= _imported_roots(PACKAGE / "_napari" / "widget.py")

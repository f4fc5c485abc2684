"""The package's public names: each one docs/api.md shows resolves from `import napari_agile as agile`."""

import subprocess
import sys


def test_every_public_name_and_module_resolves_without_napari():
    code = (
        "import sys, napari_agile as agile\n"
        "for name in agile.__all__: getattr(agile, name)\n"
        "for name in agile._MODULES: assert getattr(agile, name).__name__ == 'napari_agile.' + name\n"
        "agile.io, agile.engine\n"
        "assert 'napari' not in sys.modules and 'qtpy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

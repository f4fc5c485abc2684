"""The napari face: dock widget, layers, npe2 reader, writer and sample data (all napari/Qt imports live here)."""

"""From pixels to cells: nucleus detection, patches around nuclei, per-cell marker means."""

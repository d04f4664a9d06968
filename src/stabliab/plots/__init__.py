"""Figures: one style (style.py) and one module per claim (c1.py ... ), each function named
after what it shows. Notebooks call `plots.setup()` once, then `plots.cN.<figure>(...)`."""
from . import c1, c2, c3, c4, c5
from .style import PALETTE, colors, heatmap, points_with_interval, seeds, setup

__all__ = ["c1", "c2", "c3", "c4", "c5", "PALETTE", "colors", "heatmap", "points_with_interval", "seeds", "setup"]

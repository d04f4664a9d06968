"""Figures of claim C4 (notebook 04); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .style import colors, seeds

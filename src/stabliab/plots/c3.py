"""Figures of claim C3 (notebook 03); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .style import colors, seeds

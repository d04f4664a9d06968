"""Figures of claim C1 (notebook 01); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .style import colors, seeds

"""Figures of claim C2 (notebook 02); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .style import colors, seeds

"""One figure style for the whole book, and the figure pieces every claim uses; every
cross-seed figure shows the spread."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

PALETTE = "colorblind"


def setup() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (7.0, 4.0),
                         "axes.titlesize": "medium", "legend.fontsize": "small", "legend.frameon": False})


def colors(n: int):
    return sns.color_palette(PALETTE, n)


def seeds(ax, x, Y, color=None, label=None, alpha=0.35, lw=1.0, band: bool = True):
    """Every seed as a thin line (Y: [len(x), n_seeds]), the mean bold, and the
    min-max envelope shaded: the spread across seeds is always visible."""
    x, Y = np.asarray(x), np.asarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    for j in range(Y.shape[1]):
        ax.plot(x, Y[:, j], color=color, alpha=alpha, lw=lw)
    if band and Y.shape[1] > 1:
        ax.fill_between(x, Y.min(1), Y.max(1), color=color, alpha=0.12, lw=0)
    ax.plot(x, Y.mean(1), color=color, lw=2.0, label=label)


def points_with_interval(ax, x, values, interval, color=None, label=None, jitter=0.06, seed=0):
    """Per-seed points (jittered) next to a mean with its interval."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    ax.scatter(x + rng.uniform(-jitter, jitter, v.size), v, s=16, color=color, alpha=0.7, zorder=3)
    lo, hi = interval
    ax.errorbar([x + 2.5 * jitter], [v.mean()], yerr=[[v.mean() - lo], [hi - v.mean()]], fmt="D",
                color=color, capsize=4, ms=6, label=label, zorder=4)


def heatmap(ax, M, title: str, vmax: float | None = None):
    """A transition matrix (contexts x next tokens); add one shared colorbar per figure."""
    sns.heatmap(M, ax=ax, cmap="mako_r", vmin=0, vmax=vmax, cbar=False, square=True,
                xticklabels=False, yticklabels=False)
    ax.set_title(title)
    ax.set_xlabel("next token j")
    ax.set_ylabel("context c")

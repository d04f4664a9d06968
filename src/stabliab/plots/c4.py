"""Figures of claim C4 (notebook 04); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..stats import mean_interval, spearman


def quality_against_stability(data: dict):
    """One panel per quality measure (data: source -> {"stability": [C], label: [C, S]}, from
    experiments.c4.figure_data): each used configuration's mean over seeds against its
    stability index, one colour per source; the bar spans the seeds (min to max); the legend
    gives rho per source."""
    labels = [k for k in next(iter(data.values())) if k != "stability"]
    cols = 3
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(labels):]:
        ax.set_visible(False)
    for ax, lab in zip(axes.ravel(), labels):
        for i, (s, d) in enumerate(data.items()):
            Y, x = d[lab], d["stability"]
            m = Y.mean(1)
            ax.errorbar(x, m, yerr=[m - Y.min(1), Y.max(1) - m], fmt="o", ms=3.5, alpha=0.7, capsize=2, color=f"C{i}",
                        label=f"{s}: ρ = {spearman(x, m):.2f}" if len(x) > 2 else s)
        ax.set_xlabel("stability index (higher = more stable)")
        ax.set_ylabel(lab + (" [nats/token]" if "KL" in lab or "calibration" in lab else ""))
        if "H_model" in lab:
            ax.axhline(0, color="k", lw=0.8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def stabiliser_effects(deltas: dict):
    """Per stabiliser (deltas: name -> {"instability", "forward_kl"}: per-seed paired
    changes against the reference), each seed's change as a dot and the mean with its
    Student-t interval as a diamond; left the instability index, right the forward KL."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, key, lab in [(axes[0], "instability", "Δ instability index"),
                         (axes[1], "forward_kl", "Δ forward KL [nats/token]")]:
        for i, d in enumerate(deltas.values()):
            v = np.asarray(d[key])
            if v.size >= 2 and np.ptp(v) > 0:  # an interval needs two seeds that differ
                lo, hi = mean_interval(v)
                ax.errorbar([v.mean()], [i], xerr=[[v.mean() - lo], [hi - v.mean()]], fmt="D", capsize=4, color="C0")
            ax.scatter(v, np.full(len(v), i) + 0.15, s=10, color="C0", alpha=0.5)
        ax.axvline(0, color="k", lw=1)
        ax.set_yticks(range(len(deltas)), list(deltas))
        ax.set_xlabel(lab + " (dots: seeds; diamond: mean, 95% CI)")
    fig.tight_layout()
    return fig

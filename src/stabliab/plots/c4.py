"""Figures of claim C4 (notebook 04); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..stats import mean_interval, spearman


def quality_against_stability(table: dict, inst: np.ndarray, labels: dict):
    """One panel per quality measure (labels: label -> name in table): each usable
    configuration's mean over seeds against its stability index (-inst [C, S], mean over
    seeds); the bar spans the quality measure's seeds (min to max); the title is rho."""
    ok = ~table["diverged"]
    stab = -inst[ok].mean(1)  # [C']
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, (lab, q) in zip(axes.ravel(), labels.items()):
        Y = table[q][ok]  # [C', S]
        m = Y.mean(1)
        ax.errorbar(stab, m, yerr=[m - Y.min(1), Y.max(1) - m], fmt="o", ms=4, alpha=0.7, capsize=2)
        ax.set_xlabel("stability index (higher = more stable)")
        ax.set_ylabel(lab + (" [nats/token]" if "KL" in lab or "confidence" in lab else ""))
        if "KL" in lab:
            ax.set_yscale("log")
        ax.set_title(f"ρ = {spearman(stab, m):.2f}")
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
            lo, hi = mean_interval(v)
            ax.errorbar([v.mean()], [i], xerr=[[v.mean() - lo], [hi - v.mean()]], fmt="D", capsize=4, color="C0")
            ax.scatter(v, np.full(len(v), i) + 0.15, s=10, color="C0", alpha=0.5)
        ax.axvline(0, color="k", lw=1)
        ax.set_yticks(range(len(deltas)), list(deltas))
        ax.set_xlabel(lab + " (dots: seeds; diamond: mean, 95% CI)")
    fig.tight_layout()
    return fig

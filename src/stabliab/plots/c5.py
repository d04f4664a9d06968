"""Figures of claim C5 (notebook 05); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _diagonal(ax, x, y, xlabel: str, ylabel: str, title: str) -> None:
    lo, hi = float(min(np.min(x), np.min(y))), float(max(np.max(x), np.max(y)))
    ax.scatter(x, y, s=14, alpha=0.7)
    ax.plot([lo, hi], [lo, hi], color="k", lw=1)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)


def entropy_identities(base: dict):
    """Left: per held-out passage, the teacher-forced entropy against the cross-entropy (on the line: the
    softmax-head identity). Right: per prompt, the entropy rate of the T = 1 continuation against the
    teacher-forced entropy on the human continuation (below the line: free-running loses entropy)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _diagonal(axes[0], base["CE"], base["H_tf"], "cross-entropy [nats/token]", "teacher-forced entropy [nats/token]",
              "held-out passages (one dot each)")
    _diagonal(axes[1], base["H_human"], base["H_gen"], "teacher-forced entropy, human continuation [nats/token]",
              "entropy rate, T = 1 continuation [nats/token]", "prompts (one dot each)")
    fig.tight_layout()
    return fig


def finetuning(ft: dict):
    """Left: each seed's training loss over fine-tuning steps (log scale). Right: each seed's generative
    entropy rate before and after fine-tuning (one line per seed; hollow: not at plateau)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for s, curve in enumerate(ft["curves"]):
        axes[0].plot(np.arange(len(curve)), curve, lw=1.2, label=f"seed #{s}")
    axes[0].set(yscale="log", xlabel="fine-tuning step", ylabel="training loss [nats/token]")
    for s in range(len(ft["curves"])):
        y = [ft["H_gen_before"][s], ft["H_gen_after"][s]]
        axes[1].plot([0, 1], y, "-o", mfc="C0" if ft["at_plateau"][s] else "none", color="C0", alpha=0.7)
    axes[1].set(xticks=[0, 1], xticklabels=["before", "after"], xlim=(-0.3, 1.3),
                ylabel="generative entropy rate [nats/token]", title="per seed (hollow: not at plateau)")
    fig.tight_layout()
    return fig

"""Figures of claim C2 (notebook 02); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..stats import mean_interval
from .style import colors, points_with_interval, seeds


def plugin_deficit(bias):
    """(a) Measured H* − E[H(p̂_N)] (± 2 s.e.) and the Miller–Madow prediction against the
    number of observed transitions, log–log (bias: experiments.c2.plugin_bias)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.errorbar(bias.transitions, -bias.bias, yerr=2 * bias.se, fmt="o", capsize=3,
                label="measured  H* − E[H(p̂_N)]  (±2 s.e.)")
    ax.plot(bias.transitions, -bias.miller_madow, "-", label="Miller–Madow  Σ(K_c − 1)/(2n)")
    ax.set_xscale("log"); ax.set_yscale("log"); ax.set_xlabel("observed transitions n")
    ax.set_ylabel("entropy deficit [nats]"); ax.legend()
    return fig


def training_curves(runs: dict, archs, N: int, H_true: float):
    """(c) Training loss, held-out loss and generative entropy rate over training at N sequences,
    per family (thin lines: seeds, band: min–max), against H* and H(p̂_N)."""
    cols = dict(zip(archs, colors(len(archs))))
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 9.5), sharex=True)
    for arch in archs:
        tr = runs[arch, N]["traj"]
        seeds(axes[0], tr.step + 1, tr.loss, color=cols[arch], label=arch, alpha=0.2)
        seeds(axes[1], tr.eval_step + 1, tr["heldout"], color=cols[arch], label=arch)
        seeds(axes[2], tr.eval_step + 1, tr["gen_H"], color=cols[arch], label=arch)
    for a in axes:
        a.axhline(H_true, color="k", ls=":", label="H* (truth)")
    axes[2].axhline(runs[archs[0], N]["H_hat"].mean(), color="k", ls="--", lw=1, label="H(p̂_N)")
    axes[0].set_ylabel("training loss\n[nats/token]"); axes[1].set_ylabel("held-out loss\n[nats/token]")
    axes[2].set_ylabel("generative entropy\nrate [nats/token]"); axes[2].set_xlabel("AdamW step + 1")
    axes[0].set_xscale("log")
    for a in axes:
        a.legend(ncol=2)
    axes[0].set_title(f"N = {N} sequences (thin lines: seeds; band: min–max)")
    fig.tight_layout()
    return fig


def final_entropy_ratio(final, archs, n_values):
    """(c) Final generative entropy / H* per family and N: seeds as dots, mean ± 95% CI, with
    H(p̂_N) / H* and the truth (final: experiments.c2.final_table)."""
    cols = dict(zip(archs, colors(len(archs))))
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, arch in enumerate(archs):
        for j, N in enumerate(n_values):
            v = final[(final.arch == arch) & (final.N == N)]["H_model / H*"].to_numpy()
            points_with_interval(ax, j + (i - 1) * 0.25, v, mean_interval(v), color=cols[arch],
                                 label=arch if j == 0 else None, jitter=0.03)
    hh = final.groupby("N")["H(p̂_N) / H*"].mean().reindex(n_values).to_numpy()
    ax.plot(range(len(n_values)), hh, "k--", marker="_", ms=20, label="H(p̂_N) / H*")
    ax.axhline(1.0, color="k", ls=":", label="truth")
    ax.set_xticks(range(len(n_values)), [str(n) for n in n_values]); ax.set_xlabel("training sequences N")
    ax.set_ylabel("generative entropy / H*"); ax.legend()
    ax.set_title("final entropy ratio: seeds (dots), mean ± 95% CI")
    return fig


def mode_mass(mass, archs):
    """(d) The model's exact probability of every mode sequence against its rank, seen and unseen
    modes marked, next to the true Zipf weights; one panel per family, all seeds (mass:
    experiments.c2.mode_concentration)."""
    fig, axes = plt.subplots(1, len(archs), figsize=(4.6 * len(archs), 3.8), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, arch in zip(axes, archs):
        d = mass[mass.arch == arch]
        true = d.groupby("rank")["true"].first()
        ax.plot(true.index, true.values, "k-", lw=1.5, label="true weight")
        for seen_flag, mk, lab in [(True, "o", "model, mode seen in sample"), (False, "x", "model, mode unseen")]:
            dd = d[d.seen == seen_flag]
            ax.scatter(dd["rank"], np.maximum(dd["model"], 1e-8), marker=mk, s=14, alpha=0.5, label=lab)
        ax.set_xscale("log"); ax.set_yscale("log"); ax.set_ylim(1e-8, 1)
        ax.set_xlabel("mode rank"); ax.set_title(f"{arch} (all seeds)")
    axes[0].set_ylabel("probability of the mode sequence"); axes[0].legend(loc="lower left")
    fig.tight_layout()
    return fig

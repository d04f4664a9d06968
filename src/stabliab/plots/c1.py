"""Figures of claim C1 (notebook 01); each function draws one figure and returns it.
`runs` is experiments.c1.edge_runs's result: traj (train.Trajectory), gap and ident_err
[L, M] over logged steps and members, fractions (F, the unstable one last), n_stable;
members are seed-major and fraction-minor (member s * F + f: seed s at fractions[f])."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .style import colors, heatmap, seeds


def _label(f: float) -> str:
    return f"η = {f:g} × edge" + (" (unstable)" if f >= 1 else "")


def identity_error(runs: dict, tolerance: float):
    """|CE − H − KL| per trajectory against the gradient step, log scale, with the tolerance."""
    fig, ax = plt.subplots(figsize=(7, 3))
    seeds(ax, runs["traj"].step, np.maximum(runs["ident_err"], 1e-18), color="C0",
          label="|CE − H − KL| per trajectory")
    ax.set_yscale("log"); ax.set_xlabel("gradient step"); ax.set_ylabel("absolute error [nats]")
    ax.axhline(tolerance, color="k", ls=":", label=f"threshold {tolerance:g}"); ax.legend()
    return fig


def gap_against_gradient_norm(runs: dict, threshold: float):
    """Left: the KL gap to the family's minimum against the gradient norm, one line per
    trajectory; right: the gap over training per step size (seeds thin, min–max band)."""
    step, grad_norm, gap, fractions = runs["traj"].step, runs["traj"].grad_norm, runs["gap"], runs["fractions"]
    F, cols = len(fractions), colors(len(fractions))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for fi, f in enumerate(fractions):
        for j, m in enumerate(range(fi, gap.shape[1], F)):
            axes[0].loglog(grad_norm[1:, m], np.maximum(gap[1:, m], 1e-16), color=cols[fi], alpha=0.6, lw=1,
                           label=_label(f) if j == 0 else None)
        seeds(axes[1], step, np.maximum(gap[:, fi::F], 1e-16), color=cols[fi], label=_label(f))
    axes[0].set_xlabel("gradient norm ‖∇CE(θ_t)‖"); axes[0].set_ylabel("KL gap to the family minimum [nats]")
    axes[0].invert_xaxis(); axes[0].set_title("gap against gradient norm (time runs left → right)")
    axes[1].set_yscale("log"); axes[1].set_xlabel("gradient step"); axes[1].set_ylabel("KL gap [nats]")
    axes[1].axhline(threshold, color="k", ls=":", label="threshold"); axes[1].legend(loc="lower left")
    axes[1].set_title("gap over training (thin: seeds, band: min–max)")
    fig.tight_layout()
    return fig


def unstable_oscillation(runs: dict, last: int = 40):
    """Left: the gap over the last steps at the unstable step size against the largest
    stable one; right: the gradient norm of both over training."""
    step, grad_norm, gap, fractions = runs["traj"].step, runs["traj"].grad_norm, runs["gap"], runs["fractions"]
    n_stable, F, cols = runs["n_stable"], len(fractions), colors(len(fractions))
    uns, stab = slice(F - 1, None, F), slice(n_stable - 1, None, F)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    w = slice(len(step) - last, len(step))
    for j, col in enumerate(gap[w, uns].T):
        axes[0].plot(step[w], col, "-o", ms=3, color=cols[-1], alpha=0.7, label="seeds" if j == 0 else None)
    for j, col in enumerate(gap[w, stab].T):
        axes[0].plot(step[w], col, "-", color=cols[n_stable - 1], alpha=0.7,
                     label=f"η = {fractions[n_stable - 1]:g} × edge" if j == 0 else None)
    axes[0].set_xlabel(f"gradient step (last {last})"); axes[0].set_ylabel("KL gap [nats]"); axes[0].legend()
    axes[0].set_title(f"η = {fractions[-1]:g} × edge: a persistent oscillation")
    seeds(axes[1], step, grad_norm[:, uns], color=cols[-1], label="unstable")
    seeds(axes[1], step, grad_norm[:, stab], color=cols[n_stable - 1], label="stable")
    axes[1].set_yscale("log"); axes[1].set_xlabel("gradient step"); axes[1].set_ylabel("gradient norm")
    axes[1].legend(); fig.tight_layout()
    return fig


def fits_against_truth(P_true, P_hat, Q_fwd, Q_rev, seed: int):
    """The true chain, one seed's empirical law and the family's forward- and reverse-KL
    minimisers ([C, V] each) side by side, on the true chain's colour scale."""
    panels = {"true p*": P_true, f"empirical p̂_N (seed {seed})": P_hat, "forward-KL minimiser": Q_fwd,
              "reverse-KL minimiser": Q_rev}
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.6))
    for ax, (title, M) in zip(axes, panels.items()):
        heatmap(ax, M, title, float(np.max(P_true)))
    fig.colorbar(axes[-1].collections[0], ax=axes, shrink=0.8, label="p(j | c)")
    return fig


def empirical_against_true(runs: dict, full, rank: int):
    """KL to the sample (the training target) and to the true chain over training, per
    seed: left the rank-r family at its largest stable step size, right the full family
    (`full`: its train.Trajectory, minimiser p̂_N)."""
    F, n = len(runs["fractions"]), runs["n_stable"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, traj, m, title in [(axes[0], runs["traj"], slice(n - 1, None, F),
                                f"rank-{rank} family, {_label(runs['fractions'][n - 1])}"),
                               (axes[1], full, slice(None), "full family (minimiser p̂_N)")]:
        seeds(ax, traj.step, traj["kl_emp"][:, m], color="C0", label="KL(p̂_N ‖ p_θ)  (training target)")
        seeds(ax, traj.step, traj["kl_true"][:, m], color="C3", label="KL(p* ‖ p_θ)  (truth)")
        ax.set_title(title); ax.set_yscale("log")
        ax.set_xlabel("gradient step"); ax.set_ylabel("KL [nats]"); ax.legend()
    fig.tight_layout()
    return fig


def standard_excess(std):
    """C1 under standard training: the excess forward KL share per seed against the learning
    rate, one panel per optimizer, a line per batch size; hollow markers where a run is not at
    plateau (those are left out of the records)."""
    opts = list(dict.fromkeys(std.optimizer))
    fig, axes = plt.subplots(1, len(opts), figsize=(4.2 * len(opts), 3.2), squeeze=False)
    for ax, opt in zip(axes[0], opts):
        g = std[std.optimizer == opt]
        for col, (b, gb) in zip(colors(g.batch.nunique()), g.groupby("batch")):
            mean = gb.groupby("lr")["excess share"].mean()
            ax.plot(mean.index, mean.values, "-", color=col, label=f"{b} sequences / step")
            for flag, face in [(True, col), (False, "none")]:
                q = gb[gb["at plateau"] == flag]
                ax.scatter(q.lr, q["excess share"], s=14, facecolors=face, edgecolors=col, alpha=0.7)
        ax.set(xscale="log", yscale="log", xlabel="learning rate", title=opt,
               ylabel="excess forward KL / reducible loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

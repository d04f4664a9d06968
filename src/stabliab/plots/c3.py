"""Figures of claim C3 (notebook 03); each function draws one figure and returns it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..experiments.c3_task import series
from .style import colors, points_with_interval, seeds


def held_statistic_over_training(runs: dict, corpus: str, arch: str, held: dict[str, str], window):
    """Per design, the statistic it holds on the fixed evaluation batch over training
    against maximum likelihood (grey) with the same seeds, every seed a thin line; shaded:
    the steps the gate looks at (window = (first, last))."""
    ncol = min(4, len(held))
    nrow = -(-len(held) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    for ax, (label, st) in zip(axes.flat, held.items()):
        for lab, col in [("off", "0.55"), (label, colors(2)[1])]:
            steps, y = series(runs[corpus, arch, lab], st)
            seeds(ax, steps, y.T, color=col, label="ML" if lab == "off" else lab)
        ax.axvspan(*window, color="0.9", zorder=-1)
        ax.set_title(f"{label}\n({st})", fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(held):]:
        ax.axis("off")
    fig.suptitle(f"{arch} on {corpus}", y=1.0)
    fig.tight_layout()
    return fig


def effects_by_design(diffs, detail, corpora: list[str], archs: list[str], labels: list[str]):
    """Per corpus, Δ generation entropy and Δ seq-rep-4 (design minus maximum likelihood,
    same seed) per design and family: every seed a dot, the mean with its interval
    (experiments.c3.differences and effects_detail)."""
    fig, axes = plt.subplots(len(corpora), 2, figsize=(13, 3.4 * len(corpora)), squeeze=False)
    cols = dict(zip(archs, colors(len(archs))))
    d = diffs.set_index(["corpus", "family", "design", "outcome"])["diff"]
    iv = detail.set_index(["corpus", "family", "design", "outcome"])
    for i, c in enumerate(corpora):
        for ax, (name, ylabel) in zip(axes[i], [("gen_entropy", "Δ generation entropy [nats/token]"),
                                                ("seq_rep4", "Δ seq-rep-4 (T = 1)")]):
            for j, a in enumerate(archs):
                for k, lab in enumerate(labels):
                    key = (c, a, lab, name)
                    points_with_interval(ax, k + (j - (len(archs) - 1) / 2) * 0.22, d.loc[key].to_numpy(),
                                         (iv.lo[key], iv.hi[key]), color=cols[a], label=a if k == 0 else None,
                                         jitter=0.03)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel(ylabel)
            ax.set_title(c)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def regime_map(points, corpora: list[str], archs: list[str]):
    """Per corpus, each (family, design): stabilisation achieved (x, with interval) against
    Δ generation entropy (y, with interval), colour Δ seq-rep-4, black edge where the
    design passes the gate (experiments.c3.regime_points)."""
    fig, axes = plt.subplots(1, len(corpora), figsize=(6.4 * len(corpora), 4.6), squeeze=False)
    markers = dict(zip(archs, "osD^"))
    vmax = float(np.nanmax(np.abs(points.dRep))) or 1.0
    for ax, c in zip(axes[0], corpora):
        p = points[points.corpus == c]
        ax.errorbar(p.x, p.dH, xerr=[p.x - p.x_lo, p.x_hi - p.x], yerr=[p.dH - p.dH_lo, p.dH_hi - p.dH], fmt="none",
                    ecolor="0.7", lw=0.8, zorder=1)
        for a in archs:
            q = p[p.family == a]
            sc = ax.scatter(q.x, q.dH, c=q.dRep, cmap="coolwarm", vmin=-vmax, vmax=vmax, marker=markers[a], s=55,
                            edgecolors=np.where(q.stabilises, "k", "0.6"), linewidths=np.where(q.stabilises, 1.2, 0.4),
                            label=a, zorder=2)
        for r in p.itertuples():
            ax.annotate(r.design, (r.x, r.dH), fontsize=6.5, xytext=(3, 3), textcoords="offset points", color="0.3")
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("stabilisation achieved  (−log10 variance ratio vs ML)")
        ax.set_ylabel("Δ generation entropy vs ML [nats/token]")
        ax.set_title(c)
        ax.legend(fontsize=8, loc="best")
    fig.colorbar(sc, ax=axes[0].tolist(), label="Δ seq-rep-4 vs ML")
    return fig


def data_ce_over_training(runs: dict, corpus: str, arch: str, labels: list[str], window):
    """The data cross-entropy on the fixed evaluation batch (mean over seeds) over training
    for maximum likelihood and every design; shaded: the acting window (first, last)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for lab, col in zip(["off", *labels], colors(len(labels) + 1)):
        steps, y = series(runs[corpus, arch, lab], "data_ce")
        ax.plot(steps, y.mean(0), color=col, lw=1.2, label=lab)
    ax.axvspan(*window, color="0.92", zorder=-1)
    ax.set_xlabel("AdamW step")
    ax.set_ylabel("data CE, fixed batch [nats/token]")
    ax.set_title(f"{arch} on {corpus} (mean over seeds)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def decisive_arms(arms_runs: dict, corpora: list[str], archs: list[str], settle: float):
    """Per (corpus, family): the held generation entropy (exact, fixed seeds) over the acting
    window under maximum likelihood (grey), the design and the sham, every seed a thin line,
    the gate's settled window shaded; below, the design's and the sham's kappa."""
    fig, axes = plt.subplots(2 * len(corpora), len(archs), figsize=(3.6 * len(archs), 4.6 * len(corpora)),
                             squeeze=False, sharex=True)
    col = dict(zip(["ml", "design", "sham"], ["0.55", *colors(2)]))
    for i, c in enumerate(corpora):
        for j, a in enumerate(archs):
            top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
            for arm in ["ml", "sham", "design"]:
                r = arms_runs[c, a][arm]
                steps, y = series(r, "own_entropy")
                seeds(top, steps, y.T, color=col[arm], label=arm)
                if arm != "ml":
                    k = r["fb_kappa"]
                    ks = np.linspace(steps[0], steps[-1], k.shape[1])
                    seeds(bottom, ks, k.T, color=col[arm], label=arm)
            top.axvspan(steps[0] + settle * (steps[-1] - steps[0]), steps[-1], color="0.92", zorder=-1)
            top.set_title(f"{a} on {c}", fontsize=9)
            top.set_ylabel("generation entropy [nats/token]")
            bottom.set_ylabel("κ (entropy weight)")
            bottom.set_xlabel("training step")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig

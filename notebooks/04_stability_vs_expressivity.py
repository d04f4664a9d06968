# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # C4 · Stability is not expressivity
#
# **Claim C4 (in this book's words).** Across a sweep of training settings,
# measures of optimisation stability do not predict generative quality
# (entropy gap, diversity, coverage): stability alone is an insufficient
# indicator of how well a model reproduces its source.
#
# **The experiment.** A Markov source of order 2 whose every transition is
# possible (so the reverse KL is finite), with exact stationary law and entropy
# rate $H^*$. An MLP whose window is the source's order is trained by AdamW on
# $N$ sequences, all seeds of a configuration at once; a space-filling design
# varies the learning rate (log scale, up to where training becomes erratic),
# batch size, weight decay, label smoothing, gradient clipping, a moving average
# of the weights, warm-up and schedule, and the training-set size. Quality is
# read off the model's full conditional table, exactly.
#
# **Fixed before the run.** The *instability index* of a seed is the mean of
# four standardised logarithms: the detrended standard deviation of the loss on
# a fixed evaluation batch over the last {glue:text}`c4_tail_pct` of training,
# the mean gradient norm there, the sharpness $\eta\,\lambda_{\max}$ (power
# iteration on Hessian-vector products of the fixed-batch loss) and the relative
# parameter drift $\lVert\theta_T-\theta_{T-\Delta}\rVert/\lVert\theta_T\rVert$
# over that window; a configuration adds the seed-to-seed disagreement (mean
# pairwise Jensen–Shannon divergence of the seeds' predictive laws, weighted by
# the stationary law). The standardisation uses the design's own mean and spread.
# The *stability index* is its negative.
#
# **What a verdict means.** `C4.rank[Q]` is Spearman's $\rho$ between the
# stability index and quality measure $Q$ over configurations, with a bootstrap
# interval over configurations, then seeds. It holds (✓) when the whole interval
# lies inside $\pm$ {glue:text}`c4_rank_bound`: stability then accounts for at
# most a small part of the ordering of quality. It fails (✗) when the interval
# reaches beyond the bound: either stability does predict quality (the interval
# lies outside), or the sweep cannot tell. `C4.partial[Q]` is the same given the
# held-out cross-entropy: does stability say anything that the loss does not?
# `C4.stabilisers[NAME]` asks whether each single stabiliser, added to a
# reference configuration with the same seeds, makes training more stable.

# %% tags=["parameters"]
seed = 0  # in [0, 1000000]: first seed; seeds are seed, seed+1, ...
n_seeds = 5  # in [2, 256]: seeds per configuration
n_configs = 32  # in [4, 100000]: configurations of the space-filling design
design = "sobol"  # one of {sobol, lhs}: the space-filling design
design_seed = 0  # in [0, 1000000]: seed of the design
executor = "local"  # one of {local, processes, ray}: where the configurations run
workers = 0  # in [0, 4096]: processes or Ray CPUs (0: one per core)
vocab = 8  # in [3, 64]: tokens of the Markov source
order = 2  # in [1, 3]: its order (and the MLP's window)
alpha = 0.3  # in (0, 100]: Dirichlet concentration of its rows (no zero transitions)
seq_len = 32  # in [4, 4096]: tokens per sequence
steps = 300  # in [10, 10000000]: AdamW steps
d_model = 16  # in [2, 4096]: embedding width
hidden = 32  # in [2, 16384]: hidden units
lr_range = [0.001, 1.0]  # in (0, 10]: learning rates, log scale
batch_range = [8, 128]  # in [1, 65536]: batch sizes, log scale
n_train_range = [16, 1024]  # in [1, 10000000]: training sequences, log scale
weight_decay_max = 0.1  # in [0, 10]: weight decay in [0, this]
label_smoothing_max = 0.2  # in [0, 0.9]: label smoothing in [0, this]
clip_choices = [0.0, 0.1, 1.0]  # in [0, 1000]: gradient-norm clipping (0: none)
ema_choices = [0.0, 0.9, 0.99]  # in [0, 0.9999]: weight moving average (0: none)
warmup_max = 0.3  # in [0, 1]: warm-up share of the steps in [0, this]
tail = 0.25  # in (0, 1): share of the last steps over which stability is measured
tau = 0.01  # in (0, 1): a true transition is covered when the model gives it at least this mass
rank_bound = 0.5  # in (0, 1): C4.rank holds when the interval of rho lies within +-this
n_boot = 2000  # in [100, 1000000]: bootstrap resamples of the rank correlations
reference_lr = 0.03  # in (0, 10]: the reference configuration of the stabiliser study
device = "auto"  # device: auto (the first CUDA device if there is one), cpu, cuda or cuda:N

# %%
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

from stabliab import plots, records, stats, sweep
from stabliab.experiments import c4
from stabliab.device import describe, setup

plots.setup()
dev = setup(device)
seeds = list(range(seed, seed + n_seeds))
report = records.Report("04_stability_vs_expressivity", {k: globals()[k] for k in [
    "seed", "n_seeds", "n_configs", "design", "design_seed", "executor", "workers", "vocab", "order", "alpha",
    "seq_len", "steps", "d_model", "hidden", "lr_range", "batch_range", "n_train_range", "weight_decay_max",
    "label_smoothing_max", "clip_choices", "ema_choices", "warmup_max", "tail", "tau", "rank_bound", "n_boot",
    "reference_lr", "device"]}, seeds)
report.set_device(describe(dev))
report.metric("c4_tail_pct", f"{tail:.0%}")
report.metric("c4_rank_bound", rank_bound)
context = dict(vocab=vocab, order=order, alpha=alpha, seq_len=seq_len, steps=steps, d=d_model, hidden=hidden,
               tail=tail, tau=tau, device=str(dev))

# %% [markdown]
# ## The sweep
#
# {glue:text}`c4_n_configs` configurations × {glue:text}`c4_n_seeds` seeds, run by
# the package's sweep engine (`stabliab.sweep`) with the `executor` parameter:
# in this process, in a process pool, or on Ray (`-p executor ray`; a cluster
# through `RAY_ADDRESS`). Each finished configuration is cached under
# `results/PROFILE/sweeps/` seed by seed, so a rerun with more configurations
# or more seeds computes only the new ones.

# %%
space = {"lr": ("log", *lr_range), "batch": ("int-log", *batch_range), "n_train": ("int-log", *n_train_range),
         "weight_decay": ("lin", 0.0, weight_decay_max), "label_smoothing": ("lin", 0.0, label_smoothing_max),
         "clip": ("choice", clip_choices), "ema": ("choice", ema_choices), "warmup": ("lin", 0.0, warmup_max),
         "schedule": ("choice", ["constant", "cosine"])}
configs = sweep.space_filling(space, n_configs, seed=design_seed, method=design)
reference = dict(lr=reference_lr, batch=32, n_train=256, weight_decay=0.0, label_smoothing=0.0, clip=0.0, ema=0.0,
                 warmup=0.0, schedule="constant")
stabilisers = {"clipping": dict(reference, clip=0.1), "moving average": dict(reference, ema=0.99),
               "warm-up": dict(reference, warmup=0.2), "smaller lr": dict(reference, lr=reference_lr / 10)}
all_configs = configs + [reference] + list(stabilisers.values())
out = sweep.run_sweep(c4.c4_task, all_configs, seeds, sweep.results_dir("04_stability_vs_expressivity"),
                      executor=executor, workers=workers or None, context=context, device=str(dev),
                      desc="C4 configurations")
report.metric("c4_n_configs", n_configs)
report.metric("c4_n_seeds", n_seeds)

# %%
table = c4.c4_table(out[:n_configs], c4.STABILITY, c4.QUALITY)
ok = ~table["diverged"]
inst = c4.instability(table["measures"], table)  # [C, S] per-seed instability index
report.metric("c4_n_diverged", int((~ok).sum()))
report.metric("c4_n_used", int(ok.sum()))
qualities = {"entropy gap |log H_model/H*|": "entropy_gap", "forward KL rate": "forward_kl",
             "reverse KL rate": "reverse_kl", "coverage": "coverage", "distinct-4": "distinct4",
             "over-confidence": "overconfidence"}
cfg_df = pd.DataFrame([{**c, "instability": inst[i].mean(), **{lab: table[q][i].mean() for lab, q in qualities.items()}}
                       for i, c in enumerate(table["configs"])])
cfg_df[ok].sort_values("instability").round(4).head(8)

# %% [markdown]
# {glue:text}`c4_n_used` configurations enter the analysis;
# {glue:text}`c4_n_diverged` produced a non-finite loss and are left out. The
# table shows the most stable ones; below, each quality measure against the
# stability index, one point per configuration (the bar is the spread of the
# quality measure over its seeds).

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
stab = -inst[ok]  # [C', S]
for ax, (lab, q) in zip(axes.ravel(), qualities.items()):
    Y = table[q][ok]
    ax.errorbar(stab.mean(1), Y.mean(1), yerr=[Y.mean(1) - Y.min(1), Y.max(1) - Y.mean(1)], fmt="o", ms=4,
                alpha=0.7, capsize=2)
    ax.set_xlabel("stability index (higher = more stable)")
    ax.set_ylabel(lab + (" [nats/token]" if "KL" in lab or "confidence" in lab else ""))
    if "KL" in lab:
        ax.set_yscale("log")
    ax.set_title(f"ρ = {stats.spearman(stab.mean(1), Y.mean(1)):.2f}")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## The records
#
# For each quality measure, Spearman's $\rho$ with the stability index and the
# partial $\rho$ given the held-out cross-entropy (the forward KL rate is the
# held-out cross-entropy minus a constant, so it has no partial record).

# %%
rows = []
for lab, q in qualities.items():
    Y = table[q][ok]
    v, ci = stats.rank_bootstrap(-inst[ok], Y, n_boot=n_boot, seed=seed)
    c = report.claim(f"C4.rank[{q}]", f"stability index vs {lab}: Spearman ρ over configurations within "
                     f"±{rank_bound:g}", v, ci, (-rank_bound, rank_bound), "within", rule="bootstrap", n=int(ok.sum()))
    row = {"quality": lab, "ρ": v, "ρ 95% CI": records.format_interval(c), "C4.rank": c.verdict}
    if q != "forward_kl":
        vp, cip = stats.rank_bootstrap(-inst[ok], Y, table["heldout_ce"][ok], n_boot=n_boot, seed=seed)
        cp = report.claim(f"C4.partial[{q}]", f"stability index vs {lab} given held-out cross-entropy: partial "
                          f"Spearman ρ within ±{rank_bound:g}", vp, cip, (-rank_bound, rank_bound), "within",
                          rule="bootstrap", n=int(ok.sum()))
        row.update({"partial ρ": vp, "partial 95% CI": records.format_interval(cp), "C4.partial": cp.verdict})
    rows.append(row)
report.glue_table("c4_rank_table", pd.DataFrame(rows).set_index("quality").round(3))
report.metric("c4_rho_ce", stats.spearman(-inst[ok].mean(1), table["heldout_ce"][ok].mean(1)))
rank_recs = [c for c in report.claims if c.id.startswith("C4.rank")]
report.metric("c4_rank_holds", f"{sum(c.holds for c in rank_recs)} of {len(rank_recs)}")
part_recs = [c for c in report.claims if c.id.startswith("C4.partial")]
report.metric("c4_partial_holds", f"{sum(c.holds for c in part_recs)} of {len(part_recs)}")
pd.DataFrame(rows).set_index("quality").round(3)

# %% [markdown]
# {glue:text}`c4_rank_holds` `C4.rank` records and {glue:text}`c4_partial_holds`
# `C4.partial` records hold. The sign of $\rho$ says in which direction stability
# goes with a quality measure where it does predict it: for the entropy gap and
# the KL rates a positive $\rho$ means that *more stable* training ends *further*
# from the source. For comparison, $\rho$ between the stability index and the
# held-out cross-entropy itself is {glue:text}`c4_rho_ce:.2f` (no interval; the
# forward-KL row above is its record).
#
# ## Single stabilisers
#
# The reference configuration (learning rate {glue:text}`c4_reference_lr`,
# batch 32, 256 sequences, nothing else) against the same configuration with one
# stabiliser added, the same seeds: the paired change of each seed's
# instability index (negative: more stable), and what it does to quality.
# Stability is measured on the optimisation trajectory and quality on the model
# that training delivers: the moving average changes only the delivered model,
# so its effect on the index comes through the seeds' disagreement alone, the
# same for every seed (an interval of zero width).

# %%
ref_res = out[n_configs]
st_rows, st_deltas = [], {}
for i, (name, cfg) in enumerate(stabilisers.items()):
    res = out[n_configs + 1 + i]
    a = c4.instability(c4.stability_measures(ref_res["result"], c4.STABILITY), table)
    b = c4.instability(c4.stability_measures(res["result"], c4.STABILITY), table)
    st_deltas[name] = {"instability": b - a, "forward_kl": np.subtract(res["result"]["forward_kl"],
                                                                       ref_res["result"]["forward_kl"])}
    c = report.paired(f"C4.stabilisers[{name}]", f"adding {name} to the reference configuration lowers each "
                      "seed's instability index (paired difference)", b, a, 0.0, "<")
    st_rows.append({"stabiliser": name, "Δ instability": c.value, "95% CI": records.format_interval(c),
                    "verdict": c.verdict,
                    **stats.paired_summary("Δ forward KL", res["result"]["forward_kl"], ref_res["result"]["forward_kl"]),
                    **stats.paired_summary("Δ coverage", res["result"]["coverage"], ref_res["result"]["coverage"]),
                    **stats.paired_summary("Δ H_model/H*", res["result"]["entropy_ratio"],
                                            ref_res["result"]["entropy_ratio"])})
report.metric("c4_reference_lr", reference_lr)
report.glue_table("c4_stabiliser_table", pd.DataFrame(st_rows).set_index("stabiliser").round(4))

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for ax, key, lab in [(axes[0], "instability", "Δ instability index"), (axes[1], "forward_kl", "Δ forward KL [nats/token]")]:
    for i, (name, d) in enumerate(st_deltas.items()):
        lo, hi = stats.mean_interval(d[key])
        ax.errorbar([d[key].mean()], [i], xerr=[[d[key].mean() - lo], [hi - d[key].mean()]], fmt="D", capsize=4,
                    color="C0")
        ax.scatter(d[key], np.full(len(d[key]), i) + 0.15, s=10, color="C0", alpha=0.5)
    ax.axvline(0, color="k", lw=1); ax.set_yticks(range(len(st_deltas)), list(st_deltas))
    ax.set_xlabel(lab + " (dots: seeds; diamond: mean, 95% CI)")
plt.tight_layout(); plt.show()

# %% [markdown]
# Per stabiliser, the paired change of stability and of quality (mean and
# Student-t interval over seeds):
#
# ```{glue:} c4_stabiliser_table
# ```
#
# And the rank records:
#
# ```{glue:} c4_rank_table
# ```
#
# ## Claim records

# %%
report.save()
report.table()

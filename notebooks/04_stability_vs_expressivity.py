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

# %% [markdown]
# **Fixed before the run.** The *instability index* of a seed is the mean of
# four standardised logarithms: the detrended standard deviation of the loss on
# a fixed evaluation batch over the last {glue:text}`c4_tail:.0%` of training,
# the mean gradient norm there, the sharpness $\eta\,\lambda_{\max}$ (power
# iteration on Hessian-vector products of the fixed-batch loss) and the relative
# parameter drift $\lVert\theta_T-\theta_{T-\Delta}\rVert/\lVert\theta_T\rVert$
# over that window; a configuration adds the seed-to-seed disagreement (mean
# pairwise Jensen–Shannon divergence of the seeds' predictive laws, weighted by
# the stationary law). The standardisation uses the design's own mean and spread.
# The *stability index* is its negative.

# %% [markdown]
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
seed = 1000  # in [0, 1000000]: first seed; seeds are seed, seed+1, ... (from 1000 on: confirmatory)
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
tail = 0.25  # in (0, 1): share of the last steps over which stability is measured [pre-registered]
tau = 0.01  # in (0, 1): a true transition is covered when the model gives it at least this mass [pre-registered]
rank_bound = 0.5  # in (0, 1): C4.rank holds when the interval of rho lies within +-this [pre-registered]
n_boot = 2000  # in [100, 1000000]: bootstrap resamples of the rank correlations
reference_lr = 0.03  # in (0, 10]: the reference configuration of the stabiliser study
device = "auto"  # device: auto (the first CUDA device if there is one), cpu, cuda or cuda:N

# %%
import matplotlib.pyplot as plt

from stabliab import plots, records
from stabliab.experiments import c4
from stabliab.device import describe, setup

plots.setup()
dev = setup(device)
seeds = list(range(seed, seed + n_seeds))
report = records.Report.from_notebook("04_stability_vs_expressivity", globals(), seeds)
report.set_device(describe(dev))
c4.record_parameters(report)

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
runs = c4.run_c4(report.parameters, seeds, device=str(dev))
table = c4.c4_table(runs["design"], c4.STABILITY, c4.QUALITY)
inst = c4.instability(table["measures"], table)  # [C, S] per-seed instability index
c4.record_design(report, table, runs["design"])
records.style(c4.config_table(table, inst).head(8), "{:.4g}")

# %% [markdown]
# {glue:text}`c4_n_used` configurations enter the analysis;
# {glue:text}`c4_n_diverged` produced a non-finite loss and are left out. The
# table shows the most stable ones; below, each quality measure against the
# stability index, one point per configuration (the bar is the spread of the
# quality measure over its seeds).
#
# **Stationarity.** Every run's loss on the fixed batch, tested by the book's
# plateau rule (`stabliab.plateau`, as in notebook 02): `C4.plateau`, the share
# of runs at plateau, is **{glue:text}`c4_plateau_verdict`**
# ({glue:text}`c4_plateau_value:.0%`; median slope over the last window
# {glue:text}`c4_plateau_median_slope:+.3f` nats per 1000 steps). The records
# below do not yet count only runs at plateau, and a cosine schedule flattens
# the loss by stopping the steps, not by reaching a stationary point: C4 at
# matched training progress is the C4 issue's.

# %% tags=["hide-input"]
plots.c4.quality_against_stability(table, inst, c4.QUALITY_LABELS)
plt.show()

# %% [markdown]
# ## The records
#
# For each quality measure, Spearman's $\rho$ with the stability index and the
# partial $\rho$ given the held-out cross-entropy (the forward KL rate is the
# held-out cross-entropy minus a constant, so it has no partial record).

# %%
rank_table, partial_table = c4.rank_records(report, table, inst)
report.glue_table("c4_rank_table", rank_table, fmt="{:.3f}")
report.glue_table("c4_partial_table", partial_table, fmt="{:.3f}")
records.style(rank_table, "{:.3f}")

# %% [markdown]
# {glue:text}`c4_rank_holds` of {glue:text}`c4_rank_count` `C4.rank` records and {glue:text}`c4_partial_holds` of {glue:text}`c4_partial_count`
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
# batch {glue:text}`c4_reference_batch`, {glue:text}`c4_reference_n_train` sequences, nothing else) against the same configuration with one
# stabiliser added, the same seeds: the paired change of each seed's
# instability index (negative: more stable), and what it does to quality.
# Stability is measured on the optimisation trajectory and quality on the model
# that training delivers: the moving average changes only the delivered model,
# so its effect on the index comes through the seeds' disagreement alone, the
# same for every seed (an interval of zero width).

# %%
stabiliser_table, deltas = c4.stabiliser_records(report, runs, table)
report.glue_table("c4_stabiliser_table", stabiliser_table, bold=c4.STABILISER_BOLD)

# %% tags=["hide-input"]
plots.c4.stabiliser_effects(deltas)
plt.show()

# %% [markdown]
# Per stabiliser, the paired change of stability and of quality (mean and
# Student-t interval over seeds; in bold where the interval excludes 0):
#
# ```{glue:} c4_stabiliser_table
# ```
#
# And the rank records, then the partial ones:
#
# ```{glue:} c4_rank_table
# ```
#
# ```{glue:} c4_partial_table
# ```
#
# ## Claim records

# %%
report.save()
records.style(report.table())

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
# # C4 · Stability is not expressivity, at matched training progress
#
# **Claim C4 (the abstract's words).** "Optimization stability and generative
# expressivity are not inherently aligned, and stability alone is an insufficient
# indicator of generative quality." The book tests two readings, each
# pre-registered: **(a) insufficiency** (one-sided): measures of optimisation
# stability do not predict *better* generative quality; **(b) liability**
# (signed): more stable training ends with *less* entropy than the source. And a
# third question: does stability say anything about quality that the held-out
# loss does not?
#
# **The experiment.** Two Markov sources of order 2 with exact stationary law and
# entropy rate $H^*$: a *dense* one (every transition possible) and a *sparse* one
# (most transitions impossible, so a small sample leaves many possible ones unseen
# and empirical modes matter). An MLP whose window is the source's order is trained
# by AdamW on $N$ sequences, all seeds of a configuration at once; a space-filling
# design varies the learning rate (log scale, from under-training to divergence),
# batch size, weight decay, label smoothing, gradient clipping, a moving average of
# the weights, warm-up and the training-set size. Quality is read off the model's
# full conditional table, exactly.

# %% [markdown]
# **Matched training progress: a stationary point of the training loss.** Every
# seed trains until its loss on a fixed batch of its own training sequences reaches
# its plateau: from {glue:text}`c4_min_steps` steps on, the book's plateau rule
# (`stabliab.plateau`, as in notebooks 02 and 03: the slope over the last quarter of
# the run within its tolerance, no large fluctuation) is asked at every evaluation;
# a seed at plateau is done, and so is one *oscillating* in place (it will not
# settle); at most {glue:text}`c4_max_steps` steps. A configuration is *used* when
# every seed reached its plateau; *diverged* ones (a non-finite loss, or a training
# loss over the last window above $\log V$, the uniform prediction's), oscillating
# and unfinished ones are counted as regions of the design, never dropped silently:
# the models compared are the stationary solutions the paper's argument is about. The
# gradient norm is measured (in the index), not tested (as in notebook 02).
#
# **Fixed before the run.** The *instability index* of a seed is the mean of five
# standardised logarithms: the detrended standard deviation of the fixed-batch loss
# over the last {glue:text}`c4_tail:.0%` of its run, the mean gradient norm there,
# the sharpness $\eta\,\lambda_{\max}$ (power iteration on Hessian-vector products),
# the relative parameter drift over that window, and the configuration's seed
# disagreement (mean pairwise Jensen–Shannon divergence of the seeds' predictive
# laws: one number per configuration). The *stability index* is its negative.
# Quality, oriented so that higher is better: the forward KL rate (negated), the
# coverage of true transitions, distinct-4 of generations, and calibration
# $-|\text{over-confidence}|$, where over-confidence is held-out cross-entropy minus
# teacher-forced entropy ($> 0$: surer than the loss warrants). The signed endpoint
# of (b) is $\log H_\text{model}/H^*$ ($< 0$: less entropy than the source).

# %% [markdown]
# **Chosen on development seeds (0–4), before the confirmatory run, and named
# here:** the learning-rate range ends at 3 (a pilot up to 30 showed divergence,
# a loss above $\log V$, from about 1 on: the range reaches it without spending
# the budget there); `min_steps` and the numbers of configurations and seeds fit
# the budget; `C4.beyond` regresses on ranks (of the loss and of the index alone):
# with raw values and all five measures, held-out edge configurations gave −24 to +3.
# A first version stopped on fresh source sequences once their loss stopped
# falling (early stopping: most runs were not at a stationary point): replaced.
#
# **What a verdict means.** `C4.insufficient[Q]`: Spearman's $\rho$ between the
# stability index and $Q$ over configurations (bootstrap over configurations, then
# seeds), supported when the whole interval lies below
# {glue:text}`c4_rank_bound`, contradicted when it lies at or above it (stability
# does predict better quality). `C4.liability`: supported when the interval of
# $\rho(\text{stability}, \log H_\text{model}/H^*)$ lies below 0, contradicted
# when above. Each also *given* the log learning rate and *given* the held-out loss
# (partial $\rho$), each per source and aggregated over sources (every source must
# agree). `C4.beyond[Q]`: the gain in cross-validated $R^2$ from adding the
# instability index to the held-out loss (scikit-learn folds by configuration), supported
# when its interval lies below {glue:text}`c4_r2_floor`.

# %% tags=["parameters"]
seed = 1000  # in [0, 1000000]: first seed; seeds are seed, seed+1, ... (from 1000 on: confirmatory)
n_seeds = 4  # in [2, 256]: seeds per configuration
n_configs = 16  # in [5, 100000]: configurations of the space-filling design, per source
design = "sobol"  # one of {sobol, lhs}: the space-filling design
design_seed = 0  # in [0, 1000000]: seed of the design
executor = "processes"  # one of {local, processes, ray}: where the configurations run
workers = 0  # in [0, 4096]: processes or Ray CPUs (0: one per core)
sources = ["dense", "sparse"]  # one of {dense, sparse}: the Markov sources
vocab = 8  # in [3, 64]: tokens of the Markov sources
order = 2  # in [1, 3]: their order (and the MLP's window)
alpha = 0.3  # in (0, 100]: Dirichlet concentration of their rows
seq_len = 32  # in [4, 4096]: tokens per sequence
min_steps = 320  # in [16, 10000000]: AdamW steps before the stopping rule is asked [pre-registered]
max_steps = 3000  # in [16, 10000000]: AdamW steps at most [pre-registered]
d_model = 16  # in [2, 4096]: embedding width
hidden = 32  # in [2, 16384]: hidden units
lr_range = [0.001, 3.0]  # in (0, 100]: learning rates, log scale
batch_range = [8, 128]  # in [1, 65536]: batch sizes, log scale
n_train_range = [16, 1024]  # in [1, 10000000]: training sequences, log scale
weight_decay_max = 0.1  # in [0, 10]: weight decay in [0, this]
label_smoothing_max = 0.2  # in [0, 0.9]: label smoothing in [0, this]
clip_choices = [0.0, 0.1, 1.0]  # in [0, 1000]: gradient-norm clipping (0: none)
ema_choices = [0.0, 0.9, 0.99]  # in [0, 0.9999]: weight moving average (0: none)
warmup_max = 0.5  # in [0, 1]: warm-up over a share of min_steps in [0, this]
tail = 0.25  # in (0, 1): share of the last steps over which stability is measured [pre-registered]
tau = 0.01  # in (0, 1): a true transition is covered when the model gives it at least this mass [pre-registered]
rank_bound = 0.5  # in (0, 1): C4.insufficient holds when the interval of rho lies below this [pre-registered]
r2_floor = 0.05  # in (0, 1): C4.beyond holds when the interval of the R^2 gain lies below this [pre-registered]
n_boot = 2000  # in [100, 1000000]: bootstrap resamples of the rank correlations
n_boot_cv = 200  # in [20, 1000000]: bootstrap resamples of the R^2 gains
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
# {glue:text}`c4_n_configs` configurations per source × {glue:text}`c4_n_seeds`
# seeds, run by the sweep engine (`stabliab.sweep`; `-p executor ray` for Ray), each
# configuration cached under `results/PROFILE/sweeps/` seed by seed (a seed's stop
# depends on its own losses only, so it trains the same alone or with others).

# %%
runs = c4.run_c4(report.parameters, seeds, device=str(dev))
tables = {s: c4.c4_table(runs["design"][s]) for s in sources}
c4.record_design(report, tables)
shown = ["lr", "batch", "n_train", "weight_decay", "steps", "instability", c4.ENTROPY, *c4.ORIENTED]  # display only
records.style(c4.config_table(tables[sources[0]], c4.instability(tables[sources[0]]))[shown].head(8), "{:.3g}")

# %% [markdown]
# The most stable configurations of the first source, above. Dense source:
# {glue:text}`c4_dense_n_used` configurations used (learning rates
# {glue:text}`c4_dense_min_used_lr:.3g` to {glue:text}`c4_dense_max_used_lr:.3g`;
# median steps {glue:text}`c4_dense_median_steps:.0f`),
# {glue:text}`c4_dense_n_diverged` diverged (the smallest such learning rate:
# {glue:text}`c4_dense_min_diverged_lr:.3g`), {glue:text}`c4_dense_n_oscillating`
# oscillating, {glue:text}`c4_dense_n_unfinished` unfinished. Sparse source:
# {glue:text}`c4_sparse_n_used` used ({glue:text}`c4_sparse_min_used_lr:.3g` to
# {glue:text}`c4_sparse_max_used_lr:.3g`; median steps
# {glue:text}`c4_sparse_median_steps:.0f`), {glue:text}`c4_sparse_n_diverged`
# diverged (from {glue:text}`c4_sparse_min_diverged_lr:.3g`),
# {glue:text}`c4_sparse_n_oscillating` oscillating,
# {glue:text}`c4_sparse_n_unfinished` unfinished. `C4.plateau[dense]`, the share of
# non-diverged runs at plateau, is **{glue:text}`c4_plateau_dense_verdict`**
# ({glue:text}`c4_plateau_dense_value:.0%`), `C4.plateau[sparse]`
# **{glue:text}`c4_plateau_sparse_verdict`**
# ({glue:text}`c4_plateau_sparse_value:.0%`). Every run by where it ended:

# %%
records.style(c4.state_table(tables), "{:.3g}")

# %% [markdown]
# **Is stability measured, or is it the learning rate?** Spearman's $\rho$ of each
# component of the index, and of the index, with each log-scale factor of the
# design (used configurations). The index of the dense source
# {glue:text}`c4_dense_mostly_lr` mostly the learning rate ($\rho$ =
# {glue:text}`c4_dense_rho_index_lr:.2f`; "mostly" means $|\rho| \ge$
# {glue:text}`c4_mostly`, a value set after the C4 issue had reported $\rho = -0.77$
# for the earlier design), that of the sparse source
# {glue:text}`c4_sparse_mostly_lr` ($\rho$ = {glue:text}`c4_sparse_rho_index_lr:.2f`).
# The sharpness $\eta\lambda_{\max}$ carries the learning rate by construction;
# hence the records given the learning rate.

# %%
records.style(c4.summary(report, tables), "{:.2f}")

# %% tags=["hide-input"]
plots.c4.quality_against_stability(c4.figure_data(tables))
plt.show()

# %% [markdown]
# ## The records
#
# Every rank record aggregated over sources (the least favourable source's
# interval); the per-source records are on the claims page:

# %%
rank_table = c4.rank_records(report, tables)
report.glue_table("c4_rank_table", rank_table, fmt="{:.3f}")
records.style(rank_table.xs("all", level="source"), "{:.3f}")

# %% [markdown]
# **Prediction beyond the loss.** For each quality measure (the forward KL is the
# loss minus a constant, so it has none), the cross-validated $R^2$ of a ridge
# regression of each seed's quality on the held-out cross-entropy and its square,
# with and without the instability index (five folds hold out whole configurations;
# bootstrap over configurations; the loss and the index enter as ranks). With tens
# of configurations the interval is wide; the paper profile has many more. This
# record asks more than the abstract ("stability *alone* is an insufficient
# indicator" does not say that stability adds nothing beyond the loss): read it as
# the book's further question.

# %%
beyond_table = c4.beyond_records(report, tables)
records.style(beyond_table, "{:.3f}")

# %% [markdown]
# ## Single stabilisers
#
# The reference configuration (learning rate {glue:text}`c4_reference_lr`, batch
# {glue:text}`c4_reference_batch`, {glue:text}`c4_reference_n_train` sequences of
# the first source, nothing else) against the same configuration with one
# stabiliser added, the same seeds, each trained to its own stop: the paired change
# of each seed's instability index from its four per-seed measures (negative: more
# stable), and of every quality measure. The seed disagreement is one number per
# configuration: its change has no interval. Only seeds at plateau in both runs are
# paired (n in the table). The moving average changes only the delivered model, not
# the trajectory the index measures (its trajectory is the reference's, bit for
# bit): its stability record is not applicable (untestable); its quality changes
# are shown. Its average starts at the initial weights, a small share of which
# ($0.99^T$) is still in it at the end.

# %%
stabiliser_table, deltas = c4.stabiliser_records(report, runs, tables[sources[0]])
report.glue_table("c4_stabiliser_table", stabiliser_table.drop(columns=[c for c in stabiliser_table if c.endswith(
    (" lo", " hi"))]), bold=c4.STABILISER_BOLD)  # display: the intervals stay in stabiliser_table

# %% tags=["hide-input"]
plots.c4.stabiliser_effects(deltas)
plt.show()

# %% [markdown]
# Per stabiliser, the paired change of stability and of quality (mean over seeds; in
# bold where its Student-t interval, kept in the results file, excludes 0):
#
# ```{glue:} c4_stabiliser_table
# ```
#
# ## Claim records

# %%
report.save()
records.style(report.table())

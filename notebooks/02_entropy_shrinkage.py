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
# # C2 · Entropy shrinkage and mode concentration
#
# **Claim C2 (in this book's words).** A model trained by maximum likelihood to stationarity, in a family *flexible
# enough to fit the empirical distribution* $\hat p_N$, has a lower generative entropy than the true source. The reason
# is C1: at stationarity it fits $\hat p_N$, and the entropy of $\hat p_N$ is biased low, by about $\sum_c (K_c-1)/(2n)$
# nats per token ($K_c$ possible next tokens in context $c$, $n$ observed transitions; Miller–Madow {cite}`miller1955`),
# as a finite sample never shows the source's full support. Mass then concentrates on what the sample happened to
# contain.
#
# The boundaries are part of the claim. A *constrained* (log-linear) family fitted by maximum likelihood is the
# maximum-entropy law of the sample's moments, so its entropy is at least $H(\hat p_N)$ (notebook 01, record
# `C1.maxent`); a model stopped early and sampled at temperature 1 can be over-dispersed; and a model with a longer
# context than the source can go below $H(\hat p_N)$ by memorising the sample, which is a different mechanism. Parts
# (a)–(d) measure the claim's routes, part (e) where it does **not** hold.
#
# The generative entropy rate of a neural model is estimated from its own samples at temperature 1: the mean of
# $-\log p_\theta(x_t\mid x_{<t})$ over the positions $t\ge 2$ of sequences it generated (position 1 is drawn from the
# stationary law, whose entropy exceeds the rate). For the source it is exactly the entropy rate $H^*$.

# %% tags=["parameters"]
seed = 0  # in [0, 1000000]: first seed; seeds are seed, seed+1, ...
n_seeds = 5  # in [1, 256]: independent replicates (training sample and initialisation)
vocab = 12  # in [3, 256]: tokens V of the Markov source
order = 1  # in [1, 3]: Markov order of the source
sparsity = 0.5  # in [0, 0.95]: share of zero transitions in the true chain
dirichlet_alpha = 0.5  # in (0, 100]: concentration of the Dirichlet rows
source_seed = 0  # in [0, 1000000]: seed of the true chain
seq_len = 32  # in [4, 4096]: tokens per training sequence
archs = ["mlp", "gru", "transformer"]  # one of {mlp, gru, lstm, transformer}: families to train
n_values = [32, 256, 4096]  # in [1, 10000000]: training-set sizes N (sequences); the smallest is the C2 regime
steps = 800  # in [1, 10000000]: AdamW steps
lr = 0.003  # in (0, 1]: AdamW learning rate
batch_size = 32  # in [1, 65536]: sequences per step
d_model = 32  # in [4, 4096]: embedding width
hidden = 64  # in [4, 16384]: hidden units (MLP, GRU, LSTM)
layers = 2  # in [1, 64]: Transformer blocks
heads = 2  # in [1, 64]: attention heads
mlp_context = 3  # in [1, 64]: tokens seen by the MLP n-gram model
n_evals = 16  # in [2, 100000]: evaluations of held-out loss and generation statistics (geometrically spaced)
n_gen = 256  # in [8, 1000000]: sequences sampled per seed for the final entropy estimate
n_heldout = 128  # in [8, 1000000]: held-out sequences per seed
bias_reps = 200  # in [2, 100000]: Monte Carlo repetitions of the plug-in estimate in (a)
n_modes = 64  # in [2, 100000]: modes of the Zipf mixture
mode_len = 8  # in [2, 256]: tokens per mode
zipf_exponent = 1.1  # in (0, 10]: mode weights proportional to rank^(-s)
n_mode_samples = 100  # in [1, 10000000]: training sequences drawn from the mixture
mode_steps = 600  # in [1, 10000000]: AdamW steps on the mixture
top_m = 5  # in [1, 100000]: the sample's most frequent modes whose share is compared in (d)
ratio_threshold = 1.0  # in (0, 10]: C2 holds when H_model / H_true stays below this
mechanism_steps = 1500  # in [1, 10000000]: AdamW steps of the order-matched model in (b)
mechanism_lr = 0.01  # in (0, 1]: its learning rate
mechanism_batch = 128  # in [1, 65536]: its sequences per step
mechanism_tol = 0.05  # in (0, 1): (b) holds when H_model / H(p_hat) lies within 1 +- this
mm_tol = 0.25  # in (0, 1): (b) holds when measured deficit / Miller-Madow lies within 1 +- this
device = "auto"  # device: auto (the first CUDA device if there is one), cpu, cuda or cuda:N
precision = "fp32"  # one of {fp32, bf16}: bf16 autocast for the neural models; cross-entropy and entropies in fp32

# %%
import matplotlib.pyplot as plt
from stabliab import plots, records
from stabliab.device import describe, setup
from stabliab.experiments import c2

plots.setup()
dev = setup(device, precision)
report = records.Report.from_notebook("02_entropy_shrinkage", globals(), range(seed, seed + n_seeds))
report.set_device(describe(dev, precision))
env = dict(device=dev, arch_kw=report.call(c2.architecture))  # what the tasks get besides the parameters
src = report.call(c2.markov_source)
c2.glue_parameters(report, src)

# %% [markdown]
# ## (a) The plug-in entropy is biased low
# For $n$ observed transitions, $\mathbb E[H(\hat p_N)] \le H^*$ (the entropy is concave, Jensen). The leading term of
# the bias is Miller–Madow's: context $c$ is visited $n_c\approx n\pi_c$ times and has $K_c$ possible next tokens, its
# plug-in entropy is low by about $(K_c-1)/(2n_c)$, and weighting by $\pi_c$,
#
# $$\mathbb E[H(\hat p_N)] - H^* \;\approx\; -\sum_c \pi_c\frac{K_c-1}{2 n_c} \;=\; -\frac{\sum_c (K_c-1)}{2n}.$$
#
# The expansion is asymptotic in $n_c\,p(j\mid c)$: it needs every possible transition to be expected several times, and
# says nothing when most contexts are seen about once. We measure the left side by Monte Carlo
# ({glue:text}`c2_bias_reps` samples per $N$) and draw the right side over it.

# %%
bias = report.call(c2.plugin_bias, src)
c2.plugin_bias_records(report, bias)
plots.c2.plugin_deficit(bias); plt.show()
records.style(bias, "{:.5g}")

# %% [markdown]
# With {glue:text}`c2_bias_small_N` sequences the empirical entropy falls {glue:text}`c2_bias_small_n:.3f` nats short of
# the truth. Over the larger half of the grid the measurement and the Miller–Madow prediction differ by at most
# {glue:text}`c2_mm_max_z:.1f` standard errors. At the smallest $N$, where contexts are seen a handful of times, the
# asymptotic formula predicts a deficit of {glue:text}`c2_mm_small_n:.3f` nats against the measured
# {glue:text}`c2_bias_small_n:.3f`: the leading term is not the whole story there. As $N\to\infty$ the bias vanishes
# like $1/N$: that is the regime where C2 has nothing to act on.
#
# ## (b) The mechanism: a model that can reach $\hat p_N$
# At the smallest size, $N$ = {glue:text}`c2_N_small` sequences, two records test the mechanism's two links separately.
#
# 1. **Sample to entropy deficit.** Over {glue:text}`c2_bias_reps` fresh samples of that size, the deficit
#    $H^* - H(\hat p_N)$ divided by the Miller–Madow prediction $\sum_c (K_c-1)/(2n)$; `C2.plugin` holds when the
#    deficit is positive and `C2.mechanism.miller_madow` when the ratio lies within $1\pm$ {glue:text}`c2_mm_tol` (both
#    Student-t intervals over the Monte Carlo samples).
# 2. **Fit to sample.** An MLP whose window is exactly the source's order (so it sees what the chain conditions on, and
#    nothing more) is trained by AdamW without weight decay for {glue:text}`c2_mechanism_steps` steps on each seed's
#    sample. Its conditional table $p_\theta(\cdot\mid c)$ is read off exactly, and its entropy, weighted by the
#    sample's context frequencies, is compared with $H(\hat p_N)$: `C2.mechanism[mlp]` holds when the ratio lies within
#    $1\pm$ {glue:text}`c2_mechanism_tol` (Student-t over seeds). The minibatches make the iterates wander
#    (constant-step AdamW does not converge exactly) and the probabilities of unseen transitions only tend to zero, so
#    the fit can only approach $\hat p_N$.

# %%
deficit = report.call(c2.plugin_deficit, src)
c2.plugin_records(report, src, deficit)
fit = report.call(c2.order_matched_fit, src, **env)
c2.mechanism_records(report, src, fit)
records.style(c2.mechanism_table(src, fit, report.seeds), "{:.4g}")

# %% [markdown]
# The Monte Carlo deficit at $N$ = {glue:text}`c2_N_small` is {glue:text}`c2_plugin_value:.4f` nats against a
# Miller–Madow prediction of {glue:text}`c2_mm_pred_N0:.4f`: ratio {glue:text}`c2_mechanism_miller_madow_value:.2f`
# [{glue:text}`c2_mechanism_miller_madow_lo:.2f`, {glue:text}`c2_mechanism_miller_madow_hi:.2f`],
# **{glue:text}`c2_mechanism_miller_madow_verdict`**. The order-matched MLP ends at {glue:text}`c2_mech_ratio:.3f` ×
# $H(\hat p_N)$ and {glue:text}`c2_mech_ratio_true:.3f` × $H^*$, with a forward KL to the sample of
# {glue:text}`c2_mech_kl:.1e` nats (means over seeds): `C2.mechanism[mlp]` **{glue:text}`c2_mechanism_mlp_verdict`**.
# The deficit is a property of the average sample: over the Monte Carlo samples its standard deviation is
# {glue:text}`c2_deficit_sd:.4f` nats, and {glue:text}`c2_deficit_neg:.0%` of samples have $H(\hat p_N) > H^*$, so a
# model that fits one particular sample can be above the truth (the per-seed column $H^* - H(\hat p_N)$ above).
#
# ## (c) Families with longer contexts: shrinkage by memorisation
# Each family is trained with AdamW, all seeds at once, on $N$ sequences of length {glue:text}`c2_seq_len`; at
# {glue:text}`c2_n_evals` steps, spaced geometrically (dense early), we log the held-out loss (on fresh sequences from
# the source) and the generative entropy rate. These families see more than the source's order (the MLP
# {glue:text}`c2_mlp_context` tokens, the GRU and Transformer the whole prefix), so they can fit the empirical law of
# longer blocks and, at small $N$, the training sequences themselves.
#
# How to read the first figure: a held-out loss that turns up while the training loss still falls marks the point where
# the model starts fitting the sample rather than the source; a generative entropy below $H(\hat p_N)$ (dashed) means
# the model fits more than the sample's transition statistics. The second figure shows the final entropy against $N$.

# %%
heldout = report.call(c2.heldout_sequences, src, **env)
runs = report.call(c2.train_families, src, heldout, **env)
plots.c2.training_curves(runs, archs, min(n_values), src.entropy_rate); plt.show()
final = c2.final_table(src, runs, report.seeds)
plots.c2.final_entropy_ratio(final, archs, n_values); plt.show()
c2.memorise_records(report, src, runs)
report.glue_table("c2_precision_table", report.call(c2.precision_table, src, runs, heldout))
records.style(final.groupby(["arch", "N"]).mean(numeric_only=True).drop(columns="seed"))

# %% [markdown]
# Means over seeds (the intervals are on the claims page, records `C2.memorise[…]` and `C2.largeN[…]`); for comparison
# the empirical distribution itself is at {glue:text}`c2_hhat_ratio_small:.2f` × $H^*$ at $N$ = {glue:text}`c2_N_small`:
#
# ```{glue:} c2_memorise_table
# ```
#
# Where a family's ratio at $N$ = {glue:text}`c2_N_small` lies far below $H(\hat p_N)/H^*$, with a training loss far
# below $H^*$ and a large KL rate to the source, the family has memorised its training sequences: its entropy is low
# because it reproduces the sample, not because it fits the sample's transition statistics. Such a ✓ supports "maximum
# likelihood shrinks entropy", not the Miller–Madow mechanism of part (b).
#
# **Precision.** The same trained models evaluated with bf16 autocast instead of fp32 (the `precision` parameter; the
# cross-entropy and the entropies are always accumulated in fp32): the absolute change of each reported quantity,
# largest over seeds, at $N$ = {glue:text}`c2_N_small`. Training itself in bf16 also changes the trajectory, which this
# table does not show; the notebook was run in {glue:text}`c2_precision` here. Samples drawn in bf16 follow the fp32
# samples until the first token whose cumulative probability lands on the other side of the shared uniform, and diverge
# from there; the entropy estimates move by the amounts in the table:
#
# ```{glue:} c2_precision_table
# ```
#
# ## (d) Mode concentration
# A Zipfian mixture of {glue:text}`c2_n_modes` modes, each a fixed sequence of {glue:text}`c2_mode_len` tokens with
# weight $\propto \text{rank}^{-s}$. Its entropy is exactly $H(w)$ nats per sequence. A sample of
# {glue:text}`c2_n_mode_samples` sequences contains only some modes; we train each family on it and measure the exact
# probability the model gives to every mode sequence.
#
# "Mass concentrates on a limited subset of the empirical modes" is tested against the sample itself: if the model
# concentrates, it gives the sample's {glue:text}`c2_top_m` most frequent modes *more* mass than their share of the
# sample (record `C2.modes[…]`, paired over seeds), and its per-sequence entropy is below the source's $H(w)$ (record
# `C2.modes_entropy[…]`). That a model gives almost no mass to modes missing from the sample is true of any estimator
# without a prior, so it is shown in the table but is not evidence.

# %%
zipf = report.call(c2.zipf_source)
modes, mass = report.call(c2.mode_concentration, zipf, **env)
c2.modes_records(report, modes)
plots.c2.mode_mass(mass, archs); plt.show()

# %% [markdown]
# Means over seeds, per family:
#
# ```{glue:} c2_modes_table
# ```
#
# The records: `C2.modes` **{glue:text}`c2_modes_verdict`** (least favourable family {glue:text}`c2_modes_value:+.3f`,
# interval [{glue:text}`c2_modes_lo:+.3f`, {glue:text}`c2_modes_hi:+.3f`]) and `C2.modes_entropy`
# **{glue:text}`c2_modes_entropy_verdict`** (least favourable {glue:text}`c2_modes_entropy_value:.3f`, interval
# [{glue:text}`c2_modes_entropy_lo:.3f`, {glue:text}`c2_modes_entropy_hi:.3f`]). The modes missing from the sample carry
# {glue:text}`c2_unseen_true_mass:.1%` of the true mass and get {glue:text}`c2_unseen_model_mass:.2%` of the models'
# mass.
#
# How to read the rest of the table: a model that copies the sample's mode frequencies has "model mass on the sample's
# top modes" equal to their sample share; concentration means more. The per-sequence entropy against $H(w)$ weighs two
# effects in opposite directions: the missing modes lower it, while the sample's own mode frequencies, which the model
# copies, are noisy (most of the Zipf tail is observed once or twice) and can spread mass more evenly than the truth. A
# family that sees only a few tokens (the MLP) cannot tell modes apart and splices them: few of its samples are modes.
#
# ## (e) Where C2 does not hold
# **Early stopping.** The claim is about *stationary* models. Practitioners stop at the minimum of the held-out loss;
# there, sampled at temperature 1, a model is still spread out: its entropy is *above* the truth. We read each seed's
# generative entropy at the evaluation step with the lowest held-out loss. Per family, the step of the held-out minimum,
# the entropy ratio there with its 95% interval and whether `C2.early[…]` holds, and the ratio at the end:
#
# ```{glue:} c2_early_table
# ```
#
# Wherever the interval lies above 1 the early-stopped model is **over-dispersed**; wherever it reaches 1, C2 is not
# supported for it. A ✗ in the `C2.early[…]` rows is that measurement. Shrinkage is a property of the *converged* fit.
#
# **Constrained families.** Notebook 01's record `C1.maxent` measures the opposite of shrinkage in a log-linear family
# fitted to stationarity: its entropy is above $H(\hat p_N)$ (and there above $H^*$), as the maximum-entropy theorem
# requires.
#
# **Large $N$.** The `C2.largeN[…]` rows show whether the neural models, with the same training budget, still end below
# the truth at $N$ = {glue:text}`c2_N_large`, where part (a)'s bias has nearly vanished. Where their interval reaches 1,
# C2 is not supported.
#
# ## Claim records

# %%
early = report.call(c2.early_stopping, src, runs)
c2.early_records(report, early)
report.save()
records.style(report.table())

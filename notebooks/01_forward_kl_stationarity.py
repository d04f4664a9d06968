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
# # C1 · Forward-KL stationarity
#
# **Claim C1 (in this book's words).** Along the whole trajectory of maximum-likelihood training the training
# cross-entropy decomposes as $\mathrm{CE}(\theta) = H(\hat p_N) + \mathrm{KL}(\hat p_N \| p_\theta)$, so the only part
# of the loss that training can move is the forward KL to the **empirical** distribution. Hence, *if* the objective is
# pure cross-entropy (no weight decay, label smoothing or dropout, which move the stationary point), the iterates
# converge (full-batch gradient descent below the stability edge; constant-step minibatch AdamW does not converge), and
# a minimiser exists (a log-linear maximum-likelihood estimate can lie at infinity), the trajectory settles at a
# stationary point of the forward KL; it is the family's forward-KL minimiser when the problem is convex, as it is here.
# Past the stability edge ($\eta > 2/\lambda_{\max}$) it almost surely does not settle there. Proofs and conditions: the
# [theory page](../theory.md). Parts (a)–(d) measure each statement on a source of exact ground truth in a convex,
# misspecified family; part (e) under standard (minibatch AdamW and SGD) training of a neural model.

# %% tags=["parameters"]
seed = 1000  # in [0, 1000000]: first seed; seeds are seed, seed+1, ... (from 1000 on: confirmatory)
n_seeds = 5  # in [1, 256]: independent replicates (sample of data and initialisation)
vocab = 12  # in [3, 256]: tokens V of the Markov source
order = 1  # in [1, 3]: Markov order k (V^k contexts)
sparsity = 0.5  # in [0, 0.95]: share of transitions set to zero in the true chain
dirichlet_alpha = 0.5  # in (0, 100]: concentration of the Dirichlet rows
source_seed = 0  # in [0, 1000000]: seed of the true chain (fixed across replicates)
n_sequences = 40  # in [1, 1000000]: N training sequences per replicate
seq_len = 50  # in [4, 100000]: tokens per sequence
rank = 3  # in [1, 255]: rank r of the log-linear family (r < V)
lr_fractions = [0.25, 0.5, 0.9]  # in (0, 1): stable step sizes, as fractions of the edge 2/lambda_max
unstable_fraction = 1.2  # in (1, 100]: step size past the edge, same units
steps = 3000  # in [10, 10000000]: full-batch gradient-descent steps
lbfgs_starts = 8  # in [1, 1000]: random starts of the independent L-BFGS minimisation
lbfgs_iters = 2000  # in [10, 1000000]: L-BFGS iterations per restart (five restarts) of each fit, at most
gap_threshold = 1e-4  # in (0, 1]: nats; a trajectory has settled when its KL gap is below this [pre-registered]
tail = 0.1  # in (0, 1): share of final steps over which the unstable gap is averaged [pre-registered]
reverse_eps = 0.01  # in (0, 1]: additive smoothing of p_hat for the reverse KL
keep_tau = 0.01  # in (0, 1): a transition is kept when the model gives it at least this mass
std_steps = 3000  # in [10, 10000000]: steps of the MLP under standard training, part (e)
adamw_lrs = [0.001, 0.01, 0.1]  # in (0, 10]: AdamW learning rates, part (e)
sgd_lrs = [0.1, 1.0]  # in (0, 1000]: SGD learning rates, part (e)
batch_sizes = [4, 0]  # in [0, 65536]: sequences per step, part (e) (0: the whole sample)
approx_share = 0.05  # in (0, 1): (e) "approximately": excess KL below this share of the reducible loss [pre-registered]
executor = "processes"  # one of {local, processes, ray}: where the training runs go (one torch thread each)
workers = 0  # in [0, 4096]: processes or Ray CPUs (0: one per core)
device = "auto"  # device: auto (the first CUDA device if there is one), cpu, cuda or cuda:N

# %%
from stabliab import plots, records
from stabliab.device import describe, setup
from stabliab.experiments import c1
plots.setup()
dev = setup(device)  # count models in float64 on this device
seeds = list(range(seed, seed + n_seeds))
report = records.Report.from_notebook("01_forward_kl_stationarity", globals(), seeds)
report.set_device(describe(dev, "fp64"))

# %% [markdown]
# ## The source and the empirical distribution
#
# A random sparse Markov chain of order $k$ over $V$ tokens (Dirichlet rows, a share of entries set to zero:
# `MarkovSource.random`), with exact stationary law $\pi$ and entropy rate $H^* = -\sum_c \pi_c \sum_j P^*_{cj}\log
# P^*_{cj}$. Each seed draws $N$ sequences; their counts give $\hat p_N(j\mid c) = n_{cj}/n_c$ and context weights $\hat
# w_c = n_c/n$.

# %%
pb = report.call(c1.problem, seeds, device=dev)
c1.record_sample(report, pb)
records.style(c1.sample_table(pb).T, fmt="{:.4g}")

# %% [markdown]
# The true entropy rate is {glue:text}`c1_h_true:.4f` nats per token; the empirical conditional entropy of the
# {glue:text}`c1_n_transitions` observed transitions averages {glue:text}`c1_h_hat_mean:.4f` nats, and on average
# {glue:text}`c1_unseen_mean:.1f` transitions that the true chain allows never occur in a sample. Those two facts are
# the seed of claim C2.
#
# ## The model family
#
# A log-linear model of rank $r < V$: $p_\theta(j\mid c) \propto \exp(\langle u_c, \phi_j\rangle + b_j)$, fixed random
# features $\phi_j\in\mathbb R^r$, learned $u_c$, $b$. Its logits have rank at most $r$ (plus a bias), so $\hat p_N$ lies
# outside the family and the minimum forward KL is positive. The cross-entropy is convex in $\theta=(u,b)$: one minimising
# distribution, characterised by moment matching $\mathbb E_{p_\theta}[\phi\mid c] = \mathbb E_{\hat p_N}[\phi\mid c]$ on
# every seen context, a certificate independent of any optimiser.
# ## (b, first) The forward-KL minimiser, found independently
#
# Full-batch L-BFGS in float64 from {glue:text}`c1_lbfgs_starts` random starts per seed (initial scale 1, 100 times the
# training initialisation; 5 restarts of ≤ {glue:text}`c1_lbfgs_iters` iterations). The least over starts is $\mathrm{KL}^*$.

# %%
fit = report.call(c1.forward_fit, pb)
c1.record_minimiser(report, fit)

# %% [markdown]
# The minimum forward KL averages {glue:text}`c1_kl_star_mean:.4f` nats over seeds. All starts agree to
# {glue:text}`c1_start_spread:.1e` nats (convexity), gradient norms are at most {glue:text}`c1_lbfgs_grad_max:.1e`, the
# moment-matching residual at most {glue:text}`c1_moment_gap_max:.1e`.
#
# ## (b, second) The minimiser is the maximum-entropy law of the sample's moments
#
# Moment matching has a consequence that the C2 story must respect ({prf:ref}`thm-maxent` on the theory page): among all
# conditional laws $q$ with the sample's moments ($\mathbb E_q[\phi\mid c]$ for every seen context and the
# $\hat w$-weighted token frequencies), the forward-KL minimiser $p_{\theta^*}$ has the largest entropy, and exactly
# $H(p_{\theta^*}) - H(\hat p_N) = \mathrm{KL}(\hat p_N\|p_{\theta^*}) = \mathrm{KL}^* \ge 0$ (entropies weighted by
# $\hat w_c$): a constrained family fitted by maximum likelihood is *more* spread out than the sample, not less.

# %%
c1.record_maxent(report, pb, fit)
records.style(c1.maxent_table(pb, fit), fmt="{:.4f}")

# %% [markdown]
# The fit has entropy {glue:text}`c1_fit_entropy_mean:.3f` nats against {glue:text}`c1_h_hat_mean:.3f` for the sample and
# {glue:text}`c1_h_true:.3f` for the source, with {glue:text}`c1_fit_outside_mean:.1%` of its mass on transitions the
# sample never showed (means over seeds). $H(p_{\theta^*}) - H(\hat p_N)$ equals $\mathrm{KL}^*$ to
# {glue:text}`c1_maxent_identity_err:.1e` nats, the smallest difference being {glue:text}`c1_maxent_difference_min:.3f`
# nats. Record `C1.maxent`, an identity checked on every seed:
# **{glue:text}`c1_maxent_verdict`**. A log-linear fit never goes below $H(\hat p_N)$; entropy below it on training
# contexts needs a model that conditions on more than the source's context ({prf:ref}`thm-softmax-head`): the C2 boundary.
#
# ## The stability edge
#
# Gradient descent $\theta_{t+1} = \theta_t - \eta\nabla\mathrm{CE}(\theta_t)$ can converge to $\theta^*$ only if
# $\eta < 2/\lambda_{\max}$, $\lambda_{\max}$ the top Hessian eigenvalue at $\theta^*$ (the error along its eigenvector
# is multiplied by $1-\eta\lambda_{\max}$ each step); measured by power iteration, every step size is a fraction of it.

# %%
runs = report.call(c1.edge_runs, pb, fit)

# %% [markdown]
# ## (a) The identity, at every logged step
#
# At each of the {glue:text}`c1_logged_steps` logged steps of each of the {glue:text}`c1_members` trajectories, two
# independent routes: (i) the mean of $-\log p_\theta(x_t\mid c_t)$ over the training tokens
# (`loglinear.sequence_cross_entropy`); (ii) $H(\hat p_N)$ from the counts plus the forward KL term by term,
# $\sum_c \hat w_c\sum_j \hat p(j|c)\log\frac{\hat p(j|c)}{p_\theta(j|c)}$ (`loglinear.count_forward_kl`).

# %%
c1.record_identity(report, runs)
plots.c1.identity_error(runs, c1.IDENTITY_TOL);

# %% [markdown]
# The largest discrepancy over all steps and trajectories is {glue:text}`c1_identity_max_err:.1e` nats (float64
# rounding): {glue:text}`c1_identity_verdict`. Loss and forward KL differ by a constant, and share stationary points.
#
# ## (b) Stable trajectories settle at the forward-KL minimiser
#
# Gradient descent at step sizes {glue:text}`c1_lr_fractions` × the edge $2/\lambda_{\max}$ (mean edge over seeds
# {glue:text}`c1_edge_mean:.2f`), from a small random initialisation, for {glue:text}`c1_steps` full-batch steps; the
# gap $\mathrm{KL}(\hat p_N\|p_{\theta_t}) - \mathrm{KL}^*$ against the gradient norm.

# %%
c1.record_stable(report, runs)
plots.c1.gap_against_gradient_norm(runs, gap_threshold);

# %% [markdown]
# At the end the worst stable trajectory of each seed is {glue:text}`c1_value:.1e` nats above $\mathrm{KL}^*$ on average
# (95% Student-t interval [{glue:text}`c1_lo:.1e`, {glue:text}`c1_hi:.1e`], threshold {glue:text}`c1_threshold:.0e`
# nats; largest final gradient norm {glue:text}`c1_final_grad_max:.1e`). Verdict for C1: **{glue:text}`c1_verdict`**.
#
# ## (c) Past the stability edge, the trajectory does not settle
#
# The same seeds and initialisations at $\eta$ = {glue:text}`c1_unstable_fraction` × the edge. The minimiser is still
# the only stationary law, but no longer an attracting fixed point: almost every trajectory keeps oscillating around it.

# %%
c1.record_unstable(report, runs)
plots.c1.unstable_oscillation(runs);

# %% [markdown]
# Over the last {glue:text}`c1_tail_steps` steps the unstable trajectories stay {glue:text}`c1_unstable_value:.3f` nats
# above the minimum on average (interval [{glue:text}`c1_unstable_lo:.3f`, {glue:text}`c1_unstable_hi:.3f`], mean
# gradient norm {glue:text}`c1_unstable_grad_mean:.2f`): **{glue:text}`c1_unstable_verdict`**. Nor is it slow convergence:
# the log-gap trend over those steps, extrapolated to {glue:text}`c1_trend_horizon` × the run, ends at
# 10^{glue:text}`c1_unstable_trend_value:.2f` nats (`C1.unstable.trend`, **{glue:text}`c1_unstable_trend_verdict`**).
#
# ## (d) Forward against reverse KL; empirical against true distribution
#
# We also minimise the reverse KL $\sum_c \hat w_c\,\mathrm{KL}(p_\theta(\cdot|c)\|\tilde p(\cdot|c))$ to a smoothed
# $\tilde p = (n_{cj}+\varepsilon)/(n_c+V\varepsilon)$ (to $\hat p_N$, with its zeros, it is infinite). Forward KL punishes
# *missing* mass where $\hat p_N>0$ (mass-covering); reverse KL punishes mass where $\hat p_N$ is small.

# %%
rev = report.call(c1.reverse_fit, pb)
summary = report.call(c1.coverage_summary, pb, fit, rev)  # means over seeds
c1.record_coverage(report, summary)
plots.c1.fits_against_truth(pb.src.P, pb.P_hat[0], fit["Q"][0], rev["Q"][0], seeds[0])
records.style(summary)

# %% [markdown]
# Averaged over seeds, the forward-KL fit keeps {glue:text}`c1_fwd_kept:.0%` of the transitions that occur in the sample
# (mass at least {glue:text}`c1_keep_tau`) and leaks {glue:text}`c1_fwd_outside:.1%` of its mass outside them; the
# reverse-KL fit keeps {glue:text}`c1_rev_kept:.0%` and leaks {glue:text}`c1_rev_outside:.1%`. Their conditional
# entropies are {glue:text}`c1_fwd_entropy:.3f` and {glue:text}`c1_rev_entropy:.3f` nats. Maximum likelihood is the
# forward, mass-covering fit; here it covers more than the sample (the maximum-entropy effect of part (b)).
#
# **Empirical, not true.** Along part (b) we also logged $\mathrm{KL}(p^*\|p_\theta)$ (weighted by the true stationary
# law). The right panel repeats it in the full family (a free logit per transition; its minimiser is $\hat p_N$) by
# gradient descent at $\eta = 1/\max_c \hat w_c$, stable everywhere (the Hessian in the logits of context $c$ is at most
# $\hat w_c/2$): the objective goes to zero while every transition the sample missed is driven towards zero mass.

# %%
full = report.call(c1.full_family_run, pb)
c1.record_full_family(report, runs, full)
plots.c1.empirical_against_true(runs, full, rank);

# %% [markdown]
# In the full family the training KL falls to {glue:text}`c1_full_kl_emp_final:.1e` nats while the KL to the true chain,
# after reaching {glue:text}`c1_full_kl_true_min:.3f` nats, ends at {glue:text}`c1_full_kl_true_final:.3f` nats (means
# over seeds). In the rank-{glue:text}`c1_rank` family the stable trajectories end at a true KL of
# {glue:text}`c1_lowrank_kl_true_final:.3f` nats: a stable trajectory reaches the optimum of its objective, the *sample*.
# Over {glue:text}`c1_steps` steps the full-family KL to the truth rises by only {glue:text}`c1_full_kl_true_rise:.1e`
# nats from its minimum: the logit of a missed transition falls like $-\log t$ (its gradient is its own probability). The
# loss converges while the parameters diverge and the rise is unbounded ({prf:ref}`prop-empirical`): here a sample
# misses {glue:text}`c1_unseen_mean:.1f` allowed transitions on average.
#
# ## (e) Under standard training
#
# The abstract speaks of *standard* training: minibatch AdamW (or SGD) on a neural family at a constant learning rate,
# whose iterates never stop. An MLP n-gram with the source's order as window trains on each seed's sample for
# {glue:text}`c1_std_steps` steps at each learning rate and batch size of the parameters cell. At any $\theta$ its training
# loss is $H(\hat p_N\mid\text{context})$ plus a forward KL (the decomposition by context of {prf:ref}`thm-softmax-head`);
# that excess on the plateau window, noise of the iterates included, must stay below {glue:text}`c1_approx_share:.0%` of
# the reducible loss $\log V - H(\hat p_N\mid\text{context})$ in `C1.standard[…]` (runs at plateau only; a reading of
# "approximately" far looser than part (b)'s gap threshold); `C1.noise[…]`: do minibatches end further from the
# minimiser than the whole sample per step, at the largest learning rate?

# %%
std = report.call(c1.standard_training, device=str(dev))
c1.standard_records(report, std)
plots.c1.standard_excess(std);
# %% [markdown]
# {glue:text}`c1_std_plateau_share:.0%` of the {glue:text}`c1_std_runs` runs reached their plateau. `C1.standard[adamw]`
# **{glue:text}`c1_standard_adamw_verdict`**, `C1.standard[sgd]` **{glue:text}`c1_standard_sgd_verdict`**; `C1.noise[adamw]`
# **{glue:text}`c1_noise_adamw_verdict`**, `C1.noise[sgd]` **{glue:text}`c1_noise_sgd_verdict`**. Per configuration (means
# over seeds; SGD is past its stability edge where lr × sharpness exceeds 2):
#
# ```{glue:} c1_standard_table
# ```
#
# ## Claim records
# %%
report.save()
records.style(report.table())

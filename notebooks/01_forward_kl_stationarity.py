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
# cross-entropy decomposes as
#
# $$ \mathrm{CE}(\theta) \;=\; H(\hat p_N) \;+\; \mathrm{KL}(\hat p_N \,\|\, p_\theta), $$
#
# so the only part of the loss that training can move is the forward KL to the **empirical** distribution. Hence, *if*
# the objective is pure cross-entropy (no weight decay, label smoothing or dropout, which move the stationary point),
# the iterates converge (full-batch gradient descent below the stability edge; constant-step minibatch AdamW does not
# converge), and a minimiser exists (a log-linear maximum-likelihood estimate can lie at infinity), the trajectory
# settles at a stationary point of the forward KL; it is the family's forward-KL minimiser when the problem is convex,
# as it is here. Past the stability edge ($\eta > 2/\lambda_{\max}$) it almost surely does not settle there. Proofs and
# conditions: the [theory page](../theory.md); this notebook measures each statement on a source of exact ground truth.
# The parts: **(a)** the identity at every logged step; **(b)** stable gradient descent in a misspecified family reaches
# the family's forward-KL minimiser, found independently, and that minimiser is the maximum-entropy law of the sample's
# moments, so its entropy is *above* $H(\hat p_N)$; **(c)** past the stability edge gradient descent does not settle;
# **(d)** forward against reverse KL, and the empirical against the true distribution.

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
gap_threshold = 1e-4  # in (0, 1]: nats; a trajectory has settled when its KL gap is below this [pre-registered]
tail = 0.1  # in (0, 1): share of final steps over which the unstable gap is averaged [pre-registered]
reverse_eps = 0.01  # in (0, 1]: additive smoothing of p_hat for the reverse KL
keep_tau = 0.01  # in (0, 1): a transition is kept when the model gives it at least this mass
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
# A random sparse Markov chain of order $k$ over $V$ tokens: each row of the transition matrix $P^*[c,\cdot]$ is drawn
# from a Dirichlet law and a share of its entries is set to zero (`MarkovSource.random`). Its stationary law $\pi$ over
# contexts and its entropy rate $H^* = -\sum_c \pi_c \sum_j P^*_{cj}\log P^*_{cj}$ are exact. Each replicate (seed)
# draws its own $N$ sequences; their transition counts $n_{cj}$ define $\hat p_N(j\mid c) = n_{cj}/n_c$ with context
# weights $\hat w_c = n_c/n$.

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
# A log-linear model of rank $r < V$: $p_\theta(j\mid c) \propto \exp(\langle u_c, \phi_j\rangle + b_j)$ with fixed
# random token features $\phi_j\in\mathbb R^r$ and learned $u_c$, $b$. Its logit matrix has rank at most $r$ (plus a
# column bias), so $\hat p_N$ lies outside the family: the minimum of the forward KL is strictly positive. The
# cross-entropy is convex in $\theta=(u,b)$, so that minimum is attained by a single distribution (the parameters are
# unique only up to a shift of $b$ by a constant) and is characterised by moment matching,
# $\mathbb E_{p_\theta}[\phi\mid c] = \mathbb E_{\hat p_N}[\phi\mid c]$ for every seen context: a certificate we can
# check independently of any optimiser.
#
# ## (b, first) The forward-KL minimiser, found independently
#
# Full-batch L-BFGS in float64 from {glue:text}`c1_lbfgs_starts` random starts per seed (initial scale 1, a hundred
# times larger than the training initialisation). The minimum over starts is $\mathrm{KL}^*$.

# %%
fit = report.call(c1.forward_fit, pb)
c1.record_minimiser(report, fit)

# %% [markdown]
# The minimum forward KL in the family averages {glue:text}`c1_kl_star_mean:.4f` nats over seeds. All starts agree to
# {glue:text}`c1_start_spread:.1e` nats (convexity: a single minimising distribution), the gradient norm at the
# solutions is at most {glue:text}`c1_lbfgs_grad_max:.1e`, and the moment-matching residual is at most
# {glue:text}`c1_moment_gap_max:.1e`.
#
# ## (b, second) The minimiser is the maximum-entropy law of the sample's moments
#
# Moment matching has a consequence that the C2 story must respect ({prf:ref}`thm-maxent` on the theory page): among all
# conditional laws $q$ with the sample's moments ($\mathbb E_q[\phi\mid c]$ for every seen context and the
# $\hat w$-weighted token frequencies), the forward-KL minimiser $p_{\theta^*}$ has the largest entropy, and exactly
#
# $$ H(p_{\theta^*}) - H(\hat p_N) \;=\; \mathrm{KL}(\hat p_N\,\|\,p_{\theta^*}) \;=\; \mathrm{KL}^* \;\ge\; 0, $$
#
# both entropies weighted by the sample's context frequencies $\hat w_c$. A constrained family fitted by maximum
# likelihood is therefore *more* spread out than the sample, not less.

# %%
c1.record_maxent(report, pb, fit)
records.style(c1.maxent_table(pb, fit), fmt="{:.4f}")

# %% [markdown]
# The fitted family has entropy {glue:text}`c1_fit_entropy_mean:.3f` nats against {glue:text}`c1_h_hat_mean:.3f` for the
# sample and {glue:text}`c1_h_true:.3f` for the source, and puts {glue:text}`c1_fit_outside_mean:.1%` of its mass on
# transitions the sample never showed (means over seeds). The difference $H(p_{\theta^*}) - H(\hat p_N)$ equals
# $\mathrm{KL}^*$ to {glue:text}`c1_maxent_identity_err:.1e` nats (the optimiser's accuracy), and the smallest difference
# is {glue:text}`c1_maxent_difference_min:.3f` nats. Record `C1.maxent`, an identity checked on every seed:
# **{glue:text}`c1_maxent_verdict`**. A log-linear fit never goes below $H(\hat p_N)$; entropy below it on training
# contexts needs a model that conditions on more than the source's context ({prf:ref}`thm-softmax-head`): the C2 boundary.
#
# ## The stability edge
#
# Gradient descent $\theta_{t+1} = \theta_t - \eta\nabla\mathrm{CE}(\theta_t)$ can converge to $\theta^*$ only if
# $\eta < 2/\lambda_{\max}$, where $\lambda_{\max}$ is the largest eigenvalue of the Hessian at $\theta^*$ (linearise
# the update around $\theta^*$: the error along the top eigenvector is multiplied by $1-\eta\lambda_{\max}$ each step).
# We measure $\lambda_{\max}$ by power iteration on Hessian-vector products and express every step size as a fraction of
# the edge $2/\lambda_{\max}$ of its seed.

# %%
runs = report.call(c1.edge_runs, pb, fit)

# %% [markdown]
# ## (a) The identity, at every logged step
#
# At each of the {glue:text}`c1_logged_steps` logged steps of each of the {glue:text}`c1_members` trajectories we
# compute two quantities by independent routes: (i) the cross-entropy as a language model reports it, the mean of
# $-\log p_\theta(x_t\mid c_t)$ over the tokens of the training sequences (`loglinear.sequence_cross_entropy`); (ii)
# $H(\hat p_N)$ from the counts plus the forward KL written out term by term,
# $\sum_c \hat w_c\sum_j \hat p(j|c)\log\frac{\hat p(j|c)}{p_\theta(j|c)}$ (`loglinear.count_forward_kl`). The identity
# says they are equal.

# %%
c1.record_identity(report, runs)
plots.c1.identity_error(runs, c1.IDENTITY_TOL);

# %% [markdown]
# The largest discrepancy over all steps and trajectories is {glue:text}`c1_identity_max_err:.1e` nats: rounding error
# of float64 arithmetic. Verdict: {glue:text}`c1_identity_verdict`. The training loss and the forward KL therefore
# differ by a constant, $H(\hat p_N)$, and any stationary point of one is a stationary point of the other.
#
# ## (b) Stable trajectories settle at the forward-KL minimiser
#
# Gradient descent at step sizes {glue:text}`c1_lr_fractions` × the edge $2/\lambda_{\max}$ (mean edge over seeds
# {glue:text}`c1_edge_mean:.2f`), from a small random initialisation, for {glue:text}`c1_steps` full-batch steps. The
# gap $\mathrm{KL}(\hat p_N\|p_{\theta_t}) - \mathrm{KL}^*$ is plotted against the gradient norm: as the trajectory
# stabilises (gradient norm falls), the gap closes.

# %%
c1.record_stable(report, runs)
plots.c1.gap_against_gradient_norm(runs, gap_threshold);

# %% [markdown]
# At the end of training the worst stable trajectory of each seed is {glue:text}`c1_value:.1e` nats above
# $\mathrm{KL}^*$ on average (95% Student-t interval over seeds [{glue:text}`c1_lo:.1e`, {glue:text}`c1_hi:.1e`]),
# against a threshold of {glue:text}`c1_threshold:.0e` nats; the largest final gradient norm is
# {glue:text}`c1_final_grad_max:.1e`. Verdict for C1: **{glue:text}`c1_verdict`**.
#
# ## (c) Past the stability edge, the trajectory does not settle
#
# The same seeds and initialisations at $\eta$ = {glue:text}`c1_unstable_fraction` × the edge. The minimiser is still
# the only stationary law of the loss, but it is no longer an attracting fixed point of the update: from almost every
# initialisation the trajectory keeps oscillating around it.

# %%
c1.record_unstable(report, runs)
plots.c1.unstable_oscillation(runs);

# %% [markdown]
# Over the last {glue:text}`c1_tail_steps` steps the unstable trajectories stay {glue:text}`c1_unstable_value:.3f` nats
# above the minimum on average (interval [{glue:text}`c1_unstable_lo:.3f`, {glue:text}`c1_unstable_hi:.3f`]) with a mean
# gradient norm of {glue:text}`c1_unstable_grad_mean:.2f`: they do not settle. Verdict:
# **{glue:text}`c1_unstable_verdict`**. A gap above the threshold could also be a slow convergence: extrapolating each
# trajectory's log-gap trend over those steps to {glue:text}`c1_trend_horizon` × the run leaves it at 10^{glue:text}`c1_unstable_trend_value:.2f`
# nats (`C1.unstable.trend`, **{glue:text}`c1_unstable_trend_verdict`**). The stability premise of C1 is not
# decoration: maximum likelihood ends at the forward-KL minimiser *because* the trajectory converges.
#
# ## (d) Forward against reverse KL; empirical against true distribution
#
# In the same family we also minimise the reverse KL,
# $\sum_c \hat w_c\,\mathrm{KL}(p_\theta(\cdot|c)\,\|\,\tilde p(\cdot|c))$, towards a smoothed empirical law
# $\tilde p = (n_{cj}+\varepsilon)/(n_c+V\varepsilon)$ (the reverse KL to $\hat p_N$ itself is infinite for any softmax
# model, since $\hat p_N$ has zeros). Forward KL punishes *missing* mass where $\hat p_N>0$ (mass-covering); reverse KL
# punishes mass *where $\hat p_N$ is small* (mode-seeking).

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
# forward, mass-covering fit; in this constrained family it covers more than the sample, which is the maximum-entropy
# effect of part (b).
#
# **Empirical, not true.** Along the stable trajectories of part (b) we also logged $\mathrm{KL}(p^*\|p_\theta)$
# (weighted by the true stationary law). The right panel repeats the experiment in the full family (a free logit per
# transition, whose forward-KL minimiser is $\hat p_N$ itself), by gradient descent at $\eta = 1/\max_c \hat w_c$, which
# is stable everywhere because the Hessian of a softmax cross-entropy in the logits of context $c$ is at most
# $\hat w_c/2$: the training objective goes to zero while the distance to the truth grows, because every transition that
# the sample missed is driven towards zero probability.

# %%
full = report.call(c1.full_family_run, pb)
c1.record_full_family(report, runs, full)
plots.c1.empirical_against_true(runs, full, rank);

# %% [markdown]
# In the full family the training KL falls to {glue:text}`c1_full_kl_emp_final:.1e` nats while the KL to the true chain,
# after reaching {glue:text}`c1_full_kl_true_min:.3f` nats, ends at {glue:text}`c1_full_kl_true_final:.3f` nats (means
# over seeds). In the rank-{glue:text}`c1_rank` family the stable trajectories end at a true KL of
# {glue:text}`c1_lowrank_kl_true_final:.3f` nats. A stable trajectory reaches the optimum of the objective it is given,
# and that objective is the *sample*. Over these {glue:text}`c1_steps` steps the full-family KL to the truth rises by
# only {glue:text}`c1_full_kl_true_rise:.1e` nats from its minimum (mean over seeds): the logit of a transition the
# sample never showed falls like $-\log t$ under gradient descent (its gradient is its own probability), so the rise is
# slow. It is nevertheless unbounded in the limit ({prf:ref}`prop-empirical`): $\mathrm{KL}(p^*\|\hat p_N)=\infty$ as
# soon as the sample misses a transition that the chain allows, which here happens {glue:text}`c1_unseen_mean:.1f` times
# per sample on average.
#
# ## Claim records

# %%
report.save()
records.style(report.table())

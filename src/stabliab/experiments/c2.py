"""Claim C2's room: entropy shrinkage and mode concentration (notebook 02).

Tasks train and measure (every keyword-only argument is a notebook parameter, or a value the
notebook derives: `seeds`, the resolved `device`, the families' `arch_kw`); the table
functions turn their results into numeric DataFrames; the records functions write the
claim's records, metrics and glued tables into the Report, reading the values that decide
a record from report.parameters. `report.call(task, ...)` calls a task with its keywords
taken by name from the notebook's parameters (sweep.task_context)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp

from .. import lm, measures, members, plateau, train
from ..optim import member_norm
from ..seeds import stream, streams
from ..sources import MarkovSource, ZipfModes
from ..sweep import parallel_map

GLUED_PARAMETERS = ["bias_reps", "steps", "mode_steps", "mechanism_steps", "mechanism_tol", "mm_tol", "seq_len", "n_evals", "n_modes",
                    "mode_len", "n_mode_samples", "mlp_context", "top_m", "precision"]  # cited by the prose
MODE_COLUMNS = ["modes in sample", "modes in generations", "generations that are a mode",
                "model mass on sample's top modes", "sample share of its top modes", "true mass of sample's top modes",
                "model mass on unseen modes", "true mass of unseen modes", "H_model / H(w)"]

# Stationarity first (issue 18): every trained model carries a plateau measurement (plateau.measure), and
# the records that rest on trained models count only the seeds whose run reached its plateau.
PLATEAU_TOL = plateau.Tolerances()  # [pre-registered] the test's defaults; the fixed-batch gradient norm is
# reported, not tested (max_grad_norm None): its scale depends on the model, and where N > FIXED_BATCH the
# fixed batch is a subset of the sample, whose gradient need not vanish at the sample's optimum
PLATEAU_SHARE = plateau.SHARE  # C2.plateau holds when the share's interval lies at or above this
FIXED_BATCH = 128  # the fixed batch: each member's first min(N, FIXED_BATCH) training sequences
WINDOW_EVALS = 6  # evaluations evenly spaced over the plateau window, added to the geometric schedule
# A run counts when it is stationary for its training objective: its training loss at plateau, whether or not its
# held-out loss still rises (state "overfitting": the memorisation regime C2 is about); the state is shown either way.
PLATEAU_COLUMNS = ["stationary", "at_plateau", *plateau.STATES[1:], "slope", "slope_lo", "slope_hi", "oscillation",
                   "heldout_slope", "grad_norm", "n_window"]


def markov_source(*, vocab, sparsity, dirichlet_alpha, order, source_seed) -> MarkovSource:
    return MarkovSource.random(vocab, sparsity=sparsity, alpha=dirichlet_alpha, order=order, seed=source_seed)


def zipf_source(*, n_modes, mode_len, vocab, zipf_exponent, source_seed) -> ZipfModes:
    return ZipfModes.random(n_modes, mode_len, vocab, exponent=zipf_exponent, seed=source_seed)


def architecture(*, d_model, hidden, layers, heads, mlp_context, seq_len, mode_len) -> dict:
    """The families' keyword arguments (lm.build_lm); max_len covers both sources' sequences."""
    return dict(d=d_model, hidden=hidden, layers=layers, heads=heads, context=mlp_context,
                max_len=max(seq_len, mode_len) + 1)


def glue_parameters(report, src: MarkovSource) -> None:
    """The source's entropy rate H* (c2_h_true) and the parameters the prose cites, as metrics c2_NAME."""
    report.metric("c2_h_true", src.entropy_rate)
    for k in GLUED_PARAMETERS:
        report.metric(f"c2_{k}", report.parameters[k])


def sample_entropy(src: MarkovSource, x: np.ndarray) -> float:
    """H(p̂_N): plug-in conditional entropy of the transitions in sequences x [N, T] [nats/token]."""
    return measures.conditional_entropy(*measures.empirical_conditional(src.transition_counts(x)))


def eval_steps(steps: int, n_evals: int) -> np.ndarray:
    """The evaluation steps of every C2 training: the geometric schedule (train.eval_schedule, dense
    early) joined with WINDOW_EVALS steps evenly spaced over the plateau window (plateau.window_steps)."""
    return np.union1d(train.eval_schedule(steps, n_evals), plateau.window_steps(steps, WINDOW_EVALS, PLATEAU_TOL))


def fixed_batch_evals(data: torch.Tensor, arch: str, precision: str) -> dict:
    """eval_fns for ONE train_lm run on data [M, N, T+1]: 'fixed', each member's training loss on its
    first min(N, FIXED_BATCH) sequences (a fixed batch: no random draw, so the training trajectory is
    unchanged), and 'fixed_grad_norm', its gradient norm there (one backward on detached copies of the
    parameters, shared by both: build one pair per run)."""
    batch, done = data[:, :min(data.shape[1], FIXED_BATCH)], {}
    batched = train.default_batched(arch, data.shape[0], data.device)  # as train_lm trains it

    def at(base, params, step):
        if done.get("step") != step:  # train evaluates both at the same step, one after the other
            with torch.enable_grad():  # train runs eval_fns under no_grad
                p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
                loss = members.lm_loss(base, p, batch, batched, precision)
                grads = torch.autograd.grad(loss.sum(), list(p.values()))
            done.update(step=step, fixed=loss.detach(), fixed_grad_norm=member_norm(grads, loss.shape[0]))
        return done
    return {name: (lambda base, params, step, name=name: at(base, params, step)[name])
            for name in ("fixed", "fixed_grad_norm")}


def plateau_of(traj: train.Trajectory, heldout: bool) -> pd.DataFrame:
    """plateau.measure_members of one trained Trajectory (one row per member): the fixed-batch loss, its
    gradient norm, and the held-out loss where the run has one (heldout=True)."""
    return stationary(plateau.measure_trajectory(traj, "fixed", "heldout" if heldout else None, "fixed_grad_norm",
                                                 PLATEAU_TOL))


def stationary(df: pd.DataFrame) -> pd.DataFrame:
    """A plateau table with its `stationary` column: training loss at plateau (|slope| within the tolerance,
    not oscillating), held-out loss free to rise; an over-fitting run whose training loss still falls is not."""
    flat = df["slope"].abs() <= PLATEAU_TOL.max_slope
    return df.assign(stationary=df["at_plateau"] | (df["overfitting"] & flat))


def plateau_rule(report) -> None:
    """Glue the plateau test's tolerances and design: c2_tol_window, c2_tol_max_slope, c2_tol_max_oscillation,
    c2_tol_max_heldout_rise (PLATEAU_TOL's fields), c2_fixed_batch, c2_window_evals."""
    for k in ("window", "max_slope", "max_oscillation", "max_heldout_rise"):
        report.metric(f"c2_tol_{k}", getattr(PLATEAU_TOL, k))
    report.metric("c2_fixed_batch", FIXED_BATCH)
    report.metric("c2_window_evals", WINDOW_EVALS)


def _kept(statement: str, at) -> tuple[str, np.ndarray]:
    at = np.asarray(at, dtype=bool).reshape(-1)
    return f"{statement}; {int(at.sum())} of {at.size} runs stationary (training loss at plateau), only those count", at


def plateau_mean(report, id: str, statement: str, values, at, threshold, comparator: str):
    """report.mean over the seeds whose run is at plateau (at [S] booleans); none: untestable (n = 0)."""
    statement, at = _kept(statement, at)
    if not at.any():
        return report.claim(id, statement, float("nan"), None, threshold, comparator, n=0)
    return report.mean(id, statement, np.asarray(values, dtype=np.float64).reshape(-1)[at], threshold, comparator)


def plateau_paired(report, id: str, statement: str, treated, baseline, at, threshold, comparator: str):
    """report.paired over the seeds whose run is at plateau; none: untestable (n = 0)."""
    statement, at = _kept(statement, at)
    if not at.any():
        return report.claim(id, statement, float("nan"), None, threshold, comparator, rule="paired", n=0)
    t, b = (np.asarray(x, dtype=np.float64).reshape(-1)[at] for x in (treated, baseline))
    return report.paired(id, statement, t, b, threshold, comparator)


def training_samples(src: MarkovSource, N: int, seq_len: int, seeds) -> list[np.ndarray]:
    """Each seed's training sample, [N, seq_len] (the same at a given N in every part)."""
    return [src.sample(N, seq_len, seed=stream("data", s)) for s in seeds]


def with_bos(samples, vocab: int, device) -> torch.Tensor:
    """[S, N, T+1]: each seed's sequences behind a BOS token (id = vocab)."""
    return torch.stack([members.with_bos(x, vocab, device) for x in samples])


# ---------------------------------------------------------------------- (a), (b) plug-in bias
def miller_madow_deficit(src: MarkovSource, N: int, seq_len: int) -> float:
    """Σ_c (K_c − 1)/(2n) for N sequences, n = N (seq_len − order) transitions [nats/token]."""
    return -measures.conditional_plugin_bias(src.support_sizes(), N * (seq_len - src.order))


def plugin_bias(src: MarkovSource, *, n_values, bias_reps, seq_len) -> pd.DataFrame:
    """(a) E[H(p̂_N)] − H* by Monte Carlo against Miller–Madow, over a geometric grid of N:
    one row per N (N, transitions n, bias, its s.e., miller_madow = −Σ(K_c − 1)/(2n))."""
    rows = []
    for N in np.unique(np.geomspace(4, max(n_values) * 4, 10).astype(int)):
        reps = max(2, min(bias_reps, int(bias_reps * 64 / N) + 2))  # fewer repetitions where each is large
        h = np.array([sample_entropy(src, src.sample(N, seq_len, seed=stream("monte_carlo", r, N))) for r in range(reps)])
        n_tr = N * (seq_len - src.order)
        rows.append({"N": N, "transitions": n_tr, "bias": h.mean() - src.entropy_rate,
                     "se": h.std(ddof=1) / np.sqrt(reps),
                     "miller_madow": measures.conditional_plugin_bias(src.support_sizes(), n_tr)})
    return pd.DataFrame(rows)


def plugin_bias_records(report, bias: pd.DataFrame) -> None:
    """Miller–Madow against the measurement: largest gap in s.e. over the larger half of the grid,
    and both at the smallest N."""
    big = bias.iloc[len(bias) // 2:]
    report.metric("c2_mm_max_z", float(np.max(np.abs(big.bias - big.miller_madow) / big.se)))
    report.metric("c2_bias_small_n", float(-bias.bias.iloc[0]))
    report.metric("c2_bias_small_N", int(bias.N.iloc[0]))
    report.metric("c2_mm_small_n", float(-bias.miller_madow.iloc[0]))


def plugin_deficit(src: MarkovSource, *, n_values, bias_reps, seq_len) -> np.ndarray:
    """(b) H* − H(p̂_N) over bias_reps fresh samples of the smallest N [reps, nats/token]."""
    N0 = min(n_values)
    return src.entropy_rate - np.array([sample_entropy(src, src.sample(N0, seq_len, seed=stream("monte_carlo", r, N0, 1)))
                                        for r in range(bias_reps)])


def plugin_records(report, src: MarkovSource, deficit: np.ndarray) -> None:
    """C2.plugin (deficit > 0) and C2.mechanism.miller_madow (deficit / Miller–Madow within 1 ± mm_tol)."""
    p = report.parameters
    N0, reps, tol = min(p["n_values"]), p["bias_reps"], p["mm_tol"]
    mm0 = miller_madow_deficit(src, N0, p["seq_len"])
    report.mean("C2.plugin", f"the plug-in entropy H(p̂_N) is biased below H* (N = {N0} sequences; deficit "
                f"H* − H(p̂_N), mean over {reps} Monte Carlo samples)", deficit, 0.0, ">", "nats")
    report.mean("C2.mechanism.miller_madow", f"N = {N0}: measured deficit H* − H(p̂_N) / Miller–Madow Σ(K_c − 1)/(2n) "
                f"(mean over {reps} Monte Carlo samples)", deficit / mm0, (1 - tol, 1 + tol), "within")
    report.metric("c2_mm_pred_N0", mm0)
    report.metric("c2_deficit_sd", deficit.std(ddof=1))
    report.metric("c2_deficit_neg", float(np.mean(deficit < 0)))


# ---------------------------------------------------------------------- (b) order-matched fit
def order_matched_fit(src: MarkovSource, *, seeds, n_values, seq_len, mechanism_steps, mechanism_lr,
                      mechanism_batch, n_evals, precision, arch_kw, device) -> dict:
    """An MLP whose window is the source's order, trained on each seed's sample at the smallest N;
    its conditional table read off exactly. Per seed [S]: H(p̂_N), H_model and KL(p̂_N ‖ p_θ)
    (both weighted by the sample's contexts), final training loss; plateau, its plateau measurement
    (plateau_of: the fixed-batch loss at eval_steps; no held-out loss, since fitting the sample is the point)."""
    samples = training_samples(src, min(n_values), seq_len, seeds)
    emp = [measures.empirical_conditional(src.transition_counts(x)) for x in samples]  # (w [C], P [C, V])
    data = with_bos(samples, src.vocab, device)
    traj, base = train.train_lm("mlp", data, vocab=src.vocab, seeds=seeds, steps=mechanism_steps, lr=mechanism_lr,
                                batch_size=mechanism_batch, eval_every=eval_steps(mechanism_steps, n_evals),
                                eval_fns=fixed_batch_evals(data, "mlp", precision), precision=precision,
                                desc="order-matched mlp", **{**arch_kw, "context": src.order})
    Q = [lm.ngram_table(members.member(base, traj.params, m), src.context_tokens()).cpu().numpy()
         for m in range(len(seeds))]  # each [C, V]
    return {"H_hat": np.array([measures.conditional_entropy(w, P) for w, P in emp]),
            "H_model": np.array([measures.conditional_entropy(w, q) for (w, _), q in zip(emp, Q)]),
            "kl": np.array([measures.conditional_kl(w, P, q) for (w, P), q in zip(emp, Q)]),
            "final_loss": traj.loss[-1], "plateau": plateau_of(traj, heldout=False)}


def mechanism_table(src: MarkovSource, fit: dict, seeds) -> pd.DataFrame:
    """One row per seed: the sample's deficit, the fit's entropy ratios and KL, its final loss."""
    H = src.entropy_rate
    return pd.DataFrame({"seed": seeds, "H* − H(p̂_N)": H - fit["H_hat"],
                         "H_model / H(p̂_N)": fit["H_model"] / fit["H_hat"], "H_model / H*": fit["H_model"] / H,
                         "KL(p̂_N ‖ p_θ)": fit["kl"], "final train loss": fit["final_loss"]}).set_index("seed")


def mechanism_records(report, src: MarkovSource, fit: dict) -> None:
    """C2.mechanism[mlp]: H_model / H(p̂_N) within 1 ± mechanism_tol (Student-t over the seeds at plateau);
    the metrics are means over every seed."""
    p = report.parameters
    tol, ratio = p["mechanism_tol"], fit["H_model"] / fit["H_hat"]
    plateau_mean(report, "C2.mechanism[mlp]", f"MLP with a window of {src.order} (the source's order), "
                 f"N = {min(p['n_values'])}, trained to its plateau: its entropy matches the sample's "
                 "(H_model / H(p̂_N), both weighted by the sample's contexts)", ratio, fit["plateau"]["stationary"],
                 (1 - tol, 1 + tol), "within")
    report.metric("c2_mech_ratio", float(np.mean(ratio)))
    report.metric("c2_mech_ratio_true", float(np.mean(fit["H_model"] / src.entropy_rate)))
    report.metric("c2_mech_kl", float(fit["kl"].mean()))
    report.metric("c2_hhat_ratio_small", float(fit["H_hat"].mean() / src.entropy_rate))


# ---------------------------------------------------------------------- (c) longer contexts
def heldout_sequences(src: MarkovSource, *, seeds, n_heldout, seq_len, device) -> torch.Tensor:
    """[S, n_heldout, seq_len + 1] fresh sequences from the source, per seed."""
    return with_bos([src.sample(n_heldout, seq_len, seed=stream("heldout", s)) for s in seeds], src.vocab, device)


def train_families(src: MarkovSource, heldout: torch.Tensor, *, seeds, archs, n_values, seq_len, steps, lr,
                   batch_size, n_evals, n_gen, precision, arch_kw, device, executor, workers) -> dict:
    """Every family at every N, all seeds at once, each (arch, N) one call of family_run on the
    executor (one torch thread each, so the numbers do not depend on the executor): (arch, N) ->
    {traj (held-out loss, generative entropy rate, fixed-batch loss and gradient norm at
    eval_steps), base, H_hat [S] of the sample, h_final [S] the generative entropy rate of n_gen
    final samples, coverage [S] of the true transitions by them, data_coverage [S] by the sample,
    plateau (plateau_of, with the held-out loss: one row per seed)}."""
    kw = dict(seeds=list(seeds), seq_len=seq_len, steps=steps, lr=lr, batch_size=batch_size, n_evals=n_evals,
              n_gen=n_gen, precision=precision, arch_kw=arch_kw, device=str(device))
    grid = [(arch, N) for N in n_values for arch in archs]
    outs = parallel_map(family_run, [(src, heldout, arch, N, kw) for arch, N in grid], executor=executor,
                        workers=workers or None, device=str(device), desc="C2 families",
                        cost=[STEP_COST.get(arch, 0) for arch, _ in grid])
    return dict(zip(grid, outs))


# a training step's relative time at default sizes: the pool starts the longest runs first (each run is
# independent and single-threaded, so the order changes no number)
STEP_COST = {"transformer": 3, "gru": 2, "lstm": 2, "mlp": 1}


def family_run(src: MarkovSource, heldout: torch.Tensor, arch: str, N: int, kw: dict) -> dict:
    """One family at one N, every seed at once (train_families' entry for (arch, N))."""
    seeds, seq_len, precision, device = kw["seeds"], kw["seq_len"], kw["precision"], torch.device(kw["device"])
    evals = eval_steps(kw["steps"], kw["n_evals"])
    gen_H = members.generation_entropy_eval(64, seq_len, streams("sample", seeds, 0), skip=src.order, precision=precision)
    samples = training_samples(src, N, seq_len, seeds)
    H_hat = np.array([sample_entropy(src, x) for x in samples])
    data = with_bos(samples, src.vocab, device)
    traj, base = train.train_lm(arch, data, vocab=src.vocab, seeds=seeds, steps=kw["steps"], lr=kw["lr"],
                                batch_size=kw["batch_size"], heldout=heldout, eval_every=evals,
                                eval_fns={"gen_H": gen_H, **fixed_batch_evals(data, arch, precision)},
                                precision=precision, desc=f"{arch} N={N}", **kw["arch_kw"])
    traj.optimizer = None  # not used here; the result travels back from a worker
    tok, lq = members.sample_members(base, traj.params, kw["n_gen"], seq_len, 0, precision=precision,
                                    member_seeds=streams("sample", seeds, 1))
    h_final = np.array([measures.generation_entropy(q, skip=src.order).mean() for q in lq])  # [S]
    return dict(
        traj=traj, base=base, H_hat=H_hat, plateau=plateau_of(traj, heldout=True), h_final=h_final,
        routes=routes(src, samples, np.asarray(tok), h_final, base, traj.params, data, arch, precision, seeds),
        coverage=np.array([measures.transition_coverage(src.P, src.transition_counts(t)) for t in tok]),
        data_coverage=np.array([measures.transition_coverage(src.P, src.transition_counts(x)) for x in samples]))


# ---------------------------------------------------------------------- (c) the routes of concentration
NGRAM = 8  # [pre-registered] the n of the n-gram concentration record (a quarter of the default sequence)
ROUTE_COLUMNS = {"mass_model": "log10 model mass on the sample", "mass_plugin": "log10 p̂_N mass on the sample",
                 "mass_source": "log10 true mass on the sample", "subset_model": "effective share, model",
                 "subset_source": "effective share, source", "ngram_gen": f"gen. {NGRAM}-grams in the sample",
                 "ngram_plugin": f"p̂_N's {NGRAM}-grams in it", "ngram_src": f"fresh {NGRAM}-grams in it",
                 "copies_gen": "generations that copy the sample", "copies_plugin": "p̂_N's that copy it",
                 "H_gen": "generative entropy rate", "H_tf": "teacher-forced entropy (sample)",
                 "head_gap": "training CE − teacher-forced entropy"}


def log10_mass(logp: np.ndarray) -> float:
    """log10 of the total probability exp(logp).sum() of distinct sequences [n] (nats in, log10 out)."""
    return float(logsumexp(logp) / np.log(10))


def effective_share(logp: np.ndarray) -> float:
    """exp(entropy of the mass renormalised over n distinct sequences) / n, from logp [n]: 1 when the mass
    is spread evenly over all of them, about k / n when it sits on k of them."""
    q = np.exp(logp - logsumexp(logp))
    return float(np.exp(measures.entropy(q)) / len(q))


def plugin_chain(src: MarkovSource, sample: np.ndarray) -> tuple[MarkovSource, np.ndarray]:
    """The sample's plug-in chain p̂_N: (its transition frequencies as a chain, where a context the sample
    never continues keeps the source's row; its first-context frequencies [C])."""
    counts = src.transition_counts(sample)
    n = counts.sum(1, keepdims=True)
    P = np.where(n > 0, counts / np.maximum(n, 1), src.P)
    f = np.bincount(src.contexts_of(sample[:, :src.order + 1])[:, 0], minlength=src.n_contexts)
    return MarkovSource(P, src.order), f / f.sum()


def ngram_share(seqs: np.ndarray, sample: np.ndarray, n: int) -> float:
    """Share of the n-grams of seqs [m, T] (with repetition) that occur somewhere in sample [N, T]."""
    seen = {g for row in sample for g in measures.ngrams(row, n)}
    grams = [g for row in seqs for g in measures.ngrams(row, n)]
    return float(np.mean([g in seen for g in grams])) if grams else float("nan")


def copy_share(seqs: np.ndarray, sample: np.ndarray) -> float:
    """Share of the sequences seqs [m, T] equal to one of sample's [N, T]."""
    seen = {row.tobytes() for row in np.ascontiguousarray(sample)}
    return float(np.mean([row.tobytes() in seen for row in np.ascontiguousarray(seqs)]))


def routes(src: MarkovSource, samples, tok: np.ndarray, h_gen: np.ndarray, base, params, data: torch.Tensor,
           arch: str, precision: str, seeds) -> dict:
    """The routes by which a run's generative entropy can fall below H* (thm-softmax-head), per seed [S]:
    the total mass the model, the sample's plug-in chain p̂_N and the source put on the distinct training
    sequences (log10), and how evenly the model and the source spread it over them (effective_share); the
    share of NGRAM-grams found in the sample, of the model's generations tok [S, n, T], of as many sequences
    drawn from p̂_N and from the source; the share of the generations and of p̂_N's that copy a training
    sequence; the generative entropy rate h_gen against the teacher-forced entropy on the fixed batch of the
    sample (both over positions past the source's order, as generation_entropy), and the head's gap, training
    cross-entropy minus teacher-forced entropy over every position of the loss (0 at a stationary head)."""
    k, S = src.order, len(seeds)
    ent, _, ce = members.per_position(base, params, data[:, :min(data.shape[1], FIXED_BATCH)],
                                      train.default_batched(arch, S, data.device), precision)  # each [S, B, T]
    out = {c: np.empty(S) for c in ROUTE_COLUMNS}
    n, T = tok.shape[1:]
    for s, seed in enumerate(seeds):
        x = np.unique(samples[s], axis=0)  # the distinct training sequences [N', T]
        lp_model = members.member(base, params, s).sequence_logprob(torch.as_tensor(x, device=data.device)).cpu().numpy()
        lp_source = src.sequence_logprob(x)
        chain, start = plugin_chain(src, samples[s])
        fresh = src.sample(n, T, seed=stream("reference", seed))
        plug = chain.sample(n, T, seed=stream("reference", seed, 1), start=start)
        out["mass_model"][s], out["mass_source"][s] = log10_mass(lp_model), log10_mass(lp_source)
        out["mass_plugin"][s] = log10_mass(chain.sequence_logprob(x, start))
        out["subset_model"][s], out["subset_source"][s] = effective_share(lp_model), effective_share(lp_source)
        for key, y in [("ngram_gen", tok[s]), ("ngram_plugin", plug), ("ngram_src", fresh)]:
            out[key][s] = ngram_share(y, samples[s], NGRAM)
        out["copies_gen"][s], out["copies_plugin"][s] = copy_share(tok[s], samples[s]), copy_share(plug, samples[s])
    out["H_gen"] = np.asarray(h_gen, dtype=np.float64)
    out["H_tf"] = ent[..., k:].mean((1, 2)).double().cpu().numpy()
    out["head_gap"] = (ce.reshape(ent.shape).mean((1, 2)) - ent.mean((1, 2))).double().cpu().numpy()
    return out


def routes_records(report, runs: dict) -> pd.DataFrame:
    """At the smallest N, per family over the seeds at plateau (paired by seed), and for the claims an
    aggregate over families (what the findings count):
      C2.route.sequences[arch]  the model's mass on the training sequences above the source's (log10): mass
                                concentrates on the empirical modes (any maximum-likelihood fit of the sample
                                does this; an under-trained or over-smoothed model does not);
      C2.route.subset[arch]     its effective share of them below the source's: on a *limited subset*;
      C2.route.ngrams[arch]     more of its generated NGRAM-grams in the sample than of fresh source sequences';
    and diagnostics (which route): C2.route.beyond[arch] (mass above p̂_N's: memorising beyond the sample's
    transitions, route (ii)), C2.route.copies[arch] (more generations copy a training sequence than p̂_N's
    samples do), C2.route.free_running[arch] (generative entropy below the teacher-forced entropy on the
    sample, route (iii)). Glues the per-family means over every seed, at every N, as c2_routes_table."""
    p = report.parameters
    N0 = min(p["n_values"])
    claims = {"sequences": [], "subset": [], "ngrams": []}
    for arch in p["archs"]:
        r = runs[arch, N0]
        ro, at = r["routes"], r["plateau"]["stationary"]
        what = f"{arch}, N = {N0}:"
        claims["sequences"].append(plateau_paired(
            report, f"C2.route.sequences[{arch}]", f"{what} mass concentrates on the empirical modes, the training "
            "sequences: the model's total probability of them above the source's (log10, paired over seeds)",
            ro["mass_model"], ro["mass_source"], at, 0.0, ">"))
        claims["subset"].append(plateau_paired(
            report, f"C2.route.subset[{arch}]", f"{what} on a limited subset of them: the model's mass on the "
            "training sequences spread over a smaller effective share of them than the source's (exp of the "
            "entropy of the renormalised mass / their number, paired over seeds)", ro["subset_model"],
            ro["subset_source"], at, 0.0, "<"))
        claims["ngrams"].append(plateau_paired(
            report, f"C2.route.ngrams[{arch}]", f"{what} a larger share of its generations' {NGRAM}-grams occurs in "
            "the training sample than of fresh source sequences' (paired over seeds)", ro["ngram_gen"],
            ro["ngram_src"], at, 0.0, ">"))
        for id, statement, t, b, cmp in [
                ("beyond", "route (ii), memorising beyond the sample's transitions: the model's mass on the training "
                 "sequences above the plug-in chain p̂_N's (log10, paired over seeds)", "mass_model", "mass_plugin",
                 ">"),
                ("copies", "route (ii): a larger share of its generations copies a training sequence whole than of "
                 "as many sequences drawn from p̂_N (paired over seeds)", "copies_gen", "copies_plugin", ">"),
                ("free_running", "route (iii): free-running generation has a lower entropy rate than the model "
                 "teacher-forced on its training sequences (nats/token, paired over seeds)", "H_gen", "H_tf", "<")]:
            report.mark(plateau_paired(report, f"C2.route.{id}[{arch}]", f"{what} {statement}", ro[t], ro[b], at, 0.0,
                                       cmp), "diagnostic")
    for name, statement in [("sequences", "for every family, mass concentrates on the training sequences"),
                            ("subset", "for every family, on a limited subset of them"),
                            ("ngrams", f"for every family, its generations' {NGRAM}-grams come from the sample")]:
        report.aggregate(f"C2.route.{name}", statement, claims[name])
    table = pd.DataFrame([{"family": arch, "N": N, **{v: np.mean(r["routes"][c]) for c, v in ROUTE_COLUMNS.items()}}
                          for (arch, N), r in runs.items()]).set_index(["family", "N"])
    report.glue_table("c2_routes_table", table, fmt="{:.3f}")
    report.metric("c2_ngram", NGRAM)
    return table


def final_table(src: MarkovSource, runs: dict, seeds) -> pd.DataFrame:
    """One row per (arch, N, seed): final entropy ratios, training loss, KL rate, coverages."""
    H = src.entropy_rate
    return pd.DataFrame([{"arch": arch, "N": N, "seed": seeds[s], "H_model / H*": r["h_final"][s] / H,
                          "H(p̂_N) / H*": r["H_hat"][s] / H, "final train loss": r["traj"].loss[-1, s],
                          "KL rate to source": r["traj"]["heldout"][-1, s] - H,
                          "coverage of true transitions (gen.)": r["coverage"][s],
                          "coverage (training sample)": r["data_coverage"][s]}
                         for (arch, N), r in runs.items() for s in range(len(seeds))])


def memorise_records(report, src: MarkovSource, runs: dict) -> pd.DataFrame:
    """C2.memorise[arch] at the smallest N and C2.largeN[arch] at the largest: H_model / H* below
    ratio_threshold (over the seeds at plateau); glues their values with the training loss and KL rate
    (means over every seed) as c2_memorise_table."""
    p = report.parameters
    N0, N1, H, thr = min(p["n_values"]), max(p["n_values"]), src.entropy_rate, p["ratio_threshold"]
    rows = []
    for arch in p["archs"]:
        r0, r1 = runs[arch, N0], runs[arch, N1]
        c_mem = plateau_mean(report, f"C2.memorise[{arch}]", f"{arch} (context longer than the source's order), "
                             f"N = {N0}: generative entropy below the truth, by memorising the sample (H_model / H*)",
                             r0["h_final"] / H, r0["plateau"]["stationary"], thr, "<")
        c_big = plateau_mean(report, f"C2.largeN[{arch}]", f"{arch}, N = {N1}, same training budget: generative "
                             "entropy below the truth (H_model / H*)", r1["h_final"] / H, r1["plateau"]["stationary"],
                             thr, "<")
        rows.append({"family": arch, f"H_model / H* at N = {N0}": c_mem.value,
                     "final train loss": r0["traj"].loss[-1].mean(),
                     "KL rate to source [nats/token]": (r0["traj"]["heldout"][-1] - H).mean(),
                     f"H_model / H* at N = {N1}": c_big.value})
    table = pd.DataFrame(rows).set_index("family")
    report.glue_table("c2_memorise_table", table, fmt="{:.3f}")
    report.metric("c2_N_small", N0)
    report.metric("c2_N_large", N1)
    return table


def precision_table(src: MarkovSource, runs: dict, heldout: torch.Tensor, *, seeds, archs, n_values,
                    seq_len) -> pd.DataFrame:
    """The trained models at the smallest N evaluated under bf16 autocast against fp32: per family the
    fp32 value and the largest change over seeds of held-out CE and generative entropy, and the share
    of sampled tokens that agree."""
    rows = []
    for arch in archs:
        r0 = runs[arch, min(n_values)]
        eff = members.precision_effect(r0["base"], r0["traj"].params, heldout, n=64, length=seq_len,
                                       member_seeds=streams("sample", seeds, 1),
                                       skip=src.order)
        rows.append({"family": arch, "held-out CE, fp32 [nats/token]": eff["heldout_fp32"].mean(),
                     "max |Δ held-out CE| bf16 − fp32": np.abs(eff["heldout_bf16"] - eff["heldout_fp32"]).max(),
                     "generative entropy, fp32": eff["gen_H_fp32"].mean(),
                     "max |Δ generative entropy|": np.abs(eff["gen_H_bf16"] - eff["gen_H_fp32"]).max(),
                     "sampled tokens that agree": eff["token_agreement"].mean()})
    return pd.DataFrame(rows).set_index("family")


# ---------------------------------------------------------------------- (d) mode concentration
def mode_row(zipf: ZipfModes, ids: np.ndarray, p_mode: np.ndarray, gen_ids: np.ndarray, lq: np.ndarray,
             top_m: int) -> dict:
    """One seed: which modes its sample (ids [n]) and generations (gen_ids [n_gen], -1 = no mode) hold,
    and the model's exact mass p_mode [M] on seen, unseen and the sample's top_m modes."""
    M = len(zipf.weights)
    freq = np.bincount(ids, minlength=M)
    top = np.argsort(-freq, kind="stable")[:min(top_m, M)]  # the sample's most frequent modes
    seen = np.zeros(M, bool)
    seen[np.unique(ids)] = True
    return {"modes in sample": seen.mean(), "modes in generations": np.isin(np.arange(M), gen_ids).mean(),
            "generations that are a mode": (gen_ids >= 0).mean(),
            "model mass on seen modes": p_mode[seen].sum(), "model mass on unseen modes": p_mode[~seen].sum(),
            "true mass of unseen modes": zipf.weights[~seen].sum(),
            "model mass on sample's top modes": p_mode[top].sum(),
            "sample share of its top modes": freq[top].sum() / freq.sum(),
            "true mass of sample's top modes": zipf.weights[top].sum(),
            "H_model / H(w)": measures.generation_entropy(lq).mean() * zipf.modes.shape[1] / zipf.entropy}


def mode_concentration(zipf: ZipfModes, *, seeds, archs, vocab, n_mode_samples, mode_steps, lr, batch_size, n_gen,
                       n_evals, top_m, precision, arch_kw, device, executor, workers) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each family trained on each seed's sample of the mixture, one call of modes_run per family on
    the executor: (modes, one row per (arch, seed), mode_row's measures and the run's plateau
    measurement (plateau_of: PLATEAU_COLUMNS, no held-out loss); mass, one row per (arch, seed, mode
    rank): model, sample and true mass, seen)."""
    kw = dict(seeds=list(seeds), vocab=vocab, n_mode_samples=n_mode_samples, mode_steps=mode_steps, lr=lr,
              batch_size=batch_size, n_gen=n_gen, n_evals=n_evals, top_m=top_m, precision=precision,
              arch_kw=arch_kw, device=str(device))
    outs = parallel_map(modes_run, [(zipf, arch, kw) for arch in archs], executor=executor, workers=workers or None,
                        device=str(device), desc="C2 modes", cost=[STEP_COST.get(arch, 0) for arch in archs])
    return (pd.DataFrame([r for rows, _ in outs for r in rows]), pd.DataFrame([r for _, rows in outs for r in rows]))


def modes_run(zipf: ZipfModes, arch: str, kw: dict) -> tuple[list[dict], list[dict]]:
    """One family on the mixture, every seed at once: (mode rows, mass rows) of mode_concentration."""
    seeds, precision, device = kw["seeds"], kw["precision"], torch.device(kw["device"])
    M = zipf.modes.shape[0]
    mode_rows, mass_rows = [], []
    seqs, ids = zip(*[zipf.sample(kw["n_mode_samples"], seed=stream("data", s)) for s in seeds])
    data = with_bos(seqs, kw["vocab"], device)
    traj, base = train.train_lm(arch, data, vocab=kw["vocab"], seeds=seeds, steps=kw["mode_steps"], lr=kw["lr"],
                                batch_size=kw["batch_size"], eval_every=eval_steps(kw["mode_steps"], kw["n_evals"]),
                                eval_fns=fixed_batch_evals(data, arch, precision), precision=precision,
                                desc=f"{arch} modes", **kw["arch_kw"])
    pl = plateau_of(traj, heldout=False)
    tok, lq = members.sample_members(base, traj.params, kw["n_gen"], zipf.modes.shape[1], 0, precision=precision,
                                     member_seeds=streams("sample", seeds, 2))
    for s, seed in enumerate(seeds):
        mod = members.member(base, traj.params, s)
        p_mode = mod.sequence_logprob(torch.tensor(zipf.modes, device=device)).exp().cpu().numpy()  # [M] exact
        mode_rows.append({"arch": arch, "seed": seed,
                          **mode_row(zipf, ids[s], p_mode, zipf.identify(tok[s]), lq[s], kw["top_m"]),
                          **pl.loc[s, PLATEAU_COLUMNS].to_dict()})
        seen = np.isin(np.arange(M), ids[s])
        mass_rows += [{"arch": arch, "seed": seed, "rank": m + 1, "model": p_mode[m],
                       "sample": np.mean(ids[s] == m), "true": zipf.weights[m], "seen": seen[m]} for m in range(M)]
    return mode_rows, mass_rows


def modes_records(report, modes: pd.DataFrame) -> pd.DataFrame:
    """Per family C2.modes[arch] (mass on the sample's top modes − their sample share > 0, paired over
    the seeds at plateau) and C2.modes_entropy[arch] (H_model / H(w) < 1, the same seeds); the aggregates
    over families; the per-family means over every seed glued as c2_modes_table."""
    top_m, mem_top, mem_H = report.parameters["top_m"], [], []
    for arch in pd.unique(modes.arch):  # the families in the order they were trained
        d = modes[modes.arch == arch]
        mem_top.append(plateau_paired(
            report, f"C2.modes[{arch}]", f"{arch}: the sample's top-{top_m} modes get more of the model's mass than "
            "their share of the sample (model mass − sample share, paired over seeds)",
            d["model mass on sample's top modes"], d["sample share of its top modes"], d["stationary"], 0.0, ">"))
        mem_H.append(plateau_mean(report, f"C2.modes_entropy[{arch}]", f"{arch}: per-sequence generative entropy "
                                  "below the source's (H_model / H(w))", d["H_model / H(w)"], d["stationary"],
                                  1.0, "<"))
    report.aggregate("C2.modes", "for every family, the model concentrates mass on the sample's top modes", mem_top)
    report.aggregate("C2.modes_entropy", "for every family, per-sequence entropy below H(w)", mem_H)
    g = modes.mean(numeric_only=True)
    report.metric("c2_modes_in_sample", g["modes in sample"])
    report.metric("c2_unseen_true_mass", g["true mass of unseen modes"])
    report.metric("c2_unseen_model_mass", g["model mass on unseen modes"])
    table = modes.groupby("arch", sort=False).mean(numeric_only=True)[MODE_COLUMNS]
    report.glue_table("c2_modes_table", table, fmt="{:.3f}")
    return table


# ---------------------------------------------------------------------- (e) early stopping
def early_stopping(src: MarkovSource, runs: dict, *, archs, n_values) -> dict:
    """Each family at the smallest N read at each seed's held-out minimum: arch -> {step [S] of the
    minimum, ratio [S] = generative entropy / H* there, final = the mean over seeds at the end / H*}."""
    out = {}
    for arch in archs:
        r0 = runs[arch, min(n_values)]
        tr = r0["traj"]
        best = tr["heldout"].argmin(0)  # [S] eval index of the held-out minimum
        out[arch] = {"step": tr.eval_step[best], "ratio": tr["gen_H"][best, np.arange(len(best))] / src.entropy_rate,
                     "final": r0["h_final"].mean() / src.entropy_rate}
    return out


def early_records(report, early: dict) -> pd.DataFrame:
    """C2.early[arch], a boundary claim (rem-c2-boundary): stopped early, the model is over-dispersed, its
    ratio above ratio_threshold (Student-t over seeds; supported when the boundary is confirmed); glues the
    step, the ratio with its interval and verdict, and the final ratio as c2_early_table."""
    p = report.parameters
    rows = []
    for arch, e in early.items():
        c = report.mean(f"C2.early[{arch}]", f"{arch}, N = {min(p['n_values'])}, stopped at the held-out minimum, "
                        "temperature 1 (the boundary of C2): generative entropy above the truth, over-dispersed "
                        "(H_model / H*); every seed counts, at plateau or not (early stopping is before the plateau "
                        "by design)", e["ratio"], p["ratio_threshold"], ">")
        report.mark(c, "boundary")
        rows.append({"arch": arch, "step of held-out minimum": e["step"].mean(), "H_model / H* there": c.value,
                     "lo": c.interval[0], "hi": c.interval[1], "verdict": c.verdict,
                     "H_model / H* at the end": e["final"]})
    table = pd.DataFrame(rows).set_index("arch")
    report.glue_table("c2_early_table", table, fmt={"step of held-out minimum": "{:.1f}", **dict.fromkeys(
        ["H_model / H* there", "lo", "hi", "H_model / H* at the end"], "{:.3f}")})
    return table


# ---------------------------------------------------------------------- stationarity first
def plateau_runs(report, fit: dict, runs: dict, modes: pd.DataFrame) -> pd.DataFrame:
    """One row per trained run (index: part, family, N, seed): 'in a verdict' (its numbers enter a record
    that counts only runs at plateau: every run of (b) and (d), the smallest and largest N of (c)) and
    PLATEAU_COLUMNS. Numbers and booleans only."""
    p, seeds = report.parameters, report.seeds
    N0, N1 = min(p["n_values"]), max(p["n_values"])
    rows = [("(b) order-matched", "mlp", N0, seeds[s], True, fit["plateau"].loc[s]) for s in range(len(seeds))]
    rows += [("(c) families", arch, N, seeds[s], N in (N0, N1), r["plateau"].loc[s])
             for (arch, N), r in runs.items() for s in range(len(seeds))]
    rows += [("(d) modes", m["arch"], p["n_mode_samples"], m["seed"], True, m) for _, m in modes.iterrows()]
    df = pd.DataFrame([{"part": a, "family": f, "N": int(N), "seed": int(s), "in a verdict": bool(v),
                        **{c: r[c] for c in PLATEAU_COLUMNS}} for a, f, N, s, v, r in rows])
    df = df.astype({c: bool for c in ["in a verdict", *PLATEAU_COLUMNS[:6]]})
    return df.set_index(["part", "family", "N", "seed"])


def plateau_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (part, family, N) of plateau_runs: runs, share at plateau, how many runs are in each other
    state, the median slope and held-out slope [nats per 1000 steps], whether they enter a verdict."""
    g = table.groupby(level=["part", "family", "N"], sort=False)
    out = pd.DataFrame({"runs": g.size(), "share stationary": g["stationary"].mean(),
                        "share at plateau": g["at_plateau"].mean()})
    for s in plateau.STATES[1:]:
        out[s] = g[s].sum().astype(int)
    out["median slope"] = g["slope"].median()
    out["median held-out slope"] = g["heldout_slope"].median()
    out["in a verdict"] = g["in a verdict"].all()
    return out


def plateau_records(report, fit: dict, runs: dict, modes: pd.DataFrame) -> pd.DataFrame:
    """C2.plateau: the share of the runs in a verdict that reached their plateau, against PLATEAU_SHARE
    (Clopper–Pearson); the per-run measures as metric c2_plateau_runs, their summary glued as
    c2_plateau_table, the counts as c2_plateau_k and c2_plateau_n. Returns plateau_runs' table."""
    table = plateau_runs(report, fit, runs, modes)
    used = table[table["in a verdict"]]
    k, n = int(used["stationary"].sum()), len(used)
    report.mark(report.share("C2.plateau", "the trained runs whose numbers enter C2's verdicts (parts (b)–(d)) are "
                             "stationary: their training loss reached its plateau (plateau.measure, tolerances fixed "
                             "in advance; held-out loss free to rise): share of runs", used["stationary"],
                             PLATEAU_SHARE), "diagnostic")
    report.metric("c2_plateau_k", k)
    report.metric("c2_plateau_n", n)
    report.metric("c2_plateau_runs", table.reset_index().to_dict(orient="records"), glue_it=False)
    report.glue_table("c2_plateau_table", plateau_summary(table), fmt={"share stationary": "{:.0%}",
                                                                       "share at plateau": "{:.0%}", **dict.fromkeys(
        ["median slope", "median held-out slope"], "{:+.3g}")})
    return table

"""Claim C1's room: forward-KL stationarity on a sparse Markov source whose ground truth is
exact. `problem` draws the source, one sample per seed and the rank-r log-linear family;
the tasks below find the family's forward-KL minimiser independently (L-BFGS, best of
several starts), run gradient descent at fractions of the stability edge, fit the reverse
KL, and train the full family; the tables turn them into numbers per seed and fit, and
the record_* functions write the claim's records and glued metrics into the Report.

Members of the stability-edge run are seed-major, fraction-minor: member s * F + f is
seed s at step size fractions[f] (F fractions, the unstable one last)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import loglinear, measures, members, optim, plateau, train
from ..seeds import stream, streams
from ..sources import MarkovSource
from ..sweep import parallel_map

IDENTITY_TOL = 1e-10  # nats: the identity CE = H + KL holds to float64 rounding
MAXENT_TOL = 1e-6  # nats: H(p_theta*) - H(p_hat) = KL* to the accuracy of an L-BFGS minimum (gradient ~1e-9)
TREND_HORIZON = 10  # C1.unstable.trend extrapolates the tail's log-gap trend to this many times the run's length
STD_ARCH = dict(d=16, hidden=32)  # C1 under standard training: an MLP n-gram whose window is the source's order
STD_EVALS = 16  # geometric evaluations of the whole-sample loss, plus PLATEAU_EVALS across the plateau window
PLATEAU_EVALS = 32  # dense: a minibatch run's whole-sample loss fluctuates, and the slope is a regression over these
SHARP_ITERS = 30  # power iterations for the top Hessian eigenvalue of the whole-sample loss
INIT_SCALE = 100  # L-BFGS starts at scale 1: 100 x the training initialisation (init_scale 0.01)
FORWARD_STARTS, REVERSE_STARTS = 1, 2  # sub-key of the 'init' stream of the L-BFGS starts of each fit
FITS = {"fwd": "forward-KL fit", "rev": "reverse-KL fit"}
COVERAGE = {"kept": "kept share of p̂ support", "outside": "mass outside p̂ support",
            "dropped": "p̂-mass dropped"}  # measures.support_coverage key -> column


@dataclass
class Problem:
    """One source, one sample per seed (S seeds), and the rank-r family; arrays [S, ...]."""
    src: MarkovSource
    family: loglinear.LowRankSoftmax
    seeds: list
    counts: np.ndarray  # [S, C, V] transition counts n_cj
    w_hat: np.ndarray  # [S, C] context weights n_c / n
    P_hat: np.ndarray  # [S, C, V] empirical conditionals
    H_hat: np.ndarray  # [S] H(p_hat_N), weighted by w_hat
    unseen: np.ndarray  # [S] transitions the chain allows that the sample never shows
    C_t: torch.Tensor  # [S, C, V] counts on the device
    ctx_t: torch.Tensor  # [S, n] context index of every training token
    tgt_t: torch.Tensor  # [S, n] the token
    W_hat: torch.Tensor  # [S, C]
    P_true: torch.Tensor  # [C, V] the chain
    pi: torch.Tensor  # [C] its stationary law over contexts


def problem(seeds, *, vocab, order, sparsity, dirichlet_alpha, source_seed, n_sequences, seq_len, rank,
            device) -> Problem:
    """The source (fixed by source_seed), N sequences per seed (stream 'data' of each seed)
    and the rank-r log-linear family in float64 on `device`."""
    src = MarkovSource.random(vocab, sparsity=sparsity, alpha=dirichlet_alpha, order=order, seed=source_seed)
    samples = [src.sample(n_sequences, seq_len, seed=stream("data", s)) for s in seeds]  # each [N, T]
    counts = np.stack([src.transition_counts(x) for x in samples])  # [S, C, V]
    emp = [measures.empirical_conditional(c) for c in counts]  # (w_hat, P_hat) per seed
    w_hat = np.stack([w for w, _ in emp])
    return Problem(
        src=src, family=loglinear.LowRankSoftmax(src.n_contexts, vocab, rank=rank, device=device),
        seeds=list(seeds), counts=counts, w_hat=w_hat, P_hat=np.stack([P for _, P in emp]),
        H_hat=np.array([measures.conditional_entropy(w, P) for w, P in emp]),
        unseen=np.array([((src.P > 0) & (c == 0)).sum() for c in counts]),
        C_t=torch.tensor(counts, device=device),
        ctx_t=torch.tensor(np.stack([src.contexts_of(x).reshape(-1) for x in samples]), device=device),
        tgt_t=torch.tensor(np.stack([x[:, order:].reshape(-1) for x in samples]), device=device),
        W_hat=torch.tensor(w_hat, device=device), P_true=torch.tensor(src.P, device=device),
        pi=torch.tensor(src.stationary, device=device))


def best_of_starts(loss_fn, family, n_seeds: int, starts: int, key: int, offset=0.0, max_iter: int = 2000):
    """Full-batch L-BFGS (optim.minimize_lbfgs) from `starts` random starts per seed
    (members seed-major: seed s, start i is member s * starts + i, initialised from seed
    seeds.stream('init', that index, key) at INIT_SCALE x the family's scale), and per seed the start
    of least value = loss - offset[s]; max_iter L-BFGS iterations per restart (optim.minimize_lbfgs: five
    restarts, fewer iterations where the tolerance is met). Returns (params of the best start per seed [S, ...],
    values [S, starts], gradient norms [S * starts])."""
    init = {k: v * INIT_SCALE for k, v in family.init([stream("init", i, key) for i in range(n_seeds * starts)]).items()}
    sol, loss, grad = optim.minimize_lbfgs(loss_fn, init, max_iter=max_iter)
    values = loss.cpu().numpy().reshape(n_seeds, starts) - np.reshape(offset, (-1, 1))  # [S, starts]
    best = values.argmin(1)
    theta = {k: v.reshape(n_seeds, starts, *v.shape[1:])[np.arange(n_seeds), best] for k, v in sol.items()}
    return theta, values, grad


def coverage_table(pb: Problem, fits: dict, keep_tau) -> pd.DataFrame:
    """One row per seed and fit ({name: Q [S, C, V]}): which transitions of the sample the
    fit keeps (mass >= keep_tau), the mass it puts outside the sample's support, the
    sample's mass it drops, and its conditional entropy (weights w_hat)."""
    rows = []
    for s in range(len(pb.seeds)):
        w, P = pb.w_hat[s], pb.P_hat[s]
        for name, Q in fits.items():
            cov = measures.support_coverage(P, Q[s], w, keep_tau)
            rows.append({"seed": pb.seeds[s], "fit": name, **{col: cov[k] for k, col in COVERAGE.items()},
                         "entropy [nats]": measures.conditional_entropy(w, Q[s])})
    return pd.DataFrame(rows)


def forward_fit(pb: Problem, *, lbfgs_starts, lbfgs_iters, keep_tau) -> dict:
    """The family's forward-KL minimiser theta* per seed, found by L-BFGS independently of
    gradient descent: KL per start [S, starts], KL* [S], gradient norms, the
    moment-matching residual [S], the fitted conditionals Q [S, C, V] and their coverage."""
    S = len(pb.seeds)
    counts = pb.C_t.repeat_interleave(lbfgs_starts, 0)  # [S*starts, C, V]
    theta, kl_starts, grad = best_of_starts(lambda p: loglinear.count_cross_entropy(pb.family, p, counts),
                                            pb.family, S, lbfgs_starts, FORWARD_STARTS, offset=pb.H_hat,
                                            max_iter=lbfgs_iters)
    Q = loglinear.conditional_probs(pb.family, theta).cpu().numpy()  # [S, C, V]
    return {"theta": theta, "kl_starts": kl_starts, "KL_star": kl_starts[np.arange(S), kl_starts.argmin(1)],
            "grad": grad, "moment": pb.family.moment_gap(theta, pb.C_t).cpu().numpy(), "Q": Q,
            "coverage": coverage_table(pb, {FITS["fwd"]: Q}, keep_tau)}


def maxent_table(pb: Problem, fit: dict) -> pd.DataFrame:
    """Per seed: H(p_hat), H(p_theta*), their difference (= KL* by moment matching), KL*
    and the fit's mass outside the sample's support."""
    cov = fit["coverage"]
    H_fit = cov["entropy [nats]"].to_numpy()
    return pd.DataFrame({"seed": pb.seeds, "H(p̂_N)": pb.H_hat, "H(p_θ*)": H_fit, "difference": H_fit - pb.H_hat,
                         "KL*": fit["KL_star"], COVERAGE["outside"]: cov[COVERAGE["outside"]].to_numpy()}
                        ).set_index("seed")


def edge_runs(pb: Problem, fit: dict, *, lr_fractions, unstable_fraction, steps) -> dict:
    """Full-batch gradient descent from the same small initialisation per seed at each
    step size fraction x the edge 2 / lambda_max (lambda_max: top Hessian eigenvalue at
    theta*), every step logged: the trajectory (ce_tokens, kl_emp, kl_true [L, M]), the
    edge [S], the fractions, the gap KL - KL* [L, M] and the identity error
    |CE - H - KL| [L, M]."""
    lam = optim.top_hessian_eigenvalue(lambda p: loglinear.count_cross_entropy(pb.family, p, pb.C_t),
                                       fit["theta"], member_seeds=streams("power", pb.seeds))  # [S]
    edge = 2 / lam  # [S]
    fractions = list(lr_fractions) + [unstable_fraction]
    F = len(fractions)
    lr = torch.stack([edge * f for f in fractions], 1).reshape(-1)  # [M]
    counts = pb.C_t.repeat_interleave(F, 0)  # [M, C, V]
    ctx, tgt = pb.ctx_t.repeat_interleave(F, 0), pb.tgt_t.repeat_interleave(F, 0)
    H_mem = torch.tensor(pb.H_hat, device=counts.device).repeat_interleave(F)  # [M]
    traj = train.train(
        lambda p, t: loglinear.count_cross_entropy(pb.family, p, counts),
        pb.family.init([s for s in pb.seeds for _ in fractions]),  # same initialisation for every fraction
        steps=steps, lr=lr, optimizer="sgd", log_every=1, desc="C1 gradient descent",
        log_fns={
            "ce_tokens": lambda p: loglinear.sequence_cross_entropy(pb.family, p, ctx, tgt),
            "kl_emp": lambda p: loglinear.count_forward_kl(pb.family, p, counts),
            "kl_true": lambda p: loglinear.conditional_kl_to(pb.family, p, pb.P_true, pb.pi),
        })
    kl_emp = traj["kl_emp"]  # [L, M] KL(p_hat || p_theta_t)
    return {"traj": traj, "edge": edge, "fractions": fractions, "n_stable": len(lr_fractions),
            "gap": kl_emp - np.repeat(fit["KL_star"], F)[None, :],  # [L, M] distance to the family's minimum
            "ident_err": np.abs(traj["ce_tokens"] - (H_mem.cpu().numpy()[None, :] + kl_emp))}


def members_at(runs: dict, f: int) -> np.ndarray:
    """The members (one per seed, in seed order) run at fractions[f]; f = -1: the unstable one."""
    F = len(runs["fractions"])
    return np.arange(f % F, runs["gap"].shape[1], F)


def reverse_fit(pb: Problem, *, lbfgs_starts, lbfgs_iters, reverse_eps) -> dict:
    """The family's minimiser of the reverse KL sum_c w_c KL(p_theta(.|c) || p_tilde(.|c)) to
    the smoothed empirical law p_tilde = (n_cj + eps) / (n_c + V eps), best of L-BFGS starts."""
    S = len(pb.seeds)
    Ptil = torch.tensor(np.stack([measures.smoothed_conditional(c, reverse_eps) for c in pb.counts]),
                        device=pb.C_t.device)  # [S, C, V]
    W, Pt = pb.W_hat.repeat_interleave(lbfgs_starts, 0), Ptil.repeat_interleave(lbfgs_starts, 0)
    theta, values, _ = best_of_starts(lambda p: loglinear.count_reverse_kl(pb.family, p, W, Pt),
                                      pb.family, S, lbfgs_starts, REVERSE_STARTS, max_iter=lbfgs_iters)
    return {"theta": theta, "values": values, "Q": loglinear.conditional_probs(pb.family, theta).cpu().numpy()}


def coverage_summary(pb: Problem, fwd: dict, rev: dict, *, keep_tau) -> pd.DataFrame:
    """Mean over seeds of coverage_table, one row per fit (forward, reverse)."""
    cover = coverage_table(pb, {FITS["fwd"]: fwd["Q"], FITS["rev"]: rev["Q"]}, keep_tau)
    return cover.groupby("fit").mean(numeric_only=True).drop(columns="seed")


def full_family_run(pb: Problem, *, steps) -> train.Trajectory:
    """Gradient descent in the full family (a free logit per transition, minimiser p_hat)
    at eta = 1 / max_c w_c, logging KL to the sample and to the truth about 300 times.
    The Hessian of a softmax cross-entropy in the logits of context c is
    w_c (diag(p) - p p^T) <= w_c / 2, so this eta is below the edge 2 / lambda_max everywhere."""
    full = loglinear.CategoricalTable(pb.src.n_contexts, pb.src.vocab, device=pb.C_t.device)
    return train.train(
        lambda p, t: loglinear.count_cross_entropy(full, p, pb.C_t), full.init(pb.seeds), steps=steps,
        lr=1.0 / pb.W_hat.max(1).values, optimizer="sgd", log_every=max(1, steps // 300), desc="C1 full family",
        log_fns={"kl_emp": lambda p: loglinear.count_forward_kl(full, p, pb.C_t),
                 "kl_true": lambda p: loglinear.conditional_kl_to(full, p, pb.P_true, pb.pi)})


# ---------------------------------------------------------------------- records
def sample_table(pb: Problem) -> pd.DataFrame:
    return pd.DataFrame({"seed": pb.seeds, "H(p_hat) [nats]": pb.H_hat,
                         "true transitions unseen": pb.unseen}).set_index("seed")


def record_sample(report, pb: Problem) -> None:
    report.metric("c1_h_true", pb.src.entropy_rate)
    report.metric("c1_h_hat_mean", pb.H_hat.mean())
    report.metric("c1_unseen_mean", pb.unseen.mean())
    report.metric("c1_n_transitions", int(pb.counts[0].sum()))


def record_minimiser(report, fit: dict) -> None:
    """The minimiser's certificates: KL*, spread over starts, gradient norm, moment residual."""
    kl = fit["kl_starts"]
    report.metric("c1_lbfgs_starts", report.parameters["lbfgs_starts"])
    report.metric("c1_lbfgs_iters", report.parameters["lbfgs_iters"])
    report.metric("c1_kl_star_mean", fit["KL_star"].mean())
    report.metric("c1_start_spread", (kl.max(1) - kl.min(1)).max())
    report.metric("c1_lbfgs_grad_max", fit["grad"].max().item())
    report.metric("c1_moment_gap_max", fit["moment"].max())


def record_maxent(report, pb: Problem, fit: dict) -> None:
    """Record C1.maxent, an identity per seed (thm-maxent): H(p_theta*) - H(p_hat) = KL* >= 0;
    its errors are |difference - KL*| and any negative difference, to MAXENT_TOL."""
    t = maxent_table(pb, fit)
    diff = t["difference"].to_numpy()
    err = np.concatenate([np.abs(diff - fit["KL_star"]), np.maximum(0.0, -diff)])
    report.identity("C1.maxent", f"rank-{report.parameters['rank']} log-linear forward-KL fit, every seed: entropy "
                    "above the sample's by exactly the minimum KL, H(p_θ*) − H(p̂_N) = KL* ≥ 0 (max error)", err,
                    MAXENT_TOL, "nats")
    report.metric("c1_maxent_difference_min", diff.min())
    report.metric("c1_maxent_identity_err", np.abs(diff - fit["KL_star"]).max())
    report.metric("c1_fit_entropy_mean", t["H(p_θ*)"].to_numpy().mean())
    report.metric("c1_fit_outside_mean", t[COVERAGE["outside"]].to_numpy().mean())


def record_identity(report, runs: dict) -> None:
    """Record C1.identity: the largest |CE - H - KL| over every logged step and trajectory."""
    err = runs["ident_err"]
    report.metric("c1_logged_steps", len(runs["traj"].step))
    report.metric("c1_members", err.shape[1])
    report.metric("c1_identity_max_err", err.max())
    report.identity("C1.identity", "CE(θ) = H(p̂_N) + KL(p̂_N‖p_θ) at every logged step (max abs error, float64)",
                    err, IDENTITY_TOL, "nats")


def record_stable(report, runs: dict) -> None:
    """Record C1: the final gap of the worst stable step size of each seed, mean over seeds,
    below gap_threshold."""
    p, traj, S = report.parameters, runs["traj"], len(report.seeds)
    report.metric("c1_edge_mean", runs["edge"].mean().item())
    report.metric("c1_lr_fractions", ", ".join(f"{f:g}" for f in p["lr_fractions"]))
    report.metric("c1_steps", p["steps"])
    final_gap = runs["gap"][-1].reshape(S, len(runs["fractions"]))  # [S, F]
    worst_stable = final_gap[:, : runs["n_stable"]].max(1)  # [S] worst stable step size of each seed
    report.mean("C1", "stable gradient descent ends at the forward-KL minimiser of the family: final KL gap "
                "(worst stable step size per seed, mean over seeds)", worst_stable, p["gap_threshold"], "<", "nats")
    stable = np.array([f < 1 for f in runs["fractions"]] * S)  # [M]
    report.metric("c1_final_grad_max", traj.grad_norm[-1][stable].max())


def projected_log_gap(step, gap, steps: int) -> np.ndarray:
    """[M] log10 of the KL gap extrapolated to TREND_HORIZON x `steps` along the least-squares
    line of log10 gap against step over the window `step` [W] (gap [W, M]): a trajectory
    converging slowly (linearly, at any rate) projects below any threshold it will reach,
    one that does not settle (an oscillation, a floor) stays above."""
    y = np.log10(np.maximum(np.asarray(gap, dtype=np.float64), np.finfo(np.float64).tiny))  # [W, M]
    x = np.asarray(step, dtype=np.float64)
    slope = ((x - x.mean())[:, None] * (y - y.mean(0))).sum(0) / ((x - x.mean()) ** 2).sum()
    return y.mean(0) + slope * (TREND_HORIZON * steps - x.mean())


def record_unstable(report, runs: dict) -> None:
    """Record C1.unstable: past the edge, the gap averaged over the last `tail` share of the
    steps stays above gap_threshold."""
    p, traj, uns = report.parameters, runs["traj"], members_at(runs, -1)
    n_tail = max(2, int(p["tail"] * len(traj.step)))
    report.mean("C1.unstable", "past the stability edge, gradient descent does not settle at the minimiser: "
                "KL gap over the last steps (mean over seeds)", runs["gap"][-n_tail:, uns].mean(0),
                p["gap_threshold"], ">", "nats")
    report.mean("C1.unstable.trend", f"past the edge, not a slow convergence: the gap's log-linear trend over the "
                f"last steps, extrapolated to {TREND_HORIZON}× the run, still exceeds the threshold (log10 nats, "
                "mean over seeds)", projected_log_gap(traj.step[-n_tail:], runs["gap"][-n_tail:, uns], p["steps"]),
                float(np.log10(p["gap_threshold"])), ">", "log10 nats")
    report.metric("c1_trend_horizon", TREND_HORIZON)
    report.metric("c1_unstable_grad_mean", traj.grad_norm[-n_tail:, uns].mean())
    report.metric("c1_tail_steps", n_tail)
    report.metric("c1_unstable_fraction", p["unstable_fraction"])


def record_coverage(report, summary: pd.DataFrame) -> None:
    for key, fit in FITS.items():
        report.metric(f"c1_{key}_kept", summary.loc[fit, COVERAGE["kept"]])
        report.metric(f"c1_{key}_outside", summary.loc[fit, COVERAGE["outside"]])
        report.metric(f"c1_{key}_entropy", summary.loc[fit, "entropy [nats]"])
    report.metric("c1_keep_tau", report.parameters["keep_tau"])


def record_full_family(report, runs: dict, full: train.Trajectory) -> None:
    """KL to the sample and to the truth at the end of the full-family run, the truth's
    minimum along it, and the rank-r family's final KL to the truth (largest stable step)."""
    kt = full["kl_true"]
    report.metric("c1_full_kl_emp_final", full["kl_emp"][-1].mean())
    report.metric("c1_full_kl_true_min", kt.min(0).mean())
    report.metric("c1_full_kl_true_final", kt[-1].mean())
    lowrank = runs["traj"]["kl_true"][-1, members_at(runs, runs["n_stable"] - 1)]  # [S]
    report.metric("c1_lowrank_kl_true_final", lowrank.mean())
    report.metric("c1_full_kl_true_rise", (kt[-1] - kt.min(0)).mean())
    report.metric("c1_rank", report.parameters["rank"])


# ---------------------------------------------------------------------- C1 under standard training
def context_entropy(x: np.ndarray, k: int, bos: int) -> float:
    """H(p̂_N | the last k tokens): the plug-in conditional entropy of the next token over every
    training position of x [N, T+1] (BOS first), each context left-padded with BOS as the MLP
    n-gram sees it: the floor of that model's training cross-entropy (thm-softmax-head)."""
    inp, tgt = x[:, :-1], x[:, 1:]  # [N, T] each
    pad = np.concatenate([np.full((x.shape[0], k - 1), bos, dtype=x.dtype), inp], 1)
    ctx = np.stack([pad[:, i:i + inp.shape[1]] for i in range(k)], -1).reshape(-1, k)  # [N*T, k]
    _, c = np.unique(ctx, axis=0, return_inverse=True)
    counts = np.zeros((c.max() + 1, bos), dtype=np.float64)
    np.add.at(counts, (c.reshape(-1), tgt.reshape(-1)), 1.0)
    return measures.conditional_entropy(*measures.empirical_conditional(counts))


def standard_training(*, seeds, vocab, order, sparsity, dirichlet_alpha, source_seed, n_sequences, seq_len,
                      std_steps, adamw_lrs, sgd_lrs, batch_sizes, device, executor, workers) -> pd.DataFrame:
    """Minibatch (and full-batch) AdamW and SGD on an MLP n-gram (window = the source's order,
    STD_ARCH) for std_steps, each seed on its own C1 sample, one call of standard_run per
    (optimizer, lr, batch) on the executor (one torch thread each; the whole-sample runs, which take about
    three times as long as those of 4 sequences, start first): one row per (optimizer, lr,
    batch, seed) with the floor H(p̂_N | context), the excess forward KL to the empirical distribution
    (whole-sample cross-entropy minus that floor, mean over the plateau window: the stationary
    spread of noisy iterates included), its share of the reducible loss log V - floor, the
    plateau state (plateau.measure on the whole-sample loss) and lr x the top Hessian eigenvalue
    of the whole-sample loss at the end (SGD is past its stability edge when it exceeds 2)."""
    src = MarkovSource.random(vocab, sparsity=sparsity, alpha=dirichlet_alpha, order=order, seed=source_seed)
    kw = dict(seeds=list(seeds), vocab=vocab, order=order, n_sequences=n_sequences, seq_len=seq_len,
              std_steps=std_steps, device=str(device))
    grid = [(opt, lr, b) for opt, lrs in (("adamw", adamw_lrs), ("sgd", sgd_lrs)) for lr in lrs for b in batch_sizes]
    outs = parallel_map(standard_run, [(src, *g, kw) for g in grid], executor=executor, workers=workers or None,
                        device=str(device), desc="C1 standard training",
                        cost=[n_sequences if b == 0 else min(b, n_sequences) for _, _, b in grid])
    return pd.DataFrame([r for rows in outs for r in rows])


def standard_run(src: MarkovSource, opt: str, lr: float, b: int, kw: dict) -> list[dict]:
    """One (optimizer, lr, batch) of standard_training, every seed at once: its rows."""
    seeds, vocab, order, n_sequences = kw["seeds"], kw["vocab"], kw["order"], kw["n_sequences"]
    dev = torch.device(kw["device"])
    data = torch.stack([members.with_bos(src.sample(n_sequences, kw["seq_len"], seed=stream("data", s)), vocab, dev)
                        for s in seeds])  # [S, N, T+1]: the samples of problem()
    floor = np.array([context_entropy(d.cpu().numpy(), order, vocab) for d in data])  # [S]
    tol = plateau.Tolerances()
    steps = kw["std_steps"]
    evals = np.union1d(train.eval_schedule(steps, STD_EVALS),
                       np.linspace((1 - tol.window) * steps, steps, PLATEAU_EVALS).astype(int))
    traj, base = train.train_lm("mlp", data, vocab=vocab, seeds=seeds, steps=steps, lr=lr,
                                batch_size=b, optimizer=opt, eval_every=evals,
                                eval_fns={"whole": lambda base, p, t: members.lm_loss(base, p, data)},
                                desc=f"c1 {opt} lr={lr:g} batch={b or 'all'}", context=order, **STD_ARCH)
    whole = traj["whole"]  # [E, S]
    pl = plateau.measure_members(traj.eval_step, whole, tol=tol)
    lam = optim.top_hessian_eigenvalue(lambda p: members.lm_loss(base, p, data), traj.params,
                                       iters=SHARP_ITERS, member_seeds=streams("power", seeds))
    win = traj.eval_step >= pl["window_start"].iloc[0]
    rows = []
    for m, s in enumerate(seeds):
        excess = float(whole[win, m].mean() - floor[m])
        rows.append({"optimizer": opt, "lr": float(lr), "batch": int(b or n_sequences), "seed": s,
                     "full batch": b == 0, "floor": floor[m], "excess KL": excess,
                     "excess share": excess / (np.log(vocab) - floor[m]),
                     "at plateau": bool(pl["at_plateau"].iloc[m]), "slope": float(pl["slope"].iloc[m]),
                     "lr x sharpness": float(lr * lam[m].abs().item()),
                     "diverged": not np.isfinite(whole[-1, m])})
    return rows


def standard_records(report, std: pd.DataFrame) -> pd.DataFrame:
    """C1.standard[opt:lr:batch]: the excess forward KL of the runs at plateau, as a share of the
    reducible loss, below approx_share (Student-t over those seeds); C1.standard[opt] for every
    such configuration; C1.noise[opt]: at the largest lr, the smallest minibatch ends further from
    the minimiser than the whole sample per step (paired over the seeds at plateau in both).
    Returns the per-configuration table (means over seeds) and glues it as c1_standard_table."""
    p = report.parameters
    keys = ["optimizer", "lr", "full batch", "batch"]
    report.metric("c1_std_steps", p["std_steps"])
    report.metric("c1_approx_share", p["approx_share"])
    report.metric("c1_std_plateau_share", float(std["at plateau"].mean()))
    report.metric("c1_std_runs", len(std))
    for opt, g_opt in std.groupby("optimizer", sort=False):
        members_ = []
        for (lr, full, b), g in g_opt.groupby(["lr", "full batch", "batch"], sort=False):
            ok = g[g["at plateau"]]
            members_.append(report.mean(
                f"C1.standard[{opt}:{lr:g}:{'all' if full else b}]", f"{opt}, lr {lr:g}, "
                f"{'the whole sample' if full else f'{b} sequences'} per step ({len(ok)} of {len(g)} runs at plateau, "
                "the others left out): excess forward KL to the empirical distribution, as a share of the "
                "reducible loss, over the plateau window", ok["excess share"], p["approx_share"], "<"))
        report.aggregate(f"C1.standard[{opt}]", f"{opt}, every learning rate and batch size: stationary solutions "
                         "approximately minimise the forward KL to the empirical distribution", members_)
        top = g_opt[g_opt.lr == g_opt.lr.max()]
        mini, full = top[~top["full batch"]], top[top["full batch"]].set_index("seed")
        if len(mini) and len(full):
            mini = mini[mini.batch == mini.batch.min()].set_index("seed")
            both = mini.index[mini["at plateau"] & full.loc[mini.index, "at plateau"]]
            report.paired(f"C1.noise[{opt}]", f"{opt} at lr {top.lr.iloc[0]:g}: {mini.batch.iloc[0]} sequences per "
                          "step end further from the forward-KL minimiser than the whole sample per step (excess KL, "
                          f"paired by seed; {len(both)} of {len(mini)} seeds at plateau in both, only those count)",
                          mini.loc[both, "excess KL"], full.loc[both, "excess KL"], 0.0, ">", "nats")
    table = std.groupby(keys, sort=False)[["excess KL", "excess share", "at plateau", "lr x sharpness"]].mean()
    report.glue_table("c1_standard_table", table, fmt={"excess KL": "{:.2e}", "excess share": "{:.2%}",
                                                       "at plateau": "{:.0%}", "lr x sharpness": "{:.3g}"})
    return table

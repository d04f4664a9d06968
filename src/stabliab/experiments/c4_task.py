"""Claim C4's task: one configuration of the design, every seed trained at once until its
loss on a fixed batch stops falling (matched training progress), then measured: how stable
the optimisation was (per seed) and how good the generative model is (exactly, from the
model's full conditional table). experiments/c4.py runs the design and turns the results
into tables and records."""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import lm, measures, members, optim, plateau, train
from ..seeds import stream, streams
from ..sources import MarkovSource

STABILITY = ["loss_std", "grad_norm", "sharpness", "drift"]  # per seed; plus "disagreement" per configuration
QUALITY = ["entropy_ratio", "forward_kl", "reverse_kl", "coverage", "distinct4", "tf_entropy", "heldout_ce",
           "overconfidence"]
# fixed parts of the measurement protocol (the same in every profile)
SOURCE_SEED = 0  # the Markov sources
SPARSITY = 0.7  # share of impossible transitions of the "sparse" source (many unseen transitions)
N_FIXED = 64  # training sequences of the fixed evaluation batch (the stopping rule, loss noise, sharpness)
N_GEN = 64  # sequences generated per seed (distinct-4)
EVALS_PER_MIN = 16  # evaluations of the fixed-batch loss per min_steps steps (the stopping rule reads them)
SHARP_ITERS = 20  # power iterations for the top Hessian eigenvalue
PLATEAU_TOL = plateau.Tolerances()  # [pre-registered] the book's plateau test, as in C2


def source(name: str, *, vocab: int, order: int, alpha: float) -> MarkovSource:
    """C4's Markov sources: "dense" (Dirichlet(alpha) rows, every transition possible) and
    "sparse" (a share SPARSITY of transitions impossible: a small sample leaves many possible
    ones unseen, so empirical modes matter; the reverse KL of a softmax model is infinite)."""
    if name not in ("dense", "sparse"):
        raise ValueError(f"unknown C4 source {name!r}; allowed: dense, sparse")
    return MarkovSource.random(vocab, sparsity=0.0 if name == "dense" else SPARSITY, alpha=alpha, order=order,
                               seed=stream("source", SOURCE_SEED))


def warmup_fn(warmup_steps: int):
    """Learning-rate factor at step t: linear warm-up over warmup_steps, then constant (the
    stopping rule decides the length of a run, so no schedule depends on it)."""
    return None if warmup_steps <= 0 else (lambda t: min(1.0, (t + 1) / warmup_steps))


def eval_every(min_steps: int) -> int:
    """Steps between evaluations: EVALS_PER_MIN of them by min_steps, so that the stopping rule
    has at least 4 in its window from its first question on."""
    if min_steps < EVALS_PER_MIN:
        raise ValueError(f"min_steps must be at least {EVALS_PER_MIN}, got {min_steps}")
    return min_steps // EVALS_PER_MIN


def finished_rule(min_steps: int):
    """The pre-registered stopping rule, asked at every evaluation, seed by seed (each seed's
    own losses only: a seed trains the same alone or with others): a seed is done once
    min_steps are done and the plateau test (plateau.measure, the book's rule, as in notebook
    02) on its training-sample fixed batch, over the last PLATEAU_TOL.window of its run so far,
    says "plateau" (a stationary point) or "oscillating" (it will not settle: a region of the
    design, reported, not used); or as soon as its loss is not finite. A seed still descending
    or rising goes on, to max_steps at most. -> stop(steps, evals) -> [M]."""
    def stop(steps, evals):
        fl = evals["fixed"]  # [E, M]
        bad = ~np.isfinite(fl).all(0)
        if steps[-1] < min_steps:
            return bad
        done = [not bad[m] and plateau.measure(steps, fl[:, m], tol=PLATEAU_TOL)["state"] in ("plateau", "oscillating")
                for m in range(fl.shape[1])]  # measure_members' decision, without its table (asked at every evaluation)
        return bad | np.array(done)
    return stop


STATES = ("plateau", "oscillating", "descending", "rising", "diverged")  # a seed's state where its run ended


def c4_task(config: dict, seeds: list[int], *, vocab: int, order: int, alpha: float, seq_len: int,
            min_steps: int, max_steps: int, d_model: int, hidden: int, tail: float, tau: float,
            device: str) -> dict:
    """config: source (dense | sparse), lr, batch, weight_decay, label_smoothing, clip (0 =
    none), ema (0 = none), warmup (share of min_steps), n_train (sequences). Trains by AdamW
    until finished_rule stops it or max_steps. The keywords are the notebook's parameters of
    the same names (sweep.task_context). Per seed: steps run; its state (STATES: the plateau
    test's state where the run ended, or "diverged": a non-finite loss, or a training loss over
    the last window above log V, worse than the uniform prediction); the stability measures
    (STABILITY, over the last `tail` of the run, on the training-sample fixed batch) and the
    exact quality measures (QUALITY; None for a seed whose parameters are not finite); the
    model's conditional table, the source's stationary law and transition table (for the
    configuration's seed disagreement and independent recomputation)."""
    dev = torch.device(device)
    src = source(config["source"], vocab=vocab, order=order, alpha=alpha)
    pi, H = src.stationary, src.entropy_rate
    data = torch.stack([members.with_bos(src.sample(int(config["n_train"]), seq_len, seed=stream("data", s)), vocab, dev)
                        for s in seeds])
    fixed = data[:, :min(int(config["n_train"]), N_FIXED)]  # each seed's first training sequences: no random draw
    snaps = {}

    def fixed_loss(base, p, t):
        snaps[t] = {k: v.detach().clone() for k, v in p.items()}  # for the drift over the last window
        return members.lm_loss(base, p, fixed)
    lr = float(config["lr"])
    traj, base = train.train_lm(
        "mlp", data, vocab=vocab, seeds=seeds, steps=max_steps, lr=lr, batch_size=int(config["batch"]),
        weight_decay=float(config["weight_decay"]), label_smoothing=float(config["label_smoothing"]),
        clip=float(config["clip"]) or None, ema=float(config["ema"]),
        schedule=warmup_fn(int(round(float(config["warmup"]) * min_steps))), eval_every=eval_every(min_steps),
        eval_fns={"fixed": fixed_loss}, stop=finished_rule(min_steps), context=order, d=d_model,
        hidden=hidden, desc="c4")
    M = len(seeds)
    ok = [all(bool(torch.isfinite(v[m]).all()) for v in traj.params.values()) for m in range(M)]
    zero = lambda P: {k: torch.where(torch.tensor(ok, device=dev).reshape((M,) + (1,) * (v.ndim - 1)), v,  # noqa: E731
                                     torch.zeros_like(v)) for k, v in P.items()}  # non-finite members: zeros
    params = zero(traj.params)
    final = zero(traj.ema_params) if traj.ema_params is not None else params
    out = {name: [] for name in ["steps", "state", "at_plateau", "plateau_slope", *STABILITY[:2], "drift"]}
    for m in range(M):  # each seed over its own run: steps 0..T_m (it was frozen after T_m)
        T = int(traj.stopped[m])
        e = traj.eval_step <= T
        st, fl = traj.eval_step[e], traj["fixed"][e, m]  # [E_m] loss on the training-sample fixed batch
        last = st >= T - tail * T
        if not ok[m] or not np.all(np.isfinite(fl)):  # stopped at its first non-finite loss (maybe before min_steps)
            ok[m] = False
            pl, diverged = {"state": "diverged", "at_plateau": False, "slope": np.nan}, True
        else:
            pl = plateau.measure(st, fl, tol=PLATEAU_TOL)
            diverged = fl[last].mean() > math.log(vocab)
        out["steps"].append(T)
        out["state"].append("diverged" if diverged else pl["state"])
        out["at_plateau"].append(bool(pl["at_plateau"]) and not diverged)
        out["plateau_slope"].append(float(pl["slope"]) if np.isfinite(pl["slope"]) else None)
        # ---- stability over the last `tail` of the run
        out["loss_std"].append(float(measures.detrended_std(fl[last])) if ok[m] else None)
        g = (traj.step > T - max(1, int(tail * T))) & (traj.step <= T)
        out["grad_norm"].append(float(traj.grad_norm[g, m].mean()) if ok[m] else None)
        if ok[m]:
            snap = snaps[int(st[last][0])]  # the parameters where the window starts
            num = optim.member_norm([params[k][m:m + 1] - snap[k][m:m + 1] for k in snap], 1)
            out["drift"].append(float(num[0] / optim.member_norm([v[m:m + 1] for v in params.values()], 1)[0]))
        else:
            out["drift"].append(None)
    lam = optim.top_hessian_eigenvalue(lambda p: members.lm_loss(base, p, fixed), params, iters=SHARP_ITERS,
                                       member_seeds=streams("power", seeds))
    out["sharpness"] = [float(lr * abs(x)) if ok[m] else None for m, x in enumerate(lam.cpu().numpy())]
    # ---- quality, per seed, exact from the model's conditional table
    Q = np.stack([lm.ngram_table(members.member(base, final, m), src.context_tokens()).cpu().numpy()
                  for m in range(M)])  # [M, C, V]
    for name in QUALITY:
        out[name] = []
    tok, _ = members.sample_members(base, final, N_GEN, seq_len, seed=0, member_seeds=streams("sample", seeds))
    dense = bool((src.P > 0).all())
    for m in range(M):
        if not ok[m]:
            for name in QUALITY:
                out[name].append(None)
            continue
        chain = MarkovSource(Q[m] / Q[m].sum(1, keepdims=True), order)
        fkl = measures.conditional_kl(pi, src.P, Q[m])
        out["entropy_ratio"].append(chain.entropy_rate / H)  # free-running entropy rate against the source's
        out["forward_kl"].append(fkl)
        out["reverse_kl"].append(measures.conditional_kl(chain.stationary, Q[m], src.P) if dense else None)  # inf: none
        out["coverage"].append(float(np.dot(pi, (src.P * (Q[m] >= tau)).sum(1))))
        out["distinct4"].append(measures.distinct_n(tok[m], 4))
        tf = measures.conditional_entropy(pi, Q[m])  # teacher-forced entropy on the source's contexts
        out["tf_entropy"].append(tf)
        out["heldout_ce"].append(H + fkl)
        out["overconfidence"].append(H + fkl - tf)  # > 0: the model is surer than its loss warrants
    out["table"] = [Q[m].tolist() if ok[m] else None for m in range(M)]
    out["weights"] = [pi.tolist()] * M
    out["source"] = [src.P.tolist()] * M  # the source's transition table (the same for every seed)
    return out

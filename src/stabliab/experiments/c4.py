"""Claim C4's room: stability against expressivity. c4_task trains an order-matched MLP
n-gram model on a Markov source with exact ground truth and measures, per seed, how
stable the optimisation was and how good the generative model is (exactly, from the
model's full conditional table); the functions below turn the sweep's results into the
tables the records are computed from."""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import lm, measures, members, optim, train
from ..sources import MarkovSource
from ..stats import standardise

STABILITY = ["loss_std", "grad_norm", "sharpness", "drift"]  # per seed; plus "disagreement" per configuration
QUALITY = ["entropy_ratio", "forward_kl", "reverse_kl", "coverage", "distinct4", "overconfidence", "heldout_ce"]


def schedule_fn(steps: int, warmup: float, shape: str):
    """Learning-rate factor at step t: linear warm-up over a share of the steps, then
    constant or cosine decay to 0."""
    w = int(warmup * steps)

    def f(t):
        if t < w:
            return (t + 1) / w
        if shape == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (t - w) / max(1, steps - w)))
        return 1.0
    return f


def c4_task(config: dict, seeds: list[int], *, vocab: int = 8, order: int = 2, alpha: float = 0.3,
            source_seed: int = 0, seq_len: int = 32, steps: int = 300, d: int = 16, hidden: int = 32,
            n_fixed: int = 64, n_gen: int = 64, tail: float = 0.25, n_evals: int = 40, sharp_iters: int = 20,
            tau: float = 0.01, device: str = "cpu") -> dict:
    """config: lr, batch, weight_decay, label_smoothing, clip (0 = none), ema (0 = none),
    warmup (share of steps), schedule (constant | cosine), n_train (sequences)."""
    dev = torch.device(device)
    src = MarkovSource.random(vocab, sparsity=0.0, alpha=alpha, order=order, seed=source_seed)
    pi, H = src.stationary, src.entropy_rate
    data = torch.stack([members.with_bos(src.sample(int(config["n_train"]), seq_len, seed=1_000 + s), vocab, dev)
                        for s in seeds])
    fixed = members.with_bos(src.sample(n_fixed, seq_len, seed=77), vocab, dev)[None].expand(len(seeds), -1, -1)
    every = max(1, steps // n_evals)
    t_snap = steps - int(tail * steps)
    snap = {}

    def fixed_loss(base, p, t):
        if t == t_snap:
            snap.update({k: v.detach().clone() for k, v in p.items()})
        return members.lm_loss(base, p, fixed)
    evals = sorted(set(range(0, steps + 1, every)) | {t_snap})
    traj, base = train.train_lm(
        "mlp", data, vocab=vocab, seeds=seeds, steps=steps, lr=float(config["lr"]), batch_size=int(config["batch"]),
        weight_decay=float(config["weight_decay"]), label_smoothing=float(config["label_smoothing"]),
        clip=float(config["clip"]) or None, ema=float(config["ema"]),
        schedule=schedule_fn(steps, float(config["warmup"]), config["schedule"]),
        eval_every=evals, eval_fns={"fixed": fixed_loss}, context=order, d=d, hidden=hidden, desc="c4")
    final = traj.ema_params if traj.ema_params is not None else traj.params
    M = len(seeds)
    # ---- stability, per seed
    fl = traj["fixed"]  # [E, M] loss on the fixed batch
    last = traj.eval_step >= t_snap
    out = {"diverged": [bool(not np.isfinite(fl[-1, m])) for m in range(M)]}
    out["loss_std"] = measures.detrended_std(fl[last]).tolist()
    out["grad_norm"] = traj.grad_norm[-max(1, int(tail * steps)):].mean(0).tolist()
    lam = optim.top_hessian_eigenvalue(lambda p: members.lm_loss(base, p, fixed), traj.params, iters=sharp_iters,
                                       member_seeds=seeds)
    out["sharpness"] = (float(config["lr"]) * lam.abs().cpu().numpy()).tolist()
    num = optim.member_norm([traj.params[k] - snap[k] for k in snap], M)
    out["drift"] = (num / optim.member_norm(traj.params.values(), M)).cpu().numpy().tolist()
    # ---- quality, per seed, exact from the model's conditional table
    Q = np.stack([lm.ngram_table(members.member(base, final, m), src.context_tokens()).cpu().numpy()
                  for m in range(M)])  # [M, C, V]
    for name in QUALITY:
        out[name] = []
    tok, _ = members.sample_members(base, final, n_gen, seq_len, seed=0, member_seeds=[5_000 + s for s in seeds])
    for m in range(M):
        chain = MarkovSource(Q[m] / Q[m].sum(1, keepdims=True), order)
        Hm = chain.entropy_rate
        fkl = measures.conditional_kl(pi, src.P, Q[m])
        out["entropy_ratio"].append(Hm / H)
        out["forward_kl"].append(fkl)
        out["reverse_kl"].append(measures.conditional_kl(chain.stationary, Q[m], src.P))
        out["coverage"].append(float(np.dot(pi, (src.P * (Q[m] >= tau)).sum(1))))
        out["distinct4"].append(measures.distinct_n(tok[m], 4))
        out["heldout_ce"].append(H + fkl)
        out["overconfidence"].append(Hm - (H + fkl))
    # ---- for the seed-to-seed disagreement, computed across seeds afterwards (analysis.disagreement)
    out["table"] = Q.tolist()
    out["weights"] = [pi.tolist()] * M
    return out


def instability_index(measures: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """The pre-registered index: the mean over stability measures (columns; each larger
    when less stable, all positive) of their standardised logarithms. Larger = less stable."""
    return standardise(measures, ref).mean(-1)


def disagreement(result: dict) -> float:
    """Seed-to-seed disagreement of one configuration: the mean over pairs of seeds of
    the Jensen-Shannon divergence between their conditional tables, weighted by the
    source's stationary law (result["table"]: per seed [C, V]; result["weights"]: [C])."""
    Q = np.asarray(result["table"], dtype=np.float64)
    w = np.asarray(result["weights"][0], dtype=np.float64)
    js = [float(np.dot(w, measures.js_divergence(Q[a], Q[b]))) for a in range(len(Q)) for b in range(a + 1, len(Q))]
    return float(np.mean(js)) if js else float("nan")


def stability_measures(result: dict, stability: list[str]) -> np.ndarray:
    """[S, K] one configuration's stability measures per seed: the per-seed ones, then
    the configuration's seed disagreement (the same for every seed)."""
    per_seed = np.stack([np.asarray(result[n], dtype=np.float64) for n in stability], -1)  # [S, K-1]
    return np.concatenate([per_seed, np.full((len(per_seed), 1), disagreement(result))], -1)


def c4_table(records: list[dict], stability: list[str], quality: list[str]) -> dict:
    """Sweep records -> {"configs": [...], name: [C, S] per-seed values,
    "entropy_gap": |log H_model / H*| [C, S], "measures": [C, S, K] stability measures,
    "diverged": [C] (a non-finite loss or measure in any seed)}."""
    res = [r["result"] for r in records]
    t = {"configs": [r["config"] for r in records]}
    for name in quality:
        t[name] = np.array([r[name] for r in res], dtype=np.float64)
    t["entropy_gap"] = np.abs(np.log(t["entropy_ratio"]))
    t["measures"] = np.stack([stability_measures(r, stability) for r in res])
    bad = np.array([any(r["diverged"]) for r in res]) | ~np.isfinite(t["measures"]).all((1, 2))
    for name in quality:
        bad |= ~np.isfinite(t[name]).all(1)
    t["diverged"] = bad
    return t


def instability(measures: np.ndarray, table: dict) -> np.ndarray:
    """Per-seed instability index of measures [..., K], standardised by the usable
    configurations of the design in `table`."""
    ref = table["measures"][~table["diverged"]].reshape(-1, table["measures"].shape[-1])
    return instability_index(np.maximum(measures, 1e-300), np.maximum(ref, 1e-300))


# ---------------------------------------------------------------------- C3

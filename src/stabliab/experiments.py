"""Tasks for the sweep engine: one configuration, all its seeds, returned as plain
measurements (picklable, so every executor can run them).

c4_task trains an order-matched MLP n-gram model on a Markov source with exact
ground truth and measures, per seed, how stable the optimisation was and how good
the generative model is (exactly, from the model's full conditional table).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import metrics, models, train
from .sources import MarkovSource

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
    data = torch.stack([train.with_bos(src.sample(int(config["n_train"]), seq_len, seed=1_000 + s), vocab, dev)
                        for s in seeds])
    fixed = train.with_bos(src.sample(n_fixed, seq_len, seed=77), vocab, dev)[None].expand(len(seeds), -1, -1)
    every = max(1, steps // n_evals)
    t_snap = steps - int(tail * steps)
    snap = {}

    def fixed_loss(base, p, t):
        if t == t_snap:
            snap.update({k: v.detach().clone() for k, v in p.items()})
        return train.lm_loss(base, p, fixed)
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
    out["loss_std"] = metrics.detrended_std(fl[last]).tolist()
    out["grad_norm"] = traj.grad_norm[-max(1, int(tail * steps)):].mean(0).tolist()
    lam = train.top_hessian_eigenvalue(lambda p: train.lm_loss(base, p, fixed), traj.params, iters=sharp_iters,
                                       member_seeds=seeds)
    out["sharpness"] = (float(config["lr"]) * lam.abs().cpu().numpy()).tolist()
    num = train.member_norm([traj.params[k] - snap[k] for k in snap], M)
    out["drift"] = (num / train.member_norm(traj.params.values(), M)).cpu().numpy().tolist()
    # ---- quality, per seed, exact from the model's conditional table
    Q = np.stack([models.ngram_table(train.member(base, final, m), src.context_tokens()).cpu().numpy()
                  for m in range(M)])  # [M, C, V]
    for name in QUALITY:
        out[name] = []
    tok, _ = train.sample_members(base, final, n_gen, seq_len, seed=0, member_seeds=[5_000 + s for s in seeds])
    for m in range(M):
        chain = MarkovSource(Q[m] / Q[m].sum(1, keepdims=True), order)
        Hm = chain.entropy_rate
        fkl = metrics.conditional_kl(pi, src.P, Q[m])
        out["entropy_ratio"].append(Hm / H)
        out["forward_kl"].append(fkl)
        out["reverse_kl"].append(metrics.conditional_kl(chain.stationary, Q[m], src.P))
        out["coverage"].append(float(np.dot(pi, (src.P * (Q[m] >= tau)).sum(1))))
        out["distinct4"].append(metrics.distinct_n(tok[m], 4))
        out["heldout_ce"].append(H + fkl)
        out["overconfidence"].append(Hm - (H + fkl))
    # ---- for the seed-to-seed disagreement, computed across seeds afterwards (analysis.disagreement)
    out["table"] = Q.tolist()
    out["weights"] = [pi.tolist()] * M
    return out

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


# ====================================================================== C3
def c3_data(corpus: str, seeds: list[int], *, seq_len: int, prompt_len: int, gen_len: int, n_gen: int,
            n_eval: int, train_chars: int = 400_000, markov_sequences: int = 512, markov_vocab: int = 12,
            device: str = "cpu") -> dict:
    """Training data [S, N, T+1] (per seed for the Markov source, shared for Shakespeare),
    a fixed evaluation batch and held-out sequences [n_eval, T+1], and n_gen held-out
    prompts [n_gen, P] with their true continuations [n_gen, gen_len] (the human
    reference). The Markov source has every transition possible (finite KL both ways)."""
    from .sources import CharCorpus
    dev = torch.device(device)
    S = len(seeds)
    if corpus == "shakespeare":
        c = CharCorpus.shakespeare(max_train_chars=train_chars)
        vocab = c.vocab
        train_x = train.with_bos(c.windows("train", seq_len), vocab, dev)[None].expand(S, -1, -1)
        fixed = c.windows("train", seq_len, n=n_eval, seed=1)
        held = c.windows("heldout", seq_len, n=n_eval, seed=2)
        pr = c.windows("heldout", prompt_len + gen_len, n=n_gen, seed=3)
        return dict(vocab=vocab, train=train_x, fixed=train.with_bos(fixed, vocab, dev),
                    heldout=train.with_bos(held, vocab, dev), prompts=pr[:, :prompt_len], human=pr[:, prompt_len:],
                    decode=c.decode, source=None)
    if corpus == "markov":
        src = MarkovSource.random(markov_vocab, sparsity=0.0, alpha=0.5, seed=0)
        vocab = markov_vocab
        train_x = torch.stack([train.with_bos(src.sample(markov_sequences, seq_len, seed=1_000 + s), vocab, dev)
                               for s in seeds])
        pr = src.sample(n_gen, prompt_len + gen_len, seed=99_000)
        return dict(vocab=vocab, train=train_x, fixed=train.with_bos(src.sample(n_eval, seq_len, seed=98_000), vocab, dev),
                    heldout=train.with_bos(src.sample(n_eval, seq_len, seed=97_000), vocab, dev),
                    prompts=pr[:, :prompt_len], human=pr[:, prompt_len:],
                    decode=lambda ids: " ".join(map(str, np.asarray(ids).reshape(-1).tolist())), source=src)
    raise ValueError(f"unknown corpus {corpus!r}; allowed: shakespeare, markov")


def c3_task(config: dict, seeds: list[int], *, seq_len: int = 32, prompt_len: int = 16, gen_len: int = 128,
            steps: int = 300, lr: float = 3e-3, batch_size: int = 32, start_frac: float = 0.5,
            eval_every: int = 10, n_eval: int = 32, n_stat_samples: int = 16, n_gen: int = 32, n_texts: int = 3,
            train_chars: int = 400_000, markov_sequences: int = 512, markov_vocab: int = 12,
            arch_kw: dict | None = None, device: str = "cpu", precision: str = "fp32", plugins=(),
            plugin_code: str = "") -> dict:
    """config: corpus, arch, label, spec (a feedback design, feedback.make). Trains every
    seed, measures every statistic of feedback.STATISTICS on the fixed evaluation batch
    every eval_every steps (with its two halves), then the outcomes: generation entropy
    (T = 1) and seq-rep-4 / loop share at T = 1 and greedy on continuations of held-out
    prompts, teacher-forced entropy and cross-entropy on held-out text, over-confidence
    (generation entropy - held-out CE), and on the Markov source the KL rates to the
    source in both directions (exact source probabilities, Monte Carlo over sequences).
    plugins: modules that register designs (imported here, in every process);
    plugin_code: their feedback.plugin_hash, only part of the sweep's cache key."""
    from . import feedback
    feedback.load_plugins(plugins)
    spec = dict(config["spec"])
    data = c3_data(config["corpus"], seeds, seq_len=seq_len, prompt_len=prompt_len, gen_len=gen_len, n_gen=n_gen,
                   n_eval=n_eval, train_chars=train_chars, markov_sequences=markov_sequences,
                   markov_vocab=markov_vocab, device=device)
    V, M = data["vocab"], len(seeds)
    start = int(start_frac * steps)
    design = feedback.make({**spec, "start": start})
    fixed = data["fixed"][None].expand(M, -1, -1)
    heldout = data["heldout"][None].expand(M, -1, -1)
    rec: dict[str, list] = {}
    kw = dict(arch_kw or {}, max_len=seq_len + 1)

    def stats(base, p, t):
        for name, v in feedback.statistics(base, p, fixed, n_stat_samples, seq_len, seeds,
                                           precision=precision).items():
            rec.setdefault(name, []).append(v)  # [3, M]
        return torch.zeros(M)

    evals = sorted(set(range(0, steps + 1, eval_every)) | {steps})
    traj, base = train.train_lm(config["arch"], data["train"], vocab=V, seeds=seeds, steps=steps, lr=lr,
                                batch_size=batch_size, feedback=design, precision=precision, eval_every=evals,
                                eval_fns={"stats": stats}, desc=f"{config['corpus']} {config['arch']} "
                                f"{config['label']}", **kw)
    out: dict[str, list] = {"eval_step": [traj.eval_step.tolist()] * M}
    for name, v in rec.items():
        a = np.stack(v)  # [E, 3, M]
        for j, suffix in enumerate(["", "_a", "_b"]):
            out[f"stat_{name}{suffix}"] = a[:, j].T.tolist()
    for name, v in traj.feedback.items():
        if name != "step":
            out[f"fb_{name}"] = np.asarray(v).T.tolist()
    # ---- outcomes
    prompts = torch.as_tensor(data["prompts"])
    H, _, ce = feedback.per_position(base, traj.params, heldout, precision=precision)  # [M, B, T] each
    out["heldout_ce"] = ce.reshape(M, -1).mean(1).double().cpu().numpy().tolist()
    out["tf_entropy"] = H.reshape(M, -1).mean(1).double().cpu().numpy().tolist()
    ms = [4_242 + int(s) for s in seeds]
    tok, lq = train.sample_members(base, traj.params, n_gen, gen_len, seed=0, prompt=prompts, member_seeds=ms,
                                   precision=precision)
    gtok, _ = train.sample_members(base, traj.params, n_gen, gen_len, seed=0, prompt=prompts, member_seeds=ms,
                                   greedy=True, precision=precision)
    out["gen_entropy"] = [float(-lq[m].mean()) for m in range(M)]
    out["overconfidence"] = [g - c for g, c in zip(out["gen_entropy"], out["heldout_ce"])]
    out["seq_rep4"] = [float(np.mean([metrics.seq_rep_n(s, 4) for s in tok[m]])) for m in range(M)]
    out["seq_rep4_greedy"] = [float(np.mean([metrics.seq_rep_n(s, 4) for s in gtok[m]])) for m in range(M)]
    out["loops"] = [float(np.mean([metrics.ends_in_loop(s, 32) for s in tok[m]])) for m in range(M)]
    out["loops_greedy"] = [float(np.mean([metrics.ends_in_loop(s, 32) for s in gtok[m]])) for m in range(M)]
    src = data["source"]
    if src is not None:
        logP = np.log(src.P)
        h = data["heldout"].cpu().numpy()[:, 1:]  # [B, T]
        fwd = (logP[h[:, :-1], h[:, 1:]][None] + ce.double().cpu().numpy()[:, :, 1:]).reshape(M, -1).mean(1)
        prev = np.concatenate([np.broadcast_to(data["prompts"][:, -1:], (M,) + data["prompts"][:, -1:].shape),
                               tok[:, :, :-1]], -1)  # [M, n, L] the token before each generated one
        rev = (lq - logP[prev, tok]).reshape(M, -1).mean(1)
        out["forward_kl"], out["reverse_kl"] = fwd.tolist(), rev.tolist()
    else:
        out["forward_kl"] = out["reverse_kl"] = [float("nan")] * M
    dec = data["decode"]
    out["texts"] = [[dec(tok[m, i]) for i in range(min(n_texts, n_gen))] for m in range(M)]
    out["texts_greedy"] = [[dec(gtok[m, i]) for i in range(min(n_texts, n_gen))] for m in range(M)]
    return out

"""Maximum-likelihood training: one loop for every model family.

Parameters are a dict of tensors whose leading dimension indexes M independent
members (seeds, learning rates). The objective returns one loss per member,
Tensor[M]; since members share no parameter, the gradient of the sum is each
member's own gradient, and every logged quantity is per member.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, int], torch.Tensor]  # (params, step) -> Tensor[M]


def progress(iterable, **kw):
    """tqdm bar for interactive use. `stabliab run` sets STABLIAB_PROGRESS=0 (the
    kernel would capture the bar into the executed notebook) and shows its own
    bar over cells on the terminal instead."""
    if os.environ.get("STABLIAB_PROGRESS") == "0":
        kw["disable"] = True
    kw.setdefault("leave", False)
    kw.setdefault("mininterval", 1.0)
    return tqdm(iterable, **kw)


def _per_member(x, M: int, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or [M] value to multiply a [M, ...] tensor."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if x.ndim == 0:
        return x
    if x.shape != (M,):
        raise ValueError(f"per-member value must have shape ({M},), got {tuple(x.shape)}")
    return x.reshape((M,) + (1,) * (like.ndim - 1))


def member_norm(tensors, M: int) -> torch.Tensor:
    """[M] Euclidean norm over all tensors of each member."""
    return torch.sqrt(sum((t.reshape(M, -1) ** 2).sum(1) for t in tensors))


class SGD:
    """theta <- theta - lr * g  (lr a float or a Tensor[M])."""

    def __init__(self, lr):
        self.lr = lr
        self.scale = 1.0  # learning-rate schedule factor of the current step

    def step(self, params: Params, grads: Params, M: int) -> None:
        for k, p in params.items():
            p.sub_(_per_member(self.lr, M, p) * self.scale * grads[k])


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW,
    with a per-member learning rate."""

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.scale = 1.0  # learning-rate schedule factor of the current step
        self.m: Params = {}
        self.v: Params = {}
        self.t = 0

    def step(self, params: Params, grads: Params, M: int) -> None:
        self.t += 1
        b1, b2 = self.betas
        for k, p in params.items():
            g = grads[k]
            lr = _per_member(self.lr, M, p) * self.scale
            if k not in self.m:
                self.m[k], self.v[k] = torch.zeros_like(p), torch.zeros_like(p)
            p.mul_(1 - lr * self.wd)
            self.m[k].mul_(b1).add_(g, alpha=1 - b1)
            self.v[k].mul_(b2).addcmul_(g, g, value=1 - b2)
            mhat = self.m[k] / (1 - b1**self.t)
            vhat = self.v[k] / (1 - b2**self.t)
            p.sub_(lr * mhat / (vhat.sqrt() + self.eps))


OPTIMIZERS = {"sgd": SGD, "adamw": AdamW}


@dataclass
class Trajectory:
    """Per-member log of one training run, rows = logged steps."""
    step: np.ndarray  # [L]
    loss: np.ndarray  # [L, M] training objective at theta_t
    grad_norm: np.ndarray  # [L, M] ||grad L(theta_t)||
    step_size: np.ndarray  # [L, M] ||theta_{t+1} - theta_t||
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [L, M]
    params: Params | None = None  # final parameters
    eval_step: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # [E]
    evals: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [E, M] (expensive, every eval_every)
    feedback: dict[str, np.ndarray] = field(default_factory=dict)  # the feedback design's log: step [K], [K, M]
    ema_params: Params | None = None  # exponential moving average of the parameters (train(ema=...))

    def __getitem__(self, name: str) -> np.ndarray:
        for d in (self.extra, self.evals):
            if name in d:
                return d[name]
        return getattr(self, name)


def train(loss_fn: LossFn, params: Params, *, steps: int, lr, optimizer: str = "sgd",
          log_every: int = 1, log_fns: dict[str, Callable[[Params], torch.Tensor]] | None = None,
          eval_every=0, eval_fns: dict[str, Callable[[Params, int], torch.Tensor]] | None = None,
          desc: str | None = None, schedule: Callable[[int], float] | None = None, clip: float | None = None,
          ema: float = 0.0, **opt_kw) -> Trajectory:
    """Minimise loss_fn by `optimizer`; log loss, gradient norm, step size and
    every log_fns[name](params) -> Tensor[M] at steps 0, log_every, ..., steps;
    every eval_fns[name](params, step) -> Tensor[M] at steps 0, eval_every, ..., steps,
    or at the steps listed when eval_every is a sequence (generation statistics,
    held-out loss). schedule(t) multiplies the learning rate at step t (warm-up, decay);
    clip rescales each member's gradient to norm <= clip (the logged gradient norm is
    the one before clipping); ema > 0 keeps a moving average of the parameters,
    returned as ema_params."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    M = next(iter(params.values())).shape[0]
    opt = OPTIMIZERS[optimizer](lr, **opt_kw)
    log_fns = log_fns or {}
    eval_fns = eval_fns or {}
    rows: dict[str, list] = {k: [] for k in ["step", "loss", "grad_norm", "step_size", *log_fns]}
    ev: dict[str, list] = {k: [] for k in ["step", *eval_fns]}
    at = set(int(x) for x in eval_every) if np.ndim(eval_every) else None
    avg = {k: v.detach().clone() for k, v in params.items()} if ema > 0 else None
    for t in progress(range(steps + 1), desc=desc or "train", total=steps + 1):
        due = (t in at) if at is not None else (t % max(int(eval_every), 1) == 0)
        if eval_fns and (due or t == steps):
            ev["step"].append(t)
            for name, fn in eval_fns.items():
                with torch.no_grad():
                    ev[name].append(np.asarray(torch.as_tensor(fn(params, t)).detach().cpu(), dtype=np.float64))
        loss = loss_fn(params, t)  # [M]
        grads = dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
        logging = t % log_every == 0 or t == steps
        if logging:  # logged values stay on the device until the end (no sync per step)
            rows["step"].append(t)
            rows["loss"].append(loss.detach())
            rows["grad_norm"].append(member_norm(grads.values(), M).detach())
            with torch.no_grad():
                for name, fn in log_fns.items():
                    rows[name].append(fn(params).detach())
        if t == steps:
            rows["step_size"].append(torch.zeros_like(rows["grad_norm"][-1]))
            break
        with torch.no_grad():
            before = {k: p.clone() for k, p in params.items()} if logging else None
            if clip is not None:
                f = (clip / member_norm(grads.values(), M).clamp_min(1e-30)).clamp(max=1.0)  # [M]
                grads = {k: g * _per_member(f, M, g) for k, g in grads.items()}
            opt.scale = 1.0 if schedule is None else float(schedule(t))
            opt.step(params, grads, M)
            if avg is not None:
                for k, p in params.items():
                    avg[k].mul_(ema).add_(p, alpha=1 - ema)
            if logging:
                rows["step_size"].append(member_norm([params[k] - before[k] for k in params], M))
    arr = {k: (np.asarray(v) if k == "step" else torch.stack(v).cpu().numpy()) for k, v in rows.items()}
    return Trajectory(step=arr["step"], loss=arr["loss"], grad_norm=arr["grad_norm"],
                      step_size=arr["step_size"], extra={k: arr[k] for k in log_fns},
                      params={k: v.detach() for k, v in params.items()}, ema_params=avg,
                      eval_step=np.asarray(ev["step"], dtype=int),
                      evals={k: np.asarray(ev[k]) for k in eval_fns})


def minimize_lbfgs(loss_fn: Callable[[Params], torch.Tensor], params: Params, *,
                   max_iter: int = 2000, tol: float = 1e-12) -> tuple[Params, torch.Tensor, torch.Tensor]:
    """Full-batch L-BFGS (strong Wolfe) on every member at once.

    Returns (params, loss[M], grad_norm[M]) at the solution; the gradient norm
    tells whether each start really reached a stationary point.
    """
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    M = next(iter(params.values())).shape[0]
    opt = torch.optim.LBFGS(list(params.values()), lr=1, max_iter=max_iter, history_size=50,
                            tolerance_grad=tol, tolerance_change=tol * 1e-3,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(params).sum()
        loss.backward()
        return loss

    for _ in range(5):  # restarts refresh the curvature memory
        opt.step(closure)
    loss = loss_fn(params)
    grads = torch.autograd.grad(loss.sum(), list(params.values()))
    return ({k: v.detach() for k, v in params.items()}, loss.detach(),
            member_norm(grads, M).detach())


def top_hessian_eigenvalue(loss_fn: Callable[[Params], torch.Tensor], params: Params, *,
                           iters: int = 200, seed: int = 0, member_seeds=None) -> torch.Tensor:
    """[M] largest Hessian eigenvalue of each member's loss (power iteration on
    Hessian-vector products). Gradient descent with lr > 2 / lambda_max cannot
    converge to that point: the stability edge."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    M = next(iter(params.values())).shape[0]
    if member_seeds is None:  # one draw for all members
        g = torch.Generator().manual_seed(seed)
        v = {k: torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for k, p in params.items()}
    else:  # member m's start depends only on member_seeds[m]
        gens = [torch.Generator().manual_seed(int(s)) for s in member_seeds]
        v = {k: torch.stack([torch.randn(p.shape[1:], generator=g, dtype=p.dtype) for g in gens]).to(p.device)
             for k, p in params.items()}
    loss = loss_fn(params).sum()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    first = next(iter(params.values()))
    lam = torch.zeros(M, dtype=first.dtype, device=first.device)
    for _ in range(iters):
        nrm = member_norm(v.values(), M)
        v = {k: x / _per_member(nrm, M, x) for k, x in v.items()}
        dot = sum((gr * v[k]).sum() for gr, k in zip(grads, params))
        Hv = dict(zip(params, torch.autograd.grad(dot, list(params.values()), retain_graph=True)))
        lam = sum((Hv[k] * v[k]).reshape(M, -1).sum(1) for k in params)
        v = {k: x.detach() for k, x in Hv.items()}
    return lam.detach()


# ====================================================================== neural language models
def stack_members(modules) -> Params:
    """Parameters of identically shaped modules stacked along a new member dim 0."""
    from torch.func import stack_module_state
    params, _ = stack_module_state(list(modules))
    return {k: v.detach().clone() for k, v in params.items()}


def member(base: torch.nn.Module, params: Params, m: int) -> torch.nn.Module:
    """A copy of `base` holding member m's parameters (for sampling and inspection)."""
    import copy
    mod = copy.deepcopy(base)
    mod.load_state_dict({k: v[m].detach() for k, v in params.items()}, strict=True)
    return mod.eval()


class _Decoder(torch.nn.Module):
    """forward(None, None, n) -> lm.start(n); forward(x, state, n) -> lm.step(x, state):
    the decoding steps as a forward, so that torch.func.functional_call can run them with
    one member's parameters (keys 'lm.<name>')."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, x, state, n: int):
        return self.lm.start(n) if x is None else self.lm.step(x, state)


def _sample_batched(base, params: Params, n: int, length: int, seeds, temperature: float = 1.0,
                    greedy: bool = False, prompt=None, precision: str = "fp32"):
    """Every member samples n sequences in one vmapped computation: the same uniforms
    (member m's from its own seed) and the same algorithm as LM.sample."""
    from torch.func import functional_call, vmap
    from .device import autocast
    from .models import draw_tokens
    dec = _Decoder(base).eval()
    dev = next(iter(params.values())).device
    p = {f"lm.{k}": v for k, v in params.items()}
    M = len(seeds)
    u = torch.stack([torch.rand(n, length, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
                     for s in seeds]).to(dev)  # [M, n, L], as LM.sample draws them

    def run(x, state):
        with autocast(dev, precision):
            if x is None:
                return vmap(lambda q: functional_call(dec, q, (None, None, n)), randomness="error")(p)
            return vmap(lambda q, xx, st: functional_call(dec, q, (xx, st, n)), randomness="error")(p, x, state)

    logits, state = run(None, None)  # [M, n, V]
    if prompt is not None:
        pr = torch.as_tensor(prompt, dtype=torch.long).to(dev)
        for t in range(pr.shape[1]):
            logits, state = run(pr[None, :, t].expand(M, -1).contiguous(), state)
    toks, logq = [], []
    for t in range(length):
        x, lq = draw_tokens(logits, u[:, :, t], temperature=temperature, greedy=greedy)  # [M, n]
        toks.append(x)
        logq.append(lq)
        if t + 1 < length:
            logits, state = run(x, state)
    return torch.stack(toks, -1), torch.stack(logq, -1).double()  # [M, n, L]


@torch.no_grad()
def sample_members(base: torch.nn.Module, params: Params, n: int, length: int, seed: int,
                   batched: bool | None = None, precision: str = "fp32", member_seeds=None,
                   **sample_kw) -> tuple[np.ndarray, np.ndarray]:
    """Each member samples n sequences: (tokens [M, n, L], logq [M, n, L]).
    Member m uses seed + m (or member_seeds[m]), so its samples do not depend on the
    other members.
    batched=True samples all members in one vmapped computation (one kernel launch per
    token instead of M: what a GPU needs); False loops over members (the reference;
    both give the same tokens, tested). The default batches two or more members
    (bench/throughput.py: slower for one member, faster from four on a 2-core CPU).
    top_k / top_p use the loop."""
    M = next(iter(params.values())).shape[0]
    batched = M > 1 if batched is None else batched
    mseeds = [seed + m for m in range(M)] if member_seeds is None else [int(s) for s in member_seeds]
    if batched and not {"top_k", "top_p"} & {k for k, v in sample_kw.items() if v is not None}:
        tok, lq = _sample_batched(base, params, n, length, mseeds, precision=precision, **sample_kw)
        return tok.cpu().numpy(), lq.cpu().numpy()
    from .device import autocast
    dev = next(iter(params.values())).device
    with autocast(dev, precision):
        out = [member(base, params, m).sample(n, length, seed=mseeds[m], **sample_kw) for m in range(M)]
    return np.stack([t.cpu().numpy() for t, _ in out]), np.stack([q.cpu().numpy() for _, q in out])


@torch.no_grad()
def precision_effect(base: torch.nn.Module, params: Params, heldout: torch.Tensor, n: int, length: int,
                     seed: int, skip: int = 0) -> dict[str, np.ndarray]:
    """What bf16 autocast changes in the numbers a notebook reports, for trained members
    (evaluation only; training in bf16 also changes the trajectory):
    held-out cross-entropy and generative entropy rate under fp32 and bf16 (same seeds),
    and the share of sampled tokens that agree. Each value is [M]."""
    from .metrics import generation_entropy
    out = {}
    for prec in ("fp32", "bf16"):
        out[f"heldout_{prec}"] = lm_loss(base, params, heldout, precision=prec).double().cpu().numpy()
        tok, lq = sample_members(base, params, n, length, seed, precision=prec)
        out[f"gen_H_{prec}"] = np.array([generation_entropy(q, skip).mean() for q in lq])
        out[f"tokens_{prec}"] = tok
    out["token_agreement"] = (out.pop("tokens_fp32") == out.pop("tokens_bf16")).reshape(len(tok), -1).mean(1)
    return out


def generation_entropy_eval(n: int, length: int, seed: int, skip: int = 1, **sample_kw):
    """An eval_fn for train_lm: each member's generative entropy rate (mean -log q per
    token over positions >= skip of n own samples) -> Tensor[M]."""
    from .metrics import generation_entropy

    def fn(base, params, step):
        _, lq = sample_members(base, params, n, length, seed, **sample_kw)
        return torch.tensor([generation_entropy(q, skip).mean() for q in lq])
    return fn


def lm_logits(base: torch.nn.Module, params: Params, x: torch.Tensor, batched: bool = True,
              precision: str = "fp32") -> torch.Tensor:
    """[M, B, T, V] logits of each member on its own inputs x [M, B, T] (as lm_loss runs the model)."""
    from torch.func import functional_call
    from .device import autocast

    def one(p, xb):
        with autocast(xb.device, precision):
            return functional_call(base, p, (xb,))

    if batched:
        return torch.func.vmap(one)(params, x)
    return torch.stack([one({k: v[m] for k, v in params.items()}, x[m]) for m in range(x.shape[0])])


def lm_loss(base: torch.nn.Module, params: Params, x: torch.Tensor, batched: bool = True,
            precision: str = "fp32", label_smoothing: float = 0.0) -> torch.Tensor:
    """[M] mean next-token cross-entropy of each member on its own batch.

    x: [M, B, T+1] token ids (position 0 is BOS); inputs x[..., :-1], targets x[..., 1:].
    batched=True evaluates all members as one model with torch.func.vmap; False loops
    over members (same numbers, the fallback where vmap is slower or unsupported).
    precision 'bf16': the model runs under bf16 autocast, the cross-entropy in fp32."""
    from torch.func import functional_call
    from .device import autocast

    def one(p, xb):  # xb [B, T+1]
        with autocast(xb.device, precision):
            logits = functional_call(base, p, (xb[:, :-1],))  # [B, T, V]
        logits = logits.float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), xb[:, 1:].reshape(-1),
                                                 label_smoothing=label_smoothing)

    if batched:
        return torch.func.vmap(one)(params, x)
    return torch.stack([one({k: v[m] for k, v in params.items()}, x[m]) for m in range(x.shape[0])])


@dataclass
class SequenceBatches:
    """Per-member training sequences and a seeded minibatch sampler.

    data: [M, N, T+1] token ids with BOS at position 0 (each member may have its own
    sample of N sequences). batch(step) -> [M, B, T+1]; member m's batches depend
    only on seeds[m], so a member trains identically alone or batched with others."""
    data: torch.Tensor
    batch_size: int
    seeds: list

    def __post_init__(self):
        self.gens = [torch.Generator().manual_seed(10_007 * int(s) + 1) for s in self.seeds]

    def batch(self, step: int) -> torch.Tensor:
        N = self.data.shape[1]
        idx = torch.stack([torch.randint(N, (self.batch_size,), generator=g) for g in self.gens])  # [M, B]
        idx = idx.to(self.data.device)  # drawn on the CPU: the same batches on every device
        return torch.gather(self.data, 1, idx[..., None].expand(-1, -1, self.data.shape[2]))


def with_bos(x, bos: int, device=None) -> torch.Tensor:
    """Prepend the BOS id to token sequences [..., T] -> [..., T+1] (int64, on `device`)."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.long, device=device)
    return torch.cat([torch.full_like(x[..., :1], bos), x], -1)


def eval_schedule(steps: int, n: int) -> np.ndarray:
    """About n evaluation steps from 0 to `steps`, geometrically spaced (dense early,
    where held-out loss and generation statistics change fastest)."""
    return np.unique(np.concatenate([[0, steps], np.geomspace(1, max(steps, 1), n).astype(int)]))


def train_lm(arch: str, data: torch.Tensor, *, vocab: int, seeds, steps: int, lr: float = 3e-3,
             batch_size: int = 32, weight_decay: float = 0.0, batched: bool | None = None,
             heldout: torch.Tensor | None = None, eval_every=0, eval_fns=None,
             feedback=None, desc=None, precision: str = "fp32", label_smoothing: float = 0.0,
             schedule=None, clip: float | None = None, ema: float = 0.0, **arch_kw):
    """Maximum-likelihood training (AdamW) of one architecture for several seeds at once.

    Everything runs on data's device (the models are built there). data [M, N, T+1]
    (M = len(seeds)); heldout [M, N_h, T+1] adds a 'heldout' evaluation;
    eval_fns[name](base, params, step) -> Tensor[M] run every eval_every steps.
    feedback: a feedback design (feedback.make(...); None or 'off': plain maximum likelihood),
    used through bind(base, M, vocab, batched, precision, seeds, label_smoothing),
    loss(params, step, batch) -> [M] and arrays(); its log lands in trajectory.feedback.
    Returns (trajectory, base module)."""
    seeds = list(seeds)
    if batched is None:  # bench/seeds.py on a 2-core CPU, 5 seeds at the book's sizes: vmap is
        batched = arch in ("gru", "lstm")  # 1.2-1.6x faster for the recurrent cell, not for the others
    if data.shape[0] != len(seeds):
        raise ValueError(f"data has {data.shape[0]} members for {len(seeds)} seeds")
    from .models import build_lm
    mods = [build_lm(arch, vocab, s, **arch_kw).to(data.device) for s in seeds]  # initialised on the CPU
    base = mods[0]
    params = stack_members(mods)
    batches = SequenceBatches(data, batch_size, seeds)
    fb = None if feedback is None else feedback.bind(base, len(seeds), vocab, batched, precision, seeds,
                                                     label_smoothing)

    def loss_fn(p, t):
        batch = batches.batch(t)
        if fb is not None:
            return fb.loss(p, t, batch)
        return lm_loss(base, p, batch, batched, precision, label_smoothing)

    evals = {k: (lambda p, t, f=f: f(base, p, t)) for k, f in (eval_fns or {}).items()}
    if heldout is not None:
        evals = {"heldout": lambda p, t: lm_loss(base, p, heldout, batched, precision), **evals}
    traj = train(loss_fn, params, steps=steps, lr=lr, optimizer="adamw", weight_decay=weight_decay,
                 log_every=1, eval_every=eval_every, eval_fns=evals, desc=desc or f"train {arch}",
                 schedule=schedule, clip=clip, ema=ema)
    if fb is not None:
        traj.feedback = fb.arrays()
    return traj, base

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
    x = torch.as_tensor(x, dtype=like.dtype)
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

    def step(self, params: Params, grads: Params, M: int) -> None:
        for k, p in params.items():
            p.sub_(_per_member(self.lr, M, p) * grads[k])


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW,
    with a per-member learning rate."""

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.m: Params = {}
        self.v: Params = {}
        self.t = 0

    def step(self, params: Params, grads: Params, M: int) -> None:
        self.t += 1
        b1, b2 = self.betas
        for k, p in params.items():
            g = grads[k]
            lr = _per_member(self.lr, M, p)
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

    def __getitem__(self, name: str) -> np.ndarray:
        return self.extra[name] if name in self.extra else getattr(self, name)


def train(loss_fn: LossFn, params: Params, *, steps: int, lr, optimizer: str = "sgd",
          log_every: int = 1, log_fns: dict[str, Callable[[Params], torch.Tensor]] | None = None,
          desc: str | None = None, **opt_kw) -> Trajectory:
    """Minimise loss_fn by `optimizer`; log loss, gradient norm, step size and
    every log_fns[name](params) -> Tensor[M] at steps 0, log_every, ..., steps."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    M = next(iter(params.values())).shape[0]
    opt = OPTIMIZERS[optimizer](lr, **opt_kw)
    log_fns = log_fns or {}
    rows: dict[str, list] = {k: [] for k in ["step", "loss", "grad_norm", "step_size", *log_fns]}
    for t in progress(range(steps + 1), desc=desc or "train", total=steps + 1):
        loss = loss_fn(params, t)  # [M]
        grads = dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
        logging = t % log_every == 0 or t == steps
        if logging:
            rows["step"].append(t)
            rows["loss"].append(loss.detach().cpu().numpy())
            rows["grad_norm"].append(member_norm(grads.values(), M).cpu().numpy())
            with torch.no_grad():
                for name, fn in log_fns.items():
                    rows[name].append(np.asarray(fn(params).detach().cpu()))
        if t == steps:
            rows["step_size"].append(np.zeros(M))
            break
        with torch.no_grad():
            before = {k: p.clone() for k, p in params.items()} if logging else None
            opt.step(params, grads, M)
            if logging:
                rows["step_size"].append(
                    member_norm([params[k] - before[k] for k in params], M).cpu().numpy())
    arr = {k: np.asarray(v) for k, v in rows.items()}
    return Trajectory(step=arr["step"], loss=arr["loss"], grad_norm=arr["grad_norm"],
                      step_size=arr["step_size"], extra={k: arr[k] for k in log_fns},
                      params={k: v.detach() for k, v in params.items()})


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
                           iters: int = 200, seed: int = 0) -> torch.Tensor:
    """[M] largest Hessian eigenvalue of each member's loss (power iteration on
    Hessian-vector products). Gradient descent with lr > 2 / lambda_max cannot
    converge to that point: the stability edge."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    M = next(iter(params.values())).shape[0]
    g = torch.Generator().manual_seed(seed)
    v = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}
    loss = loss_fn(params).sum()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    lam = torch.zeros(M, dtype=next(iter(params.values())).dtype)
    for _ in range(iters):
        nrm = member_norm(v.values(), M)
        v = {k: x / _per_member(nrm, M, x) for k, x in v.items()}
        dot = sum((gr * v[k]).sum() for gr, k in zip(grads, params))
        Hv = dict(zip(params, torch.autograd.grad(dot, list(params.values()), retain_graph=True)))
        lam = sum((Hv[k] * v[k]).reshape(M, -1).sum(1) for k in params)
        v = {k: x.detach() for k, x in Hv.items()}
    return lam.detach()

"""Optimisers with a leading member dimension (per-member learning rates), and the
second-order tools of C1: full-batch L-BFGS and the top Hessian eigenvalue.

Parameters are a dict of tensors whose leading dimension indexes M independent
members (seeds, learning rates); every value here is per member.
"""
from __future__ import annotations

from typing import Callable

import torch

Params = dict[str, torch.Tensor]


def per_member(x, M: int, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or [M] value to multiply a [M, ...] tensor."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if x.ndim == 0:
        return x
    if x.shape != (M,):
        raise ValueError(f"per-member value must have shape ({M},), got {tuple(x.shape)}")
    return x.reshape((M,) + (1,) * (like.ndim - 1))


def member_norm(tensors, M: int) -> torch.Tensor:
    """[M] Euclidean norm over all tensors of each member (the squares of all tensors in one foreach call:
    t * t is t ** 2's kernel, so the same number bit for bit as sum((t ** 2).sum) over the tensors)."""
    tensors = list(tensors)
    return torch.sqrt(sum(t.reshape(M, -1).sum(1) for t in torch._foreach_mul(tensors, tensors)))


class SGD:
    """theta <- theta - lr * g  (lr a float or a Tensor[M])."""

    def __init__(self, lr):
        self.lr = lr
        self.scale = 1.0  # learning-rate schedule factor of the current step

    def step(self, params: Params, grads: Params, M: int) -> None:
        for k, p in params.items():
            p.sub_(per_member(self.lr, M, p) * self.scale * grads[k])

    def tile(self, A: int) -> "SGD":
        """A copy for A copies of the members (stacked as [m_1..m_M] A times; stateless)."""
        return SGD(self.lr)

    def take(self, index) -> "SGD":
        """A copy for the members `index` (stateless)."""
        return SGD(self.lr)


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
        """For every tensor p with gradient g, the operations of step_reference, each applied to all tensors
        at once (torch._foreach_*: the same kernel per tensor, without an interpreter round trip per tensor
        and operation; a step of a model with 30 tensors took 4 ms that way): the same numbers bit for bit
        on the CPU in float32 and float64 (tests/test_models_train.py). Elsewhere step_reference runs: CUDA's
        foreach division multiplies by a reciprocal rounded from double, and in bf16/fp16 the foreach
        products round differently, so there the two would not agree bit for bit."""
        if not params or any(p.device.type != "cpu" or p.dtype not in (torch.float32, torch.float64)
                             for p in params.values()):
            return self.step_reference(params, grads, M)
        self.t += 1
        b1, b2 = self.betas
        keys = list(params)
        ps, gs = [params[k] for k in keys], [grads[k] for k in keys]
        for k, p in zip(keys, ps):
            if k not in self.m:
                self.m[k], self.v[k] = torch.zeros_like(p), torch.zeros_like(p)
        ms, vs = [self.m[k] for k in keys], [self.v[k] for k in keys]
        key = [(p.ndim, p.dtype) for p in ps]  # per_member's broadcast shape and dtype: one lr tensor for each
        lrs = {}
        for k, p in zip(key, ps):
            if k not in lrs:
                lrs[k] = per_member(self.lr, M, p) * self.scale
        decay = {k: 1 - lr * self.wd for k, lr in lrs.items()}
        torch._foreach_mul_(ps, [decay[k] for k in key])
        torch._foreach_mul_(ms, b1)
        torch._foreach_add_(ms, gs, alpha=1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
        mhat = torch._foreach_div(ms, 1 - b1**self.t)
        vhat = torch._foreach_div(vs, 1 - b2**self.t)
        torch._foreach_sqrt_(vhat)
        torch._foreach_add_(vhat, self.eps)
        upd = torch._foreach_mul([lrs[k] for k in key], mhat)
        torch._foreach_div_(upd, vhat)
        torch._foreach_sub_(ps, upd)

    def step_reference(self, params: Params, grads: Params, M: int) -> None:
        """step, one tensor at a time (the definition step is tested against)."""
        self.t += 1
        b1, b2 = self.betas
        for k, p in params.items():
            g = grads[k]
            lr = per_member(self.lr, M, p) * self.scale
            if k not in self.m:
                self.m[k], self.v[k] = torch.zeros_like(p), torch.zeros_like(p)
            p.mul_(1 - lr * self.wd)
            self.m[k].mul_(b1).add_(g, alpha=1 - b1)
            self.v[k].mul_(b2).addcmul_(g, g, value=1 - b2)
            mhat = self.m[k] / (1 - b1**self.t)
            vhat = self.v[k] / (1 - b2**self.t)
            p.sub_(lr * mhat / (vhat.sqrt() + self.eps))

    def tile(self, A: int) -> "AdamW":
        """A copy whose state (moments, step count) covers A copies of the members stacked
        as [m_1..m_M] A times: the branches of one run continue as that run would."""
        M = next(iter(self.m.values())).shape[0] if self.m else 0
        return self.take(list(range(M)) * A)

    def take(self, index) -> "AdamW":
        """A copy whose state covers the members `index` (a list of member positions, repeats
        allowed, in the new stacking order): member j of the copy continues as member
        index[j] of this one."""
        if not isinstance(self.lr, float | int):
            raise ValueError("take needs a scalar learning rate")
        out = AdamW(self.lr, self.betas, self.eps, self.wd)
        out.t = self.t
        ix = list(index)
        out.m = {k: v[ix].clone() for k, v in self.m.items()}
        out.v = {k: v[ix].clone() for k, v in self.v.items()}
        return out


OPTIMIZERS = {"sgd": SGD, "adamw": AdamW}


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
        v = {k: x / per_member(nrm, M, x) for k, x in v.items()}
        dot = sum((gr * v[k]).sum() for gr, k in zip(grads, params))
        Hv = dict(zip(params, torch.autograd.grad(dot, list(params.values()), retain_graph=True)))
        lam = sum((Hv[k] * v[k]).reshape(M, -1).sum(1) for k in params)
        v = {k: x.detach() for k, x in Hv.items()}
    return lam.detach()

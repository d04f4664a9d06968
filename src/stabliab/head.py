"""The softmax-head theorem (thm-softmax-head in book/theory.md): freeze the
features that feed a neural model's output layer, refit the head to a stationary point
of the training cross-entropy, and compare the mean teacher-forced entropy with the
cross-entropy.

For logits z_i = W h_i + b and p_i = softmax(z_i),

    CE_i - H_i = E_{p_i}[z_i] - z_{i, y_i}     and     mean_i (CE_i - H_i) = d/ds CE(s z) at s = 1,

the derivative of the training loss along the head's own scale direction (W, b) -> (sW, sb).
At a stationary head it vanishes: mean entropy = training cross-entropy.

    h, y = features(model, tokens)           # [n, d] float64, [n]
    W, b, gnorm = fit_head(h, y, model.vocab)
    st = entropy_ce_gap(h, y, W, b)          # st.entropy == st.ce, st.scale_grad == 0
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn as nn

from .lm import LM, MLPNGram
from .optim import minimize_lbfgs


def head_of(model: LM) -> nn.Linear:
    """The final Linear of a neural family, logits = head(h): fc2 of the MLP n-gram, out of
    the GRU, LSTM and Transformer."""
    head = model.fc2 if isinstance(model, MLPNGram) else getattr(model, "out", None)
    if not isinstance(head, nn.Linear) or head.out_features != model.vocab:
        raise TypeError(f"no softmax head found on {type(model).__name__}")
    return head


@torch.no_grad()
def features(model: LM, tokens: torch.Tensor, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen head inputs at every teacher-forced training position.

    tokens: [N, T+1] ids with BOS at position 0 (members.with_bos); inputs tokens[:, :-1],
    targets tokens[:, 1:], as members.lm_loss reads them. The model runs as a copy in
    `dtype` (float64 by default: the features LayerNorm centres then sum to zero to
    rounding, not to ~1e-6, so the head's flat directions are exactly flat).
    Returns h [N*T, d] and y [N*T], rows in the order of tokens[:, 1:].reshape(-1)."""
    net = copy.deepcopy(model).to(dtype).eval()
    tokens = torch.as_tensor(tokens, dtype=torch.long).to(net.device)
    got = []
    hook = head_of(net).register_forward_hook(lambda mod, inp, out: got.append(inp[0]))
    net(tokens[:, :-1])  # [N, T, V]; the hook keeps the head's input [N, T, d]
    hook.remove()
    h = got[0]
    return h.reshape(-1, h.shape[-1]), tokens[:, 1:].reshape(-1)


def head_loss(h: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """[...] mean cross-entropy of logits h W^T + b against y, for heads W [..., V, d], b [..., V]."""
    z = h @ W.transpose(-1, -2)  # [..., n, V]
    if b is not None:
        z = z + b[..., None, :]
    logp = torch.log_softmax(z, -1)
    return -logp.gather(-1, y.expand(z.shape[:-1])[..., None])[..., 0].mean(-1)


def fit_head(h: torch.Tensor, y: torch.Tensor, V: int, *, bias: bool = True, weight_decay: float = 0.0,
             max_iter: int = 100, tol: float = 1e-12, newton: int = 8) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The head refit to a stationary point of the training cross-entropy with the features
    h [n, d] frozen: float64, full-batch L-BFGS from zero (optim.minimize_lbfgs), then up
    to `newton` Newton steps with the exact Hessian (pseudo-inverse: the softmax shift
    directions are flat), kept only while they lower the gradient norm. L-BFGS stops on
    a loss change of ~1e-15, i.e. a gradient norm of ~1e-8; the Newton steps take it to
    rounding level. The problem is convex in (W, b).

    bias=False fits W alone (b = 0); weight_decay adds (weight_decay / 2) ||(W, b)||^2.
    Returns W [V, d], b [V] and the gradient norm of the objective at the solution
    (when the features can separate a transition the sample never showed, no minimiser
    exists and the norm only tends to zero: check it)."""
    h, y = h.double(), torch.as_tensor(y, dtype=torch.long, device=h.device)
    d = h.shape[1]
    p0 = {"W": h.new_zeros(1, V, d)}  # leading member dim for minimize_lbfgs
    if bias:
        p0["b"] = h.new_zeros(1, V)

    def objective(p):  # [1]
        loss = head_loss(h, y, p["W"], p.get("b"))
        if weight_decay:
            loss = loss + 0.5 * weight_decay * sum((v ** 2).flatten(1).sum(1) for v in p.values())
        return loss

    def flat_objective(theta):  # theta [V*d (+ V)] -> scalar
        p = {"W": theta[: V * d].reshape(1, V, d)}
        if bias:
            p["b"] = theta[V * d :].reshape(1, V)
        return objective(p)[0]

    sol, _, _ = minimize_lbfgs(objective, p0, max_iter=max_iter, tol=tol)
    theta = torch.cat([v.reshape(-1) for v in sol.values()])  # [P]
    g = torch.func.grad(flat_objective)(theta)
    for _ in range(newton):
        Hs = torch.func.hessian(flat_objective)(theta)  # [P, P]
        step = torch.linalg.lstsq(Hs, -g[:, None], rcond=1e-12, driver="gelsd").solution[:, 0]
        g_new = torch.func.grad(flat_objective)(theta + step)
        if not g_new.norm() < g.norm():
            break
        theta, g = theta + step, g_new
    W = theta[: V * d].reshape(V, d)
    b = theta[V * d :] if bias else h.new_zeros(V)
    return W, b, g.norm().item()


class HeadStats(NamedTuple):
    entropy: float  # mean teacher-forced predictive entropy over the training positions (nats)
    ce: float  # training cross-entropy (nats per token)
    scale_grad: float  # d/ds CE(s z) at s = 1 (autograd): the derivative along the logit scale

    @property
    def gap(self) -> float:
        """CE - entropy, which equals scale_grad (the identity) at every head."""
        return self.ce - self.entropy


def entropy_ce_gap(h: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> HeadStats:
    """Mean entropy, CE and the scale derivative of the head (W [V, d], b [V]) on h [n, d], y [n].
    The temperature derivative is d/dT CE(z / T) = -scale_grad at T = 1."""
    h, W = h.double(), W.double()
    b = torch.zeros(W.shape[0], dtype=torch.float64, device=W.device) if b is None else b.double()
    y = torch.as_tensor(y, dtype=torch.long, device=h.device)
    z = (h @ W.T + b).detach()  # [n, V]
    logp = torch.log_softmax(z, -1)
    H = -(logp.exp() * logp).sum(-1).mean()
    s = torch.ones((), dtype=torch.float64, requires_grad=True)
    ce = -torch.log_softmax(s * z, -1).gather(-1, y[:, None]).mean()
    (ds,) = torch.autograd.grad(ce, s)
    return HeadStats(H.item(), ce.detach().item(), ds.item())


@torch.no_grad()
def load_head(model: LM, W: torch.Tensor, b: torch.Tensor) -> LM:
    """Put a refit head into the model (in place; its dtype kept), e.g. to sample from it."""
    head = head_of(model)
    head.weight.copy_(W.to(head.weight))
    head.bias.copy_(b.to(head.bias))
    return model

"""Log-linear count families (exact KL): p_theta(j | c) for C contexts and V tokens, written as
pure functions of a parameter dict whose tensors all have a leading *member*
dimension M (one member per seed or per learning rate), so that many
independent models train as one batched computation.

    params = family.init(seeds)            # dict name -> Tensor[M, ...]
    logits = family.logits(params)         # Tensor[M, C, V]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .seeds import generator

def _gen(seed: int) -> torch.Generator:
    return generator("init", seed)


@dataclass
class CategoricalTable:
    name = "categorical"
    """Full family: logits[c, j] is a free parameter (its KL minimiser is P_hat)."""
    n_ctx: int
    vocab: int
    init_scale: float = 0.01
    dtype: torch.dtype = torch.float64

    device: str = "cpu"

    def init(self, seeds) -> dict[str, torch.Tensor]:
        T = torch.stack([torch.randn(self.n_ctx, self.vocab, generator=_gen(s), dtype=self.dtype)
                         for s in seeds]) * self.init_scale  # [M, C, V], drawn on the CPU: same numbers anywhere
        return {"T": T.to(self.device)}

    def logits(self, params) -> torch.Tensor:
        return params["T"]  # [M, C, V]


@dataclass
class LowRankSoftmax:
    name = "lowrank"
    """Misspecified log-linear family of rank r < V:

        logits[c, j] = <U_c, phi_j> + b_j,   phi_j in R^r fixed (random, seeded)

    U [C, r] and b [V] are learned. The logit matrix minus its column bias has
    rank at most r, so most transition matrices lie outside the family. The
    cross-entropy is convex in (U, b) (a log-sum-exp of linear functions), so the
    forward-KL minimiser is unique (where it is finite) and is characterised by
    moment matching: E_theta[phi | c] = E_hat[phi | c] for every seen context c.
    """
    n_ctx: int
    vocab: int
    rank: int
    feature_seed: int = 0
    init_scale: float = 0.01
    dtype: torch.dtype = torch.float64
    device: str = "cpu"

    def __post_init__(self):
        if not 1 <= self.rank < self.vocab:
            raise ValueError(f"rank must lie in [1, {self.vocab - 1}]")
        g = _gen(self.feature_seed)
        self.phi = torch.randn(self.vocab, self.rank, generator=g, dtype=self.dtype).to(self.device)  # [V, r]

    def init(self, seeds) -> dict[str, torch.Tensor]:
        U = [torch.randn(self.n_ctx, self.rank, generator=_gen(s), dtype=self.dtype) for s in seeds]
        M = len(U)
        return {
            "U": (torch.stack(U) * self.init_scale).to(self.device),  # [M, C, r]
            "b": torch.zeros(M, self.vocab, dtype=self.dtype, device=self.device),  # [M, V]
        }

    def logits(self, params) -> torch.Tensor:
        # [M, C, r] @ [r, V] + [M, 1, V] -> [M, C, V]
        return params["U"] @ self.phi.T + params["b"][:, None, :]

    def moment_gap(self, params, counts: torch.Tensor) -> torch.Tensor:
        """[M] max over seen contexts of |E_theta[phi | c] - E_hat[phi | c]| and over
        tokens of |p_theta(j) - p_hat(j)| marginals (the b-moments): zero exactly at
        the forward-KL minimiser (first-order optimality of a convex problem)."""
        counts = counts.expand(params["U"].shape[0], *counts.shape[-2:])  # [M, C, V]
        n_c = counts.sum(-1, keepdim=True)  # [M, C, 1]
        p = torch.softmax(self.logits(params), -1)  # [M, C, V]
        phat = counts / n_c.clamp_min(1)
        dphi = ((p - phat) @ self.phi).abs() * (n_c > 0)  # [M, C, r]
        db = ((p - phat) * n_c).sum(1).abs() / n_c.sum(1)  # [M, V]
        return torch.maximum(dphi.amax((1, 2)), db.amax(1))


def conditional_probs(family, params) -> torch.Tensor:
    """[M, C, V] p_theta(j | c)."""
    return torch.softmax(family.logits(params), dim=-1)


def count_cross_entropy(family, params, counts: torch.Tensor) -> torch.Tensor:
    """[M] CE(theta) = -(1/n) sum_{c,j} counts[c,j] log p_theta(j|c), full batch.

    counts: [C, V] shared by all members, or [M, C, V] one sample per member."""
    logp = torch.log_softmax(family.logits(params), dim=-1)  # [M, C, V]
    return -(counts * logp).sum((-1, -2)) / counts.sum((-1, -2))


def conditional_kl_to(family, params, P: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[M] sum_c w_c sum_j P(j|c) log(P(j|c) / p_theta(j|c)), written out term by term
    (P: [C, V] or [M, C, V] conditionals, w: [C] or [M, C] context weights)."""
    logq = torch.log_softmax(family.logits(params), dim=-1)  # [M, C, V]
    logP = torch.where(P > 0, P.clamp_min(1e-300).log(), 0.0)
    return (w[..., None] * torch.where(P > 0, P * (logP - logq), 0.0)).sum((-1, -2))


def count_forward_kl(family, params, counts: torch.Tensor) -> torch.Tensor:
    """[M] KL(p_hat || p_theta) for the empirical law of `counts` ([C, V] or [M, C, V]),
    written out term by term, not as CE - H."""
    n_c = counts.sum(-1)
    return conditional_kl_to(family, params, counts / n_c.clamp_min(1)[..., None],
                             n_c / n_c.sum(-1, keepdim=True))


def sequence_cross_entropy(family, params, ctx: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """[M] mean over tokens of -log p_theta(tgt | ctx), read off the token sequences
    (ctx, tgt: [M, n] context index and next token per position, one sample per member)."""
    logp = torch.log_softmax(family.logits(params), dim=-1)  # [M, C, V]
    m = torch.arange(logp.shape[0], device=logp.device)[:, None]
    return -logp[m, ctx, tgt].mean(1)


def count_reverse_kl(family, params, weights: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[M] sum_c w_c KL(p_theta(.|c) || target(.|c)); target must be > 0.

    weights: [C] or [M, C]; target: [C, V] or [M, C, V]."""
    logp = torch.log_softmax(family.logits(params), dim=-1)  # [M, C, V]
    return (weights[..., None] * (logp.exp() * (logp - target.log()))).sum((-1, -2))



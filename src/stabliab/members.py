"""Many independent models as one: stacked parameters (a leading member dimension),
their logits and losses through torch.func (vmap, or a loop over members), sampling
from every member at once, and per-position teacher-forced measurements.

Member m of any computation here depends only on its own parameters and seed, so a
member's numbers do not change with the other members it is stacked with.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from .device import autocast
from . import stacked
from .lm import cross_entropy, draw_tokens
from .measures import generation_entropy
from .optim import Params
from .seeds import stream


def stack_members(modules) -> Params:
    """Parameters of identically shaped modules stacked along a new member dim 0."""
    params, _ = stack_module_state(list(modules))
    return {k: v.detach().clone() for k, v in params.items()}


def member(base: torch.nn.Module, params: Params, m: int) -> torch.nn.Module:
    """A copy of `base` holding member m's parameters (for sampling and inspection)."""
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
                    greedy: bool = False, prompt=None, precision: str = "fp32", entropy: bool = False):
    """Every member samples n sequences in one vmapped computation: the same uniforms
    (member m's from its own seed) and the same algorithm as LM.sample. entropy: also
    the exact entropy of each step's sampling distribution softmax(logits / T) [M, n, L]."""
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
    toks, logq, ent = [], [], []
    for t in range(length):
        x, lq = draw_tokens(logits, u[:, :, t], temperature=temperature, greedy=greedy)  # [M, n]
        toks.append(x)
        logq.append(lq)
        if entropy:
            ent.append(entropies(logits.float() / temperature))
        if t + 1 < length:
            logits, state = run(x, state)
    out = torch.stack(toks, -1), torch.stack(logq, -1).double()  # [M, n, L]
    return (*out, torch.stack(ent, -1).double()) if entropy else out


@torch.no_grad()
def sample_members(base: torch.nn.Module, params: Params, n: int, length: int, seed: int,
                   batched: bool | None = None, precision: str = "fp32", member_seeds=None,
                   **sample_kw) -> tuple[np.ndarray, np.ndarray]:
    """Each member samples n sequences: (tokens [M, n, L], logq [M, n, L]).
    Member m uses seeds.stream('sample', seed, m) (or member_seeds[m]), so its samples do not depend on the
    other members.
    batched=True samples all members in one vmapped computation (one kernel launch per
    token instead of M: what a GPU needs); False loops over members (the reference;
    both give the same tokens, tested). The default batches two or more members
    (bench/throughput.py: slower for one member, faster from four on a 2-core CPU).
    top_k / top_p use the loop. entropy=True (batched only) also returns the exact entropy of
    each step's sampling distribution along the sampled sequences, [M, n, L]: the
    Rao-Blackwellised (lower-variance) estimator of the generation entropy."""
    M = next(iter(params.values())).shape[0]
    batched = M > 1 if batched is None else batched
    if sample_kw.get("entropy"):
        if not batched or {"top_k", "top_p"} & {k for k, v in sample_kw.items() if v is not None}:
            raise ValueError("sample_members(entropy=True) runs on the batched path only (no top_k, top_p)")
        return tuple(a.cpu().numpy() for a in _sample_batched(base, params, n, length, [
            stream("sample", seed, m) for m in range(M)] if member_seeds is None else [int(s) for s in member_seeds],
            precision=precision, **sample_kw))
    sample_kw.pop("entropy", None)
    mseeds = [stream("sample", seed, m) for m in range(M)] if member_seeds is None else [int(s) for s in member_seeds]
    if batched and not {"top_k", "top_p"} & {k for k, v in sample_kw.items() if v is not None}:
        tok, lq = _sample_batched(base, params, n, length, mseeds, precision=precision, **sample_kw)
        return tok.cpu().numpy(), lq.cpu().numpy()
    dev = next(iter(params.values())).device
    with autocast(dev, precision):
        out = [member(base, params, m).sample(n, length, seed=mseeds[m], **sample_kw) for m in range(M)]
    return np.stack([t.cpu().numpy() for t, _ in out]), np.stack([q.cpu().numpy() for _, q in out])


@torch.no_grad()
def precision_effect(base: torch.nn.Module, params: Params, heldout: torch.Tensor, n: int, length: int,
                     member_seeds, skip: int = 0) -> dict[str, np.ndarray]:
    """What bf16 autocast changes in the numbers a notebook reports, for trained members
    (evaluation only; training in bf16 also changes the trajectory):
    held-out cross-entropy and generative entropy rate under fp32 and bf16 (same seeds),
    and the share of sampled tokens that agree. Each value is [M]."""
    out = {}
    for prec in ("fp32", "bf16"):
        out[f"heldout_{prec}"] = lm_loss(base, params, heldout, precision=prec).double().cpu().numpy()
        tok, lq = sample_members(base, params, n, length, 0, precision=prec, member_seeds=member_seeds)
        out[f"gen_H_{prec}"] = np.array([generation_entropy(q, skip).mean() for q in lq])
        out[f"tokens_{prec}"] = tok
    out["token_agreement"] = (out.pop("tokens_fp32") == out.pop("tokens_bf16")).reshape(len(tok), -1).mean(1)
    return out


def generation_entropy_eval(n: int, length: int, member_seeds, skip: int = 1, **sample_kw):
    """An eval_fn for train_lm: each member's generative entropy rate (mean -log q per
    token over positions >= skip of n own samples, member m drawing from member_seeds[m]) -> Tensor[M]."""

    def fn(base, params, step):
        _, lq = sample_members(base, params, n, length, 0, member_seeds=member_seeds, **sample_kw)
        return torch.tensor([generation_entropy(q, skip).mean() for q in lq])
    return fn


def lm_logits(base: torch.nn.Module, params: Params, x: torch.Tensor, batched: bool = True,
              precision: str = "fp32") -> torch.Tensor:
    """[M, B, T, V] logits of each member on its own inputs x [M, B, T] (as lm_loss runs the model)."""

    def one(p, xb):
        with autocast(xb.device, precision):
            return functional_call(base, p, (xb,))

    if batched is True and stacked.supports(base):
        with autocast(x.device, precision):
            return stacked.forward(base, params, x)
    if batched:
        return torch.func.vmap(one)(params, x)
    return torch.stack([one({k: v[m] for k, v in params.items()}, x[m]) for m in range(x.shape[0])])


def lm_loss(base: torch.nn.Module, params: Params, x: torch.Tensor, batched: bool = True,
            precision: str = "fp32", label_smoothing: float = 0.0) -> torch.Tensor:
    """[M] mean next-token cross-entropy of each member on its own batch.

    x: [M, B, T+1] token ids (position 0 is BOS); inputs x[..., :-1], targets x[..., 1:].
    batched=True evaluates all members as one model: the family's hand-stacked forward
    (stacked.forward) where it has one, else torch.func.vmap; "vmap" forces vmap; False
    loops over members (the same numbers up to rounding, tested).
    precision 'bf16': the model runs under bf16 autocast, the cross-entropy in fp32."""

    def one(p, xb):  # xb [B, T+1]
        with autocast(xb.device, precision):
            logits = functional_call(base, p, (xb[:, :-1],))  # [B, T, V]
        return cross_entropy(logits, xb[:, 1:], label_smoothing)

    if batched is True and stacked.supports(base):  # the families' hand-stacked forward (stacked.py)
        with autocast(x.device, precision):
            logits = stacked.forward(base, params, x[..., :-1])  # [M, B, T, V]
        ce = cross_entropy(logits, x[..., 1:], label_smoothing, reduction="none")
        return ce.reshape(x.shape[0], -1).mean(1)
    if batched:
        return torch.func.vmap(one)(params, x)
    return torch.stack([one({k: v[m] for k, v in params.items()}, x[m]) for m in range(x.shape[0])])


def with_bos(x, bos: int, device=None) -> torch.Tensor:
    """Prepend the BOS id to token sequences [..., T] -> [..., T+1] (int64, on `device`)."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.long, device=device)
    return torch.cat([torch.full_like(x[..., :1], bos), x], -1)


def entropies(logits: torch.Tensor) -> torch.Tensor:
    """[..., V] logits -> [...] predictive entropy in nats (float32 or wider)."""
    logp = torch.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


@torch.no_grad()
def per_position(base, params, batch: torch.Tensor, batched: bool = True, precision: str = "fp32"):
    """Teacher-forced measurements of every position of batch [M, B, T+1]: predictive
    entropy, log-partition and cross-entropy of the next token, each [M, B, T] (fp32)."""
    logits = lm_logits(base, params, batch[..., :-1], batched, precision).float()  # [M, B, T, V]
    ce = cross_entropy(logits, batch[..., 1:], reduction="none")
    return entropies(logits), torch.logsumexp(logits, -1), ce.reshape(logits.shape[:-1])

"""Neural families (MLP n-gram, GRU, LSTM, Transformer) behind one interface, and the
one token cross-entropy of the package.

Token sequences use ids 0..V-1 and a beginning-of-sequence id BOS = V (input only):
every model maps x: LongTensor[B, T] (ids in 0..V) to next-token logits [B, T, V].
The layers are plain tensor code (no fused RNN kernels, no fused attention) so that
torch.func.vmap can train many seeds as one batched model (members.lm_loss).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Registry
from .seeds import stream

FAMILIES = Registry("architecture")
register = FAMILIES.register


SMALL_VOCAB = 16  # below this many tokens the CPU cross-entropy takes the classes along dim 1 (cross_entropy)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
                  reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy in nats, in fp32: logits [..., V] against targets [...]
    (flattened; reduction "mean" over every position, or "none": one value per position,
    flat). On the CPU with V < SMALL_VOCAB the logits go in as [1, V, n] (classes along dim 1, a
    transposed view): torch's log-softmax over a last dimension that short runs row by row, over
    dim 1 it is vectorised across positions: forward and backward 6x faster with 2 threads, 9x with
    one, at V = 12 and 10240 positions on a 2-core AVX-512 machine (bench/throughput.py
    --cross-entropy). The same formula, equal to float32 rounding (tests/test_neural.py): a training run
    differs from one through the usual layout in the last bits (5e-7 in a loss after 50 steps)."""
    V = logits.shape[-1]
    flat, t = logits.float().reshape(-1, V), targets.reshape(-1)  # [n, V], [n]
    if V < SMALL_VOCAB and flat.device.type == "cpu":
        out = F.cross_entropy(flat.T.unsqueeze(0), t.unsqueeze(0), reduction=reduction,
                              label_smoothing=label_smoothing)  # [1, V, n] against [1, n]
        return out[0] if reduction == "none" else out
    return F.cross_entropy(flat, t, reduction=reduction, label_smoothing=label_smoothing)


class LM(nn.Module):
    """Interface of every neural family: forward(x) -> logits, sample(...) without gradient."""
    vocab: int

    @property
    def bos(self) -> int:
        return self.vocab

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def start(self, n: int):
        """Decoding state after reading BOS: (logits [n, V], state)."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, state):
        """Feed one token per sequence (x: [n]); returns (logits [n, V], new state)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, length: int, *, temperature: float = 1.0, greedy: bool = False,
               top_k: int | None = None, top_p: float | None = None, seed: int = 0,
               prompt: torch.Tensor | None = None):
        """n sequences of `length` new tokens after BOS (and after `prompt` [n, P] when
        given). Returns (tokens [n, length] int64, logq [n, length]: log-probability of
        each token under the distribution it was drawn from (tempered and truncated;
        0 for greedy)). The prompt is not part of the output."""
        was = self.training
        self.eval()
        g = torch.Generator().manual_seed(int(seed))
        # one uniform per token, drawn up front on the CPU: the same tokens on every device
        u = torch.rand(n, length, generator=g, dtype=torch.float64).to(self.device)
        logits, state = self.start(n)
        if prompt is not None:
            prompt = torch.as_tensor(prompt, dtype=torch.long).to(self.device)
            if prompt.shape[0] != n:
                raise ValueError(f"prompt has {prompt.shape[0]} rows for n = {n}")
            for t in range(prompt.shape[1]):
                logits, state = self.step(prompt[:, t], state)
        toks, logq = [], []
        for t in range(length):
            x, lq = draw_tokens(logits, u[:, t], temperature=temperature, greedy=greedy, top_k=top_k, top_p=top_p)
            toks.append(x)
            logq.append(lq)
            if t + 1 < length:
                logits, state = self.step(x, state)
        self.train(was)
        return torch.stack(toks, 1), torch.stack(logq, 1).double()

    @torch.no_grad()
    def sequence_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """[B] log p_theta(x_1..x_T) of token sequences x [B, T] (BOS is prepended)."""
        inp = torch.cat([torch.full_like(x[:, :1], self.bos), x[:, :-1]], 1)
        logp = torch.log_softmax(self(inp).double(), -1)
        return logp.gather(-1, x[..., None])[..., 0].sum(1)


def draw_tokens(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
                top_k: int | None = None, top_p: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step for logits [..., V] and one uniform per row u [...]: the token
    whose cumulative sampling probability first exceeds u (or the argmax), and its
    log-probability under the sampling distribution (0 for greedy)."""
    logp = sampling_logprobs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    if greedy:
        x = logits.float().argmax(-1)
        return x, torch.zeros(x.shape, dtype=logp.dtype, device=logp.device)
    cdf = logp.double().exp().cumsum(-1)
    x = (u[..., None] > cdf).sum(-1).clamp_max(logits.shape[-1] - 1)
    return x, logp.gather(-1, x[..., None])[..., 0]


def sampling_logprobs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None) -> torch.Tensor:
    """Log-probabilities of the sampling distribution: softmax(logits / T), restricted to
    the top-k tokens and/or the smallest set with mass >= top_p (nucleus), renormalised."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy=True for argmax decoding)")
    z = logits.float() / temperature
    if top_k is not None:
        kth = z.topk(min(top_k, z.shape[-1]), -1).values[..., -1:]
        z = z.masked_fill(z < kth, -math.inf)
    if top_p is not None:
        zs, idx = z.sort(-1, descending=True)
        ps = zs.softmax(-1)
        drop = ps.cumsum(-1) - ps >= top_p  # tokens after the nucleus is complete
        z = z.masked_fill(drop.scatter(-1, idx, drop), -math.inf)
    return torch.log_softmax(z, -1)


@register("mlp")
class MLPNGram(LM):
    """Fixed-window model: p(x_t | x_{t-n..t-1}) by an MLP on concatenated embeddings."""

    def __init__(self, vocab: int, context: int = 3, d: int = 32, hidden: int = 128, **_):
        super().__init__()
        self.vocab, self.context = vocab, context
        self.emb = nn.Embedding(vocab + 1, d)
        self.fc1 = nn.Linear(context * d, hidden)
        self.fc2 = nn.Linear(hidden, vocab)

    def _window(self, x):  # x [B, T] -> [B, T, n] (left-padded with BOS)
        pad = torch.full_like(x[:, :1], self.bos).expand(-1, self.context - 1)
        xp = torch.cat([pad, x], 1)
        return torch.stack([xp[:, i : i + x.shape[1]] for i in range(self.context)], -1)

    def forward(self, x):
        e = self.emb(self._window(x)).flatten(-2)  # [B, T, n*d]
        return self.fc2(torch.tanh(self.fc1(e)))  # [B, T, V]

    def start(self, n):
        w = torch.full((n, self.context), self.bos, dtype=torch.long, device=self.device)
        return self._logits(w), w

    def step(self, x, w):
        w = torch.cat([w[:, 1:], x[:, None]], 1)
        return self._logits(w), w

    def _logits(self, w):  # w [n, context]
        return self.fc2(torch.tanh(self.fc1(self.emb(w).flatten(-2))))


@torch.no_grad()
def ngram_table(model: MLPNGram, contexts) -> torch.Tensor:
    """[C, V] the conditionals p(. | context) of an MLP n-gram model for token contexts
    [C, context] (oldest first): the whole model, when its window is the source's order."""
    w = torch.as_tensor(np.asarray(contexts), dtype=torch.long).to(model.device)
    if w.ndim != 2 or w.shape[1] != model.context:
        raise ValueError(f"contexts must be [C, {model.context}] tokens, got {tuple(w.shape)}")
    return torch.softmax(model._logits(w).double(), -1)


class _Recurrent(LM):
    """Embedding -> one recurrent cell (hand-written, vmap-friendly) -> linear."""
    gates: int

    def __init__(self, vocab: int, d: int = 32, hidden: int = 64, **_):
        super().__init__()
        self.vocab, self.hidden = vocab, hidden
        self.emb = nn.Embedding(vocab + 1, d)
        self.wx = nn.Linear(d, self.gates * hidden)
        self.wh = nn.Linear(hidden, self.gates * hidden, bias=False)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x):
        e = self.wx(self.emb(x))  # [B, T, G*h]: input projections for all steps at once
        state = self.zero_state(x.shape[0], e)
        hs = []
        for t in range(x.shape[1]):
            state = self.cell(e[:, t], state)
            hs.append(self.top(state))
        return self.out(torch.stack(hs, 1))  # [B, T, V]

    def start(self, n):
        return self.step(torch.full((n,), self.bos, dtype=torch.long, device=self.device), None)

    def step(self, x, state):
        e = self.wx(self.emb(x))  # [n, G*h]
        state = self.cell(e, self.zero_state(x.shape[0], e) if state is None else state)
        return self.out(self.top(state)), state


@register("gru")
class GRU(_Recurrent):
    gates = 3

    def zero_state(self, n, like):
        return like.new_zeros(n, self.hidden)

    def top(self, h):
        return h

    def cell(self, ex, h):  # ex [B, 3h], h [B, h]
        xr, xz, xn = ex.chunk(3, -1)
        hr, hz, hn = self.wh(h).chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        return (1 - z) * torch.tanh(xn + r * hn) + z * h


@register("lstm")
class LSTM(_Recurrent):
    gates = 4

    def zero_state(self, n, like):
        return like.new_zeros(n, self.hidden), like.new_zeros(n, self.hidden)

    def top(self, state):
        return state[0]

    def cell(self, ex, state):
        h, c = state
        i, f, g, o = (ex + self.wh(h)).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class _Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, cache=None):
        """x [B, t, d] new positions; cache (k, v) [B, H, t0, dh] of earlier positions or None.
        Returns (y [B, t, d], (k, v) including the new positions)."""
        B, t, d = x.shape
        H = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, -1)
        q, k, v = (z.reshape(B, t, H, d // H).transpose(1, 2) for z in (q, k, v))  # [B, H, t, dh]
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        T = k.shape[2]
        att = q @ k.transpose(-1, -2) / math.sqrt(d // H)  # [B, H, t, T]
        causal = torch.ones(t, T, dtype=torch.bool, device=x.device).tril(T - t)  # new position i sees keys <= T - t + i
        att = att.masked_fill(~causal, -math.inf).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, t, d)
        x = x + self.proj(y)
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x)))), (k, v)


@register("transformer")
class Transformer(LM):
    """Decoder-only, pre-LayerNorm, learned positions; sampling with a key/value cache.
    Generations longer than max_len positions continue with a sliding window: BOS and
    the newest max_len - 1 tokens, the layout every training window has."""

    def __init__(self, vocab: int, d: int = 32, layers: int = 2, heads: int = 2, max_len: int = 256, **_):
        super().__init__()
        if d % heads:
            raise ValueError("d must be divisible by heads")
        self.vocab, self.max_len = vocab, max_len
        self.emb = nn.Embedding(vocab + 1, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(_Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.out = nn.Linear(d, vocab)

    def _run(self, x, offset: int, caches=None):
        if offset + x.shape[1] > self.max_len:
            raise ValueError(f"sequence longer than max_len={self.max_len}")
        h = self.emb(x) + self.pos(torch.arange(offset, offset + x.shape[1], device=x.device))  # [B, t, d]
        new = []
        for i, blk in enumerate(self.blocks):
            h, kv = blk(h, None if caches is None else caches[i])
            new.append(kv)
        return self.out(self.ln(h)), new  # [B, t, V]

    def forward(self, x):
        return self._run(x, 0)[0]

    # decoding with a cache: each step feeds only the newest token
    use_cache: bool = True

    def start(self, n):
        ctx = torch.full((n, 1), self.bos, dtype=torch.long, device=self.device)
        logits, caches = self._run(ctx, 0)
        return logits[:, -1], (ctx, caches)

    def step(self, x, state):
        ctx, caches = state
        ctx = torch.cat([ctx, x[:, None]], 1)
        if ctx.shape[1] > self.max_len:  # past the trained positions: a sliding window, BOS
            ctx = torch.cat([ctx[:, :1], ctx[:, 2:]], 1)  # then the newest max_len - 1 tokens,
            logits, caches = self._run(ctx, 0)  # recomputed without a cache (nanoGPT's crop)
        elif self.use_cache:
            logits, caches = self._run(x[:, None], ctx.shape[1] - 1, caches)
        else:  # recompute the whole context (reference implementation, O(T^2) per token)
            logits, caches = self._run(ctx, 0)
        return logits[:, -1], (ctx, caches)


NEURAL = tuple(FAMILIES)  # mlp, gru, lstm, transformer


def build_lm(arch: str, vocab: int, seed: int, **kw) -> LM:
    """A neural family by name, initialised from `seed`."""
    cls = FAMILIES.get_class(arch)
    torch.manual_seed(stream("init", seed))
    return cls(vocab=vocab, **kw)

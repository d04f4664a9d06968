"""Many models as one, by hand: each family's forward on stacked parameters.

torch.func.vmap runs a member-batched model op by op through batching rules; at the book's
sizes (widths 16-64, a few thousand parameters per member) a training step is a few
hundred small operations, so per-operation overhead, not arithmetic, sets the speed, and
vmap (or a loop over members) multiplies it. Here each family's forward is written once
for parameters with a leading member dimension M: the linear maps are batched matrix
products (torch.baddbmm) over members, everything else acts on [M, B, ...] tensors, so
one step costs the operations of one model. The numbers are those of the family's own
forward up to rounding (tests/test_neural.py compares every family with the loop).

forward(base, params, x) -> logits [M, B, T, V] for token ids x [M, B, T]; `base` is one
member's module (lm.build_lm), params its stacked state (members.stack_members).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import lm

SCAN = True  # the GRU through _GRUScan (False: autograd through _recurrent's loop; tests compare the two)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x [M, ..., i] @ w[m].T + b[m] for w [M, o, i], b [M, o] -> [M, ..., o]."""
    M, shape = x.shape[0], x.shape[1:-1]
    flat = x.reshape(M, -1, x.shape[-1])
    y = torch.bmm(flat, w.transpose(1, 2)) if b is None else torch.baddbmm(b[:, None, :], flat, w.transpose(1, 2))
    return y.reshape(M, *shape, w.shape[1])


def _embed(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """table [M, V, d], ids x [M, ...] -> [M, ..., d]: member m's rows, as one lookup in the flattened table
    (ids offset by m V) whose backward sums each row's gradient in the order of the positions, so a member's
    gradient does not depend on the other members (per-seed caching needs it bit for bit). On the CPU the
    lookup is index_select, whose backward (index_add_) is F.embedding's sum, equal bit for bit
    (tests/test_neural.py) and 3x faster at the book's sizes: F.embedding's CPU backward adds one position at
    a time through a tensor operation. On CUDA index_add_ adds atomically, in no fixed order: F.embedding."""
    M, V, d = table.shape
    ids = x + (torch.arange(M, device=x.device) * V).reshape(-1, *([1] * (x.ndim - 1)))
    if table.device.type != "cpu":
        return F.embedding(ids, table.reshape(M * V, d))
    return table.reshape(M * V, d).index_select(0, ids.reshape(-1)).reshape(*x.shape, d)


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """nn.LayerNorm over the last dim with member weights w, b [M, d]; x [M, ..., d]."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return F.layer_norm(x, x.shape[-1:], eps=eps) * w.reshape(shape) + b.reshape(shape)


def _mlp(base: lm.MLPNGram, p: dict, x: torch.Tensor) -> torch.Tensor:
    M, B, T = x.shape
    win = base._window(x.reshape(M * B, T)).reshape(M, B, T, base.context)  # [M, B, T, n]
    e = _embed(p["emb.weight"], win).flatten(-2)  # [M, B, T, n*d]
    return _linear(torch.tanh(_linear(e, p["fc1.weight"], p["fc1.bias"])), p["fc2.weight"], p["fc2.bias"])


class _GRUScan(torch.autograd.Function):
    """lm.GRU's recurrence over a whole sequence as one autograd node, its backward through time written out.

    forward(ex [M, B, T, 3h] input projections, whT [M, h, 3h]) -> hs [M, B, T, h], h_0 = 0, the gate algebra
    of lm.GRU.cell op for op (the numbers of the loop in _recurrent). Autograd would record some thirty nodes a
    step; backward here does one batched matrix product and a few elementwise products a step, the gates'
    derivatives and the weight gradient vectorised over time. A second derivative through it raises (the
    book's Hessians are of MLPs)."""

    @staticmethod
    def forward(ctx, ex, whT):
        M, B, T, G = ex.shape
        H = G // 3
        h = ex.new_zeros(M, B, H)
        whT = whT.contiguous()
        hs, rs, zs, ns, hns = [], [], [], [], []
        for t in range(T):
            xr, xz, xn = ex[:, :, t].chunk(3, -1)
            hr, hz, hn = torch.bmm(h, whT).chunk(3, -1)  # each [M, B, h]
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
            hs.append(h), rs.append(r), zs.append(z), ns.append(n), hns.append(hn)
        hs = torch.stack(hs, 2)  # [M, B, T, h]
        ctx.save_for_backward(whT, hs, *(torch.stack(v) for v in (rs, zs, ns, hns)))  # each [T, M, B, h]
        return hs

    @staticmethod
    def backward(ctx, dhs):  # dhs [M, B, T, h]
        if torch.is_grad_enabled():  # create_graph=True: a second derivative, which this backward does not have
            raise RuntimeError("the stacked GRU's backward is written out and has no second derivative: for a "
                               "Hessian of a GRU use members.lm_loss(..., batched='vmap')")
        whT, hs, r, z, n, hn = ctx.saved_tensors
        T, M, B, H = n.shape
        hprev = torch.cat([hs.new_zeros(1, M, B, H), hs.permute(2, 0, 1, 3)[:-1]])  # [T, M, B, h]
        a_n = (1 - z) * (1 - n * n)  # d h_t / d a_n (a_n = xn + r hn, n's pre-activation)
        a_z = (hprev - n) * (z * (1 - z))  # d h_t / d a_z
        a_r = hn * (r * (1 - r))  # d a_n / d a_r
        dhh = dhs.new_empty(T, M, B, 3, H)  # d loss / d (hr, hz, hn); (a_r, a_z) of d loss / d ex too
        dan = dhs.new_empty(T, M, B, H)  # d loss / d a_n
        gate = torch.stack([a_r, a_z, r], -2)  # [T, M, B, 3, h]: what (dn, dh, dn) multiply for (hr, hz, hn)
        wh = whT.transpose(1, 2).contiguous()  # [M, 3h, h]
        dhs = dhs.permute(2, 0, 1, 3).contiguous()  # [T, M, B, h]
        dh = dhs.new_zeros(M, B, H)  # d loss / d h_t through the steps after t
        for t in range(T - 1, -1, -1):
            dh = dh + dhs[t]
            dn = torch.mul(dh, a_n[t], out=dan[t])
            # (dn a_r, dh a_z, dn r) as one product into contiguous memory (three products into strided slices
            # of it took four times as long); the same numbers
            g = torch.mul(torch.stack([dn, dh, dn], -2), gate[t], out=dhh[t]).view(M, B, 3 * H)
            dh = torch.baddbmm(dh * z[t], g, wh)
        dhh = dhh.view(T, M, B, 3 * H)
        dwhT = torch.bmm(hprev.permute(1, 3, 0, 2).reshape(M, H, T * B), dhh.permute(1, 0, 2, 3).reshape(M, T * B, 3 * H))
        dex = torch.cat([dhh[..., :2 * H], dan], -1)  # [T, M, B, 3h]
        return dex.permute(1, 2, 0, 3), dwhT


def _recurrent(base, p: dict, x: torch.Tensor) -> torch.Tensor:
    ex = _linear(_embed(p["emb.weight"], x), p["wx.weight"], p["wx.bias"])  # [M, B, T, G*h]
    whT = p["wh.weight"].transpose(1, 2)  # [M, h, G*h]
    if isinstance(base, lm.GRU) and SCAN and not torch.is_autocast_enabled(ex.device.type) and ex.dtype == whT.dtype:
        return _linear(_GRUScan.apply(ex, whT), p["out.weight"], p["out.bias"])
    M, B, T = x.shape
    h = ex.new_zeros(M, B, base.hidden)
    c = ex.new_zeros(M, B, base.hidden)
    hs = []
    for t in range(T):
        hh = torch.bmm(h, whT)  # [M, B, G*h]
        if isinstance(base, lm.GRU):  # the gate algebra of lm.GRU.cell
            xr, xz, xn = ex[:, :, t].chunk(3, -1)
            hr, hz, hn = hh.chunk(3, -1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        else:  # lm.LSTM.cell
            i, f, g, o = (ex[:, :, t] + hh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
    return _linear(torch.stack(hs, 2), p["out.weight"], p["out.bias"])


def _transformer(base: lm.Transformer, p: dict, x: torch.Tensor) -> torch.Tensor:
    M, B, T = x.shape
    if T > base.max_len:
        raise ValueError(f"sequence longer than max_len={base.max_len}")
    h = _embed(p["emb.weight"], x) + p["pos.weight"][:, None, :T]  # [M, B, T, d]
    d = h.shape[-1]
    for i, blk in enumerate(base.blocks):
        q = f"blocks.{i}."
        H = blk.heads
        a = _layer_norm(h, p[q + "ln1.weight"], p[q + "ln1.bias"], blk.ln1.eps)
        qkv = _linear(a, p[q + "qkv.weight"], p[q + "qkv.bias"]).reshape(M * B, T, 3, H, d // H)
        qh, kh, vh = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [M*B, H, T, dh]
        y = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)  # softmax(q k^T / sqrt(dh)) v, causal
        y = y.transpose(1, 2).reshape(M, B, T, d)
        h = h + _linear(y, p[q + "proj.weight"], p[q + "proj.bias"])
        a = _layer_norm(h, p[q + "ln2.weight"], p[q + "ln2.bias"], blk.ln2.eps)
        h = h + _linear(F.gelu(_linear(a, p[q + "fc.weight"], p[q + "fc.bias"])), p[q + "fc_out.weight"],
                        p[q + "fc_out.bias"])
    h = _layer_norm(h, p["ln.weight"], p["ln.bias"], base.ln.eps)
    return _linear(h, p["out.weight"], p["out.bias"])


FORWARD = {lm.MLPNGram: _mlp, lm.GRU: _recurrent, lm.LSTM: _recurrent, lm.Transformer: _transformer}


def supports(base: torch.nn.Module) -> bool:
    return type(base) in FORWARD


def forward(base: torch.nn.Module, params: dict, x: torch.Tensor) -> torch.Tensor:
    """[M, B, T, V] logits of every member on its own inputs x [M, B, T]."""
    if not supports(base):
        raise TypeError(f"no stacked forward for {type(base).__name__}; use members' vmap or loop")
    return FORWARD[type(base)](base, params, x)

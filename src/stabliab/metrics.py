"""Measures: entropy and KL (exact), their conditional forms, and bootstrap intervals.

All quantities are in nats. Conditional quantities are averages over contexts c
weighted by w_c (a stationary law, or empirical context frequencies):

    H(P | w)        = - sum_c w_c sum_j P[c,j] log P[c,j]
    KL(P || Q | w)  =   sum_c w_c sum_j P[c,j] log(P[c,j] / Q[c,j])
    CE(P, Q | w)    = - sum_c w_c sum_j P[c,j] log Q[c,j]   = H(P|w) + KL(P||Q|w)
"""
from __future__ import annotations

import numpy as np


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x * log(y) with 0 * log(anything) = 0 (and x>0, y=0 -> -inf)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x, y = np.broadcast_arrays(x, y)
    out = np.zeros(x.shape)
    pos = x > 0
    with np.errstate(divide="ignore"):
        out[pos] = x[pos] * np.log(y[pos])
    return out


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """H(p) = -sum p log p along `axis` (0 log 0 = 0)."""
    return -_xlogy(p, p).sum(axis)


def kl(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """KL(p || q) along `axis`; +inf where p > 0 and q = 0."""
    return (_xlogy(p, p) - _xlogy(p, q)).sum(axis)


def conditional_entropy(w: np.ndarray, P: np.ndarray) -> float:
    return float(np.dot(w, entropy(P)))


def conditional_kl(w: np.ndarray, P: np.ndarray, Q: np.ndarray) -> float:
    w = np.asarray(w, dtype=np.float64)
    k = kl(P, Q)
    return float(np.dot(w[w > 0], k[w > 0]))


def conditional_cross_entropy(w: np.ndarray, P: np.ndarray, Q: np.ndarray) -> float:
    w = np.asarray(w, dtype=np.float64)
    ce = -_xlogy(P, Q).sum(-1)
    return float(np.dot(w[w > 0], ce[w > 0]))


def empirical_conditional(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Context weights w_c = n_c / n and conditionals P_hat[c] = counts[c] / n_c.

    Contexts never seen get weight 0 and (by convention) a uniform row.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_c = counts.sum(1)
    if n_c.sum() <= 0:
        raise ValueError("counts are empty")
    V = counts.shape[1]
    P = np.where(n_c[:, None] > 0, counts / np.maximum(n_c, 1)[:, None], 1.0 / V)
    return n_c / n_c.sum(), P


def smoothed_conditional(counts: np.ndarray, eps: float) -> np.ndarray:
    """(counts + eps) / (n_c + V eps): an everywhere-positive version of P_hat."""
    counts = np.asarray(counts, dtype=np.float64)
    return (counts + eps) / (counts.sum(-1, keepdims=True) + eps * counts.shape[-1])


def decompose_cross_entropy(counts: np.ndarray, Q: np.ndarray) -> dict[str, float]:
    """CE(P_hat, Q), H(P_hat) and KL(P_hat || Q) for the empirical law of `counts`
    ([C, V]) against model conditionals Q ([C, V]); CE = H + KL up to rounding."""
    w, P = empirical_conditional(counts)
    return {"ce": conditional_cross_entropy(w, P, Q), "h": conditional_entropy(w, P),
            "kl": conditional_kl(w, P, Q)}


def support_coverage(P: np.ndarray, Q: np.ndarray, w: np.ndarray, tau: float) -> dict[str, float]:
    """Which transitions a model Q keeps, relative to the support of P ([C, V]),
    over contexts with w_c > 0:
      kept     share of P's support (P > 0) where Q >= tau
      outside  w-weighted mass that Q puts where P = 0
      dropped  w-weighted P-mass on transitions where Q < tau"""
    w = np.asarray(w, dtype=np.float64)
    seen = w > 0
    P, Q, w = np.asarray(P)[seen], np.asarray(Q)[seen], w[seen] / w[seen].sum()
    supp = P > 0
    return {"kept": float((Q[supp] >= tau).mean()),
            "outside": float(np.dot(w, np.where(supp, 0.0, Q).sum(1))),
            "dropped": float(np.dot(w, np.where(Q < tau, P, 0.0).sum(1)))}


# ---------------------------------------------------------------------- plug-in estimation
def plugin_entropy(symbols) -> float:
    """H of the empirical frequencies of a 1-D sample (nats); biased low."""
    _, c = np.unique(np.asarray(symbols).reshape(-1), return_counts=True)
    return float(entropy(c / c.sum()))


def miller_madow(symbols) -> float:
    """Plug-in entropy plus the Miller-Madow correction (K_obs - 1) / (2 N)."""
    x = np.asarray(symbols).reshape(-1)
    return plugin_entropy(x) + (np.unique(x).size - 1) / (2 * x.size)


def conditional_plugin_bias(support_sizes, n_transitions: int) -> float:
    """Miller-Madow prediction of E[H(P_hat)] - H*: for a conditional plug-in on n
    transitions with stationary context counts n_c = n pi_c, the leading bias term
    sum_c pi_c (K_c - 1) / (2 n pi_c) = sum_c (K_c - 1) / (2 n)  (negative of this)."""
    return -float(np.sum(np.asarray(support_sizes) - 1)) / (2 * n_transitions)


# ---------------------------------------------------------------------- generations
def generation_entropy(logq, skip: int = 0) -> np.ndarray:
    """[n] per-sequence mean of -log q over positions >= skip of a model's own samples
    (logq [n, L] from LM.sample): a Monte Carlo estimate of its entropy rate."""
    lq = np.asarray(logq, dtype=np.float64)[..., skip:]
    if lq.shape[-1] == 0:
        raise ValueError("no positions left after skip")
    return -lq.mean(-1)


def transition_coverage(P_true: np.ndarray, counts: np.ndarray) -> float:
    """Share of the true chain's possible transitions (P > 0) that occur in `counts`."""
    supp = np.asarray(P_true) > 0
    return float((np.asarray(counts)[supp] > 0).mean())


def bootstrap_ci(values, stat=np.mean, level: float = 0.95, n_boot: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of stat(values) (resampling the values)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    boots = np.apply_along_axis(stat, 1, v[idx]) if stat is not np.mean else v[idx].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))

"""Measures: entropy and KL (exact), their conditional forms, plug-in estimation, the
degeneration measures of generated text and the stability measures of a loss curve.
(Intervals for claim records live in stats.py.)

All quantities are in nats. Conditional quantities are averages over contexts c
weighted by w_c (a stationary law, or empirical context frequencies):

    H(P | w)        = - sum_c w_c sum_j P[c,j] log P[c,j]
    KL(P || Q | w)  =   sum_c w_c sum_j P[c,j] log(P[c,j] / Q[c,j])
    CE(P, Q | w)    = - sum_c w_c sum_j P[c,j] log Q[c,j]   = H(P|w) + KL(P||Q|w)

(claim C1's identity; each family computes CE itself, e.g. loglinear.count_cross_entropy).
"""
from __future__ import annotations

import numpy as np
from scipy import special


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """H(p) = -sum p log p along `axis` (0 log 0 = 0)."""
    return special.entr(np.asarray(p, dtype=np.float64)).sum(axis)


def kl(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """KL(p || q) = sum p log p - sum p log q along `axis` (0 log 0 = 0; +inf where p > 0 and
    q = 0), with scipy.special.xlogy: the same rounding as the book's first edition, whereas
    rel_entr (p log(p/q)) differs in the last bit for about half of all laws."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return (special.xlogy(p, p) - special.xlogy(p, q)).sum(axis)


def conditional_entropy(w: np.ndarray, P: np.ndarray) -> float:
    return float(np.dot(w, entropy(P)))


def conditional_kl(w: np.ndarray, P: np.ndarray, Q: np.ndarray) -> float:
    w = np.asarray(w, dtype=np.float64)
    k = kl(P, Q)
    return float(np.dot(w[w > 0], k[w > 0]))


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


def temper(P: np.ndarray, tau: float) -> np.ndarray:
    """Per-context tempering: rows of P^(1/tau), renormalised (zeros stay zero). Each
    row's entropy falls for tau < 1, but the entropy *rate* of the tempered chain can
    rise, because tempering also changes which contexts are visited (theory page)."""
    if tau <= 0:
        raise ValueError("tau must be > 0")
    P = np.asarray(P, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z = np.where(P > 0, np.log(np.where(P > 0, P, 1.0)) / tau, -np.inf)
    z -= z.max(1, keepdims=True)
    Q = np.exp(z)
    return Q / Q.sum(1, keepdims=True)


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


# ---------------------------------------------------------------------- degeneration
# Conventions for short inputs (stated in the book's appendix): a quantity with no
# n-grams to count is 0 (nothing can repeat; nothing is distinct).
def ngrams(tokens, n: int) -> list[tuple]:
    t = list(np.asarray(tokens).reshape(-1).tolist())
    return [tuple(t[i : i + n]) for i in range(len(t) - n + 1)]


def seq_rep_n(tokens, n: int = 4) -> float:
    """1 - |distinct n-grams| / |n-grams| within one continuation (Welleck et al. 2020);
    0 when it has fewer than n tokens."""
    g = ngrams(tokens, n)
    return 0.0 if not g else 1.0 - len(set(g)) / len(g)


def distinct_n(sequences, n: int = 2) -> float:
    """Distinct n-gram types / total n-grams, pooled over all sequences; 0 without n-grams."""
    g = [x for s in sequences for x in ngrams(s, n)]
    return 0.0 if not g else len(set(g)) / len(g)


def ends_in_loop(tokens, tail: int = 32, max_period: int | None = None) -> bool:
    """True when the last `tail` tokens repeat with some period p <= max_period
    (default tail // 2), i.e. x_t = x_{t-p} throughout the tail: the text is stuck in
    a loop (as counted by Holtzman et al. 2020). False for texts shorter than tail + 1."""
    t = np.asarray(tokens).reshape(-1)
    max_period = max_period or tail // 2
    if t.size < tail + 1:
        return False
    end = t[-tail:]
    return any(np.array_equal(end[p:], end[:-p]) for p in range(1, max_period + 1))


# ---------------------------------------------------------------------- stability
def detrended_std(y, axis: int = 0) -> np.ndarray:
    """Standard deviation of the residuals of a least-squares line along `axis` (time):
    the fluctuation of a loss curve around its trend. 0 for a straight line."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape[axis] < 3:
        raise ValueError("detrended_std needs at least 3 points")
    if not np.isfinite(y).all():  # as scipy.signal.detrend's least squares refused them (the book's first version)
        raise ValueError("detrended_std needs finite values")
    y = np.moveaxis(y, axis, 0)  # [T, ...]
    t = np.arange(y.shape[0], dtype=np.float64)
    t = (t - t.mean()).reshape((-1,) + (1,) * (y.ndim - 1))  # centred time: the line's two parameters decouple
    r = y - y.mean(0)
    r = r - t * ((t * r).sum(0) / (t * t).sum())  # minus the least-squares slope times centred time
    return r.std(0, ddof=2)  # ddof 2: a line has 2 parameters


def js_divergence(p, q, axis: int = -1) -> np.ndarray:
    """Jensen-Shannon divergence (nats) along `axis`: 0 for equal laws, log 2 for disjoint ones.
    (Not scipy's jensenshannon(p, q) ** 2: it renormalises p and q, and its square root
    turns the rounding of two nearly equal laws, a sum just below 0, into NaN.)"""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = (p + q) / 2
    return (kl(p, m, axis) + kl(q, m, axis)) / 2

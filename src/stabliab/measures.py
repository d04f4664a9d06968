"""Measures: entropy and KL (exact), their conditional forms, plug-in estimation, and the
degeneration measures of generated text. (Intervals for claim records live in claims.py.)

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
# n-grams to count is 0 (nothing can repeat; nothing is distinct), except
# Self-BLEU and the Zipf coefficient, which are undefined there and raise.
def ngrams(tokens, n: int) -> list[tuple]:
    t = list(np.asarray(tokens).reshape(-1).tolist())
    return [tuple(t[i : i + n]) for i in range(len(t) - n + 1)]


def seq_rep_n(tokens, n: int = 4) -> float:
    """1 - |distinct n-grams| / |n-grams| within one continuation (Welleck et al. 2020);
    0 when it has fewer than n tokens."""
    g = ngrams(tokens, n)
    return 0.0 if not g else 1.0 - len(set(g)) / len(g)


def rep_l(tokens, l: int = 16) -> float:
    """Share of positions t >= 1 whose token already occurs among the previous l tokens
    (x_t in {x_{t-l}, ..., x_{t-1}}); 0 for sequences of length < 2."""
    t = list(np.asarray(tokens).reshape(-1).tolist())
    if len(t) < 2:
        return 0.0
    return float(np.mean([t[i] in t[max(0, i - l) : i] for i in range(1, len(t))]))


def distinct_n(sequences, n: int = 2) -> float:
    """Distinct n-gram types / total n-grams, pooled over all sequences; 0 without n-grams."""
    g = [x for s in sequences for x in ngrams(s, n)]
    return 0.0 if not g else len(set(g)) / len(g)


def _bleu(hyp: list[tuple], refs_counts: list[dict], hyp_len: int, ref_lens: list[int], n_max: int) -> float:
    from collections import Counter
    logp = 0.0
    for n in range(1, n_max + 1):
        h = Counter(x for x in hyp if len(x) == n)
        total = sum(h.values())
        if total == 0:
            return 0.0
        best = Counter()
        for rc in refs_counts:
            for g, c in rc[n].items():
                if c > best[g]:
                    best[g] = c
        clipped = sum(min(c, best[g]) for g, c in h.items())
        if clipped == 0 and n == 1:
            return 0.0  # no unigram in common: BLEU is 0
        logp += np.log((clipped + (n > 1)) / (total + (n > 1))) / n_max  # add-one smoothing for n > 1
    closest = min(ref_lens, key=lambda r: (abs(r - hyp_len), r))
    bp = 1.0 if hyp_len > closest else np.exp(1 - closest / max(hyp_len, 1))
    return float(bp * np.exp(logp))


def self_bleu(sequences, n_max: int = 4, max_sequences: int = 64, seed: int = 0) -> float:
    """Mean BLEU-n_max of each sequence against all the others as references (Zhu et al.
    2018): high when generations resemble each other. At most max_sequences (a seeded
    subsample) are compared; needs at least 2 sequences."""
    from collections import Counter
    seqs = [list(np.asarray(s).reshape(-1).tolist()) for s in sequences]
    if len(seqs) < 2:
        raise ValueError("Self-BLEU needs at least 2 sequences")
    if len(seqs) > max_sequences:
        idx = np.random.default_rng(seed).choice(len(seqs), max_sequences, replace=False)
        seqs = [seqs[i] for i in idx]
    grams = [[g for n in range(1, n_max + 1) for g in ngrams(s, n)] for s in seqs]
    counts = [{n: Counter(g for g in gs if len(g) == n) for n in range(1, n_max + 1)} for gs in grams]
    lens = [len(s) for s in seqs]
    scores = [_bleu(grams[i], counts[:i] + counts[i + 1 :], lens[i], lens[:i] + lens[i + 1 :], n_max)
              for i in range(len(seqs))]
    return float(np.mean(scores))


def zipf_coefficient(tokens) -> float:
    """s in frequency ~ rank^(-s): minus the least-squares slope of log frequency on
    log rank over the observed types; needs at least 2 distinct tokens."""
    _, c = np.unique(np.asarray(tokens).reshape(-1), return_counts=True)
    if c.size < 2:
        raise ValueError("the Zipf coefficient needs at least 2 distinct tokens")
    f = np.sort(c)[::-1].astype(np.float64)
    r = np.arange(1, f.size + 1)
    slope = np.polyfit(np.log(r), np.log(f), 1)[0]
    return float(-slope)


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


def degeneration_table(sequences, logq=None, n: int = 4, l: int = 16, tail: int = 32) -> dict[str, float]:
    """Every degeneration measure of a set of sequences (rows of the book's tables).
    logq (the samples' log-probabilities) adds the generation entropy. Measures that
    are undefined for these sequences (Zipf with one distinct token, Self-BLEU of
    one sequence) are NaN here."""
    seqs = [np.asarray(s).reshape(-1) for s in sequences]
    flat = np.concatenate(seqs)
    out = {
        f"seq-rep-{n}": float(np.mean([seq_rep_n(s, n) for s in seqs])),
        f"rep/{l}": float(np.mean([rep_l(s, l) for s in seqs])),
        "distinct-2": distinct_n(seqs, 2),
        f"distinct-{n}": distinct_n(seqs, n),
        "self-BLEU": self_bleu(seqs, max_sequences=32) if len(seqs) > 1 else np.nan,
        "zipf": zipf_coefficient(flat) if np.unique(flat).size > 1 else np.nan,
        "loops": float(np.mean([ends_in_loop(s, tail) for s in seqs])),
        "unigram entropy": plugin_entropy(flat),
    }
    if logq is not None:
        out["gen. entropy"] = float(np.mean(generation_entropy(logq)))
    return out


# ---------------------------------------------------------------------- stability
def detrended_std(y, axis: int = 0) -> np.ndarray:
    """Standard deviation of the residuals of a least-squares line along `axis` (time):
    the fluctuation of a loss curve around its trend. 0 for a straight line."""
    y = np.moveaxis(np.asarray(y, dtype=np.float64), axis, 0)
    t = np.arange(y.shape[0], dtype=np.float64)
    if t.size < 3:
        raise ValueError("detrended_std needs at least 3 points")
    A = np.stack([np.ones_like(t), t], 1)
    coef, *_ = np.linalg.lstsq(A, y.reshape(len(t), -1), rcond=None)
    resid = y.reshape(len(t), -1) - A @ coef
    return resid.std(0, ddof=2).reshape(y.shape[1:])


def js_divergence(p, q, axis: int = -1) -> np.ndarray:
    """Jensen-Shannon divergence (nats) along `axis`: 0 for equal laws, log 2 for disjoint ones."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = (p + q) / 2
    return (kl(p, m, axis) + kl(q, m, axis)) / 2

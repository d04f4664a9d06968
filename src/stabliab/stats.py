"""Statistics the verdicts rest on: intervals (Student-t, Clopper–Pearson, paired) and
rank correlations with their bootstrap over configurations, then seeds."""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from . import seeds

LEVEL = 0.95  # every record of the book is judged at this level (no multiplicity adjustment)


def mean_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean of independent replicates:
    mean ± t_{n-1, (1+level)/2} · s / sqrt(n). Needs n >= 2 finite values."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size < 2:
        raise ValueError(f"mean_interval needs at least 2 values (got {v.size}): one replicate has no spread")
    if not np.all(np.isfinite(v)):
        raise ValueError("mean_interval got a non-finite value")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    half = stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


def share_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial share successes / n: the shares
    at which each tail of Binomial(n, p) beyond k holds (1 - level) / 2; 0 and 1 at the edges."""
    k, n = int(successes), int(n)
    if n < 1 or not 0 <= k <= n or k != successes or n != float(n):
        raise ValueError(f"share_interval needs integers 0 <= successes <= n, n >= 1 (got {successes}, {n})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def paired_interval(treated, baseline, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean paired difference treated - baseline (same seeds,
    same order): mean_interval of the differences. Needs n >= 2 finite pairs."""
    t = np.asarray(treated, dtype=np.float64).reshape(-1)
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if t.shape != b.shape:
        raise ValueError(f"paired_interval: {t.size} treated values against {b.size} baseline values")
    mean_interval(t - b, level)  # the same checks, the same one-line errors
    with warnings.catch_warnings():
        # equal differences (a zero-width interval) make scipy warn of precision loss
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        ci = stats.ttest_rel(t, b).confidence_interval(level)
    return float(ci.low), float(ci.high)


# ---------------------------------------------------------------------- rank correlations
def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    return float(stats.spearmanr(x, y).statistic)


def partial_spearman(x, y, z) -> float:
    """Rank correlation of x and y given z: the Pearson correlation of the residuals of
    rank(x) and rank(y) after a linear fit on rank(z)."""
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    A = np.stack([np.ones_like(rz), rz], 1)
    res = [r - A @ np.linalg.lstsq(A, r, rcond=None)[0] for r in (rx, ry)]
    return float(np.corrcoef(res[0], res[1])[0, 1])


def standardise(values: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """(log values - mean) / sd, with the mean and sd of `ref` (default: the values); NaN, quietly, where
    `ref` has fewer than two finite values (no configuration at its plateau, say)."""
    lv = np.log(np.asarray(values, dtype=np.float64))
    lr = lv if ref is None else np.log(np.asarray(ref, dtype=np.float64))
    with warnings.catch_warnings():  # numpy's "Mean of empty slice" and "Degrees of freedom <= 0": the NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return (lv - np.nanmean(lr, 0)) / np.nanstd(lr, 0, ddof=1)


def _rank_corr_rows(X: np.ndarray, Y: np.ndarray, Z: np.ndarray | None = None) -> np.ndarray:
    """Row by row (rows = resamples [B, C]): Spearman's rho of X and Y, or given Z the Pearson
    correlation of the residuals of rank(X) and rank(Y) after a linear fit on rank(Z) (average
    ranks for ties, as spearman and partial_spearman; NaN where a row is constant)."""
    rx, ry = stats.rankdata(X, axis=1), stats.rankdata(Y, axis=1)
    if Z is not None:
        rz = stats.rankdata(Z, axis=1)
        rz = rz - rz.mean(1, keepdims=True)
        vz = (rz * rz).sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            rx = rx - rx.mean(1, keepdims=True) - rz * ((rx * rz).sum(1, keepdims=True) / vz)
            ry = ry - ry.mean(1, keepdims=True) - rz * ((ry * rz).sum(1, keepdims=True) / vz)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))


def rank_bootstrap(per_seed_x: np.ndarray, per_seed_y: np.ndarray, per_seed_z: np.ndarray | None = None,
                   n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Spearman (or partial Spearman given z) between configuration means of x and y,
    [configs, seeds] arrays, with a percentile bootstrap that resamples configurations,
    then seeds within each resampled configuration (all resamples at once)."""
    X, Y = np.asarray(per_seed_x, float), np.asarray(per_seed_y, float)
    Z = None if per_seed_z is None else np.asarray(per_seed_z, float)
    corr = (lambda a, b, c: spearman(a, b)) if Z is None else partial_spearman
    value = corr(X.mean(1), Y.mean(1), None if Z is None else Z.mean(1))
    rng = seeds.rng("bootstrap", seed)
    C, S = X.shape
    ci = rng.integers(0, C, (n_boot, C))
    si = rng.integers(0, S, (n_boot, C, S))
    pick = lambda A: np.take_along_axis(A[ci], si, 2).mean(2)  # noqa: E731  [B, C]
    boots = _rank_corr_rows(pick(X), pick(Y), None if Z is None else pick(Z))
    # a resample that repeats one configuration can be constant: its correlation is undefined
    # and it is left out (only with very few configurations)
    boots = boots[np.isfinite(boots)]
    a = (1 - level) / 2
    return value, (float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))

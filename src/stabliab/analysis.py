"""What notebooks would otherwise compute inline: rank correlations with their
intervals, the pre-registered stability index, and effect tables."""
from __future__ import annotations

import numpy as np
from scipy import stats


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
    """(log values - mean) / sd, with the mean and sd of `ref` (default: the values)."""
    lv = np.log(np.asarray(values, dtype=np.float64))
    lr = lv if ref is None else np.log(np.asarray(ref, dtype=np.float64))
    return (lv - np.nanmean(lr, 0)) / np.nanstd(lr, 0, ddof=1)


def instability_index(measures: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """The pre-registered index: the mean over stability measures (columns; each larger
    when less stable, all positive) of their standardised logarithms. Larger = less stable."""
    return standardise(measures, ref).mean(-1)


def rank_bootstrap(per_seed_x: np.ndarray, per_seed_y: np.ndarray, per_seed_z: np.ndarray | None = None,
                   n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Spearman (or partial Spearman given z) between configuration means of x and y,
    [configs, seeds] arrays, with a percentile bootstrap that resamples configurations,
    then seeds within each resampled configuration."""
    X, Y = np.asarray(per_seed_x, float), np.asarray(per_seed_y, float)
    Z = None if per_seed_z is None else np.asarray(per_seed_z, float)
    corr = (lambda a, b, c: spearman(a, b)) if Z is None else partial_spearman
    value = corr(X.mean(1), Y.mean(1), None if Z is None else Z.mean(1))
    rng = np.random.default_rng(seed)
    C, S = X.shape
    boots = []
    import warnings
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # a resample that repeats one configuration can be constant: its correlation is
        # undefined and it is left out (only with very few configurations)
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        for _ in range(n_boot):
            ci = rng.integers(0, C, C)
            si = rng.integers(0, S, (C, S))
            pick = lambda A: np.take_along_axis(A[ci], si, 1).mean(1)  # noqa: E731
            b = corr(pick(X), pick(Y), None if Z is None else pick(Z))
            if np.isfinite(b):
                boots.append(b)
    a = (1 - level) / 2
    return value, (float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))


# ---------------------------------------------------------------------- C4
def disagreement(result: dict) -> float:
    """Seed-to-seed disagreement of one configuration: the mean over pairs of seeds of
    the Jensen-Shannon divergence between their conditional tables, weighted by the
    source's stationary law (result["table"]: per seed [C, V]; result["weights"]: [C])."""
    from .metrics import js_divergence
    Q = np.asarray(result["table"], dtype=np.float64)
    w = np.asarray(result["weights"][0], dtype=np.float64)
    js = [float(np.dot(w, js_divergence(Q[a], Q[b]))) for a in range(len(Q)) for b in range(a + 1, len(Q))]
    return float(np.mean(js)) if js else float("nan")


def stability_measures(result: dict, stability: list[str]) -> np.ndarray:
    """[S, K] one configuration's stability measures per seed: the per-seed ones, then
    the configuration's seed disagreement (the same for every seed)."""
    per_seed = np.stack([np.asarray(result[n], dtype=np.float64) for n in stability], -1)  # [S, K-1]
    return np.concatenate([per_seed, np.full((len(per_seed), 1), disagreement(result))], -1)


def c4_table(records: list[dict], stability: list[str], quality: list[str]) -> dict:
    """Sweep records -> {"configs": [...], name: [C, S] per-seed values,
    "entropy_gap": |log H_model / H*| [C, S], "measures": [C, S, K] stability measures,
    "diverged": [C] (a non-finite loss or measure in any seed)}."""
    res = [r["result"] for r in records]
    t = {"configs": [r["config"] for r in records]}
    for name in quality:
        t[name] = np.array([r[name] for r in res], dtype=np.float64)
    t["entropy_gap"] = np.abs(np.log(t["entropy_ratio"]))
    t["measures"] = np.stack([stability_measures(r, stability) for r in res])
    bad = np.array([any(r["diverged"]) for r in res]) | ~np.isfinite(t["measures"]).all((1, 2))
    for name in quality:
        bad |= ~np.isfinite(t[name]).all(1)
    t["diverged"] = bad
    return t


def instability(measures: np.ndarray, table: dict) -> np.ndarray:
    """Per-seed instability index of measures [..., K], standardised by the usable
    configurations of the design in `table`."""
    ref = table["measures"][~table["diverged"]].reshape(-1, table["measures"].shape[-1])
    return instability_index(np.maximum(measures, 1e-300), np.maximum(ref, 1e-300))

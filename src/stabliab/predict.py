"""Cross-validated prediction for C4.beyond: what stability measures add to the held-out loss in
predicting a quality measure (ridge regression, folds by configuration, a bootstrap over
configurations). Its own module: scikit-learn is imported by C4 alone, not by every notebook."""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import PolynomialFeatures

from . import seeds
from .stats import LEVEL

CV_FOLDS = 5  # GroupKFold folds (whole configurations held out)
RIDGE_ALPHA = 1.0  # ridge penalty on standardised features
LOSS_DEGREE = 2  # the loss enters as a polynomial of this degree (a curved dependence on it is the loss's)


def loss_basis(loss) -> np.ndarray:
    """[n, LOSS_DEGREE] the loss as a rank in [0, 1] (ranks of these values) and its powers
    (sklearn PolynomialFeatures): a ridge fit on them follows a curved, monotone-transformed
    dependence on the loss, so what another feature adds is not a curvature of the loss in
    disguise; few columns, since a design has tens of configurations; bounded, so a held-out
    fold at the edge of the range cannot be extrapolated wildly."""
    return PolynomialFeatures(LOSS_DEGREE, include_bias=False).fit_transform(unit_rank(loss).reshape(-1, 1))


def unit_rank(v) -> np.ndarray:
    """Average ranks of v scaled to [0, 1] (a monotone transform that bounds a feature's outliers;
    it reads no target)."""
    v = np.asarray(v, float).ravel()
    return (stats.rankdata(v) - 1) / max(len(v) - 1, 1)


def ridge_predict(X: np.ndarray, y: np.ndarray, X_new: np.ndarray, alpha: float = RIDGE_ALPHA) -> np.ndarray:
    """Ridge regression with an unpenalised intercept, in closed form: the minimiser of
    ||y - b - X w||^2 + alpha ||w||^2 (sklearn.linear_model.Ridge's objective; the tests compare
    the two), evaluated at X_new."""
    mx, my = X.mean(0), y.mean()
    Xc = X - mx
    w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - my))
    return my + (X_new - mx) @ w


def cv_r2(X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = CV_FOLDS) -> float:
    """Out-of-fold R^2 of ridge regression (ridge_predict, penalty RIDGE_ALPHA) of y on X [n, k];
    the folds (sklearn GroupKFold) hold out whole groups, so a configuration's seeds never sit
    on both sides."""
    y = np.asarray(y, float)
    X = np.asarray(X, float).reshape(len(y), -1)
    pred = np.empty_like(y)
    for train, test in GroupKFold(n_splits=folds).split(X, y, groups):
        pred[test] = ridge_predict(X[train], y[train], X[test])
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def r2_gain(base: np.ndarray, extra: np.ndarray, y, groups, folds: int = CV_FOLDS) -> float:
    """What the columns `extra` [n, k] add to `base` [n, j] (e.g. loss_basis(loss)) in predicting
    y [n]: cross-validated R^2 of both minus that of base alone, on the same folds. Give `extra`
    on a unit scale (standardised): the ridge penalty is the same for every column."""
    base = np.asarray(base, float).reshape(len(y), -1)
    both = np.hstack([base, np.asarray(extra, float).reshape(len(y), -1)])
    return cv_r2(both, y, groups, folds) - cv_r2(base, y, groups, folds)


def r2_gain_bootstrap(loss, extra, y, groups, n_boot: int = 200, seed: int = 0, folds: int = CV_FOLDS,
                      level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """r2_gain(loss_basis(loss), extra as unit ranks, y) with a percentile bootstrap over groups
    (configurations): each resample draws groups with replacement and keeps all their rows; a
    group drawn twice keeps one group id, so its copies fall in the same fold (no copy predicts
    itself). Needs >= folds distinct groups (a resample with fewer is drawn again)."""
    y, groups = np.asarray(y, float), np.asarray(groups)
    extra = np.asarray(extra, float).reshape(len(y), -1)
    base, extra = loss_basis(loss), np.stack([unit_rank(c) for c in extra.T], 1)
    ids = np.unique(groups)
    if len(ids) < folds:
        raise ValueError(f"{len(ids)} groups for {folds} folds")
    value = r2_gain(base, extra, y, groups, folds)
    rng = seeds.rng("bootstrap", seed)
    rows = {g: np.flatnonzero(groups == g) for g in ids}
    boots = []
    while len(boots) < n_boot:
        pick = rng.choice(ids, len(ids))
        if len(np.unique(pick)) < folds:
            continue
        idx = np.concatenate([rows[g] for g in pick])
        boots.append(r2_gain(base[idx], extra[idx], y[idx], groups[idx], folds))
    a = (1 - level) / 2
    return value, (float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))

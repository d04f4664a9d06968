"""Stationarity first: has a training run reached its plateau?

The paper's claims concern the *stationary* solutions of maximum-likelihood training, so
every trained model whose numbers enter a verdict is first passed through `measure`
(one run) or `measure_members` (the M members of one Trajectory). The test looks only at
the last `Tolerances.window` share of the run (by step, not by evaluation count, so that a
geometric evaluation schedule does not move it) and applies a rule fixed in advance
(`measure`'s docstring) with pre-registered tolerances (`Tolerances`); nothing is fitted.

Inputs are per evaluation step, as train.Trajectory logs them: steps = traj.eval_step [E],
train_loss = traj["fixed"] [E, M] (the loss on a fixed batch, not the noisy minibatch loss),
heldout = traj["heldout"] [E, M]; a gradient norm logged at every step (traj.grad_norm
[L, M]) is brought onto the evaluation steps by `at_steps`. All losses are in nats and all
slopes in nats per 1000 steps.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .measures import detrended_std

LEVEL = 0.95  # level of the slope interval (stats.LEVEL, the book's level)
STATES = ("plateau", "descending", "oscillating", "overfitting", "rising")
PER_KILO = 1000.0  # slopes are reported per 1000 steps
SHARE = 0.8  # [pre-registered] a notebook's share-at-plateau record holds when its interval lies at or above this


@dataclass(frozen=True)
class Tolerances:
    """The pre-registered tolerances of the plateau test (fixed before any run is seen).

    window: the last share of the run (by step: steps >= last - window * (last - first))
        over which everything is measured; 0.25 = the last quarter.
    max_slope: largest |least-squares slope| of the fixed-batch training loss over the
        window, in nats per 1000 steps, still called flat (0.01: at most 0.01 nats gained
        or lost per 1000 steps).
    max_oscillation: largest relative fluctuation, detrended_std(window loss) / scale, with
        scale = max(first loss - window mean, |window mean|): the fluctuation around the
        window's trend against the larger of the distance travelled and the level reached
        (0.05: 5 %). Catches a sustained oscillation past the stability edge (and any other
        large non-trend fluctuation).
    max_heldout_rise: largest least-squares slope of the held-out loss over the window, in
        nats per 1000 steps, not yet called a rise (0.01).
    max_grad_norm: largest mean gradient norm on the fixed batch over the window; None (the
        default) = not tested, since its scale depends on the model. Set it whenever the
        fixed-batch gradient is measured: a period-two oscillation sampled at an even
        evaluation stride leaves the loss flat but not the gradient.
    """
    window: float = 0.25
    max_slope: float = 0.01
    max_oscillation: float = 0.05
    max_heldout_rise: float = 0.01
    max_grad_norm: float | None = None

    def __post_init__(self):
        if not 0 < self.window <= 1:
            raise ValueError(f"window must be a share in (0, 1], got {self.window}")
        for name in ("max_slope", "max_oscillation", "max_heldout_rise", "max_grad_norm"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")


def slope(steps, y, level: float = LEVEL) -> tuple[float, float, float]:
    """Ordinary least-squares slope of y on steps, in units of y per 1000 steps, with its
    Student-t interval (n - 2 degrees of freedom): (slope, lo, hi). Needs >= 3 points."""
    x = np.asarray(steps, dtype=np.float64) / PER_KILO
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 3:
        raise ValueError("a slope with an interval needs at least 3 points")
    xc = x - x.mean()
    sxx = float(xc @ xc)
    b = float(xc @ (y - y.mean())) / sxx
    resid = y - y.mean() - b * xc
    se = np.sqrt(float(resid @ resid) / (n - 2) / sxx)
    half = t_quantile(level, n - 2) * se
    return b, float(b - half), float(b + half)


@functools.lru_cache(maxsize=None)
def t_quantile(level: float, dof: int) -> float:
    """The two-sided Student-t quantile of `level` with `dof` degrees of freedom, computed once per
    pair (scipy's ppf costs about as much as the rest of `measure`, which stopping rules call at every
    evaluation)."""
    return float(stats.t.ppf((1 + level) / 2, dof))


def at_steps(step, values, steps) -> np.ndarray:
    """Rows of `values` (logged at `step`, e.g. traj.step and traj.grad_norm) at the
    evaluation steps `steps` (e.g. traj.eval_step); ValueError if one was not logged."""
    step, values = np.asarray(step), np.asarray(values)
    if len(step) != len(values):
        raise ValueError(f"{len(values)} logged rows for {len(step)} steps")
    idx = np.searchsorted(step, steps)
    if np.any(idx >= len(step)) or np.any(step[np.minimum(idx, len(step) - 1)] != steps):
        raise ValueError("some evaluation steps were not logged")
    return values[idx]


def window_steps(steps: int, k: int = 6, tol: Tolerances = Tolerances(), first: int = 0) -> np.ndarray:
    """k evenly spaced integer steps across the plateau window of a run evaluated from step
    `first` to step `steps` (measure's window: from first + (1 - tol.window)(steps - first),
    rounded up, to steps, both included; duplicates dropped, so fewer than k on a short run).
    Joined to a geometric schedule (np.union1d), they give measure the evaluations it needs
    in the window, which a geometric schedule does not (it puts almost none there)."""
    if k < 1 or int(steps) < int(first):
        raise ValueError(f"window_steps needs k >= 1 and steps >= first (got k = {k}, {first}..{steps})")
    start = math.ceil(steps - tol.window * (steps - first))
    return np.unique(np.round(np.linspace(start, steps, k)).astype(int))


def _series(name, y, n) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must be 1-d with one value per step ({n}), got shape {y.shape}")
    return y


def measure(steps, train_loss, heldout_loss=None, grad_norm=None, tol: Tolerances = Tolerances()) -> dict:
    """The plateau test of ONE run; every input is 1-d over the same evaluation steps.

    Window: the evaluations with step >= steps[-1] - tol.window * (steps[-1] - steps[0]);
    at least 3 are needed. Measured over it: `slope` (OLS, nats per 1000 steps) of the
    training loss with its 95 % t interval `slope_lo`, `slope_hi`; `oscillation` =
    detrended_std(window loss) / max(train_loss[0] - window mean, |window mean|) (0 when both
    are 0 and the loss is constant, inf when only the scale is 0); `grad_norm`, its window
    mean; `heldout_slope` (nats per 1000 steps). Absent inputs give NaN.

    Decision rule (fixed in advance; the first that applies gives `state`):
      1. the training loss is non-finite anywhere (a diverged run)          -> "rising"
      2. oscillation > tol.max_oscillation                                  -> "oscillating"
      3. slope > tol.max_slope                                              -> "rising"
      4. heldout_loss is given and heldout_slope > tol.max_heldout_rise     -> "overfitting"
      5. slope < -tol.max_slope                                             -> "descending"
      6. tol.max_grad_norm is set, grad_norm is given and its window mean
         > tol.max_grad_norm (a flat loss whose gradient does not vanish)   -> "oscillating"
      7. otherwise                                                          -> "plateau"
    at_plateau = (state == "plateau"). Step 4 precedes step 5, so a run whose training loss
    is flat or still falling while its held-out loss rises is over-fitting, not under-trained;
    step 2 precedes the slope, which a large fluctuation makes unreliable (a period-two series
    over an even number of points has a spurious slope); step 6 follows step 5, so a large
    gradient on a falling loss is descent, not oscillation.
    The decision uses the point estimates; the interval is reported, not tested.

    Errors (ValueError): steps not 1-d, not finite or not strictly increasing; an input of
    another length; fewer than 3 evaluations in the window. A diverged run (NaN or inf in the
    training loss) is not an error but state "rising" with NaN measures (its held-out loss
    and gradient norm may then be anything); a non-finite held-out loss or gradient norm
    next to a finite training loss is an error.
    """
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or not np.all(np.isfinite(steps)) or np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be 1-d, finite and strictly increasing")
    n = len(steps)
    y = _series("train_loss", train_loss, n)
    h = None if heldout_loss is None else _series("heldout_loss", heldout_loss, n)
    g = None if grad_norm is None else _series("grad_norm", grad_norm, n)
    w = steps >= steps[-1] - tol.window * (steps[-1] - steps[0])
    if w.sum() < 3:
        raise ValueError(f"only {int(w.sum())} evaluations in the last {tol.window:g} of the run; need >= 3")
    out = dict(n_window=int(w.sum()), window_start=float(steps[w][0]), slope=np.nan, slope_lo=np.nan,
               slope_hi=np.nan, oscillation=np.nan, grad_norm=np.nan, heldout_slope=np.nan, diverged=True)
    if not np.all(np.isfinite(y)):
        return {**out, "at_plateau": False, "state": "rising"}
    for name, v in (("heldout_loss", h), ("grad_norm", g)):
        if v is not None and not np.all(np.isfinite(v)):
            raise ValueError(f"{name} is not finite while the training loss is (not a diverged run)")
    b, lo, hi = slope(steps[w], y[w])
    level = float(y[w].mean())
    scale, spread = max(float(y[0]) - level, abs(level)), float(detrended_std(y[w]))
    osc = spread / scale if scale > 0 else (0.0 if spread == 0 else np.inf)
    gm = np.nan if g is None else float(g[w].mean())
    hs = np.nan if h is None else slope(steps[w], h[w])[0]
    out.update(slope=b, slope_lo=lo, slope_hi=hi, oscillation=float(osc), grad_norm=gm,
               heldout_slope=float(hs), diverged=False)
    if osc > tol.max_oscillation:
        state = "oscillating"
    elif b > tol.max_slope:
        state = "rising"
    elif h is not None and hs > tol.max_heldout_rise:
        state = "overfitting"
    elif b < -tol.max_slope:
        state = "descending"
    elif tol.max_grad_norm is not None and g is not None and gm > tol.max_grad_norm:
        state = "oscillating"
    else:
        state = "plateau"
    return {**out, "at_plateau": state == "plateau", "state": state}


def _members(name, a, n):
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    a = a[:, None] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"{name} must be [E, M] with E = {n} steps, got shape {a.shape}")
    return a


def measure_members(steps, train_loss, heldout=None, grad_norm=None, tol: Tolerances = Tolerances()) -> pd.DataFrame:
    """`measure` for each of M members: train_loss, heldout, grad_norm are [E, M] over the
    evaluation steps [E] (1-d = one member). One row per member (index 'member'), numbers and
    booleans only: measure's values less `state`, which becomes one boolean column per
    state other than plateau (descending, oscillating, overfitting, rising; at_plateau is
    the plateau one); exactly one of the five is True in each row (`states` reads it back)."""
    n = len(np.asarray(steps))
    y = _members("train_loss", train_loss, n)
    h, g = _members("heldout", heldout, n), _members("grad_norm", grad_norm, n)
    for name, a in (("heldout", h), ("grad_norm", g)):
        if a is not None and a.shape != y.shape:
            raise ValueError(f"{name} has shape {a.shape}, train_loss {y.shape}")
    rows = []
    for m in range(y.shape[1]):
        d = measure(steps, y[:, m], None if h is None else h[:, m], None if g is None else g[:, m], tol)
        state = d.pop("state")
        rows.append({**d, **{s: state == s for s in STATES[1:]}})
    return pd.DataFrame(rows).rename_axis("member")


def measure_trajectory(traj, loss: str = "fixed", heldout: str | None = None, grad_norm: str | None = None,
                       tol: Tolerances = Tolerances()) -> pd.DataFrame:
    """measure_members on a train.Trajectory: traj[loss] (and traj[heldout], traj[grad_norm])
    at traj.eval_step; an array logged at every logged step (traj.step) is taken at the
    evaluation steps (at_steps)."""
    def get(name):
        if name is None:
            return None
        a = np.asarray(traj[name])
        return a if len(a) == len(traj.eval_step) else at_steps(traj.step, a, traj.eval_step)
    return measure_members(traj.eval_step, get(loss), get(heldout), get(grad_norm), tol)


def states(df: pd.DataFrame) -> list[str]:
    """Each row's state, read back from measure_members' boolean columns."""
    return ["plateau" if r.at_plateau else next(s for s in STATES[1:] if r[s]) for _, r in df.iterrows()]


def share_at_plateau(df: pd.DataFrame) -> tuple[int, int]:
    """(k, n): members at plateau, members measured (for stats.share_interval)."""
    return int(df["at_plateau"].sum()), len(df)

"""The plateau detector (plateau.py): converged, descending, oscillating and over-fitting runs
are told apart, slopes are in nats per 1000 steps, bad input is refused."""
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from stabliab import plateau as pl
from stabliab.train import Trajectory

TOL = pl.Tolerances()


# ---------------------------------------------------------------- small real training runs
def softmax_problem(seed=0, n=60, d=4, k=3, lam=0.05):
    """L2-regularised softmax regression (strongly convex); returns loss_grad(W)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    logits = X @ rng.normal(size=(d, k))
    y = np.array([rng.choice(k, p=np.exp(r - logsumexp(r))) for r in logits])

    def loss_grad(W):
        lp = X @ W - logsumexp(X @ W, axis=1, keepdims=True)
        P = np.exp(lp)
        P[np.arange(n), y] -= 1
        return -lp[np.arange(n), y].mean() + lam / 2 * (W ** 2).sum(), X.T @ P / n + lam * W
    return loss_grad, (d, k)


def gd_softmax(steps, lr, every, seed=0):
    """Gradient descent from W = 0; (eval steps, loss, gradient norm) every `every` steps."""
    loss_grad, shape = softmax_problem(seed)
    W, rows = np.zeros(shape), []
    for t in range(steps + 1):
        loss, g = loss_grad(W)
        if t % every == 0:
            rows.append((t, loss, np.linalg.norm(g)))
        W = W - lr * g
    s, loss, g = np.array(rows).T
    return s, loss, g


def gd_tilted(eta, steps=400, x0=1.0):
    """Gradient descent on f(x) = log cosh x + 0.3 x (curvature 0.91 at the minimum, stability
    edge 2 / 0.91 = 2.198; the saturating gradient keeps x bounded past it): above the edge a
    period-two orbit, asymmetric, so the loss alternates between two values. Every step."""
    x, rows = x0, []
    for t in range(steps + 1):
        g = math.tanh(x) + 0.3
        rows.append((t, math.log(math.cosh(x)) + 0.3 * x, abs(g)))
        x -= eta * g
    s, loss, g = np.array(rows).T
    return s, loss, g


# ---------------------------------------------------------------- (a) converged
def test_converged_run_is_at_plateau():
    s, loss, g = gd_softmax(steps=3000, lr=0.5, every=20)
    r = pl.measure(s, loss, grad_norm=g, tol=pl.Tolerances(max_grad_norm=1e-6))
    assert r["state"] == "plateau" and r["at_plateau"] is True and r["diverged"] is False
    assert abs(r["slope"]) < 1e-9 and r["oscillation"] < 1e-9 and r["grad_norm"] < 1e-9
    assert r["n_window"] == 38 and r["window_start"] == 2260.0  # steps >= 3000 - 0.25 * 3000
    assert all(type(v) in (float, int, bool, str) for v in r.values())  # plain Python values


# ---------------------------------------------------------------- (b) descending
def test_early_stopped_run_is_descending():
    s, loss, g = gd_softmax(steps=300, lr=0.05, every=3)  # same problem, small step, stopped early
    r = pl.measure(s, loss, grad_norm=g, tol=pl.Tolerances(max_grad_norm=1e-6))
    assert r["state"] == "descending" and not r["at_plateau"]
    assert r["slope_hi"] < -TOL.max_slope  # the whole interval below the tolerance
    # the same run trained to convergence passes: the verdict is the stopping point's
    s, loss, g = gd_softmax(steps=5000, lr=0.05, every=50)
    assert pl.measure(s, loss, grad_norm=g, tol=pl.Tolerances(max_grad_norm=1e-6))["at_plateau"]


def test_slow_exponential_decay_is_descending():
    s = np.arange(0, 2001, 10.0)
    r = pl.measure(s, 1 + np.exp(-s / 5000))  # time constant 5000 steps, stopped at 2000
    assert r["state"] == "descending"
    expected = -np.exp(-1750 / 5000) / 5000 * 1000  # d/dt at the window's middle, per 1000 steps
    assert r["slope"] == pytest.approx(expected, rel=1e-3)
    r = pl.measure(s, 1 + np.exp(-s / 50))  # time constant 50 steps: converged long before
    assert r["state"] == "plateau"


# ---------------------------------------------------------------- (c) oscillating
def test_gradient_descent_past_the_stability_edge_oscillates():
    s, loss, g = gd_tilted(eta=2.0)  # below the edge: converges
    assert pl.measure(s, loss, grad_norm=g)["state"] == "plateau"
    s, loss, g = gd_tilted(eta=2.8)  # past it: a period-two orbit of fixed amplitude
    assert np.allclose(loss[-4:-2], loss[-2:]) and abs(loss[-1] - loss[-2]) > 0.1
    r = pl.measure(s, loss, grad_norm=g)
    assert r["state"] == "oscillating" and not r["at_plateau"]
    assert abs(r["slope"]) < TOL.max_slope and r["oscillation"] > TOL.max_oscillation  # flat, but oscillating


def test_oscillation_hidden_by_an_even_stride_is_caught_by_the_gradient():
    s, loss, g = gd_tilted(eta=2.3)  # just past the edge
    s, loss, g = s[::2], loss[::2], g[::2]  # evaluated every other step: the loss looks constant
    assert pl.measure(s, loss, grad_norm=g)["state"] == "plateau"  # without a gradient tolerance
    r = pl.measure(s, loss, grad_norm=g, tol=pl.Tolerances(max_grad_norm=1e-3))
    assert r["state"] == "oscillating" and r["grad_norm"] > 0.1
    s, loss, g = gd_tilted(eta=2.0)
    assert pl.measure(s[::2], loss[::2], grad_norm=g[::2], tol=pl.Tolerances(max_grad_norm=1e-3))["at_plateau"]


def test_sustained_period_two_series_oscillates():
    t = np.arange(0, 1001.0)
    base = 1.5 + 2 * np.exp(-t / 100)
    r = pl.measure(t, base + 0.2 * (-1) ** t)  # amplitude 0.2 on a level of 1.5, a drop of 2
    scale = 3.7 - 1.5  # first loss minus the window's level (> the level 1.5)
    assert r["state"] == "oscillating" and r["oscillation"] == pytest.approx(0.2 / scale, rel=0.01)
    assert pl.measure(t, base + 0.02 * (-1) ** t)["state"] == "plateau"  # a tenth of it: within tolerance


# ---------------------------------------------------------------- (d) over-fitting
def test_heldout_rising_is_overfitting_not_undertraining():
    s = np.arange(0, 4001, 20.0)
    train = 1 + np.exp(-s / 200)  # at plateau
    held = 1.3 + np.exp(-s / 200) + 0.05 * s / 1000  # rising 0.05 nats per 1000 steps
    r = pl.measure(s, train, heldout_loss=held)
    assert r["state"] == "overfitting" and not r["at_plateau"]
    assert r["heldout_slope"] == pytest.approx(0.05, rel=1e-4)
    assert pl.measure(s, train)["state"] == "plateau"  # the held-out curve is what decides
    assert pl.measure(s, train, heldout_loss=held - 0.05 * s / 1000)["state"] == "plateau"
    # still descending while held-out rises: over-fitting too, not "descending"
    assert pl.measure(s, 1 + np.exp(-s / 5000), heldout_loss=held)["state"] == "overfitting"
    assert pl.measure(s, 1 + np.exp(-s / 5000), heldout_loss=1.3 + np.exp(-s / 5000))["state"] == "descending"


def test_rising_and_diverged_runs():
    s = np.arange(0, 1001.0, 10)
    assert pl.measure(s, 1 + 0.1 * s / 1000)["state"] == "rising"
    loss = 1 + np.exp(-s / 100)
    loss[-5:] = np.nan  # diverged
    r = pl.measure(s, loss, heldout_loss=loss, grad_norm=np.where(np.isnan(loss), np.inf, 1.0))
    assert r["state"] == "rising" and r["diverged"] and not r["at_plateau"] and math.isnan(r["slope"])
    loss[-5:] = np.inf
    assert pl.measure(s, loss)["state"] == "rising"


# ---------------------------------------------------------------- (e) slope units
def test_slope_is_in_nats_per_1000_steps():
    s = np.arange(0, 5001.0, 50)
    r = pl.measure(s, 2.0 - 3e-6 * s, tol=pl.Tolerances(max_slope=1.0))  # -3e-6 per step
    assert abs(r["slope"] - (-3e-3)) < 1e-9 and r["slope_lo"] - 1e-12 <= r["slope"] <= r["slope_hi"] + 1e-12
    assert r["state"] == "plateau"  # |-0.003| <= 1.0
    assert pl.measure(s, 2.0 - 3e-6 * s, tol=pl.Tolerances(max_slope=1e-3))["state"] == "descending"


def test_slope_interval_covers_at_its_level():
    rng = np.random.default_rng(1)
    s = np.arange(0, 2001.0, 100)[-8:]  # 8 points: few degrees of freedom, the t quantile matters
    cover = []
    for _ in range(2000):
        b, lo, hi = pl.slope(s, 1 + 0.02 * s / 1000 + rng.normal(0, 0.01, s.size))
        cover.append(lo <= 0.02 <= hi)
    assert 0.935 < np.mean(cover) < 0.965  # 95 % +- 3 binomial s.e.


def test_the_memoised_t_quantile_is_scipys():
    for dof in (1, 2, 5, 30, 1000):
        for level in (0.9, pl.LEVEL):
            assert pl.t_quantile(level, dof) == float(stats.t.ppf((1 + level) / 2, dof))


# ---------------------------------------------------------------- (f) bad input
def test_bad_input_is_refused():
    s = np.arange(0, 100.0, 10)
    y = np.ones(10)
    with pytest.raises(ValueError, match="one value per step"):
        pl.measure(s, y[:-1])
    with pytest.raises(ValueError, match="one value per step"):
        pl.measure(s, y, heldout_loss=y[:-1])
    with pytest.raises(ValueError, match="one value per step"):
        pl.measure(s, y, grad_norm=np.ones((10, 2)))
    with pytest.raises(ValueError, match="need >= 3"):
        pl.measure(s[:5], y[:5])  # steps 30, 40 in the last quarter
    with pytest.raises(ValueError, match="need >= 3"):
        pl.measure(np.geomspace(1, 1e4, 10), y)  # a geometric schedule: 2 points in the last quarter
    with pytest.raises(ValueError, match="strictly increasing"):
        pl.measure(s[::-1], y)
    with pytest.raises(ValueError, match="strictly increasing"):
        pl.measure(np.r_[s[:-1], np.nan], y)
    with pytest.raises(ValueError, match="not finite while the training loss is"):
        pl.measure(s, y, heldout_loss=np.r_[y[:-1], np.nan])
    with pytest.raises(ValueError, match="not finite while the training loss is"):
        pl.measure(s, y, grad_norm=np.r_[y[:-1], np.inf])
    with pytest.raises(ValueError, match="window"):
        pl.Tolerances(window=0)
    with pytest.raises(ValueError, match="max_slope"):
        pl.Tolerances(max_slope=-1)
    with pytest.raises(ValueError, match=r"\[E, M\]"):
        pl.measure_members(s, np.ones((9, 3)))
    with pytest.raises(ValueError, match="shape"):
        pl.measure_members(s, np.ones((10, 3)), heldout=np.ones((10, 2)))
    with pytest.raises(ValueError, match="not logged"):
        pl.at_steps(np.arange(0, 100, 2), np.ones(50), [0, 3])


# ---------------------------------------------------------------- (g) members
def members():
    """Five members over the same steps, one per state."""
    s = np.arange(0, 2001.0, 20)
    decay = 1 + np.exp(-s / 100)
    train = np.stack([decay, 1 + np.exp(-s / 5000), decay + 0.2 * (-1) ** (s / 20), decay, decay], 1)
    train[-3:, 4] = np.nan
    held = np.stack([decay + 0.3] * 3 + [decay + 0.3 + 0.05 * s / 1000, decay], 1)
    return s, train, held, np.full_like(train, 1e-3)


def test_measure_members_agrees_with_measure_row_by_row():
    s, train, held, g = members()
    tol = pl.Tolerances(max_grad_norm=1e-2)
    df = pl.measure_members(s, train, held, g, tol)
    assert list(df.index) == list(range(5)) and df.index.name == "member"
    assert all(df[c].dtype.kind in "fib" for c in df.columns)  # numbers and booleans only
    for m in range(5):
        r = pl.measure(s, train[:, m], held[:, m], g[:, m], tol)
        state = r.pop("state")
        for k, v in r.items():
            assert df.loc[m, k] == v or (math.isnan(v) and math.isnan(df.loc[m, k])), (m, k)
        assert pl.states(df)[m] == state
        assert sum(bool(df.loc[m, c]) for c in ["at_plateau", *pl.STATES[1:]]) == 1
    assert pl.states(df) == ["plateau", "descending", "oscillating", "overfitting", "rising"]
    assert pl.share_at_plateau(df) == (1, 5)
    one = pl.measure_members(s, train[:, 1])  # 1-d: one member
    assert len(one) == 1 and bool(one.loc[0, "descending"])


def test_measure_trajectory_reads_a_trajectory():
    s, train, held, g = members()
    step = np.arange(0, 2001)
    every = np.repeat(g[:1], len(step), 0)  # a gradient norm logged at every step
    traj = Trajectory(step=step, loss=every, grad_norm=every, step_size=every, eval_step=s.astype(int),
                      evals={"fixed": train, "heldout": held})
    tol = pl.Tolerances(max_grad_norm=1e-2)
    df = pl.measure_trajectory(traj, "fixed", "heldout", "grad_norm", tol)
    assert df.equals(pl.measure_members(s, train, held, g, tol))
    tight = pl.measure_trajectory(traj, "fixed", "heldout", "grad_norm", pl.Tolerances(max_grad_norm=1e-4))
    assert pl.states(tight)[0] == "oscillating"  # the gradient norm was read and tested

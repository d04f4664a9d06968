import math

import numpy as np
import pytest
from scipy import special
from scipy.spatial.distance import jensenshannon

from stabliab import measures


def test_kl_properties():
    p = np.array([0.5, 0.5, 0.0])
    assert measures.kl(p, p) == 0
    assert measures.kl(p, np.array([0.2, 0.3, 0.5])) > 0
    assert measures.kl(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == np.inf
    assert measures.entropy(np.array([0.25] * 4)) == pytest.approx(np.log(4))
    assert measures.entropy(np.array([1.0, 0.0])) == 0


def test_empirical_conditional_rejects_empty_and_handles_unseen_contexts():
    with pytest.raises(ValueError):
        measures.empirical_conditional(np.zeros((2, 3)))
    w, P = measures.empirical_conditional(np.array([[2.0, 2.0], [0.0, 0.0]]))
    np.testing.assert_allclose(w, [1, 0])
    np.testing.assert_allclose(P, [[0.5, 0.5], [0.5, 0.5]])


def test_support_coverage_hand_case():
    P = np.array([[0.5, 0.5, 0.0]])
    Q = np.array([[0.9, 0.005, 0.095]])
    cov = measures.support_coverage(P, Q, np.array([1.0]), tau=0.01)
    assert cov == pytest.approx({"kept": 0.5, "outside": 0.095, "dropped": 0.5})


# ---------------------------------------------------------------- library calls against the old formulas
# The hand-written versions the scipy calls replaced, kept here as independent references.
def _old_xlogy(x, y):
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = np.zeros(x.shape)
    pos = x > 0
    with np.errstate(divide="ignore"):
        out[pos] = x[pos] * np.log(y[pos])
    return out


def _old_kl(p, q, axis=-1):
    return (_old_xlogy(p, p) - _old_xlogy(p, q)).sum(axis)


def _old_detrended_std(y, axis=0):
    y = np.moveaxis(np.asarray(y, dtype=np.float64), axis, 0)
    t = np.arange(y.shape[0], dtype=np.float64)
    A = np.stack([np.ones_like(t), t], 1)
    coef, *_ = np.linalg.lstsq(A, y.reshape(len(t), -1), rcond=None)
    return (y.reshape(len(t), -1) - A @ coef).std(0, ddof=2).reshape(y.shape[1:])


def _laws(rng, rows, V):
    """Random laws with zeros, point masses, near-uniform rows and, for q, rows equal
    or nearly equal to p (where the old formula cancels)."""
    p = rng.dirichlet(np.full(V, rng.choice([0.05, 1.0, 50.0])), size=rows)
    p[rng.random(p.shape) < 0.3] = 0
    p[0] = 0
    p[0, 0] = 1.0  # a point mass
    p[:, -1] += 1e-12  # no empty row
    p /= p.sum(-1, keepdims=True)
    q = rng.dirichlet(np.ones(V), size=rows)
    q[2] = p[2] * (1 + 1e-7 * rng.standard_normal(V))
    q[2] /= q[2].sum()
    q[1] = p[1]
    return p, q


def _assert_rounding_close(new, old, scale):
    """|new - old| within 1e-12 of the magnitude of the summed terms (floating-point rounding)."""
    new, old, scale = np.broadcast_arrays(new, old, scale)
    fin = np.isfinite(old)
    assert np.array_equal(fin, np.isfinite(new)) and np.array_equal(old[~fin], new[~fin])
    assert np.all(np.abs(new[fin] - old[fin]) <= 1e-12 * scale[fin])


def test_entropy_and_kl_equal_the_hand_written_formulas():
    rng = np.random.default_rng(2)
    for _ in range(300):
        V = int(rng.integers(2, 12))
        p, q = _laws(rng, 6, V)
        q[3, rng.integers(V)] = 0.0  # q = 0: KL is +inf where p > 0 there, finite otherwise
        terms = np.abs(_old_xlogy(p, p)) + np.abs(_old_xlogy(p, q))
        _assert_rounding_close(measures.entropy(p), -_old_xlogy(p, p).sum(-1), terms.sum(-1))
        _assert_rounding_close(measures.kl(p, q), _old_kl(p, q), terms.sum(-1))
        assert np.all(measures.kl(p, q)[[0, 1]] >= 0) and measures.kl(p, q)[1] == 0.0  # q = p: exactly 0
        _assert_rounding_close(measures.entropy(p.T, axis=0), measures.entropy(p), terms.sum(-1))
        w = rng.dirichlet(np.ones(6))
        w[3] = 0  # a context with infinite KL and no weight
        ref = float(np.dot(w[w > 0], _old_kl(p, q)[w > 0]))
        assert abs(measures.conditional_kl(w, p, q) - ref) <= 1e-12 * float(np.dot(w[w > 0], terms.sum(-1)[w > 0]))
    assert measures.kl(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == np.inf
    assert measures.entropy(np.zeros(3)) == 0.0


def test_js_divergence_equals_the_mixture_formula_and_scipy():
    rng = np.random.default_rng(3)
    for _ in range(300):
        V = int(rng.integers(2, 12))
        p, q = _laws(rng, 6, V)
        m = (p + q) / 2
        terms = (np.abs(_old_xlogy(p, p)) + np.abs(_old_xlogy(p, m)) + np.abs(_old_xlogy(q, q))
                 + np.abs(_old_xlogy(q, m))).sum(-1)
        js = measures.js_divergence(p, q)
        _assert_rounding_close(js, (_old_kl(p, m) + _old_kl(q, m)) / 2, terms)
        assert js[1] == 0.0 and np.all(js >= -1e-15) and np.all(js <= np.log(2) + 1e-15)
        _assert_rounding_close(measures.js_divergence(p.T, q.T, axis=0), js, terms)
        far = np.abs(js) > 1e-6  # scipy's square root turns rounding below 0 into NaN near 0
        with np.errstate(invalid="ignore"):
            _assert_rounding_close(js[far], jensenshannon(p, q, axis=-1)[far] ** 2, terms[far])
    assert measures.js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(np.log(2), rel=1e-15)


@pytest.mark.parametrize("T", [3, 4, 17, 200])
def test_detrended_std_equals_the_least_squares_residuals(T):
    rng = np.random.default_rng(T)
    t = np.arange(T, dtype=np.float64)
    for scale in [1e-8, 1.0, 1e6]:
        y = scale * rng.standard_normal((T, 5)) + 3.0 + 0.5 * t[:, None]  # [T, 5]
        y[:, 0] = 2.0 - 0.1 * t  # a straight line: 0 up to rounding
        y[:, 1] = 7.0  # constant
        ref = _old_detrended_std(y)
        size = np.abs(y).max(0)  # rounding is relative to the curve, not to its (tiny) residuals
        _assert_rounding_close(measures.detrended_std(y), ref, size)
        _assert_rounding_close(measures.detrended_std(y.T, axis=1), ref, size)
        assert np.all(measures.detrended_std(y)[:2] <= 1e-12 * size[:2])
    one = measures.detrended_std(y[:, 2])
    assert np.ndim(one) == 0 and one == pytest.approx(ref[2], rel=1e-12)
    with pytest.raises(ValueError, match="at least 3"):
        measures.detrended_std(np.ones((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        measures.detrended_std(np.array([1.0, np.nan, 2.0, 3.0]))


def test_kl_rounds_exactly_as_the_first_edition():
    """kl is xlogy(p, p) - xlogy(p, q): bit for bit the first edition's formula x log y (0 where x = 0), taken
    here element by element with the C library's log, which xlogy calls (rel_entr, p log(p/q), is not: it
    differs in the last bit for about half of all laws). numpy's vectorised log can differ from the C
    library's in the last bit on AVX-512 machines, so the reference does not use it."""
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(7), 500), rng.dirichlet(np.ones(7), 500)
    p[p < 0.05] = 0.0
    xlogy = np.vectorize(lambda x, y: x * math.log(y) if x > 0 else 0.0)
    assert np.array_equal(measures.kl(p, q), (xlogy(p, p) - xlogy(p, q)).sum(-1))
    assert not np.array_equal(measures.kl(p, q), special.rel_entr(p, q).sum(-1))

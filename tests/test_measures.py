import numpy as np
import pytest

from stabliab import measures


def _rand_cond(rng, C, V, zeros=0.3):
    P = rng.dirichlet(np.ones(V), size=C)
    P[rng.random((C, V)) < zeros] = 0
    P[:, 0] += 1e-3
    return P / P.sum(1, keepdims=True)


def test_cross_entropy_identity_on_random_distributions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        C, V = rng.integers(1, 8), rng.integers(2, 10)
        w = rng.dirichlet(np.ones(C))
        P, Q = _rand_cond(rng, C, V), rng.dirichlet(np.ones(V), size=C)
        ce = measures.conditional_cross_entropy(w, P, Q)
        assert ce == pytest.approx(measures.conditional_entropy(w, P) + measures.conditional_kl(w, P, Q), abs=1e-12)


def test_kl_properties():
    p = np.array([0.5, 0.5, 0.0])
    assert measures.kl(p, p) == 0
    assert measures.kl(p, np.array([0.2, 0.3, 0.5])) > 0
    assert measures.kl(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == np.inf
    assert measures.entropy(np.array([0.25] * 4)) == pytest.approx(np.log(4))
    assert measures.entropy(np.array([1.0, 0.0])) == 0


def test_decompose_cross_entropy_from_counts_matches_token_average():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 5, size=(4, 6)).astype(float)
    Q = rng.dirichlet(np.ones(6), size=4)
    d = measures.decompose_cross_entropy(counts, Q)
    c, j = np.nonzero(counts)
    token_avg = -(counts[c, j] * np.log(Q[c, j])).sum() / counts.sum()
    assert d["ce"] == pytest.approx(token_avg, abs=1e-12)
    assert d["ce"] == pytest.approx(d["h"] + d["kl"], abs=1e-12)


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

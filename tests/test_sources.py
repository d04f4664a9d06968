import numpy as np
import pytest

from stabliab import measures
from stabliab.sources import MarkovSource


@pytest.mark.parametrize("order", [1, 2])
def test_stationary_matches_power_iteration_and_long_run_frequencies(order):
    src = MarkovSource.random(6, sparsity=0.4, alpha=0.7, order=order, seed=3)
    pi = src.stationary
    # independent route 1: power iteration on the context chain
    T = src.context_matrix()
    q = np.full(len(T), 1 / len(T))
    for _ in range(5000):
        q = q @ T
    np.testing.assert_allclose(pi, q, atol=1e-10)
    # independent route 2: context frequencies of one long sample
    x = src.sample(1, 200_000, seed=1)
    c = src.contexts_of(x).reshape(-1)
    freq = np.bincount(c, minlength=src.n_contexts) / c.size
    np.testing.assert_allclose(freq, pi, atol=0.01)


def test_entropy_rate_equals_joint_minus_marginal_entropy():
    src = MarkovSource.random(8, sparsity=0.5, alpha=0.5, seed=0)
    pi = src.stationary
    joint = pi[:, None] * src.P  # law of (context, next token) under stationarity
    h_rate = measures.entropy(joint.reshape(-1)) - measures.entropy(pi)
    assert src.entropy_rate == pytest.approx(h_rate, abs=1e-12)
    assert 0 < src.entropy_rate < np.log(8)


def test_sparsity_zeros_transitions_and_rows_stay_stochastic():
    src = MarkovSource.random(12, sparsity=0.5, seed=1)
    assert (src.P == 0).mean() > 0.3
    np.testing.assert_allclose(src.P.sum(1), 1.0)
    assert src.is_ergodic()


def test_transition_counts_add_up():
    src = MarkovSource.random(5, order=2, seed=2)
    x = src.sample(7, 30, seed=0)
    counts = src.transition_counts(x)
    assert counts.shape == (25, 5)
    assert counts.sum() == 7 * (30 - 2)
    assert np.all(counts[src.P == 0] == 0)  # impossible transitions never sampled


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="row-stochastic"):
        MarkovSource(np.array([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="rows"):
        MarkovSource(np.full((3, 3), 1 / 3), order=2)
    with pytest.raises(ValueError, match="sparsity"):
        MarkovSource.random(4, sparsity=1.0)
    with pytest.raises(ValueError, match="seq_len"):
        MarkovSource.random(4, order=2).sample(3, 2, seed=0)


def test_context_tokens_inverts_contexts_of():
    src = MarkovSource.random(4, order=2, seed=1)
    toks = src.context_tokens()  # [C, 2]
    assert toks.shape == (16, 2)
    seqs = src.sample(3, 10, seed=0)
    c = src.contexts_of(seqs)  # [3, 8]
    assert np.array_equal(toks[c], np.stack([seqs[:, :-2], seqs[:, 1:-1]], -1))

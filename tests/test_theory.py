"""The theory page's statements, checked on cases with known answers."""
import numpy as np
import pytest
import torch

from stabliab import loglinear, measures, optim, train
from stabliab.sources import MarkovSource


def _random_counts(seed, C=6, V=8, n=400, zeros=0.3):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(V, 0.7), size=C) * (rng.random((C, V)) > zeros)
    P[np.arange(C), rng.integers(0, V, C)] += 0.1
    P /= P.sum(1, keepdims=True)
    w = rng.dirichlet(np.full(C, 2.0))
    return rng.multinomial(n, (w[:, None] * P).reshape(-1)).reshape(C, V).astype(float)


@pytest.mark.parametrize("seed", range(4))
def test_maximum_entropy_duality_in_a_log_linear_family(seed):
    """H(p_theta*) - H(p_hat) = KL(p_hat || p_theta*) >= 0 at the forward-KL minimiser."""
    counts = _random_counts(seed)
    C, V = counts.shape
    fam = loglinear.LowRankSoftmax(C, V, rank=2, feature_seed=seed)
    ct = torch.tensor(counts)[None]
    sol, loss, grad = optim.minimize_lbfgs(lambda p: loglinear.count_cross_entropy(fam, p, ct), fam.init([seed]))
    assert grad.item() < 1e-6
    w, P = measures.empirical_conditional(counts)
    Q = loglinear.conditional_probs(fam, sol)[0].numpy()
    h_fit, h_hat, kl = measures.conditional_entropy(w, Q), measures.conditional_entropy(w, P), measures.conditional_kl(w, P, Q)
    assert h_fit - h_hat == pytest.approx(kl, abs=1e-7)
    assert h_fit > h_hat  # p_hat (with zeros) is not in the rank-2 family, so the inequality is strict


def test_full_family_gradient_descent_converges_to_p_hat():
    counts = _random_counts(7, zeros=0.0) + 1.0  # every transition seen: the minimiser is finite
    C, V = counts.shape
    w, P = measures.empirical_conditional(counts)
    fam = loglinear.CategoricalTable(C, V)
    ct = torch.tensor(counts)[None]
    traj = train.train(lambda p, t: loglinear.count_cross_entropy(fam, p, ct), fam.init([0]), steps=3000,
                       lr=1.0 / w.max(), optimizer="sgd", log_every=100,
                       log_fns={"kl": lambda p: loglinear.count_forward_kl(fam, p, ct)})
    Q = loglinear.conditional_probs(fam, traj.params)[0].numpy()
    assert np.abs(Q - P).max() < 1e-6
    assert np.all(np.diff(traj["kl"][:, 0]) <= 1e-15)  # below the edge the loss never rises


def test_score_has_mean_zero_in_the_categorical_family():
    fam = loglinear.CategoricalTable(3, 5, init_scale=1.0)
    params = {k: v.requires_grad_(True) for k, v in fam.init([3]).items()}
    logp = torch.log_softmax(fam.logits(params), -1)[0]  # [C, V]
    p = logp.exp().detach()
    for c in range(3):
        for j in range(5):
            g = torch.autograd.grad(logp[c, j], params["T"], retain_graph=True)[0]
            if j == 0:
                total = p[c, j] * g
            else:
                total = total + p[c, j] * g
        assert total.abs().max().item() < 1e-15


def _counterexample():
    """A=0 -> B=1 (0.6) or C=2 (0.4); B -> uniform over the 9 tokens 3..11; everything else -> A."""
    P = np.zeros((12, 12))
    P[0, 1], P[0, 2] = 0.6, 0.4
    P[1, 3:] = 1 / 9
    P[2:, 0] = 1.0
    return P


def test_tempering_can_raise_the_entropy_rate():
    P = _counterexample()
    taus = (1.0, 0.7, 0.3)
    rates = [MarkovSource(measures.temper(P, tau)).entropy_rate for tau in taus]
    # closed form, by renewal: each visit to A starts a cycle A-B-x (prob p) or A-C (1-p)
    # carrying h(p) + p log 9 nats in 2 + p steps, with p = 0.6^(1/tau) / (0.6^(1/tau) + 0.4^(1/tau))
    for tau, r in zip(taus, rates):
        p = 0.6 ** (1 / tau) / (0.6 ** (1 / tau) + 0.4 ** (1 / tau))
        h = -p * np.log(p) - (1 - p) * np.log(1 - p)
        assert r == pytest.approx((h + p * np.log(9)) / (2 + p), abs=1e-12)
    assert rates == pytest.approx([0.766, 0.780, 0.806], abs=1e-3)
    assert rates[0] < rates[1] < rates[2]
    # ... while no row's entropy rises
    for tau in (0.7, 0.3):
        assert np.all(measures.entropy(measures.temper(P, tau)) <= measures.entropy(P) + 1e-12)


def test_miller_madow_predicts_the_plugin_bias_on_the_books_source():
    """The book's source (Dirichlet alpha = 0.5, half the transitions zero): the Monte
    Carlo deficit H* - E[H(p_hat)] agrees with sum_c (K_c - 1) / (2n) within 3 standard
    errors, and the test has power (3 s.e. is under 20% of the prediction)."""
    src = MarkovSource.random(12, sparsity=0.5, alpha=0.5, seed=0)
    N, T, reps = 100, 33, 400
    h = np.array([measures.conditional_entropy(*measures.empirical_conditional(src.transition_counts(
        src.sample(N, T, seed=r)))) for r in range(reps)])
    deficit, se = src.entropy_rate - h.mean(), h.std(ddof=1) / np.sqrt(reps)
    mm = -measures.conditional_plugin_bias(src.support_sizes(), N * (T - 1))
    assert 3 * se < 0.2 * mm
    assert abs(deficit - mm) < 3 * se

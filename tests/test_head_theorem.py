"""The softmax-head theorem (thm-softmax-head, book/theory.md): at a stationary head the mean
teacher-forced entropy equals the training cross-entropy, which is at least the empirical
conditional entropy given the model's context; away from stationarity it does not hold."""
import numpy as np
import pytest
import torch

from stabliab import head, lm, members, train
from stabliab.sources import MarkovSource

V = 6
ARCHS = {"mlp": dict(context=2, d=8, hidden=8), "gru": dict(d=8, hidden=16), "lstm": dict(d=8, hidden=12),
         "transformer": dict(d=16, layers=1, heads=2, max_len=16)}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny float64 problems: one thread is ~100x faster than two on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tokens(sparsity=0.3, alpha=1.0, n=40, T=10, seed=3):
    src = MarkovSource.random(V, sparsity=sparsity, alpha=alpha, order=1, seed=seed)
    return members.with_bos(src.sample(n, T, seed=seed + 1), V)  # [n, T+1], BOS first


def _model(arch, tokens, trained: bool):
    if not trained:
        return lm.build_lm(arch, V, 0, **ARCHS[arch]).eval()
    traj, base = train.train_lm(arch, tokens[None], vocab=V, seeds=[0], steps=20, lr=1e-2,
                                batch_size=16, **ARCHS[arch])
    return members.member(base, traj.params, 0)


def _conditional_entropy(keys: np.ndarray, y: np.ndarray) -> float:
    """Plug-in H(Y | K) in nats from paired samples: keys [n, k] (rows are contexts), y [n]."""
    _, c = np.unique(keys, axis=0, return_inverse=True)
    counts = np.zeros((c.max() + 1, V))
    np.add.at(counts, (c.reshape(-1), y), 1.0)
    n_c = counts.sum(1, keepdims=True)
    p = counts / n_c
    plogp = np.where(counts > 0, p * np.log(np.where(counts > 0, p, 1.0)), 0.0)
    return float(-(n_c[:, 0] / n_c.sum() * plogp.sum(1)).sum())


def _windows(tokens, k):
    """[n, k] the last k inputs at every position (BOS-padded), as the MLP n-gram sees them."""
    inp = np.asarray(tokens)[:, :-1]
    N, T = inp.shape
    pad = np.concatenate([np.full((N, k - 1), V), inp], 1)
    return np.stack([pad[:, i:i + T] for i in range(k)], -1).reshape(-1, k)


def _prefixes(tokens):
    """[n, T] the whole input prefix at every position (later positions masked with -1)."""
    inp = np.asarray(tokens)[:, :-1]
    N, T = inp.shape
    rows = np.repeat(inp[:, None, :], T, 1)  # [N, t, T]
    rows = np.where(np.arange(T)[None, None, :] <= np.arange(T)[None, :, None], rows, -1)
    return rows.reshape(-1, T)


@pytest.mark.parametrize("trained", [False, True], ids=["init", "trained"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_stationary_head_entropy_equals_cross_entropy(arch, trained):
    tokens = _tokens()
    model = _model(arch, tokens, trained)
    h, y = head.features(model, tokens)
    assert h.shape == (tokens.shape[0] * (tokens.shape[1] - 1), head.head_of(model).in_features)
    with torch.no_grad():  # the features are what the model's own head reads, position by position
        own = head.head_of(model)
        assert torch.allclose(h.float() @ own.weight.T + own.bias,
                              model(tokens[:, :-1]).reshape(-1, V), atol=1e-5)
    W, b, gnorm = head.fit_head(h, y, V)
    st = head.entropy_ce_gap(h, y, W, b)
    assert gnorm < 1e-8
    assert abs(st.entropy - st.ce) < 1e-6
    assert abs(st.scale_grad) < 1e-6
    # the refit head is no worse than the model's own, and away from stationarity the identity fails
    mine = head.entropy_ce_gap(h, y, own.weight.detach(), own.bias.detach())
    assert st.ce <= mine.ce + 1e-12
    assert abs(mine.entropy - mine.ce) > 1e-3
    hot, cold = head.entropy_ce_gap(h, y, 2 * W, 2 * b), head.entropy_ce_gap(h, y, W / 2, b / 2)
    assert hot.ce - hot.entropy > 1e-3  # sharpened: entropy below the cross-entropy
    assert cold.ce - cold.entropy < -1e-3  # flattened: entropy above it


def test_cross_entropy_is_bounded_by_the_empirical_conditional_entropy_of_the_context():
    """CE >= H(p_hat | model's context), with equality iff the head can fit p_hat on it."""
    tokens = _tokens()
    y = np.asarray(tokens)[:, 1:].reshape(-1)
    # an MLP on the last 2 tokens with 4 features: 40-odd windows, so it cannot fit p_hat
    model = lm.build_lm("mlp", V, 0, context=2, d=8, hidden=4)
    h, yy = head.features(model, tokens)
    assert np.array_equal(yy.numpy(), y)
    W, b, gnorm = head.fit_head(h, yy, V)
    st = head.entropy_ce_gap(h, yy, W, b)
    H_window = _conditional_entropy(_windows(tokens, 2), y)
    assert gnorm < 1e-8 and abs(st.entropy - st.ce) < 1e-6
    assert st.ce > H_window + 1e-3 and st.entropy > H_window + 1e-3

    # an MLP on the last token with 16 features sees 7 windows (BOS and 6 tokens): its head
    # can realise any table on them, and with every transition seen the fit is p_hat itself
    dense = _tokens(sparsity=0.0, alpha=5.0, n=48)
    yd = np.asarray(dense)[:, 1:].reshape(-1)
    win = _windows(dense, 1)
    assert np.unique(np.stack([win[:, 0], yd], 1), axis=0).shape[0] == (V + 1) * V  # all seen
    model = lm.build_lm("mlp", V, 0, context=1, d=8, hidden=16)
    h, yy = head.features(model, dense)
    W, b, gnorm = head.fit_head(h, yy, V)
    st = head.entropy_ce_gap(h, yy, W, b)
    assert gnorm < 1e-8
    assert st.ce == pytest.approx(_conditional_entropy(win, yd), abs=1e-8)
    assert st.entropy == pytest.approx(st.ce, abs=1e-8)

    # a GRU conditions on the whole prefix: its bound is far lower (the route of memorisation)
    H_prefix = _conditional_entropy(_prefixes(tokens), y)
    assert H_prefix < _conditional_entropy(_windows(tokens, 1), y) - 0.3
    model = lm.build_lm("gru", V, 0, **ARCHS["gru"])
    h, yy = head.features(model, tokens)
    W, b, _ = head.fit_head(h, yy, V)
    assert head.entropy_ce_gap(h, yy, W, b).ce >= H_prefix - 1e-9


def test_mean_cross_entropy_minus_entropy_is_the_scale_derivative():
    g = torch.Generator().manual_seed(0)
    n, d = 200, 5
    h = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(V, (n,), generator=g)
    W = 1.5 * torch.randn(V, d, generator=g, dtype=torch.float64)
    b = torch.randn(V, generator=g, dtype=torch.float64)
    st = head.entropy_ce_gap(h, y, W, b)
    ce = lambda s: head.head_loss(h, y, s * W, s * b).item()  # noqa: E731
    eps = 1e-5
    fd = (ce(1 + eps) - ce(1 - eps)) / (2 * eps)
    assert abs(st.gap) > 1e-2  # a head far from stationarity: the identity is not 0 = 0
    assert st.gap == pytest.approx(fd, abs=1e-8)
    assert st.scale_grad == pytest.approx(fd, abs=1e-8)
    assert st.ce == pytest.approx(ce(1.0), abs=1e-12)


def test_scope_weight_decay_and_a_head_without_bias():
    """With an L2 penalty (lam/2)||(W, b)||^2 a stationary head has H = CE + lam ||(W, b)||^2;
    a head without bias needs stationarity in W alone."""
    tokens = _tokens()
    model = lm.build_lm("gru", V, 0, **ARCHS["gru"])
    h, y = head.features(model, tokens)
    lam = 1e-2
    W, b, gnorm = head.fit_head(h, y, V, weight_decay=lam)
    st = head.entropy_ce_gap(h, y, W, b)
    assert gnorm < 1e-8
    assert st.entropy - st.ce == pytest.approx(lam * float(W.pow(2).sum() + b.pow(2).sum()), abs=1e-8)
    assert st.entropy - st.ce > 1e-2
    W0, b0, gnorm = head.fit_head(h, y, V, bias=False)
    assert torch.all(b0 == 0) and gnorm < 1e-8
    st = head.entropy_ce_gap(h, y, W0)
    assert abs(st.entropy - st.ce) < 1e-6

import numpy as np
import pytest
import torch

from stabliab import lm, loglinear, measures, optim, train
from stabliab.sources import MarkovSource


@pytest.fixture(scope="module")
def setup():
    src = MarkovSource.random(6, sparsity=0.4, seed=0)
    x = src.sample(10, 40, seed=1)
    counts = src.transition_counts(x)
    fam = loglinear.LowRankSoftmax(src.n_contexts, src.vocab, rank=2)
    return src, x, counts, fam


def test_three_routes_to_cross_entropy_agree(setup):
    src, x, counts, fam = setup
    p = fam.init([0, 1, 2])
    p = {k: v * 50 for k, v in p.items()}
    C = torch.tensor(counts)
    ce_counts = loglinear.count_cross_entropy(fam, p, C)
    ctx = torch.tensor(src.contexts_of(x).reshape(1, -1)).expand(3, -1)
    tgt = torch.tensor(x[:, 1:].reshape(1, -1)).expand(3, -1)
    ce_tokens = loglinear.sequence_cross_entropy(fam, p, ctx, tgt)
    h = measures.conditional_entropy(*measures.empirical_conditional(counts))
    kl = loglinear.count_forward_kl(fam, p, C)
    torch.testing.assert_close(ce_counts, ce_tokens, rtol=0, atol=1e-12)
    torch.testing.assert_close(ce_counts, h + kl, rtol=0, atol=1e-12)
    Q = loglinear.conditional_probs(fam, p)[0].numpy()
    assert measures.conditional_kl(*measures.empirical_conditional(counts), Q) == pytest.approx(kl[0].item(), abs=1e-12)


def test_lbfgs_minimiser_satisfies_moment_matching_and_is_unique(setup):
    _, _, counts, fam = setup
    C = torch.tensor(counts)
    init = {k: v * 100 for k, v in fam.init(range(4)).items()}
    sol, loss, gnorm = optim.minimize_lbfgs(lambda p: loglinear.count_cross_entropy(fam, p, C), init)
    assert gnorm.max() < 1e-6
    assert (loss.max() - loss.min()).item() < 1e-10  # convex: every start finds the same minimum
    assert fam.moment_gap(sol, C).max() < 1e-5
    # and a random point is not a minimiser: the certificate can fail
    assert fam.moment_gap(init, C).min() > 1e-2


def test_family_rank_is_checked_and_registry_names_families():
    with pytest.raises(ValueError, match="rank"):
        loglinear.LowRankSoftmax(4, 4, rank=4)
    with pytest.raises(ValueError, match="unknown architecture 'nope'; allowed: mlp, gru, lstm, transformer"):
        lm.build_lm("nope", 4, 0)


def test_adamw_matches_torch():
    torch.manual_seed(0)
    w0 = torch.randn(1, 5, dtype=torch.float64)
    target = torch.randn(5, dtype=torch.float64)
    loss_fn = lambda p, t: ((p["w"] - target) ** 4).sum(-1)  # noqa: E731
    tr = train.train(loss_fn, {"w": w0}, steps=50, lr=0.05, optimizer="adamw", weight_decay=0.1)
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([w], lr=0.05, weight_decay=0.1)
    for _ in range(50):
        opt.zero_grad()
        loss_fn({"w": w}, 0).sum().backward()
        opt.step()
    torch.testing.assert_close(tr.params["w"], w.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("lr", [3e-3, "per member"])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adamw_step_is_its_one_tensor_at_a_time_definition_bit_for_bit(dtype, lr, wd):
    """AdamW.step applies each operation to all tensors at once (torch._foreach_*); step_reference is the
    same update one tensor at a time: parameters and moments equal exactly, with a per-member learning rate,
    weight decay, a schedule factor and tensors of several ranks (bf16 parameters take step_reference itself,
    where the foreach products would round differently); optim.member_norm equals the sum of squares taken
    tensor by tensor; no parameters, no error."""
    g = torch.Generator().manual_seed(1)
    lr = torch.tensor([1e-3, 1e-2, 1e-1], dtype=dtype) if lr == "per member" else lr
    p = {"a": torch.randn(3, 5, 7, generator=g, dtype=dtype), "b": torch.randn(3, 7, generator=g, dtype=dtype),
         "c": torch.randn(3, 2, 2, 2, generator=g, dtype=dtype)}
    q = {k: v.clone() for k, v in p.items()}
    fast, ref = optim.AdamW(lr, weight_decay=wd), optim.AdamW(lr, weight_decay=wd)
    for t in range(25):
        grads = {k: torch.randn(v.shape, generator=g, dtype=dtype) for k, v in p.items()}
        fast.scale = ref.scale = 0.5 + t / 25
        fast.step(p, grads, 3)
        ref.step_reference(q, grads, 3)
        assert all(torch.equal(p[k], q[k]) for k in p)
    assert all(torch.equal(fast.m[k], ref.m[k]) and torch.equal(fast.v[k], ref.v[k]) for k in p)
    by_tensor = torch.sqrt(sum((v.reshape(3, -1) ** 2).sum(1) for v in grads.values()))
    assert torch.equal(optim.member_norm(grads.values(), 3), by_tensor)
    fast.step({}, {}, 3)


def test_members_train_independently_with_their_own_step_size(setup):
    _, _, counts, fam = setup
    C = torch.tensor(counts)
    f = lambda p, t: loglinear.count_cross_entropy(fam, p, C)  # noqa: E731
    both = train.train(f, fam.init([5, 6]), steps=30, lr=torch.tensor([0.5, 2.0], dtype=torch.float64))
    one = train.train(f, fam.init([6]), steps=30, lr=2.0)
    np.testing.assert_allclose(both.loss[:, 1], one.loss[:, 0], rtol=1e-12)
    torch.testing.assert_close(both.params["U"][1], one.params["U"][0])
    assert not np.allclose(both.loss[:, 0], both.loss[:, 1])


def test_top_hessian_eigenvalue_matches_dense_hessian(setup):
    _, _, counts, fam = setup
    C = torch.tensor(counts)
    p = {k: v * 30 for k, v in fam.init([1]).items()}
    lam = optim.top_hessian_eigenvalue(lambda q: loglinear.count_cross_entropy(fam, q, C), p, iters=500)
    shapes = {k: v.shape for k, v in p.items()}
    flat = torch.cat([v.reshape(-1) for v in p.values()])

    def f(z):
        out, i = {}, 0
        for k, s in shapes.items():
            n = int(np.prod(s))
            out[k] = z[i:i + n].reshape(s)
            i += n
        return loglinear.count_cross_entropy(fam, out, C).sum()

    H = torch.autograd.functional.hessian(f, flat)
    assert lam.item() == pytest.approx(torch.linalg.eigvalsh(H).max().item(), rel=1e-6)


def test_gradient_descent_converges_below_the_edge_and_not_above():
    # quadratic 0.5 * lam * w^2: edge at 2 / lam
    lam = 4.0
    f = lambda p, t: 0.5 * lam * (p["w"] ** 2).sum(-1)  # noqa: E731
    w0 = {"w": torch.ones(2, 1, dtype=torch.float64)}
    tr = train.train(f, w0, steps=200, lr=torch.tensor([0.9, 1.1], dtype=torch.float64) * 2 / lam)
    assert tr.loss[-1, 0] < 1e-12
    assert tr.loss[-1, 1] > tr.loss[0, 1]


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match="unknown optimizer"):
        train.train(lambda p, t: p["w"].sum(-1), {"w": torch.zeros(1, 1)}, steps=1, lr=1, optimizer="lion")

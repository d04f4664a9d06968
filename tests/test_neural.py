"""The neural families: interface, sampling, caching, training, and the C2 measures."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stabliab import lm, measures, members, seeds, train
from stabliab.sources import MarkovSource, ZipfModes

V = 7


@pytest.mark.parametrize("arch", lm.NEURAL)
def test_interface_shapes_and_causality(arch):
    m = lm.build_lm(arch, V, seed=0, d=16, hidden=16, layers=2, heads=2, context=3)
    x = torch.randint(0, V + 1, (3, 11))
    logits = m(x)
    assert logits.shape == (3, 11, V)
    # changing a future token never changes earlier predictions
    y = x.clone()
    y[:, 7] = (y[:, 7] + 1) % V
    torch.testing.assert_close(m(y)[:, :7], logits[:, :7])
    assert not torch.allclose(m(y)[:, 7:], logits[:, 7:])


@pytest.mark.parametrize("arch", lm.NEURAL)
def test_seeded_sampling_is_repeatable_and_logq_is_consistent(arch):
    m = lm.build_lm(arch, V, seed=1, d=16, hidden=16)
    a, qa = m.sample(5, 12, seed=3)
    b, qb = m.sample(5, 12, seed=3)
    c, _ = m.sample(5, 12, seed=4)
    assert a.shape == (5, 12) and a.dtype == torch.long and a.max() < V
    assert torch.equal(a, b) and torch.equal(qa, qb) and not torch.equal(a, c)
    # at temperature 1 the per-token log q sums to the model's sequence log-probability
    torch.testing.assert_close(qa.sum(1), m.sequence_logprob(a), rtol=1e-5, atol=1e-4)
    g, qg = m.sample(5, 12, greedy=True)
    assert torch.equal(g, m.sample(5, 12, greedy=True, seed=99)[0]) and torch.all(qg == 0)


def test_cached_transformer_sampling_equals_recompute():
    m = lm.build_lm("transformer", V, seed=2, d=32, layers=3, heads=4, max_len=80)
    a, qa = m.sample(6, 60, seed=11, temperature=0.8, top_k=5)
    m.use_cache = False
    b, qb = m.sample(6, 60, seed=11, temperature=0.8, top_k=5)
    assert torch.equal(a, b)
    torch.testing.assert_close(qa, qb, rtol=1e-4, atol=1e-5)


def test_sampling_distribution_truncation():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    p = lm.sampling_logprobs(logits, top_k=2).exp()
    torch.testing.assert_close(p, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    p = lm.sampling_logprobs(logits, top_p=0.7).exp()  # smallest set with mass >= 0.7: {0, 1}
    torch.testing.assert_close(p, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    p = lm.sampling_logprobs(logits, temperature=0.5).exp()
    q = torch.tensor([0.5, 0.3, 0.15, 0.05]) ** 2
    torch.testing.assert_close(p[0], q / q.sum())
    with pytest.raises(ValueError, match="temperature"):
        lm.sampling_logprobs(logits, temperature=0)
    with pytest.raises(ValueError, match="unknown architecture"):
        lm.build_lm("rnn", V, 0)


@pytest.mark.parametrize("arch", ["mlp", "gru", "transformer"])
def test_training_lowers_heldout_loss_and_batched_equals_loop(arch):
    src = MarkovSource.random(V, sparsity=0.5, seed=0)
    seeds = [0, 1]
    data = torch.stack([members.with_bos(src.sample(64, 12, seed=s), V) for s in seeds])
    held = torch.stack([members.with_bos(src.sample(64, 12, seed=100 + s), V) for s in seeds])
    kw = dict(vocab=V, seeds=seeds, steps=40, lr=1e-2, heldout=held, eval_every=40, d=16, hidden=16)
    tr, _ = train.train_lm(arch, data, batched=True, **kw)
    assert np.all(tr["heldout"][-1] < tr["heldout"][0] - 0.2)
    assert np.all(tr["heldout"][-1] < np.log(V))
    tr2, _ = train.train_lm(arch, data, batched=False, **kw)
    np.testing.assert_allclose(tr.loss, tr2.loss, rtol=1e-4, atol=1e-5)
    # a member trains the same alone as next to another seed
    tr3, _ = train.train_lm(arch, data[1:], batched=True, **{**kw, "seeds": [1], "heldout": held[1:]})
    np.testing.assert_allclose(tr.loss[:, 1], tr3.loss[:, 0], rtol=1e-4, atol=1e-5)


def test_miller_madow_predicts_the_plugin_bias():
    src = MarkovSource.random(6, sparsity=0.3, alpha=1.0, seed=4)
    N, T, reps = 40, 26, 400  # about 1000 transitions, ~170 per context
    h = np.array([measures.conditional_entropy(*measures.empirical_conditional(
        src.transition_counts(src.sample(N, T, seed=r)))) for r in range(reps)])
    measured, se = h.mean() - src.entropy_rate, h.std(ddof=1) / np.sqrt(reps)
    predicted = measures.conditional_plugin_bias(src.support_sizes(), N * (T - 1))
    assert measured < 0
    assert abs(measured - predicted) < 3 * se + 0.1 * abs(predicted)
    # and the uncorrected-vs-corrected i.i.d. estimators bracket the truth
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(20))
    plug = np.mean([measures.plugin_entropy(rng.choice(20, 50, p=p)) for _ in range(300)])
    mm = np.mean([measures.miller_madow(rng.choice(20, 50, p=p)) for _ in range(300)])
    assert plug < mm and abs(mm - measures.entropy(p)) < abs(plug - measures.entropy(p))


def test_generation_measures_hand_cases():
    lq = np.log(np.array([[0.5, 0.25], [1.0, 0.5]]))
    np.testing.assert_allclose(measures.generation_entropy(lq), [-(np.log(0.5) + np.log(0.25)) / 2, np.log(2) / 2])
    np.testing.assert_allclose(measures.generation_entropy(lq, skip=1), [np.log(4), np.log(2)])
    with pytest.raises(ValueError):
        measures.generation_entropy(lq, skip=2)
    P = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert measures.transition_coverage(P, np.array([[3, 0], [1, 0]])) == pytest.approx(2 / 3)


def test_zipf_modes_entropy_and_identification():
    z = ZipfModes.random(10, 4, 5, exponent=1.0, seed=0)
    w = 1 / np.arange(1, 11)
    assert z.entropy == pytest.approx(measures.entropy(w / w.sum()))
    x, ids = z.sample(200, seed=1)
    assert np.array_equal(z.identify(x), ids)
    x[0, 0] = (x[0, 0] + 1) % 5
    assert z.identify(x[:1])[0] in (-1, *range(10))
    assert len({tuple(m) for m in z.modes.tolist()}) == 10
    with pytest.raises(ValueError):
        ZipfModes.random(100, 2, 3)


def test_markov_sequence_entropy():
    src = MarkovSource.random(5, seed=0)
    pi = src.stationary
    # exact: enumerate all length-3 sequences
    H = 0.0
    for a in range(5):
        for b in range(5):
            for c in range(5):
                p = pi[a] * src.P[a, b] * src.P[b, c]
                H -= p * np.log(p) if p > 0 else 0
    assert src.sequence_entropy(3) == pytest.approx(H, abs=1e-12)


def test_ngram_table_is_the_models_conditional_at_each_context():
    from stabliab.sources import MarkovSource
    src = MarkovSource.random(5, order=2, seed=0)
    mod = lm.build_lm("mlp", 5, seed=0, context=2, d=8, hidden=16).eval()
    Q = lm.ngram_table(mod, src.context_tokens())  # [25, 5]
    x = torch.as_tensor(src.sample(4, 9, seed=1))
    logits = mod(x)  # position t sees x[t-1], x[t]: its context is contexts_of at t+1
    c = torch.as_tensor(src.contexts_of(x.numpy()))  # [4, 7], context before position t >= 2
    p = torch.softmax(logits[:, 1:-1].double(), -1)  # predictions for positions 2..8
    assert torch.allclose(p, Q[c], atol=1e-12)
    with pytest.raises(ValueError, match="contexts"):
        lm.ngram_table(mod, src.context_tokens()[:, :1])


# ---------------------------------------------------------------- devices and precision
def assert_on_device(obj, device):
    """Every parameter and buffer (of a module) or tensor (of a params dict) is on `device`."""
    dev = torch.device(device)
    tensors = (list(obj.parameters()) + list(obj.buffers())) if isinstance(obj, torch.nn.Module) else list(obj.values())
    assert tensors and all(t.device.type == dev.type and (dev.index is None or t.device.index == dev.index)
                           for t in tensors), {str(t.device) for t in tensors}


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", ["mlp", "gru", "transformer"])
def test_training_and_sampling_stay_on_the_requested_device(device, arch):
    x = members.with_bos(np.random.default_rng(0).integers(0, 5, (2, 6, 9)), 5, device)
    traj, base = train.train_lm(arch, x, vocab=5, seeds=[0, 1], steps=3, batch_size=4, d=8, hidden=8, layers=1,
                                heads=2, context=2, max_len=16, heldout=x)
    assert_on_device(traj.params, device)
    assert_on_device(base, device)
    assert_on_device(members.member(base, traj.params, 1), device)
    tok, lq = members.sample_members(base, traj.params, 3, 5, seed=0)
    assert tok.shape == (2, 3, 5) and np.all(lq <= 0)


@pytest.mark.parametrize("arch", ["mlp", "gru", "lstm", "transformer"])
@pytest.mark.parametrize("kw", [{}, {"temperature": 0.7}, {"greedy": True}, {"prompt": "yes"}])
def test_batched_sampling_gives_the_tokens_of_the_per_member_path(arch, kw):
    mods = [lm.build_lm(arch, 7, s, d=16, hidden=16, layers=2, heads=2, context=3, max_len=40) for s in range(3)]
    params = members.stack_members(mods)
    if "prompt" in kw:
        kw = {"prompt": torch.randint(0, 7, (5, 4), generator=torch.Generator().manual_seed(0))}
    tb, qb = members.sample_members(mods[0], params, 5, 20, seed=11, batched=True, **kw)
    tl, ql = members.sample_members(mods[0], params, 5, 20, seed=11, batched=False, **kw)
    assert np.array_equal(tb, tl)
    assert np.allclose(qb, ql, atol=1e-5, rtol=0)
    t0, _ = mods[2].sample(5, 20, seed=seeds.stream("sample", 11, 2), **kw)  # member m: stream ('sample', seed, m)
    assert np.array_equal(tb[2], t0.numpy())


def test_bf16_autocast_changes_the_loss_by_rounding_only_and_reports_fp32():
    x = members.with_bos(np.random.default_rng(1).integers(0, 9, (2, 8, 17)), 9)
    mods = [lm.build_lm("transformer", 9, s, d=32, layers=2, heads=2, max_len=32) for s in range(2)]
    params = members.stack_members(mods)
    l32 = members.lm_loss(mods[0], params, x, precision="fp32")
    l16 = members.lm_loss(mods[0], params, x, precision="bf16")
    assert l16.dtype == torch.float32 and not torch.equal(l16, l32)
    assert torch.allclose(l16, l32, atol=0.02)  # bf16 has 8 bits of mantissa: ~0.4% per product
    tok, lq = members.sample_members(mods[0], params, 4, 6, seed=0, precision="bf16")
    assert lq.dtype == np.float64 and np.all(lq <= 0)


@pytest.mark.parametrize("arch", ["mlp", "gru", "lstm", "transformer"])
def test_the_hand_stacked_forward_and_its_gradient_are_each_members_own(arch):
    """stacked.forward (what train_lm trains with by default) gives member m's logits and gradients
    as member m's module does alone, and as torch.func.vmap does."""
    from stabliab import stacked
    mods = [lm.build_lm(arch, V, s, d=16, hidden=24, context=3, layers=2, heads=2, max_len=20) for s in range(3)]
    params = {k: v.requires_grad_(True) for k, v in members.stack_members(mods).items()}
    x = members.with_bos(np.random.default_rng(0).integers(0, V, (3, 4, 13)), V)
    own = torch.stack([mods[m](x[m, :, :-1]) for m in range(3)])
    torch.testing.assert_close(stacked.forward(mods[0], params, x[..., :-1]), own, atol=2e-6, rtol=1e-5)
    grads = {}
    for b in (True, "vmap", False):
        loss = members.lm_loss(mods[0], params, x, batched=b)
        grads[b] = torch.autograd.grad(loss.sum(), list(params.values()))
    for g_s, g_v, g_l in zip(grads[True], grads["vmap"], grads[False]):
        torch.testing.assert_close(g_s, g_l, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(g_v, g_l, atol=1e-6, rtol=1e-5)
    with pytest.raises(TypeError, match="no stacked forward"):
        stacked.forward(torch.nn.Linear(2, 2), params, x)


def _gru_loop(ex, whT):  # lm.GRU.cell step by step through autograd: the reference of stacked._GRUScan
    M, B, T, G = ex.shape
    h, hs = ex.new_zeros(M, B, G // 3), []
    for t in range(T):
        xr, xz, xn = ex[:, :, t].chunk(3, -1)
        hr, hz, hn = torch.bmm(h, whT).chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        hs.append(h)
    return torch.stack(hs, 2)


def test_gru_scan_matches_autograd_through_the_loop_and_keeps_members_apart():
    """The GRU's hand-written backward through time (stacked._GRUScan): its forward is the loop's bit for bit,
    its gradients agree with autograd's (float64: to rounding; gradcheck against finite differences), a member's
    gradients do not depend on the others beyond rounding (as for autograd through the loop: a batched matrix
    product over members rounds differently with the number of members, so neither path is bit for bit), and a
    second derivative raises instead of being silently wrong."""
    from stabliab import stacked
    g = torch.Generator().manual_seed(0)
    ex = torch.randn(3, 4, 9, 15, generator=g, dtype=torch.float64, requires_grad=True)
    whT = (0.5 * torch.randn(3, 15, 5, generator=g, dtype=torch.float64)).transpose(1, 2).detach().requires_grad_()
    assert not whT.is_contiguous()  # as _recurrent passes it: a transposed view of wh.weight
    w = torch.randn(3, 4, 9, 5, generator=g, dtype=torch.float64)
    hs = stacked._GRUScan.apply(ex, whT)
    assert torch.equal(hs, _gru_loop(ex, whT))
    ours = torch.autograd.grad((hs * w).sum(), [ex, whT])
    ref = torch.autograd.grad((_gru_loop(ex, whT) * w).sum(), [ex, whT])
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(stacked._GRUScan.apply, (ex[:2, :2, :4].detach().requires_grad_(),
                                                             whT[:2].detach().requires_grad_()))
    one = torch.autograd.grad((stacked._GRUScan.apply(ex[1:2], whT[1:2]) * w[1:2]).sum(), [ex, whT])
    torch.testing.assert_close(one[0][1], ours[0][1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(one[1][1], ours[1][1], rtol=1e-12, atol=1e-12)
    assert not one[1][0].abs().sum() and not one[0][0].abs().sum()  # no gradient reaches the members left out
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad((stacked._GRUScan.apply(ex, whT) * w).sum(), [whT], create_graph=True)


def test_stacked_gru_trains_the_numbers_of_autograd_through_its_loop(monkeypatch):
    """train_lm on the GRU with the scan and without it (stacked.SCAN): the same run to float32 rounding."""
    from stabliab import stacked
    data = torch.randint(0, V, (2, 16, 13), generator=torch.Generator().manual_seed(1))
    kw = dict(vocab=V, seeds=[0, 1], steps=30, lr=3e-3, batch_size=8, d_model=8, hidden=16)
    scan = train.train_lm("gru", data, **kw)[0]
    monkeypatch.setattr(stacked, "SCAN", False)
    loop = train.train_lm("gru", data, **kw)[0]
    np.testing.assert_allclose(scan.loss, loop.loss, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("V", [3, 12, 15, lm.SMALL_VOCAB, 65])
def test_the_cross_entropy_is_torchs_on_the_usual_layout_whichever_layout_it_takes(V, monkeypatch):
    """lm.cross_entropy takes the classes along dim 1 below SMALL_VOCAB on the CPU (a faster kernel): every
    reduction, with and without label smoothing, and its gradient equal F.cross_entropy on [n, V] to float32
    rounding; "none" is one value per position, flat; the logits may have any leading shape."""
    g = torch.Generator().manual_seed(V)
    z = (3 * torch.randn(2, 7, 33, V, generator=g)).requires_grad_()
    y = torch.randint(0, V, (2, 7, 33), generator=g)
    seen, torch_ce = [], F.cross_entropy
    with monkeypatch.context() as m:  # which layout lm.cross_entropy hands to torch: [1, V, n] below SMALL_VOCAB
        m.setattr(lm.F, "cross_entropy", lambda x, *a, **k: seen.append(tuple(x.shape)) or torch_ce(x, *a, **k))
        lm.cross_entropy(z, y)
    assert seen == [(1, V, 2 * 7 * 33) if V < lm.SMALL_VOCAB else (2 * 7 * 33, V)]
    for reduction in ["mean", "sum", "none"]:
        for ls in [0.0, 0.1]:
            ours = lm.cross_entropy(z, y, label_smoothing=ls, reduction=reduction)
            ref = F.cross_entropy(z.reshape(-1, V), y.reshape(-1), label_smoothing=ls, reduction=reduction)
            assert ours.shape == ref.shape
            torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
            g_ours, = torch.autograd.grad(ours.sum(), z)
            g_ref, = torch.autograd.grad(ref.sum(), z)
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype,threads", [(torch.float32, 1), (torch.float64, 1), (torch.float32, 2)])
def test_the_stacked_lookup_is_f_embedding_bit_for_bit_and_keeps_members_apart(dtype, threads):
    """stacked._embed looks rows up by index_select on the CPU (a faster backward): values and gradients equal
    F.embedding of the flattened table exactly (repeated ids summed in the order of the positions, on one
    thread or two), and a member's gradient is the one it gets alone."""
    from stabliab import stacked
    M, V, d = 4, 13, 16
    g = torch.Generator().manual_seed(3)
    table = torch.randn(M, V, d, generator=g, dtype=dtype, requires_grad=True)
    x = torch.randint(0, V, (M, 8, 33, 4), generator=g)  # many repeats of every id
    w = torch.randn(M, 8, 33, 4, d, generator=g, dtype=dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = stacked._embed(table, x)
        ref = F.embedding(x + (torch.arange(M) * V).reshape(-1, 1, 1, 1), table.reshape(M * V, d))
        assert torch.equal(ours, ref)
        g_ours, = torch.autograd.grad((ours * w).sum(), table)
        g_ref, = torch.autograd.grad((ref * w).sum(), table)
        assert torch.equal(g_ours, g_ref)
        g_one, = torch.autograd.grad((stacked._embed(table[1:2], x[1:2]) * w[1:2]).sum(), table)
        assert torch.equal(g_one[1], g_ours[1]) and not g_one[0].abs().sum()
    finally:
        torch.set_num_threads(before)

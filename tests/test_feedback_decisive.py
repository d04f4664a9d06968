"""C3's decisive design: the signed actuator moves the generation entropy both ways and the
sham (a replayed actuator) does not hold it; the sham replays exactly what it is given; the
noise floor of the held statistic falls as 1/sqrt(n); a run continued from its parameters
and optimiser state is the uninterrupted run; the verdict wiring (gate failure: untestable)."""
import numpy as np
import pytest
import torch
from scipy import stats as sps

from stabliab import feedback, members, records, train
from stabliab.experiments import c3
from stabliab.feedback import SignedPI
from stabliab.sources import MarkovSource

V, L = 6, 12
KW = dict(vocab=V, d=8, hidden=16, layers=1, heads=2, context=2, max_len=L + 1, lr=0.01, batch_size=16)


@pytest.fixture(scope="module")
def base_run():
    src = MarkovSource.random(V, seed=0, alpha=0.5)
    data = torch.stack([members.with_bos(src.sample(256, L, seed=s), V) for s in (0, 1)])
    traj, base = train.train_lm("mlp", data, seeds=[0, 1], steps=150, **KW)
    return data, traj, base


def _own(base, params, seeds, n=32):
    return c3.own_statistics(base, params, n, L, seeds)["own_entropy"][0]


def _window(base_run, spec, A=1, steps=60):
    data, pre, base = base_run
    p = {k: v.repeat(A, *[1] * (v.ndim - 1)) for k, v in pre.params.items()}
    seeds = [0, 1] * A
    traj, base = train.train_lm("mlp", data.repeat(A, 1, 1), seeds=seeds, steps=steps, feedback=feedback.make(spec),
                                resume=(p, pre.optimizer.tile(A), 150), **KW)
    return traj, base, seeds


SPEC = dict(design="pi_entropy", every=5, n_samples=16, length=L, kp=10.0, ki=2.0, kappa_max=1.0)


def test_the_actuator_moves_the_entropy_both_ways_and_the_sham_does_not_hold_it(base_run):
    _, pre, base = base_run
    s0 = _own(base, pre.params, [0, 1])
    K = 13  # measurements at steps 0, 5, ..., 60
    for kappa in (0.5, -0.5):  # open loop: a constant signed kappa, replayed
        traj, b, seeds = _window(base_run, {**SPEC, "replay": [[kappa] * K, [kappa] * K]})
        s = _own(b, traj.params, seeds)
        assert np.all(np.sign(s0 - s) == np.sign(kappa)), (kappa, s0, s)  # kappa > 0 lowers, < 0 raises
        assert np.all(np.abs(s - s0) > 0.05)
    # the closed loop holds its switch-on value; a sham replaying a push does not
    traj, b, seeds = _window(base_run, {**SPEC, "gains": [1.0, 1.0]})
    held = np.abs(_own(b, traj.params, seeds) - s0)
    traj, b, seeds = _window(base_run, {**SPEC, "replay": [[0.5] * K] * 2})
    pushed = np.abs(_own(b, traj.params, seeds) - s0)
    assert np.all(held < pushed / 3), (held, pushed)


def test_the_sham_replays_exactly_the_trajectory_it_is_given(base_run):
    K = 13
    rng = np.random.default_rng(0)
    given = [rng.uniform(-1, 1, K).tolist(), rng.uniform(-1, 1, K).tolist()]
    traj, _, _ = _window(base_run, {**SPEC, "replay": given})
    assert np.array_equal(traj.feedback["kappa"].T, np.asarray(given))
    # mixed members: one replays, one controls; a trajectory one value short is an error
    traj, _, _ = _window(base_run, {**SPEC, "gains": [0.0, 1.0], "replay": [given[0], None]})
    assert np.array_equal(traj.feedback["kappa"][:, 0], given[0]) and np.any(traj.feedback["kappa"][:, 1] != 0)
    with pytest.raises(ValueError, match="replayed trajectory has 12 values"):
        _window(base_run, {**SPEC, "replay": [given[0][:-1], given[1]]})


def test_a_zero_gain_member_is_maximum_likelihood(base_run):
    """kappa = 0 adds 0 * H: the gain-0 arm trains as the continued maximum-likelihood run."""
    data, pre, base = base_run
    plain, _ = train.train_lm("mlp", data, seeds=[0, 1], steps=30, resume=(pre.params, pre.optimizer, 150), **KW)
    zero, _ = train.train_lm("mlp", data, seeds=[0, 1], steps=30, resume=(pre.params, pre.optimizer, 150),
                             feedback=feedback.make({**SPEC, "gains": [0.0, 0.0]}), **KW)
    assert np.array_equal(plain.loss, zero.loss) and np.all(zero.feedback["kappa"] == 0)


def test_a_resumed_run_is_the_uninterrupted_run_bit_for_bit(base_run):
    data, pre, _ = base_run
    for arch in ["gru", "transformer"]:
        full, _ = train.train_lm(arch, data, seeds=[0, 1], steps=30, **KW)
        a, _ = train.train_lm(arch, data, seeds=[0, 1], steps=20, **KW)
        b, _ = train.train_lm(arch, data, seeds=[0, 1], steps=10, resume=(a.params, a.optimizer, 20), **KW)
        assert np.array_equal(full.loss[20:], b.loss) and all(torch.equal(full.params[k], b.params[k]) for k in full.params)


def test_the_noise_floor_falls_as_one_over_root_n(base_run):
    """The Monte Carlo spread of the held statistic over independent draws (R members, the same
    parameters) at n and 4n samples: variance ratio 4 lies in its F interval (level 0.99)."""
    _, pre, base = base_run
    R = 40
    p = {k: v[:1].repeat(R, *[1] * (v.ndim - 1)) for k, v in pre.params.items()}
    seeds = list(range(100, 100 + R))
    v8, v32 = (np.var(_own(base, p, seeds, n), ddof=1) for n in (8, 32))
    lo, hi = sps.f.ppf([0.005, 0.995], R - 1, R - 1)
    assert lo < (v8 / v32) / 4 < hi, v8 / v32
    assert v8 / v32 > 1.5  # and it does fall


def test_signed_pi_drives_a_toy_plant_both_ways_and_does_not_wind_up():
    for drift in (0.05, -0.05):  # plant: s drifts by `drift` per step, kappa pushes it down by 0.2 kappa
        ctrl = SignedPI([1.0], [0.5], 5.0)
        s, target = np.array([1.0]), 0.8
        for _ in range(300):
            u, sat = ctrl.update(s - target)
            s = s + drift - 0.2 * u
        np.testing.assert_allclose(s, target, atol=0.02)
        assert np.sign(u[0]) == np.sign(drift) and not sat[0]
    ctrl = SignedPI([1.0], [1.0], 1.0)
    for _ in range(50):
        u, sat = ctrl.update([10.0])  # far beyond the bound
    assert u[0] == 1.0 and sat[0] and ctrl.integral[0] <= 10.0  # integral frozen while saturated
    assert ctrl.update([-1.0])[0][0] < 1.0  # and it unwinds at once


def _fake_arms(S, ratio_design, hits, plateau=True, E=20, seed=0):
    """A synthetic c3_arms_runs cell: the design's statistic varies ratio_design times as much
    as the sham's; `hits` seeds lower entropy and raise repetition against the sham."""
    rng = np.random.default_rng(seed)
    steps = np.arange(E)[None].repeat(S, 0) * 5.0
    noise = lambda sd: rng.normal(0, sd, (S, E))  # noqa: E731
    def at_s0(y):  # every arm's first evaluation is the shared switch-on value s0 = 2
        y[:, 0] = 2.0
        return y

    def arm(sd, H, rep):
        return {c3.EVAL_STEP: steps, "stat_own_entropy": at_s0(2 + noise(sd)), "stat_own_entropy_a": 2 + noise(sd),
                "stat_own_entropy_b": 2 + noise(sd), "stat_data_ce": 2 + noise(0.01),
                "fb_saturated": np.zeros((S, 4)), "fb_kappa": np.zeros((S, 4)),
                "gen_entropy_exact": H, "seq_rep4": rep}
    ml = arm(0.1, np.full(S, 2.0), np.full(S, 0.1))
    for k in ("stat_own_entropy_a", "stat_own_entropy_b"):
        ml[k] = ml["stat_own_entropy"] + noise(0.001)  # a floor far below the statistic
    up = np.arange(S) < hits
    out = {"ml": ml, "sham": arm(0.1, np.full(S, 2.0), np.full(S, 0.1)),
           "design": arm(0.1 * np.sqrt(ratio_design), np.where(up, 1.9, 2.1), np.where(up, 0.2, 0.05))}
    for g in (0.5, 2.0):
        out[c3.dose_arm(g)] = {**out["design"], "gen_entropy_exact": out["design"]["gen_entropy_exact"] - np.log2(g) * 0.1}
    pre = np.full((S, 20), 1.5) if plateau else 3 - np.linspace(0, 1, 20)[None].repeat(S, 0)
    out[c3.PREFIX] = {c3.EVAL_STEP: np.arange(20)[None].repeat(S, 0) * 10.0, "data_ce": pre}
    return out


def test_verdict_wiring_gate_failure_is_untestable_and_a_pass_reads_the_share():
    S = 12
    runs = {("markov", "mlp"): _fake_arms(S, 0.05, S), ("markov", "gru"): _fake_arms(S, 1.0, S),
            ("markov", "transformer"): _fake_arms(S, 0.05, 1)}
    rep = records.Report("t", {}, list(range(S)))
    kw = dict(gate_settle=0.25, floor_max=-1.0, gate_max=-0.3, smooth_factor=2.0, gain=1.0, dose_gains=[0.5, 2.0])
    gates = c3.decisive_records(rep, runs, ["markov"], ["mlp", "gru", "transformer"], **kw)
    cl = {c.id: c for c in rep.claims}
    assert cl["C3.gate[markov:mlp]"].verdict == "supported" and cl["C3.floor[markov:mlp]"].verdict == "supported"
    assert cl["C3[markov:mlp]"].verdict == "supported" and cl["C3[markov:mlp]"].rule == "share"
    assert cl["C3.dose[markov:mlp]"].verdict == "supported"  # ΔH falls by 0.1 nats per doubling
    assert cl["C3.gate[markov:gru]"].verdict != "supported"
    assert all(cl[f"{r}[markov:gru]"].verdict == "untestable" for r in ("C3", "C3.dose", "C3.smooth"))
    assert cl["C3[markov:transformer]"].verdict == "contradicted"  # 1 of 12: the upper end is below 0.5
    assert cl["C3[markov]"].verdict == "contradicted" and cl["C3[markov]"].members == [
        "C3[markov:mlp]", "C3[markov:gru]", "C3[markov:transformer]"]
    assert cl["C3.plateau"].value == 1.0 and cl["C3.gate[markov:mlp]"].kind == "diagnostic"
    assert cl["C3.rep[markov:mlp]"].verdict == "supported" and cl["C3.rep[markov:mlp]"].kind == "diagnostic"
    assert cl["C3.rep[markov:gru]"].verdict == "supported"  # the outcome is shown even where the gate fails
    table = c3.decisive_table(rep, gates)
    assert table.loc[("markov", "mlp"), "C3 verdict"] == "supported" and table["at plateau"].eq(S).all()
    # runs not at plateau never enter a verdict
    rep = records.Report("t", {}, list(range(S)))
    c3.decisive_records(rep, {("markov", "mlp"): _fake_arms(S, 0.05, S, plateau=False)}, ["markov"], ["mlp"], **kw)
    assert {c.id: c for c in rep.claims}["C3[markov:mlp]"].verdict == "untestable"


def test_the_gate_reads_a_drift_from_the_switch_on_value_that_a_detrend_hides():
    """A sham drifting linearly away from s0 has (almost) no detrended variance, but a large mean
    squared deviation from s0: the gate counts it (design steadier than the drifting sham)."""
    S, E = 4, 21
    steps = np.arange(E)[None].repeat(S, 0) * 10.0
    rng = np.random.default_rng(1)
    s0 = 2.0 + rng.normal(0, 0.1, S)
    flat = s0[:, None] + rng.normal(0, 0.002, (S, E))
    drift = s0[:, None] + np.linspace(0, 0.2, E)[None] + rng.normal(0, 0.002, (S, E))
    for y in (flat, drift):
        y[:, 0] = s0
    arm = lambda y: {c3.EVAL_STEP: steps, "stat_own_entropy": y, "stat_own_entropy_a": y + 1e-3, "stat_own_entropy_b": y,  # noqa: E731
                     "fb_saturated": np.zeros((S, 4))}
    g = c3.decisive_gate({"design": arm(flat), "sham": arm(drift), "ml": arm(flat)}, 0.25)
    assert np.all(g["log_ratio"] < -2) and np.all(g["whole"] < -1.5)
    assert np.all(np.abs(np.log10(c3.detrended_var(flat[:, 6:]) / c3.detrended_var(drift[:, 6:]))) < 0.5)
    with pytest.raises(ValueError, match="first evaluations differ"):
        c3.decisive_gate({"design": arm(flat + 0.1), "sham": arm(drift), "ml": arm(flat)}, 0.25)


def _adam_steps(opt, p, n, M):
    for k in range(n):
        opt.step(p, {"w": torch.sin(3 * p["w"] + k), "b": torch.cos(p["b"] * (k + 1))}, M)


def test_adamw_tile_each_copy_continues_as_the_original_bit_for_bit():
    """Members with different states: after tile(A) (stacked [m_1..m_M] A times) every copy
    continues exactly as the untiled optimiser; a state stacked the other way (each member
    repeated A times in a row, take's index m_1 m_1 m_1 m_2 ...) does not pass the same check."""
    from stabliab.optim import AdamW
    M, A = 3, 3
    g = torch.Generator().manual_seed(0)
    p = {"w": torch.randn(M, 4, 2, generator=g), "b": torch.randn(M, 5, generator=g)}
    opt = AdamW(0.01, weight_decay=0.1)
    _adam_steps(opt, p, 7, M)

    def copies_continue(branch):
        q = {k: v.repeat(A, *[1] * (v.ndim - 1)) for k, v in p.items()}
        ref, o = {k: v.clone() for k, v in p.items()}, opt.tile(1)
        _adam_steps(o, ref, 5, M)
        _adam_steps(branch, q, 5, M * A)
        return all(torch.equal(q[k][a * M:(a + 1) * M], ref[k]) for a in range(A) for k in ref)
    assert copies_continue(opt.tile(A)) and opt.tile(A).t == opt.t == 7
    assert copies_continue(opt.take(list(range(M)) * A))
    assert not copies_continue(opt.take([m for m in range(M) for _ in range(A)]))


@pytest.fixture(scope="module")
def arms_context():
    from conftest import smoke_context
    return smoke_context("03_cross_seed_repetition", c3.c3_arms_task, device="cpu")


def test_the_sham_replays_exactly_the_donors_design_kappa(arms_context):
    """Every analysed seed's sham replays the donor's design kappa: the same trajectory the
    donor's design arm produces when the donor is itself an analysed seed (a separate run),
    and not any analysed seed's own; a seed's numbers do not depend on the other seeds."""
    ctx = {**arms_context, "donor_seed": 7}
    both = c3.c3_arms_task({"corpus": "markov", "arch": "mlp"}, [0, 1], **ctx)
    alone = c3.c3_arms_task({"corpus": "markov", "arch": "mlp"}, [1], **ctx)
    assert all(alone[k][0] == both[k][1] for k in alone)  # per-seed caching is exact
    as_seed = c3.c3_arms_task({"corpus": "markov", "arch": "mlp"}, [7], **{**ctx, "donor_seed": 6})
    donor_kappa = np.asarray(as_seed["design:fb_kappa"][0])
    assert np.any(donor_kappa != 0)
    for i in range(2):
        assert np.array_equal(np.asarray(both["sham:fb_kappa"][i]), donor_kappa)
        assert np.array_equal(np.asarray(both["donor:fb_kappa"][i]), donor_kappa)
        assert not np.array_equal(np.asarray(both["design:fb_kappa"][i]), donor_kappa)  # not the seed's own
    assert both["donor:seed"] == [7, 7]
    with pytest.raises(ValueError, match="donor_seed 1 is one of the analysed seeds"):
        c3.c3_arms_task({"corpus": "markov", "arch": "mlp"}, [0, 1], **{**ctx, "donor_seed": 1})


def test_the_controller_aims_at_the_s0_the_gate_measures_against(arms_context, base_run):
    """The design's setpoint is the held statistic at switch-on that the gate reads (every arm's
    first measurement), not the controller's own first, noisier measurement: a controller aiming
    elsewhere would sit off s0 however well it held (the review of the first donor run)."""
    out = c3.c3_arms_task({"corpus": "markov", "arch": "mlp"}, [0, 1], **{**arms_context, "donor_seed": 7})
    for arm in ["design", c3.dose_arm(arms_context["dose_gains"][0])]:
        s0 = np.asarray(out[f"{arm}:{c3.stat_key('own_entropy')}"])[:, 0]  # [S] the gate's s0
        setpoint = np.asarray(out[f"{arm}:{c3.feedback_key('setpoint')}"])  # [S, K]
        assert np.allclose(setpoint, s0[:, None], rtol=0, atol=1e-6)
        first = np.asarray(out[f"{arm}:{c3.feedback_key('stat')}"])[:, 0]  # the controller's own first reading
        assert not np.allclose(first, s0, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="setpoints need one entry per member"):
        _window(base_run, {**SPEC, "setpoints": [0.1]}, steps=2)

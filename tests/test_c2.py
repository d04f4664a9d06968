"""Claim C2's room (experiments/c2.py), with the smoke profile's parameters of notebook 02."""
import inspect

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import smoke_parameters

from stabliab import members, plateau, records, stats, train
from stabliab.experiments import c2
from stabliab.sources import ZipfModes

NB = "02_entropy_shrinkage"
P = smoke_parameters(NB)
SEEDS = list(range(P["seed"], P["seed"] + P["n_seeds"]))
DERIVED = {"seeds", "device", "arch_kw"}  # what the notebook passes besides its parameters


@pytest.fixture()
def report():
    return records.Report(NB, P, SEEDS)


@pytest.fixture(scope="module")
def src():
    return c2.markov_source(**{k: P[k] for k in ["vocab", "sparsity", "dirichlet_alpha", "order", "source_seed"]})


def call(task, report, *args, **extra):
    return report.call(task, *args, device=torch.device("cpu"), arch_kw=report.call(c2.architecture), **extra)


def fake_trajectory(heldout, gen_H, loss):
    """A Trajectory with held-out loss and generative entropy [E, S] at steps 0, 10, 20, ..."""
    E = len(heldout)
    return train.Trajectory(step=np.arange(E), loss=np.asarray(loss), grad_norm=None, step_size=None,
                            eval_step=10 * np.arange(E),
                            evals={"heldout": np.asarray(heldout), "gen_H": np.asarray(gen_H)})


STEPS = np.arange(0, 401, 20)  # evaluation steps of the fake plateau measurements


def fake_plateau(at):
    """A plateau measurement (plateau.measure_members) of len(at) members: member m's fixed-batch loss is
    converged where at[m], still falling by 0.5 nats per 1000 steps otherwise."""
    loss = np.stack([1 + np.exp(-STEPS / 20) if a else 2 - 0.5 * STEPS / 1000 for a in at], 1)
    return c2.stationary(plateau.measure_members(STEPS, loss, tol=c2.PLATEAU_TOL))


def test_every_task_keyword_is_a_notebook_parameter_or_derived_and_has_no_default():
    for name, fn in inspect.getmembers(c2, inspect.isfunction):
        if fn.__module__ != c2.__name__:
            continue
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.KEYWORD_ONLY:
                assert p.default is p.empty, f"{name}({p.name}) has a default"
                assert p.name in P or p.name in DERIVED, f"{name}({p.name}) is not a parameter of {NB}"


def test_architecture_covers_both_sources_sequences(report):
    kw = report.call(c2.architecture)
    assert kw["max_len"] == max(P["seq_len"], P["mode_len"]) + 1 and kw["context"] == P["mlp_context"]


def test_plugin_bias_is_negative_shrinks_with_n_and_miller_madow_is_the_formula(report, src):
    bias = report.call(c2.plugin_bias, src)
    assert (bias.N.diff().dropna() > 0).all()
    np.testing.assert_array_equal(bias.transitions, bias.N * (P["seq_len"] - P["order"]))
    K = src.support_sizes()
    np.testing.assert_allclose(-bias.miller_madow, (K - 1).sum() / (2 * bias.transitions), rtol=1e-12)
    assert bias.bias.iloc[0] < -2 * bias.se.iloc[0]  # E[H(p̂_N)] below H* at the smallest N
    assert abs(bias.bias.iloc[-1]) < abs(bias.bias.iloc[0])
    c2.plugin_bias_records(report, bias)
    assert report.metrics["c2_bias_small_N"] == bias.N.iloc[0]


def test_plugin_deficit_is_positive_on_average_and_recorded(report, src):
    deficit = report.call(c2.plugin_deficit, src)
    assert deficit.shape == (P["bias_reps"],) and deficit.mean() > 0
    c2.plugin_records(report, src, deficit)
    plugin = {c.id: c for c in report.claims}["C2.plugin"]
    assert plugin.value == pytest.approx(deficit.mean()) and plugin.n == P["bias_reps"]
    mm = c2.miller_madow_deficit(src, min(P["n_values"]), P["seq_len"])
    assert report.metrics["c2_mm_pred_N0"] == pytest.approx(mm) and mm > 0


def test_order_matched_fit_is_on_the_training_samples_of_part_c(report, src):
    # fewer steps than the notebook: what is tested holds at any step
    fit = call(c2.order_matched_fit, report, src, mechanism_steps=20)
    samples = c2.training_samples(src, min(P["n_values"]), P["seq_len"], SEEDS)
    np.testing.assert_allclose(fit["H_hat"], [c2.sample_entropy(src, x) for x in samples])
    assert (fit["kl"] >= 0).all() and (fit["H_model"] > 0).all()
    table = c2.mechanism_table(src, fit, SEEDS)
    assert list(table.index) == SEEDS and all(pd.api.types.is_float_dtype(d) for d in table.dtypes)
    assert len(fit["plateau"]) == len(SEEDS) and fit["plateau"]["n_window"].min() >= 3


def test_trained_families_precision_table_and_early_stopping(report, src):
    # one family, one N, a short run: what is tested holds for each, at any step
    one = dict(archs=["mlp"], n_values=[min(P["n_values"])])
    heldout = call(c2.heldout_sequences, report, src)
    runs = call(c2.train_families, report, src, heldout, steps=20, n_evals=2, **one)
    r = runs["mlp", min(P["n_values"])]
    assert r["h_final"].shape == (len(SEEDS),) and np.isfinite(r["h_final"]).all()
    assert ((0 <= r["coverage"]) & (r["coverage"] <= 1)).all()
    assert ((0 < r["data_coverage"]) & (r["data_coverage"] <= 1)).all()
    prec = report.call(c2.precision_table, src, runs, heldout, **one)
    # the fp32 held-out CE of the final models is the trajectory's last held-out evaluation
    assert prec.loc["mlp", "held-out CE, fp32 [nats/token]"] == pytest.approx(r["traj"]["heldout"][-1].mean(), abs=1e-5)
    assert 0 <= prec.loc["mlp", "sampled tokens that agree"] <= 1
    early = report.call(c2.early_stopping, src, runs, **one)["mlp"]
    assert set(early["step"]) <= set(r["traj"].eval_step)
    # the plateau measurement: the fixed batch is each seed's first sequences, evaluated at the final parameters
    tr = r["traj"]
    data = c2.with_bos(c2.training_samples(src, min(P["n_values"]), P["seq_len"], SEEDS), P["vocab"], None)
    assert set(plateau.window_steps(20, c2.WINDOW_EVALS, c2.PLATEAU_TOL)) <= set(tr.eval_step)
    fixed = members.lm_loss(r["base"], tr.params, data[:, :c2.FIXED_BATCH]).detach().numpy()
    np.testing.assert_allclose(tr["fixed"][-1], fixed, rtol=1e-5)
    assert (tr["fixed_grad_norm"] > 0).all()
    pd.testing.assert_frame_equal(r["plateau"], c2.stationary(plateau.measure_members(
        tr.eval_step, tr["fixed"], tr["heldout"], tr["fixed_grad_norm"], c2.PLATEAU_TOL)))


def test_early_stopping_reads_each_seed_at_its_held_out_minimum(report, src):
    N0, H = min(P["n_values"]), src.entropy_rate
    tr = fake_trajectory(heldout=[[3.0, 3.0], [2.0, 1.0], [1.0, 2.0], [4.0, 4.0]],
                         gen_H=[[9.0, 9.0], [1.1 * H, 1.3 * H], [1.2 * H, 0.5 * H], [0.0, 0.0]], loss=[[1.0, 1.0]] * 4)
    runs = {("mlp", N0): {"traj": tr, "h_final": np.array([0.8, 0.9]) * H}}
    early = report.call(c2.early_stopping, src, runs, archs=["mlp"])["mlp"]
    np.testing.assert_array_equal(early["step"], [20, 10])
    np.testing.assert_allclose(early["ratio"], [1.2, 1.3])
    table = c2.early_records(report, {"mlp": early})
    row = table.loc["mlp"]
    assert row["lo"] <= row["H_model / H* there"] <= row["hi"]
    assert row["verdict"] == records.decide(">", P["ratio_threshold"], row["lo"], row["hi"]) == "inconclusive"
    assert report.metrics["c2_early_table"][0]["verdict"] == "inconclusive"  # two seeds straddle 1


def test_memorise_table_holds_numbers_and_the_records_values(report, src):
    H, (N0, N1) = src.entropy_rate, (min(P["n_values"]), max(P["n_values"]))
    runs = {(a, N): {"traj": fake_trajectory([[H + 0.5] * 2], [[H] * 2], [[0.3, 0.5]]), "h_final": np.array(h) * H,
                     "plateau": fake_plateau([True, True])}
            for a in P["archs"] for N, h in [(N0, [0.5, 0.7]), (N1, [1.0, 1.2])]}
    table = c2.memorise_records(report, src, runs)
    assert all(pd.api.types.is_float_dtype(d) for d in table.dtypes)
    claims = {c.id: c for c in report.claims}
    for a in P["archs"]:
        assert table.loc[a, f"H_model / H* at N = {N0}"] == pytest.approx(0.6) == claims[f"C2.memorise[{a}]"].value
        assert claims[f"C2.memorise[{a}]"].holds is False  # two seeds: the interval is wide
        assert table.loc[a, "KL rate to source [nats/token]"] == pytest.approx(0.5)


def test_mode_row_of_a_model_that_copies_the_sample():
    zipf = ZipfModes.random(8, 4, 5, seed=0)
    ids = np.array([0, 0, 0, 1, 1, 2, 5])
    p_copy = np.bincount(ids, minlength=8) / ids.size  # the empirical mode frequencies
    lq = np.full((3, 4), -1.0)
    row = c2.mode_row(zipf, ids, p_copy, np.array([0, 1, -1]), lq, top_m=2)
    assert row["model mass on sample's top modes"] == pytest.approx(row["sample share of its top modes"]) == 5 / 7
    assert row["model mass on unseen modes"] == 0 and row["model mass on seen modes"] == pytest.approx(1)
    assert row["modes in sample"] == 4 / 8 and row["modes in generations"] == 2 / 8
    assert row["generations that are a mode"] == pytest.approx(2 / 3)
    assert row["true mass of sample's top modes"] == pytest.approx(zipf.weights[:2].sum())
    assert row["H_model / H(w)"] == pytest.approx(4 / zipf.entropy)


def test_mode_concentration_masses_are_probabilities(report):
    zipf = report.call(c2.zipf_source)
    modes, mass = call(c2.mode_concentration, report, zipf, archs=["mlp"], mode_steps=20)  # holds at any step
    assert len(modes) == len(SEEDS) and len(mass) == len(SEEDS) * P["n_modes"]
    per_seed = mass.groupby("seed")
    assert (per_seed["model"].sum() <= 1 + 1e-6).all()  # distinct sequences: total mass at most 1
    np.testing.assert_allclose(per_seed["sample"].sum(), 1.0)
    np.testing.assert_allclose(modes["model mass on seen modes"] + modes["model mass on unseen modes"],
                               per_seed["model"].sum().to_numpy())
    table = c2.modes_records(report, modes)
    assert list(table.columns) == c2.MODE_COLUMNS and all(pd.api.types.is_float_dtype(d) for d in table.dtypes)
    assert {"C2.modes", "C2.modes_entropy"} <= {c.id for c in report.claims}
    assert set(c2.PLATEAU_COLUMNS) <= set(modes.columns) and modes["n_window"].min() >= 3


# ---------------------------------------------------------------- stationarity first
def test_window_steps_give_the_plateau_test_its_evaluations():
    for steps in [20, 60, 800, 1500]:
        w = plateau.window_steps(steps, c2.WINDOW_EVALS, c2.PLATEAU_TOL)
        assert len(w) == c2.WINDOW_EVALS and w[-1] == steps and w[0] >= steps * (1 - c2.PLATEAU_TOL.window)
        ev = c2.eval_steps(steps, P["n_evals"])
        assert set(train.eval_schedule(steps, P["n_evals"])) | set(w) == set(ev) and (np.diff(ev) > 0).all()
        assert plateau.measure(ev, np.ones(len(ev)), tol=c2.PLATEAU_TOL)["n_window"] >= c2.WINDOW_EVALS
    np.testing.assert_array_equal(plateau.window_steps(60), [45, 48, 51, 54, 57, 60])
    with pytest.raises(ValueError, match="need >= 3"):  # the geometric schedule alone is not enough
        plateau.measure(train.eval_schedule(800, 16), np.ones(len(train.eval_schedule(800, 16))))


@pytest.mark.parametrize("arch", ["mlp", "gru"])  # the loop and the vmap (batched) paths
def test_the_plateau_evaluations_leave_training_bit_identical(src, arch):
    seeds, steps = SEEDS[:2], 12
    data = c2.with_bos(c2.training_samples(src, 8, 8, seeds), src.vocab, None)
    kw = dict(vocab=src.vocab, seeds=seeds, steps=steps, lr=3e-2, batch_size=4, d=8, hidden=16, layers=1, heads=2,
              context=2, max_len=9)
    bare, _ = train.train_lm(arch, data, **kw)  # no evaluation at all
    gen_H = members.generation_entropy_eval(4, 8, [5, 6], skip=1)
    ev, base = train.train_lm(arch, data, heldout=data[:, :3], eval_every=c2.eval_steps(steps, 3),
                              eval_fns={"gen_H": gen_H, **c2.fixed_batch_evals(data, arch, "fp32")}, **kw)
    assert len(ev.eval_step) > 6 and ev.params.keys() == bare.params.keys()
    for k in bare.params:
        assert torch.equal(bare.params[k], ev.params[k]), k
    np.testing.assert_array_equal(bare.loss, ev.loss)
    np.testing.assert_array_equal(bare.grad_norm, ev.grad_norm)
    # at the final step the fixed batch (all 8 sequences: N < FIXED_BATCH) is the whole sample
    np.testing.assert_allclose(ev["fixed"][-1], members.lm_loss(base, ev.params, data).detach().numpy(), rtol=1e-5)


def plateau_runs(H, N0, N1, at):
    """Fake runs of part (c) for every family at N0 and N1: seed s at plateau where at[s]."""
    h = np.array([0.5, 0.7, 2.0])[:len(at)] * H  # the seed left out is the one far above the truth
    return {(a, N): {"traj": fake_trajectory([[H + 0.5] * len(at)], [[H] * len(at)], [[0.3] * len(at)]),
                     "h_final": h, "plateau": fake_plateau(at)} for a in P["archs"] for N in (N0, N1)}


def test_records_count_only_the_runs_at_plateau(report, src):
    H, (N0, N1) = src.entropy_rate, (min(P["n_values"]), max(P["n_values"]))
    runs = plateau_runs(H, N0, N1, [True, True, False])
    c2.memorise_records(report, src, runs)
    claims = {c.id: c for c in report.claims}
    for a in P["archs"]:
        c = claims[f"C2.memorise[{a}]"]
        assert c.n == 2 == runs[a, N0]["plateau"]["stationary"].sum()  # n = the stationary runs
        assert c.value == pytest.approx(0.6)  # the seed at 2.0 x H* is left out
        assert "2 of 3 runs stationary" in c.statement
    # one run at plateau: a single replicate, inconclusive; none: untestable, n = 0
    r2 = records.Report(NB, P, SEEDS)
    c2.memorise_records(r2, src, plateau_runs(H, N0, N1, [False, True, False]))
    c = {c.id: c for c in r2.claims}[f"C2.largeN[{P['archs'][0]}]"]
    assert (c.rule, c.n, c.verdict, c.value) == ("single", 1, "inconclusive", pytest.approx(0.7))
    r3 = records.Report(NB, P, SEEDS)
    c2.memorise_records(r3, src, plateau_runs(H, N0, N1, [False, False, False]))
    c = {c.id: c for c in r3.claims}[f"C2.memorise[{P['archs'][0]}]"]
    assert c.n == 0 and c.verdict == "untestable" and "0 of 3 runs stationary" in c.statement


def test_mechanism_and_modes_records_count_only_the_runs_at_plateau(report, src):
    fit = {"H_model": np.array([1.0, 1.01, 3.0]), "H_hat": np.ones(3), "kl": np.zeros(3),
           "plateau": fake_plateau([True, True, False])}
    c2.mechanism_records(report, src, fit)
    c = report.claims[-1]
    assert c.id == "C2.mechanism[mlp]" and c.n == 2 and c.value == pytest.approx(1.005)
    pl = fake_plateau([True, False, True])
    modes = pd.DataFrame({"arch": "mlp", "seed": SEEDS[:1] * 3, "model mass on sample's top modes": [0.9, 0.1, 0.8],
                          "sample share of its top modes": [0.5, 0.5, 0.5], "H_model / H(w)": [0.9, 2.0, 0.8],
                          **{k: pl[k].to_numpy() for k in c2.PLATEAU_COLUMNS}})
    for col in set(c2.MODE_COLUMNS) - set(modes.columns):
        modes[col] = 0.5
    c2.modes_records(report, modes)
    claims = {c.id: c for c in report.claims}
    assert claims["C2.modes[mlp]"].n == 2 and claims["C2.modes[mlp]"].value == pytest.approx(0.35)
    assert claims["C2.modes_entropy[mlp]"].n == 2 and claims["C2.modes_entropy[mlp]"].value == pytest.approx(0.85)


def test_plateau_record_is_the_tables_share_of_the_runs_in_a_verdict(report, src):
    H, seeds = src.entropy_rate, report.seeds
    n_values = sorted(P["n_values"])
    assert len(seeds) == 2 and len(n_values) >= 2
    N0, N1 = n_values[0], n_values[-1]
    fit = {"plateau": fake_plateau([True, False])}
    runs = {**plateau_runs(H, N0, N1, [True, True]),
            ("mlp", N1): {"plateau": fake_plateau([False, False])},
            ("gru", N0): {"plateau": fake_plateau([True, False])}}
    runs["mlp", 7] = {"plateau": fake_plateau([False, False])}  # an intermediate N: in no verdict
    pm = fake_plateau([True, True, False, True])
    modes = pd.DataFrame({"arch": ["mlp", "mlp", "gru", "gru"], "seed": seeds * 2,
                          **{k: pm[k].to_numpy() for k in c2.PLATEAU_COLUMNS}})
    table = c2.plateau_records(report, fit, runs, modes)
    assert len(table) == 2 * (1 + len(runs)) + len(modes)
    assert not table["in a verdict"][table.index.get_level_values("N") == 7].any()
    assert all(table[c].dtype.kind in "fib" for c in table.columns)  # numbers and booleans only
    used = table[table["in a verdict"]]
    k, n = int(used["stationary"].sum()), len(used)
    # (b): 1 of 2; (c): every family at N0 and N1, mlp at N1 0 of 2, gru at N0 1 of 2, the rest 2 of 2; (d): 3 of 4
    n_c = 2 * 2 * len(P["archs"])
    assert (k, n) == (1 + n_c - 3 + 3, 2 + n_c + 4)
    c = {c.id: c for c in report.claims}["C2.plateau"]
    assert (c.value, c.n, c.rule, c.comparator, c.threshold) == (k / n, n, "share", ">=", c2.PLATEAU_SHARE)
    assert c.interval == stats.share_interval(k, n) and c.statement.endswith(f"{k} of {n}")
    assert c.verdict == records.decide(">=", c2.PLATEAU_SHARE, *c.interval)
    assert (report.metrics["c2_plateau_k"], report.metrics["c2_plateau_n"]) == (k, n)
    summary = {(r["part"], r["family"], r["N"]): r for r in report.metrics["c2_plateau_table"]}
    assert summary["(c) families", "mlp", N1]["share at plateau"] == 0
    assert summary["(d) modes", "mlp", P["n_mode_samples"]]["share at plateau"] == 1
    assert summary["(c) families", "gru", N0]["descending"] == 1
    assert summary["(b) order-matched", "mlp", N0]["runs"] == 2
    shares = used.groupby(level=["part", "family", "N"])["stationary"].agg(["sum", "size"]).sum()
    assert (shares["sum"], shares["size"]) == (k, n)
    assert len(report.metrics["c2_plateau_runs"]) == len(table)


def test_early_stopping_record_does_not_filter_on_plateau_and_says_so(report, src):
    early = {"mlp": {"step": np.array([10, 20]), "ratio": np.array([1.2, 1.3]), "final": 0.9}}
    c2.early_records(report, early)
    c = report.claims[-1]
    assert c.n == 2 and "at plateau or not" in c.statement and c.comparator == ">"  # a boundary: over-dispersed
    far = c2.early_records(records.Report(NB, P, SEEDS), {"mlp": {**early["mlp"], "ratio": np.array([1.5, 1.52])}})
    assert far.loc["mlp", "verdict"] == "supported"  # the boundary confirmed


def test_plateau_rule_glues_the_tolerances(report):
    c2.plateau_rule(report)
    assert report.metrics["c2_tol_max_slope"] == c2.PLATEAU_TOL.max_slope == 0.01
    assert report.metrics["c2_tol_window"] == 0.25 and report.metrics["c2_fixed_batch"] == c2.FIXED_BATCH


def test_a_run_over_fitting_at_a_training_plateau_is_stationary_and_counts():
    """Memorisation: training loss flat, held-out loss rising. The state says over-fitting; the run is
    stationary for its training objective, which is what C2 is about, so it counts."""
    train_loss = np.stack([1 + np.exp(-STEPS / 20)] * 2, 1)
    heldout = np.stack([2 + np.exp(-STEPS / 20), 2 + 0.5 * STEPS / 1000], 1)  # the second rises
    df = c2.stationary(plateau.measure_members(STEPS, train_loss, heldout, tol=c2.PLATEAU_TOL))
    assert list(df["at_plateau"]) == [True, False] and list(df["overfitting"]) == [False, True]
    assert df["stationary"].all()
    falling = c2.stationary(plateau.measure_members(STEPS, np.stack([2 - 0.5 * STEPS / 1000], 1), tol=c2.PLATEAU_TOL))
    assert not falling["stationary"].any()  # still descending: not stationary
    both = c2.stationary(plateau.measure_members(STEPS, np.stack([2 - 0.5 * STEPS / 1000], 1),
                                                 np.stack([2 + 0.5 * STEPS / 1000], 1), tol=c2.PLATEAU_TOL))
    assert both["overfitting"].all() and not both["stationary"].any()  # over-fitting, but the loss still falls


# ---------------------------------------------------------------------- the routes of concentration
def test_sequence_probabilities_of_the_source_and_of_the_plugin_chain_sum_to_one(src):
    from itertools import product
    allx = np.array(list(product(range(src.vocab), repeat=3)))  # every sequence of 3 tokens
    assert np.exp(src.sequence_logprob(allx)).sum() == pytest.approx(1.0, abs=1e-12)
    sample = src.sample(40, 3, seed=1)
    chain, start = c2.plugin_chain(src, sample)
    lp = chain.sequence_logprob(allx, start)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-12)
    assert np.isfinite(chain.sequence_logprob(sample, start)).all()  # the sample is in its own support
    # a sequence with a transition the sample never had has probability 0 under p̂_N
    unseen = allx[~np.isfinite(lp)]
    assert len(unseen) and np.isneginf(chain.sequence_logprob(unseen, start)).all()
    # the plug-in chain is the maximum-likelihood chain: it gives its sample at least the source's likelihood
    assert chain.sequence_logprob(sample, start).sum() >= src.sequence_logprob(sample).sum()


def test_ngram_and_copy_shares():
    sample = np.array([[0, 1, 2, 3], [1, 1, 1, 1]])
    assert c2.copy_share(sample, sample) == 1.0 and c2.ngram_share(sample, sample, 2) == 1.0
    other = np.array([[0, 1, 2, 0], [3, 3, 3, 3]])
    assert c2.copy_share(other, sample) == 0.0
    assert c2.ngram_share(other, sample, 2) == pytest.approx(2 / 6)  # (0,1), (1,2) of six bigrams
    assert c2.log10_mass(np.log([0.5, 0.25])) == pytest.approx(np.log10(0.75))


def test_routes_of_trained_runs_and_their_records(report, src):
    one = dict(archs=["mlp"], n_values=[min(P["n_values"])])
    heldout = call(c2.heldout_sequences, report, src)
    runs = call(c2.train_families, report, src, heldout, steps=20, n_evals=2, **one)
    r = runs["mlp", min(P["n_values"])]
    ro = r["routes"]
    assert set(ro) == set(c2.ROUTE_COLUMNS) and all(v.shape == (len(SEEDS),) for v in ro.values())
    assert (ro["mass_model"] <= 1e-9).all() and (ro["mass_source"] < ro["mass_plugin"]).all()  # p̂_N is the ML chain
    for c in ["ngram_gen", "ngram_plugin", "ngram_src", "copies_gen", "copies_plugin", "subset_model",
              "subset_source"]:
        assert ((0 <= ro[c]) & (ro[c] <= 1)).all()
    np.testing.assert_array_equal(ro["H_gen"], r["h_final"])
    # the head's gap is the fixed batch's loss (the trajectory's last) minus the mean teacher-forced entropy
    data = c2.with_bos(c2.training_samples(src, min(P["n_values"]), P["seq_len"], SEEDS), P["vocab"], None)
    ent = members.per_position(r["base"], r["traj"].params, data[:, :c2.FIXED_BATCH])[0].mean((1, 2)).numpy()
    np.testing.assert_allclose(ro["head_gap"], r["traj"]["fixed"][-1] - ent, atol=1e-5)
    r["plateau"] = fake_plateau([True, False])  # only the first seed counts
    report.parameters = {**report.parameters, **one}
    table = c2.routes_records(report, runs)
    claims = {c.id: c for c in report.claims}
    seq = claims["C2.route.sequences[mlp]"]
    assert seq.n == 1 and seq.value == pytest.approx(ro["mass_model"][0] - ro["mass_source"][0])
    assert claims["C2.route.beyond[mlp]"].value == pytest.approx(ro["mass_model"][0] - ro["mass_plugin"][0])
    assert claims["C2.route.free_running[mlp]"].kind == "diagnostic" and seq.kind == "claim"
    assert claims["C2.route.sequences"].rule == "aggregate" and claims["C2.route.subset"].kind == "claim"
    assert table.loc[("mlp", min(P["n_values"])), "generations that copy the sample"] == pytest.approx(
        ro["copies_gen"].mean())


def test_effective_share_and_the_plugin_chain():
    assert c2.effective_share(np.log([0.25] * 4)) == pytest.approx(1.0)
    assert c2.effective_share(np.log([1.0, 1e-30, 1e-30, 1e-30])) == pytest.approx(0.25)
    src = c2.markov_source(**{k: P[k] for k in ["vocab", "sparsity", "dirichlet_alpha", "order", "source_seed"]})
    sample = src.sample(20, 10, seed=4)
    chain, start = c2.plugin_chain(src, sample)
    draws = chain.sample(200, 10, seed=5, start=start)
    # p̂_N takes only the sample's transitions (but where a context the sample never continues keeps the source's row)
    assert c2.ngram_share(draws, sample, 2) >= 0.9
    lp = chain.sequence_logprob(draws, start)
    assert np.isfinite(lp).mean() >= 0.9 and np.all(lp <= 0)

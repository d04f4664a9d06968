"""Claim C1's room (experiments/c1.py), run with the smoke profile's parameters of notebook 01."""
import inspect
import re

import numpy as np
import pytest
import torch
from conftest import ROOT, smoke_context, smoke_parameters

from stabliab import loglinear, measures, records
from stabliab.experiments import c1

NB = "01_forward_kl_stationarity"
TASKS = [c1.problem, c1.forward_fit, c1.edge_runs, c1.reverse_fit, c1.coverage_summary, c1.full_family_run]


def call(task, *args):
    return task(*args, **smoke_context(NB, task, device=torch.device("cpu")))


@pytest.fixture(scope="module")
def room():
    p = smoke_parameters(NB)
    seeds = list(range(p["seed"], p["seed"] + p["n_seeds"]))
    pb = call(c1.problem, seeds)
    fit = call(c1.forward_fit, pb)
    runs = call(c1.edge_runs, pb, fit)
    # c1.reverse_fit's L-BFGS takes minutes (the notebook runs it): a stand-in conditional table here
    rev = {"Q": np.stack([measures.smoothed_conditional(c, p["reverse_eps"]) for c in pb.counts])}
    std = c1.standard_training(**smoke_context(NB, c1.standard_training, seeds=seeds, device="cpu", std_steps=80))
    return dict(p=p, seeds=seeds, pb=pb, fit=fit, runs=runs, rev=rev, summary=call(c1.coverage_summary, pb, fit, rev),
                full=call(c1.full_family_run, pb), std=std)


def test_tasks_take_keyword_only_arguments_without_defaults():
    for task in TASKS:
        kw = [q for q in inspect.signature(task).parameters.values() if q.kind is q.KEYWORD_ONLY]
        assert kw, task.__name__
        assert all(q.default is q.empty for q in kw), task.__name__


class DoubleWell:
    """A toy family with two minima of different depth, (x^2 - 1)^2 + x / 4 per coordinate:
    L-BFGS ends in the basin it starts in, so starts disagree."""
    def init(self, seeds):
        return {"x": torch.stack([torch.randn(2, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                                  for s in seeds]) * 0.01}


def test_best_of_starts_picks_the_least_value_start():
    S, starts = smoke_parameters(NB)["n_seeds"] + 2, smoke_parameters(NB)["lbfgs_starts"] + 3

    def loss(p):
        return ((p["x"] ** 2 - 1) ** 2 + p["x"] / 4).sum(1)  # [M]
    offset = np.arange(S, dtype=float)
    theta, values, grad = c1.best_of_starts(loss, DoubleWell(), S, starts, 5, offset=offset)
    assert values.shape == (S, starts) and grad.shape == (S * starts,)
    assert (np.ptp(values, 1) > 0.1).any()  # some seed's starts end in different minima: the pick matters
    own = loss(theta).numpy() - offset  # the picked parameters' own value
    np.testing.assert_allclose(own, values.min(1), atol=1e-9)
    assert (theta["x"].abs() > 0.5).all()  # a minimiser, not the start or the saddle


def test_problem_has_one_sample_per_seed(room):
    p, pb = room["p"], room["pb"]
    S = len(room["seeds"])
    assert pb.counts.shape == (S, pb.src.n_contexts, p["vocab"])
    assert (pb.counts.sum((1, 2)) == p["n_sequences"] * (p["seq_len"] - p["order"])).all()
    np.testing.assert_allclose(pb.P_hat.sum(-1), 1.0)
    t = c1.sample_table(pb)
    assert list(t.index) == room["seeds"]
    assert np.isfinite(t.to_numpy()).all() and (t["true transitions unseen"] >= 0).all()
    assert ((0 < pb.H_hat) & (pb.H_hat < np.log(p["vocab"]))).all()


def test_forward_fit_is_the_maximum_entropy_minimiser(room):
    pb, fit = room["pb"], room["fit"]
    t = c1.maxent_table(pb, fit)
    assert list(t.index) == room["seeds"] and np.isfinite(t.to_numpy()).all()
    assert (fit["KL_star"] > 0).all()  # rank r < V: p_hat lies outside the family
    assert (fit["moment"] < 1e-5).all() and (fit["grad"].numpy() < 1e-5).all()
    np.testing.assert_allclose(t["difference"], fit["KL_star"], atol=1e-6)  # H(p_theta*) - H(p_hat) = KL*
    np.testing.assert_allclose(fit["KL_star"], fit["kl_starts"].min(1))
    kl = loglinear.count_forward_kl(pb.family, fit["theta"], pb.C_t).numpy()
    np.testing.assert_allclose(kl, fit["KL_star"], atol=1e-9)  # the picked parameters have KL*


def test_edge_runs_identity_and_settling(room):
    p, runs = room["p"], room["runs"]
    S, F = len(room["seeds"]), len(p["lr_fractions"]) + 1
    assert runs["gap"].shape == (p["steps"] + 1, S * F) and runs["fractions"][-1] == p["unstable_fraction"]
    assert (runs["edge"] > 0).all()
    assert runs["ident_err"].max() < c1.IDENTITY_TOL
    assert (runs["gap"] > -1e-9).all()  # KL* is the family's minimum: no trajectory goes below it
    assert list(c1.members_at(runs, -1)) == [s * F + F - 1 for s in range(S)]
    stable = np.concatenate([c1.members_at(runs, f) for f in range(F - 1)])
    assert runs["gap"][-1, stable].max() < p["gap_threshold"]
    n_tail = max(2, int(p["tail"] * len(runs["traj"].step)))
    assert (runs["gap"][-n_tail:, c1.members_at(runs, -1)].mean(0) > p["gap_threshold"]).all()


def test_coverage_one_row_per_seed_and_fit(room):
    pb, fit, rev, summary = room["pb"], room["fit"], room["rev"], room["summary"]
    cover = c1.coverage_table(pb, {c1.FITS["fwd"]: fit["Q"], c1.FITS["rev"]: rev["Q"]}, room["p"]["keep_tau"])
    assert len(cover) == 2 * len(room["seeds"]) and set(cover["seed"]) == set(room["seeds"])
    shares = cover[list(c1.COVERAGE.values())].to_numpy()
    assert np.isfinite(shares).all() and ((0 <= shares) & (shares <= 1)).all()
    fwd = cover[cover["fit"] == c1.FITS["fwd"]].reset_index(drop=True)
    np.testing.assert_array_equal(fwd.to_numpy(), fit["coverage"].to_numpy())  # the same numbers as in part (b)
    assert list(summary.index) == sorted(c1.FITS.values())
    np.testing.assert_allclose(summary.loc[c1.FITS["fwd"]], fwd.drop(columns=["seed", "fit"]).mean())


def test_full_family_fits_the_sample_not_the_truth(room):
    full = room["full"]
    emp, true = full["kl_emp"], full["kl_true"]  # [L, S]
    assert (np.diff(emp, axis=0) <= 1e-12).all()  # stable step size: the training KL falls monotonically
    assert (emp[-1] < 0.1 * emp[0]).all()
    assert (true[-1] > emp[-1]).all()  # the sample is what it fits


def test_records_glue_every_key_the_prose_cites(room, monkeypatch):
    monkeypatch.setattr(records, "glue", lambda *a, **k: None)
    report = records.Report(NB, room["p"], room["seeds"])
    pb, fit, runs = room["pb"], room["fit"], room["runs"]
    c1.record_sample(report, pb)
    c1.record_minimiser(report, fit)
    c1.record_maxent(report, pb, fit)
    c1.record_identity(report, runs)
    c1.record_stable(report, runs)
    c1.record_unstable(report, runs)
    c1.record_coverage(report, room["summary"])
    c1.record_full_family(report, runs, room["full"])
    c1.standard_records(report, room["std"])
    ids = [c.id for c in report.claims]
    assert ids[:5] == ["C1.maxent", "C1.identity", "C1", "C1.unstable", "C1.unstable.trend"]
    assert {"C1.standard[adamw]", "C1.standard[sgd]", "C1.noise[adamw]", "C1.noise[sgd]"} <= set(ids)
    glued = set(report.metrics) | {f"{records.glue_key(c.id)}_{s}" for c in report.claims
                                   for s in ["value", "lo", "hi", "threshold", "verdict"]}
    cited = set(re.findall(r"\{glue(?::\w*)?\}`([\w]+)", (ROOT / "notebooks" / f"{NB}.py").read_text()))
    assert cited and cited <= glued, cited - glued


def test_context_entropy_matches_an_independent_count():
    """H(p_hat | the last k tokens, BOS-padded), against a plain Counter over the same positions."""
    from collections import Counter
    rng = np.random.default_rng(0)
    V, k = 5, 2
    x = np.concatenate([np.full((30, 1), V), rng.integers(0, V, (30, 12))], 1)  # [N, T+1], BOS = V first
    pairs = Counter()
    for row in x:
        padded = [V] * (k - 1) + list(row[:-1])
        for t in range(len(row) - 1):
            pairs[tuple(padded[t:t + k]), row[t + 1]] += 1
    ctx = Counter()
    for (c, _), n in pairs.items():
        ctx[c] += n
    n = sum(pairs.values())
    H = -sum(m / n * np.log(m / ctx[c]) for (c, _), m in pairs.items())
    assert c1.context_entropy(x, k, V) == pytest.approx(H, abs=1e-12)


def test_standard_training_never_goes_below_the_context_floor(room):
    """thm-softmax-head's bound CE >= H(p_hat | context) holds for every run, stationary or not: the
    excess forward KL is never negative; and every optimizer, lr and batch of the profile is there."""
    std, p = room["std"], room["p"]
    assert (std["excess KL"] > -1e-6).all()
    assert (std["floor"] < np.log(p["vocab"])).all() and (std["excess share"] == std["excess KL"] / (
        np.log(p["vocab"]) - std["floor"])).all()
    assert len(std) == len(room["seeds"]) * (len(p["adamw_lrs"]) + len(p["sgd_lrs"])) * len(p["batch_sizes"])
    assert set(std.batch) == {4, p["n_sequences"]}  # 0 is the whole sample


def test_standard_records_count_only_runs_at_plateau(room, monkeypatch):
    monkeypatch.setattr(records, "glue", lambda *a, **k: None)
    std = room["std"].copy()
    std["at plateau"] = [True, False] * (len(std) // 2)  # one seed of each configuration left out
    report = records.Report(NB, room["p"], room["seeds"])
    c1.standard_records(report, std)
    per_config = [c for c in report.claims if c.id.count(":") == 2]
    assert per_config and all(c.n == 1 and c.rule == "single" and c.verdict == "inconclusive" for c in per_config)
    assert all("1 of 2 runs at plateau" in c.statement for c in per_config)
    assert {c.id.rsplit(":", 1)[1].rstrip("]") for c in per_config} == {"4", "all"}  # the whole sample is its own group
    noise = {c.id: c for c in report.claims}["C1.noise[adamw]"]
    assert noise.n == 1 and "1 of 2 seeds at plateau in both" in noise.statement
    agg = {c.id: c for c in report.claims}["C1.standard[adamw]"]
    assert agg.verdict == "inconclusive" and agg.rule == "aggregate"

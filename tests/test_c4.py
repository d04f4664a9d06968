"""Claim C4's room (experiments/c4.py, c4_task.py): training to matched progress, the task's
exact measures, the design, the index, and the one-sided, directional and R²-gain records the
notebook glues. Values come from the smoke profile of notebook 04."""
import warnings

import numpy as np
import pytest
import torch
from scipy import stats as sps
from sklearn.linear_model import Ridge

from conftest import smoke_context, smoke_parameters
from stabliab import lm, plateau, predict, records, stats, sweep, train
from stabliab.experiments import c4, c4_task

P = smoke_parameters(c4.NOTEBOOK)
CONTEXT = smoke_context(c4.NOTEBOOK, c4.c4_task, device="cpu")
CONFIGS = c4.design_configs(**sweep.task_context(c4.design_configs, P))


def test_the_task_takes_the_notebook_parameters_by_name():
    assert set(CONTEXT) == {"vocab", "order", "alpha", "seq_len", "min_steps", "max_steps", "d_model", "hidden",
                            "tail", "tau", "device"}
    assert all(CONTEXT[k] == P[k] for k in CONTEXT if k != "device")


def test_the_design_is_the_same_on_every_source_and_each_stabiliser_changes_one_setting():
    assert len(CONFIGS) == P["n_configs"] * len(P["sources"])
    by = {s: [{k: v for k, v in c.items() if k != "source"} for c in CONFIGS if c["source"] == s] for s in P["sources"]}
    assert by["dense"] == by["sparse"]
    for c in CONFIGS:
        assert P["lr_range"][0] <= c["lr"] <= P["lr_range"][1] and P["batch_range"][0] <= c["batch"] <= P["batch_range"][1]
        assert c["clip"] in P["clip_choices"] and c["ema"] in P["ema_choices"] and 0 <= c["warmup"] <= P["warmup_max"]
    reference, stabilisers = c4.stabiliser_configs(reference_lr=P["reference_lr"], sources=P["sources"])
    assert set(reference) == set(CONFIGS[0]) and reference["lr"] == P["reference_lr"]
    for name, cfg in stabilisers.items():
        changed = [k for k in cfg if cfg[k] != reference[k]]
        assert len(changed) == 1, (name, changed)
    assert stabilisers["smaller lr"]["lr"] < reference["lr"]


def test_the_sources_are_dense_and_sparse_and_an_unknown_one_is_an_error():
    kw = dict(vocab=P["vocab"], order=P["order"], alpha=P["alpha"])
    dense, sparse = c4_task.source("dense", **kw), c4_task.source("sparse", **kw)
    assert (dense.P > 0).all() and 0.5 < (sparse.P == 0).mean() < 0.8 and sparse.is_ergodic()
    with pytest.raises(ValueError, match="unknown C4 source"):
        c4_task.source("zipf", **kw)


# ---------------------------------------------------------------- training to matched progress
def _quadratic(M=3):
    """Members minimising (w - 1)^2 at per-member learning rates: a member done early must keep its w."""
    return {"w": torch.zeros(M, 1)}, (lambda p, t: ((p["w"] - 1) ** 2).sum(1))


def test_a_member_that_is_done_keeps_its_parameters_and_the_run_ends_when_all_are():
    params, loss = _quadratic()
    done_at = {0: 10, 1: 20}  # member 2 never stops

    def stop(steps, ev):
        return np.array([steps[-1] >= done_at.get(m, 10 ** 9) for m in range(3)])
    traj = train.train(loss, params, steps=40, lr=0.05, eval_every=5, eval_fns={"w": lambda p, t: p["w"][:, 0]},
                       stop=stop, ema=0.9)
    assert traj.stopped.tolist() == [10, 20, 40] and traj.eval_step[-1] == 40
    w = traj["w"]  # [E, M]
    for m, t in done_at.items():
        after = traj.eval_step >= t
        assert np.all(w[after, m] == w[after, m][0])  # frozen from its stop on
    assert np.all(np.diff(w[:, 2]) > 0)  # the other one kept learning
    alone = train.train(loss, {"w": torch.zeros(1, 1)}, steps=40, lr=0.05, eval_every=5,
                        eval_fns={"w": lambda p, t: p["w"][:, 0]}, stop=lambda s, e: np.array([s[-1] >= 10]), ema=0.9)
    assert alone.stopped.tolist() == [10] and alone.step[-1] == 10  # all done: the run ends there
    assert torch.equal(alone.params["w"][0], traj.params["w"][0]) and torch.equal(alone.ema_params["w"][0],
                                                                                  traj.ema_params["w"][0])


def test_the_stopping_rule_waits_for_min_steps_then_stops_a_flat_or_oscillating_loss_not_a_falling_one():
    stop = c4_task.finished_rule(min_steps=32)
    steps = np.arange(0, 65, 4)
    flat = np.full(len(steps), 1.0) + 1e-4 * np.sin(steps)
    falling = 2.0 - steps / 100.0
    wild = 1.0 + 0.5 * (-1.0) ** (steps // 4)  # a period-two oscillation: it will not settle
    ev = {"fixed": np.stack([flat, falling, np.where(steps > 20, np.nan, 1.0), wild], 1)}
    assert stop(steps, ev).tolist() == [True, False, True, True]
    rng = np.random.default_rng(0)  # the decision of plateau.measure_members' table, which the rule no longer builds
    long = np.arange(0, 401, 4)
    noisy = 1.0 + np.exp(-long[:, None] / rng.uniform(10, 400, 32)) + rng.normal(0, 1e-3, (len(long), 32))
    table = plateau.measure_members(long, noisy, tol=c4_task.PLATEAU_TOL)
    done = stop(long, {"fixed": noisy})
    assert done.tolist() == (table["at_plateau"] | table["oscillating"]).tolist() and 0 < done.sum() < 32
    assert stop(steps[:6], {"fixed": ev["fixed"][:6]}).tolist() == [False] * 4  # before min_steps
    assert stop(steps[:7], {"fixed": ev["fixed"][:7]}).tolist() == [False, False, True, False]  # non-finite: at once
    with pytest.raises(ValueError, match="min_steps"):
        c4_task.eval_every(8)


def test_a_seed_gives_the_same_numbers_alone_or_with_others():
    """What makes per-seed caching exact: member m of a seeds-at-once run depends only on its seed,
    its stop included."""
    both = c4.c4_task(CONFIGS[0], [0, 1], **CONTEXT)
    alone = c4.c4_task(CONFIGS[0], [1], **CONTEXT)
    for name in c4.STABILITY + c4.QUALITY + ["table", "steps", "state"]:
        assert both[name][1] == alone[name][0], name
    assert both["forward_kl"][0] != both["forward_kl"][1]  # the seeds differ


def test_c4_task_reports_exact_quality_for_a_perfect_model_and_keeps_the_source(monkeypatch):
    """With the model's table replaced by the source's own conditionals, every quality measure
    takes its ideal value: the measures are exact, not estimates."""
    src = c4_task.source("dense", vocab=P["vocab"], order=P["order"], alpha=P["alpha"])
    monkeypatch.setattr(lm, "ngram_table", lambda model, ctx: torch.tensor(src.P))
    reference, _ = c4.stabiliser_configs(reference_lr=P["reference_lr"], sources=["dense"])
    r = c4.c4_task(reference, [0, 1], **CONTEXT)
    assert r["forward_kl"] == pytest.approx([0, 0], abs=1e-12) and r["reverse_kl"] == pytest.approx([0, 0], abs=1e-12)
    assert r["entropy_ratio"] == pytest.approx([1, 1], abs=1e-12) and r["overconfidence"] == pytest.approx([0, 0], abs=1e-12)
    assert r["tf_entropy"] == pytest.approx([src.entropy_rate] * 2, rel=1e-12)  # H(P | pi) is the entropy rate
    covered = sum(src.stationary[c] * p for c, row in enumerate(src.P) for p in row if p >= P["tau"])
    assert r["coverage"] == pytest.approx([covered, covered], abs=1e-12) and covered <= 1.0
    assert c4.disagreement(r) == pytest.approx(0.0, abs=1e-15)
    assert np.array_equal(np.array(r["source"][0]), src.P) and np.allclose(r["weights"][0], src.stationary)


def test_a_learning_rate_past_divergence_is_reported_as_diverged_not_dropped():
    """lr 30: a loss above the uniform prediction's; lr 1e19: the parameters overflow (not finite):
    both are diverged, kept in the table with None (NaN) quality, never a crash."""
    base = dict(CONFIGS[0], clip=0.0, ema=0.0, warmup=0.0)
    cfgs = [dict(base, lr=0.05), dict(base, lr=30.0), dict(base, lr=1e19)]
    rec = [{"config": c, "result": c4.c4_task(c, [0, 1], **CONTEXT)} for c in cfgs]
    assert "diverged" not in rec[0]["result"]["state"]
    assert rec[1]["result"]["state"] == ["diverged"] * 2 and rec[2]["result"]["state"] == ["diverged"] * 2
    assert rec[2]["result"]["forward_kl"] == [None, None] and rec[2]["result"]["table"] == [None, None]
    table = c4.c4_table(rec)
    assert table["diverged"].tolist() == [False, True, True] and len(table["configs"]) == 3
    report = _report()
    c4.record_design(report, {"dense": table})
    assert report.metrics["c4_dense_n_diverged"] == 2 and report.metrics["c4_dense_min_diverged_lr"] == 30.0
    df = c4.config_table(table, c4.instability(table) if table["used"].any() else np.zeros(table["steps"].shape))
    assert len(df) == 3 and df["diverged"].sum() == 2  # shown, flagged
    st = c4.state_table({"dense": table})
    assert st.loc[("dense", "diverged"), "runs"] == 4 and st["runs"].sum() == 6


# ---------------------------------------------------------------- statistics behind the records
def test_partial_spearman_agrees_with_the_partial_correlation_formula_on_ranks():
    rng = np.random.default_rng(0)
    z = rng.normal(size=200)
    x, y = z + rng.normal(size=200), z + 0.5 * rng.normal(size=200)
    r = lambda a, b: np.corrcoef(sps.rankdata(a), sps.rankdata(b))[0, 1]  # noqa: E731
    want = (r(x, y) - r(x, z) * r(y, z)) / np.sqrt((1 - r(x, z) ** 2) * (1 - r(y, z) ** 2))
    assert stats.partial_spearman(x, y, z) == pytest.approx(want, abs=1e-12)


def test_ridge_in_closed_form_is_sklearns_ridge():
    rng = np.random.default_rng(1)
    X, y, Xn = rng.normal(size=(40, 3)), rng.normal(size=40), rng.normal(size=(7, 3))
    want = Ridge(alpha=predict.RIDGE_ALPHA).fit(X, y).predict(Xn)
    assert predict.ridge_predict(X, y, Xn) == pytest.approx(want, abs=1e-10)


def _loss_world(rng, C=30, S=4, extra=0.0):
    """Per-seed rows: a loss, a stability measure correlated with it, and a quality that is a
    nonlinear function of the loss plus `extra` times the stability measure's own part."""
    groups = np.repeat(np.arange(C), S)
    loss = np.repeat(rng.uniform(1, 2, C), S) + rng.normal(0, 0.02, C * S)
    own = np.repeat(rng.normal(size=C), S)  # what stability knows that the loss does not
    stab = 2 * loss + own
    y = np.exp(3 * (loss - 2)) + extra * own + rng.normal(0, 0.05, C * S)  # curved in the loss
    return loss, stab, y, groups


def test_the_r2_gain_is_about_zero_when_quality_depends_only_on_the_loss_and_positive_when_not():
    rng = np.random.default_rng(2)
    loss, stab, y, g = _loss_world(rng)
    v, (lo, hi) = predict.r2_gain_bootstrap(loss, stab, y, g, n_boot=100)
    assert abs(v) < 0.03 and lo < 0.03 and hi < 0.05  # a curved dependence on the loss is not credited to stability
    loss, stab, y, g = _loss_world(rng, extra=0.5)
    v, (lo, hi) = predict.r2_gain_bootstrap(loss, stab, y, g, n_boot=100)
    assert v > 0.2 and lo > 0.1
    with pytest.raises(ValueError, match="groups"):
        predict.r2_gain_bootstrap(loss[:8], stab[:8], y[:8], g[:8])


# ---------------------------------------------------------------- tables and records
def _synthetic(rng, C=12, S=3, sign=1.0):
    """A synthetic c4_table: every quality and log H/H* a monotone function of the stability
    index times `sign`; configuration 3 diverged, 5 unfinished."""
    meas = np.exp(rng.normal(size=(C, S, 4)) * 0.1 + np.linspace(-2, 2, C)[:, None, None])
    t = {"configs": [{"lr": float(np.exp(-i)), "n_train": 16 * (i + 1), "batch": 8} for i in range(C)],
         "measures": meas, "disagreement": np.exp(np.linspace(-2, 2, C)), "steps": np.full((C, S), 100.0)}
    t["used"] = np.ones(C, bool)
    t["used"][[3, 5]] = False
    t["diverged"], t["oscillating"], t["unfinished"] = np.zeros(C, bool), np.zeros(C, bool), np.zeros(C, bool)
    t["diverged"][3], t["oscillating"][5] = True, True
    stab = -c4.instability(t)  # [C, S]
    for name in ["forward_kl", "coverage", "distinct4"]:
        t[name] = sign * stab * (-1 if name == "forward_kl" else 1)
    t["overconfidence"] = np.exp(-sign * stab)  # calibration -|.| rises with sign * stability
    t["log_entropy_ratio"] = -sign * stab
    t["heldout_ce"] = rng.uniform(1, 2, (C, S))
    t["at_plateau"] = np.ones((C, S), bool)
    return t


def _report():
    return records.Report(c4.NOTEBOOK, P, list(range(P["n_seeds"])))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_sided_and_directional_records_at_their_edges(sign):
    """Quality rising with stability (sign +1): rho = +1, so C4.insufficient is contradicted and,
    entropy falling with stability, C4.liability supported; sign -1: the reverse, and
    C4.insufficient supported (stability predicts worse quality: insufficient, not two-sided)."""
    t = _synthetic(np.random.default_rng(3), sign=sign)
    report = _report()
    df = c4.rank_records(report, {"dense": t, "sparse": t})
    claims = {c.id: c for c in report.claims}
    assert (df["verdict"].isin(records.VERDICTS)).all()
    for lab in c4.ORIENTED:
        c = claims[f"C4.insufficient[{lab}, dense]"]
        assert c.value == pytest.approx(sign) and c.n == 10  # used configurations only
        assert c.verdict == ("contradicted" if sign > 0 else "supported")
        assert claims[f"C4.insufficient[{lab}]"].members == [f"C4.insufficient[{lab}, dense]",
                                                            f"C4.insufficient[{lab}, sparse]"]
    assert claims["C4.liability[dense]"].value == pytest.approx(-sign)
    assert claims["C4.liability"].verdict == ("supported" if sign > 0 else "contradicted")
    assert "C4.insufficient[forward KL (negated), dense, given loss]" not in claims
    assert {"C4.liability[given lr]", "C4.liability[given loss]"} <= set(claims)
    row = df.loc[("C4.liability", "dense")]
    c = claims["C4.liability[dense]"]
    assert (row["ρ"], row["lo"], row["hi"], row["verdict"]) == (c.value, *c.interval, c.verdict)


def test_beyond_records_are_per_source_and_aggregated():
    t = _synthetic(np.random.default_rng(4), C=14)
    report = _report()
    df = c4.beyond_records(report, {"dense": t})
    ids = {c.id for c in report.claims}
    assert {"C4.beyond[coverage, dense]", "C4.beyond[coverage]", f"C4.beyond[{c4.ENTROPY}]"} <= ids
    assert not any("forward KL" in i for i in ids)
    assert df["R² gain"].notna().all() and (df["verdict"].isin(records.VERDICTS)).all()


def test_component_table_and_summary_say_whether_the_index_is_the_learning_rate():
    t = _synthetic(np.random.default_rng(5))
    report = _report()
    df = c4.summary(report, {"dense": t})
    assert list(df.index.get_level_values(0)) == [*c4.STABILITY, "disagreement", "instability index"]
    rho = report.metrics["c4_dense_rho_index_lr"]  # lr falls as the index rises in _synthetic
    assert rho == pytest.approx(-1.0) and report.metrics["c4_dense_mostly_lr"] == "is"


def test_paired_columns_give_the_student_t_interval_and_whether_it_excludes_zero():
    cells = c4.paired_columns("Δ x", [2.0, 2.2, 2.1], [1.0, 1.0, 1.0])
    assert (cells["Δ x lo"], cells["Δ x hi"]) == pytest.approx(stats.mean_interval([1.0, 1.2, 1.1]), rel=1e-12)
    assert cells["Δ x"] == pytest.approx(1.1) and cells["Δ x ≠ 0"] is True
    assert c4.paired_columns("Δ x", [1.0, -1.0, 0.5], [0.0, 0.0, 0.0])["Δ x ≠ 0"] is False


def _result(rng, scale, S):
    """One configuration's task result: stability measures times `scale`, quality draws."""
    r = {n: list(scale * rng.uniform(1, 2, S)) for n in c4.STABILITY}
    Q = rng.dirichlet(np.ones(4), size=(S, 3))  # [S, C, V]
    r.update(table=Q.tolist(), weights=[[1 / 3] * 3] * S, entropy_ratio=list(rng.uniform(0.5, 1.5, S)),
             at_plateau=[True] * S)
    r.update({q: list(rng.uniform(0, 1, S)) for q in c4.DELTAS.values() if q != "log_entropy_ratio"})
    return {"result": r}


def _study(seed, S):
    """A design of ten configurations (its table), a reference run and a calmer one (every
    stability measure / 100)."""
    rng = np.random.default_rng(seed)
    design = [_result(rng, s, S) for s in np.exp(rng.normal(size=10))]
    table = {"measures": np.stack([c4.seed_measures(r["result"]) for r in design]), "used": np.ones(10, bool)}
    ref = _result(rng, 1.0, S)
    calmer = {**ref["result"], **{n: [v / 100 for v in ref["result"][n]] for n in c4.STABILITY}}
    return table, ref, calmer


def test_a_stabiliser_that_lowers_every_measure_holds_and_one_that_raises_them_does_not():
    S = 4
    table, ref, calmer = _study(2, S)
    wilder = {**ref["result"], **{n: [v * 100 for v in ref["result"][n]] for n in c4.STABILITY}}
    runs = {"reference": ref, "stabilisers": {"calmer": {"result": calmer}, "wilder": {"result": wilder}}}
    report = _report()
    df, deltas = c4.stabiliser_records(report, runs, table)
    assert list(df.index) == ["calmer", "wilder"] and df["Δ disagreement"].tolist() == [0.0, 0.0]
    assert df["n"].tolist() == [S, S]
    assert df.loc["calmer", "verdict"] == "supported" and df.loc["wilder", "verdict"] == "contradicted"
    assert [c.holds for c in report.claims] == [True, False]
    assert (deltas["calmer"]["instability"] < 0).all() and (deltas["calmer"]["forward_kl"] == 0).all()
    assert set(c4.STABILISER_BOLD.values()) <= set(df.columns)
    html = records.style(df, bold=c4.STABILISER_BOLD).to_html()
    assert "✓" in html and "font-weight: bold" in html and "≠ 0" not in html  # flags only set the bold


def test_stabilisers_pair_only_seeds_at_plateau_in_both_runs_and_the_moving_average_is_not_applicable():
    table, ref, calmer = _study(6, 5)
    ref["result"]["at_plateau"] = [True, True, False, True, True]
    calmer["at_plateau"] = [True, False, True, True, True]
    runs = {"reference": ref, "stabilisers": {"calmer": {"result": calmer},
                                              "moving average": {"result": dict(ref["result"])}}}
    report = _report()
    df, _ = c4.stabiliser_records(report, runs, table)
    assert df.loc["calmer", "n"] == 3 and report.claims[0].n == 3  # seeds 0, 3, 4
    assert df.loc["moving average", "verdict"] == "untestable" and "not applicable" in report.claims[1].statement


def test_standardise_is_nan_without_a_warning_where_the_reference_has_no_finite_value():
    """No configuration at its plateau leaves the reference empty: the z-scores are NaN (untestable records), and no
    numpy warning reaches the notebook's stderr (which fails the strict book build)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = stats.standardise(np.ones((3, 2)), np.full((0, 2), np.nan))
        assert np.isnan(z).all()
        assert stats.standardise(np.array([1.0, 2.0, 4.0])) == pytest.approx([-1.0, 0.0, 1.0])

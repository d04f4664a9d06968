"""Claim C4's room (experiments/c4.py): the task's measures, the design, the index, and the
tables and records the notebook glues. Values come from the smoke profile of notebook 04."""
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import smoke_context, smoke_parameters
from stabliab import lm, records, stats, sweep
from stabliab.experiments import c4

P = smoke_parameters(c4.NOTEBOOK)
CONTEXT = smoke_context(c4.NOTEBOOK, c4.c4_task, device="cpu")
CONFIGS = c4.design_configs(**sweep.task_context(c4.design_configs, P))


def test_the_task_takes_the_notebook_parameters_by_name():
    assert set(CONTEXT) == {"vocab", "order", "alpha", "seq_len", "steps", "d_model", "hidden", "tail", "tau",
                            "device"}
    assert all(CONTEXT[k] == P[k] for k in CONTEXT if k != "device")


def test_the_design_stays_in_its_ranges_and_each_stabiliser_changes_one_setting():
    assert len(CONFIGS) == P["n_configs"] and CONFIGS == c4.design_configs(**sweep.task_context(c4.design_configs, P))
    for c in CONFIGS:
        assert P["lr_range"][0] <= c["lr"] <= P["lr_range"][1] and P["batch_range"][0] <= c["batch"] <= P["batch_range"][1]
        assert c["clip"] in P["clip_choices"] and c["ema"] in P["ema_choices"] and 0 <= c["warmup"] <= P["warmup_max"]
    reference, stabilisers = c4.stabiliser_configs(reference_lr=P["reference_lr"])
    assert set(reference) == set(CONFIGS[0]) and reference["lr"] == P["reference_lr"]
    for name, cfg in stabilisers.items():
        changed = [k for k in cfg if cfg[k] != reference[k]]
        assert len(changed) == 1, (name, changed)
    assert stabilisers["smaller lr"]["lr"] < reference["lr"]


def test_a_seed_gives_the_same_numbers_alone_or_with_others():
    """What makes per-seed caching exact: member m of a seeds-at-once run depends only on its seed."""
    both = c4.c4_task(CONFIGS[0], [0, 1], **CONTEXT)
    alone = c4.c4_task(CONFIGS[0], [1], **CONTEXT)
    for name in c4.STABILITY + c4.QUALITY + ["table"]:
        assert both[name][1] == alone[name][0], name
    assert both["forward_kl"][0] != both["forward_kl"][1]  # the seeds differ


def test_c4_task_reports_exact_quality_for_a_perfect_model(monkeypatch):
    """With the model's table replaced by the source's own conditionals, every quality
    measure takes its ideal value: the measures are exact, not estimates."""
    src = c4.source(vocab=P["vocab"], order=P["order"], alpha=P["alpha"])
    monkeypatch.setattr(lm, "ngram_table", lambda model, ctx: torch.tensor(src.P))
    reference, _ = c4.stabiliser_configs(reference_lr=P["reference_lr"])
    r = c4.c4_task(reference, [0, 1], **CONTEXT)
    assert r["forward_kl"] == pytest.approx([0, 0], abs=1e-12) and r["reverse_kl"] == pytest.approx([0, 0], abs=1e-12)
    assert r["entropy_ratio"] == pytest.approx([1, 1], abs=1e-12) and r["overconfidence"] == pytest.approx([0, 0], abs=1e-12)
    covered = sum(src.stationary[c] * p for c, row in enumerate(src.P) for p in row if p >= P["tau"])
    assert r["coverage"] == pytest.approx([covered, covered], abs=1e-12) and covered <= 1.0
    assert c4.disagreement(r) == pytest.approx(0.0, abs=1e-15)


def test_the_instability_index_is_the_mean_of_standardised_logarithms():
    idx = c4.instability_index(np.array([[1.0, 10.0], [10.0, 100.0], [100.0, 1000.0]]))
    assert idx == pytest.approx([-1.0, 0.0, 1.0])


# ---------------------------------------------------------------- tables and records
def _table(rng, C=12, S=3, predictive=True):
    """A synthetic c4_table: instability inst [C, S]; every quality either a monotone
    function of stability (predictive) or independent noise; one diverged configuration."""
    inst = rng.normal(size=(C, S)) + np.linspace(-2, 2, C)[:, None]
    t = {"configs": [{"lr": float(i)} for i in range(C)], "diverged": np.zeros(C, bool)}
    t["diverged"][3] = True
    for q in c4.QUALITY_LABELS.values():
        t[q] = np.exp(-inst.mean(1, keepdims=True)).repeat(S, 1) if predictive else rng.exponential(size=(C, S))
    t["heldout_ce"] = rng.exponential(size=(C, S))
    return t, inst


def _report():
    return records.Report(c4.NOTEBOOK, P, list(range(P["n_seeds"])))


def _numeric(df):
    """Numbers and booleans, and verdicts (one of records.VERDICTS), nothing formatted."""
    return all(pd.api.types.is_float_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
               or (c == "verdict" and df[c].isin(records.VERDICTS).all()) for c in df.columns)


@pytest.mark.parametrize("predictive", [True, False])
def test_rank_records_are_numeric_tables_that_match_the_claims(predictive):
    table, inst = _table(np.random.default_rng(0), predictive=predictive)
    report = _report()
    rank, partial = c4.rank_records(report, table, inst)
    assert list(rank.index) == list(c4.QUALITY_LABELS) and "forward KL rate" not in partial.index
    assert _numeric(rank) and _numeric(partial) and len(partial) == len(rank) - 1
    claims = {c.id: c for c in report.claims}
    for lab, q in c4.QUALITY_LABELS.items():
        c = claims[f"C4.rank[{q}]"]
        assert (rank.loc[lab, "ρ"], rank.loc[lab, "lo"], rank.loc[lab, "hi"]) == (c.value, *c.interval)
        assert rank.loc[lab, "verdict"] == c.verdict and c.n == 11  # the diverged configuration is left out
    if predictive:  # quality a monotone function of the stability index: rho = 1, wholly outside the bound
        assert (rank["ρ"] == 1.0).all() and (rank["verdict"] == "contradicted").all()
    assert report.metrics["c4_rank_holds"] == int((rank["verdict"] == "supported").sum())
    assert report.metrics["c4_rank_contradicted"] == int((rank["verdict"] == "contradicted").sum())
    assert report.metrics["c4_rank_count"] == 6


def test_config_table_leaves_out_diverged_configurations_and_sorts_by_instability():
    table, inst = _table(np.random.default_rng(1))
    df = c4.config_table(table, inst)
    assert len(df) == 11 and 3 not in df.index and df["instability"].is_monotonic_increasing
    assert df.loc[0, "coverage"] == pytest.approx(table["coverage"][0].mean())


def test_paired_columns_give_the_student_t_interval_and_whether_it_excludes_zero():
    cells = c4.paired_columns("Δ x", [2.0, 2.2, 2.1], [1.0, 1.0, 1.0])
    assert (cells["Δ x lo"], cells["Δ x hi"]) == pytest.approx(stats.mean_interval([1.0, 1.2, 1.1]), rel=1e-12)
    assert cells["Δ x"] == pytest.approx(1.1) and cells["Δ x ≠ 0"] is True
    assert c4.paired_columns("Δ x", [1.0, -1.0, 0.5], [0.0, 0.0, 0.0])["Δ x ≠ 0"] is False


def _result(rng, scale, S):
    """One configuration's task result: stability measures times `scale`, quality draws."""
    r = {n: list(scale * rng.uniform(1, 2, S)) for n in c4.STABILITY}
    Q = rng.dirichlet(np.ones(4), size=(S, 3))  # [S, C, V]
    r.update(table=Q.tolist(), weights=[[1 / 3] * 3] * S)
    r.update({q: list(rng.uniform(0, 1, S)) for q in c4.DELTAS.values()})
    return {"result": r}


def test_a_stabiliser_that_lowers_every_measure_holds_and_one_that_raises_them_does_not():
    rng = np.random.default_rng(2)
    S = 4
    design = [_result(rng, s, S) for s in np.exp(rng.normal(size=10))]
    table = {"measures": np.stack([c4.stability_measures(r["result"], c4.STABILITY) for r in design]),
             "diverged": np.zeros(10, bool)}
    ref = _result(rng, 1.0, S)
    calmer = {**ref["result"], **{n: [v / 100 for v in ref["result"][n]] for n in c4.STABILITY}}
    wilder = {**ref["result"], **{n: [v * 100 for v in ref["result"][n]] for n in c4.STABILITY}}
    runs = {"reference": ref, "stabilisers": {"calmer": {"result": calmer}, "wilder": {"result": wilder}}}
    report = _report()
    df, deltas = c4.stabiliser_records(report, runs, table)
    assert _numeric(df) and list(df.index) == ["calmer", "wilder"]
    assert df.loc["calmer", "verdict"] == "supported" and df.loc["wilder", "verdict"] == "contradicted"
    assert [c.holds for c in report.claims] == [True, False]
    assert (deltas["calmer"]["instability"] < 0).all() and (deltas["calmer"]["forward_kl"] == 0).all()
    assert set(c4.STABILISER_BOLD.values()) <= set(df.columns)
    html = records.style(df, bold=c4.STABILISER_BOLD).to_html()
    assert "✓" in html and "font-weight: bold" in html and "≠ 0" not in html  # flags only set the bold


def test_every_run_carries_its_plateau_measurement_and_the_share_is_a_diagnostic():
    r = c4.c4_task(CONFIGS[0], [0, 1], **CONTEXT)
    assert len(r["at_plateau"]) == len(r["plateau_slope"]) == 2 and all(isinstance(a, bool) for a in r["at_plateau"])
    assert all(np.isfinite(r["plateau_slope"]))
    at = [[True, False], [True, True], [False, False], [True, True]]  # four configurations, two seeds; the last diverged
    design = [{"result": {"at_plateau": a, "plateau_slope": [0.0, 1.0], "diverged": [False, False]}} for a in at]
    report = _report()
    c4.record_design(report, {"diverged": np.array([False, False, False, True])}, design)
    c = report.claims[-1]  # the diverged configuration is left out, as the C4 records leave it out
    assert c.id == "C4.plateau" and c.kind == "diagnostic" and c.n == 6 and c.value == pytest.approx(3 / 6)
    assert report.metrics["c4_plateau_median_slope"] == pytest.approx(0.5)

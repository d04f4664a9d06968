"""The feedback designs of C3: maximum likelihood exactly when off, the zero expected
gradient of own samples at temperature 1, each design steadying the statistic it holds
on a small problem, the gate's arithmetic, the result format of c3_task, the numeric
tables built from records, a design from outside the package."""
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import copy_repo, smoke_context, smoke_parameters

from stabliab import feedback, lm, measures, members, plateau, records, stats, sweep, train
from stabliab.experiments import c3
from stabliab.sources import MarkovSource

NB = "03_cross_seed_repetition"
SETTLE = smoke_parameters(NB)["gate_settle"]


@pytest.fixture(scope="module")
def tiny():
    src = MarkovSource.random(6, seed=0)
    data = torch.stack([members.with_bos(src.sample(32, 12, seed=s), 6) for s in (0, 1)])
    return data, dict(vocab=6, seeds=[0, 1], steps=30, d=8, hidden=8, layers=1, heads=2, context=2, max_len=13)


def test_off_is_exactly_maximum_likelihood(tiny):
    data, kw = tiny
    for arch in ["gru", "transformer"]:
        plain, _ = train.train_lm(arch, data, **kw)
        off, _ = train.train_lm(arch, data, feedback=feedback.make("off"), **kw)
        assert np.array_equal(plain.loss, off.loss)
        assert all(torch.equal(plain.params[k], off.params[k]) for k in plain.params)


def test_pi_tolerance_from_the_noise_floor(tiny):
    """The PI loop measures the standard error of its statistic; with a tolerance of
    many standard errors it never acts, and training is maximum likelihood bit for bit
    (its samples use their own generators); with none it acts."""
    data, kw = tiny
    plain, _ = train.train_lm("mlp", data, **kw)
    quiet, _ = train.train_lm("mlp", data, feedback=feedback.make({"design": "pi_own_samples", "z": 1e6, "every": 5,
                                                                   "n_samples": 6, "length": 10}), **kw)
    assert np.array_equal(plain.loss, quiet.loss) and np.all(quiet.feedback["beta"] == 0)
    assert np.all(quiet.feedback["noise_se"] > 0)
    loud, _ = train.train_lm("mlp", data, feedback=feedback.make({"design": "pi_own_samples", "z": 0.0, "every": 5,
                                                                  "n_samples": 6, "length": 10}), **kw)
    assert loud.feedback["beta"].max() > 0 and not np.array_equal(plain.loss, loud.loss)
    signed = feedback.make({"design": "pi_own_samples", "signed": True})
    assert signed.p.signed and signed.statistic == "gen_entropy"


def test_unknown_designs_and_parameters_are_rejected_by_name():
    with pytest.raises(ValueError, match="unknown feedback design 'nope'; allowed: off, pi_own_samples"):
        feedback.make("nope")
    with pytest.raises(ValueError, match="has no parameter beta; allowed: ema, lam, start"):
        feedback.make({"design": "hold_entropy", "beta": 1.0})
    with pytest.raises(ValueError, match="refresh >= 1"):
        feedback.make({"design": "self_consume", "refresh": 0}).bind(None, 1, 3, True, "fp32", [0])


def test_own_samples_have_zero_expected_gradient_at_temperature_one_and_pull_to_modes_below():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        z = torch.randn(4, 9, generator=g, dtype=torch.float64) * 2
        g1 = feedback.expected_own_sample_gradient(z, 1.0)
        assert g1.abs().max() < 1e-15
        for tau in (0.5, 0.8):
            gt = feedback.expected_own_sample_gradient(z, tau)
            torch.testing.assert_close(gt, torch.softmax(z, -1) - torch.softmax(z / tau, -1), rtol=0, atol=1e-14)
            z2 = z - 0.1 * gt  # one gradient step on the fed-back loss
            p, p2 = torch.softmax(z, -1), torch.softmax(z2, -1)
            top = p.argmax(-1, keepdim=True)
            assert torch.all(p2.gather(-1, top) > p.gather(-1, top))  # towards the mode
            H = lambda q: -(q * q.log()).sum(-1)  # noqa: E731
            assert torch.all(H(p2) < H(p))


def test_markov_own_sample_entropy_agrees_with_the_exact_rate():
    """The Monte Carlo statistic the loops measure (mean -log q of own samples) is
    unbiased for the entropy rate of a chain started in its stationary law: the exact
    rate lies in the Student-t interval over sequences, for several chains (at level
    1 - 0.01/4, so that four intervals all cover with probability >= 0.99)."""
    for seed in range(4):
        src = MarkovSource.random(7, sparsity=0.3, alpha=0.5, seed=seed)
        x = src.sample(400, 60, seed=10 + seed)
        logq = np.log(src.P[x[:, :-1], x[:, 1:]])  # [n, L-1] transitions after the stationary start
        per_seq = measures.generation_entropy(logq)  # [n] mean -log q per sequence
        lo, hi = stats.mean_interval(per_seq, level=1 - 0.01 / 4)
        assert lo < src.entropy_rate < hi
        assert hi - lo < 0.1  # and the interval is narrow enough to mean something


def test_statistics_are_deterministic_given_the_parameters(tiny):
    data, kw = tiny
    traj, base = train.train_lm("gru", data, **kw)
    a = c3.statistics(base, traj.params, data[:, :8], 6, 10, [0, 1])
    b = c3.statistics(base, traj.params, data[:, :8], 6, 10, [0, 1])
    assert set(a) == set(feedback.STATISTICS)
    for k in a:
        assert a[k].shape == (3, 2) and np.array_equal(a[k], b[k])
        np.testing.assert_allclose(a[k][0], (a[k][1] + a[k][2]) / 2, rtol=1e-5) if k != "entropy_spread" else None


def test_sliding_window_decoding_past_the_trained_length():
    m = lm.build_lm("transformer", 5, seed=0, d=16, layers=2, heads=2, max_len=8).eval()
    tok, _ = m.sample(3, 20, seed=1)  # 20 tokens from a model with 8 positions
    assert tok.shape == (3, 20)
    logits, state = m.start(3)
    for t in range(19):
        logits, state = m.step(tok[:, t], state)
    window = torch.cat([torch.full((3, 1), m.bos), tok[:, 12:19]], 1)  # BOS + the newest 7 tokens fed
    torch.testing.assert_close(logits, m(window)[:, -1])


# ---------------------------------------------------------------- each design steadies its statistic
# The smoke profile's context, on a smaller problem trained longer and harder, so that the designs act for
# most of a few hundred steps (the book's values are for the book's models; here the question is only
# whether each mechanism steadies its statistic).
SMALL = {**smoke_context(NB, c3.c3_task, device="cpu", plugin_code=""),
         "seq_len": 12, "steps": 300, "lr": 0.01, "batch_size": 16, "start_frac": 0.1, "n_eval": 16,
         "markov_sequences": 64, "markov_vocab": 6, "d_model": 8, "hidden": 16, "mlp_context": 2}


@pytest.fixture(scope="module")
def small_runs():
    """Off and every design whose statistic is a smooth function of the parameters, on a
    small Markov problem, strong enough to act within a few hundred steps (the book's
    defaults are for the book's models; here the question is only whether the mechanism
    steadies its statistic once it has settled: the z-loss first drives log Z from about
    2 to 0 and rings for some 60 steps, which the gate's settling time leaves out)."""
    specs = {"off": {"design": "off"}, "hold_entropy": {"design": "hold_entropy", "lam": 100.0},
             "hold_spread": {"design": "hold_spread", "lam": 10.0}, "logit_hold": {"design": "logit_hold", "lam": 1.0}}
    out = {}
    for label, spec in specs.items():
        out[label] = c3.c3_task({"corpus": "markov", "arch": "mlp", "label": label, "spec": spec},
                                         [0, 1, 2], **SMALL)
    return c3.c3_runs([{"config": {"corpus": "markov", "arch": "mlp", "label": k}, "result": r} for k, r in out.items()])


def test_c3_task_writes_exactly_the_documented_result_format(small_runs):
    """Every key c3_task returns is named by the result format (experiments.c3_task), and
    every named key is there, seeds first."""
    r = small_runs["markov", "mlp", "hold_entropy"]
    named = {c3.EVAL_STEP, *c3.OUTCOMES, *c3.TEXTS,
             *(c3.stat_key(s, h) for s in feedback.STATISTICS for h in c3.HALVES)}
    logged = {k for k in r if k.startswith(c3.feedback_key(""))}
    assert set(r) == named | logged  # only what the design logged besides (the PI loop: beta, noise_se)
    E = len(r[c3.EVAL_STEP][0])
    assert all(r[c3.stat_key(s, h)].shape == (3, E) for s in feedback.STATISTICS for h in c3.HALVES)
    assert all(r[k].shape == (3,) for k in c3.OUTCOMES) and all(len(r[k]) == 3 for k in c3.TEXTS)
    steps, y = c3.series(r, "log_z")
    assert steps[0] == 0 and steps[-1] == SMALL["steps"] and y.shape == (3, E)


def test_c3_task_keywords_are_the_notebook_parameters():
    """No defaults: every keyword of c3_task, c3_data and c3_arms_task is a parameter of notebook 03, or the
    plugins' hash that the notebook derives; a missing one is an error naming it."""
    for task in [c3.c3_task, c3.c3_data, c3.c3_arms_task]:
        kw = [p for p in inspect.signature(task).parameters.values() if p.kind is p.KEYWORD_ONLY]
        assert kw and all(p.default is p.empty for p in kw)
        assert {p.name for p in kw} - {"plugin_code"} <= set(smoke_parameters(NB))
    with pytest.raises(TypeError, match="c3_task needs plugin_code"):
        sweep.task_context(c3.c3_task, smoke_parameters(NB), device="cpu")


@pytest.mark.parametrize("label", ["hold_entropy", "hold_spread", "logit_hold"])
def test_each_design_lowers_the_variance_of_its_statistic(small_runs, label):
    stat = feedback.make(label).statistic
    runs = {k[2]: v for k, v in small_runs.items()}
    g = c3.c3_gate(runs[label], runs["off"], stat, c3.acting_start(SMALL["steps"], SMALL["start_frac"]), SETTLE)
    assert np.all(g["log_ratio"] < 0), g["log_ratio"]  # every seed, not only on average


def test_off_against_itself_is_a_ratio_of_exactly_one(small_runs):
    start = c3.acting_start(SMALL["steps"], SMALL["start_frac"])
    off = small_runs["markov", "mlp", "off"]
    for stat in ["tf_entropy", "gen_entropy", "log_z", "entropy_spread"]:
        g = c3.c3_gate(off, off, stat, start, SETTLE)
        assert np.all(g["log_ratio"] == 0)
    with pytest.raises(ValueError, match="fewer than 3 evaluation steps"):
        c3.c3_gate(off, off, "log_z", SMALL["steps"], SETTLE)


def test_records_and_tables_agree_and_hold_numbers(small_runs):
    """The records written from the small runs, and the tables built from them: numbers and
    booleans only (no formatted strings), each table's verdict the record's, each effect's
    mean and interval the paired differences', bold exactly where the interval excludes 0."""
    held = {d: feedback.make(d).statistic for d in ["hold_entropy", "hold_spread", "logit_hold"]}
    start = c3.acting_start(SMALL["steps"], SMALL["start_frac"])
    rep = records.Report("t", {}, [0, 1, 2])
    gates = c3.gate_statistics(small_runs, ["markov"], ["mlp"], held, start, SETTLE)
    c3.write_records(rep, small_runs, gates, held, start, 2.0, SETTLE)
    assert len(rep.claims) == 4 * len(held) and all(c.exploratory for c in rep.claims)
    gate = c3.gate_table(rep, gates, held)
    detail = c3.effects_detail(c3.differences(small_runs, [0, 1, 2], gates))
    effects = c3.effects_table(rep, detail, gates)
    points = c3.regime_points(gate, detail, effects)
    tables = [gate, c3.gate_wide(gate)[0], c3.gate_floor(gate), effects, points, detail,
              c3.design_summary(small_runs, effects, {d: {"design": d} for d in held})]
    for t in tables:
        strings = [c for c in t.columns if not (pd.api.types.is_numeric_dtype(t[c]) or pd.api.types.is_bool_dtype(t[c])
                                                 or t[c].isin(records.VERDICTS).all())]
        assert set(strings) <= {"corpus", "family", "design", "statistic", "outcome"}
    claims = {c.id: c for c in rep.claims}
    for (c, a, d), row in effects.iterrows():
        assert row["gate"] == claims[f"C3x.stabilises[{c}:{a}:{d}]"].verdict
        assert (row["gate"] == "supported") == gate.loc[(c, a, d), "stabilises"]
        assert row["C3"] == claims[f"C3x[{c}:{a}:{d}]"].verdict
        diff = small_runs[c, a, d]["gen_entropy"] - small_runs[c, a, "off"]["gen_entropy"]
        lo, hi = stats.mean_interval(diff)
        assert row["ΔH"] == diff.mean() and row[c3.excludes_zero("ΔH")] == (lo > 0 or hi < 0)
    assert effects["ΔKL→"].notna().all()  # the Markov source has the KL rates
    wide, bold = c3.gate_wide(gate)
    assert list(wide.index) == list(held) and all(wide[f].dtype == bool for f in bold.values())
    assert (gate["lo"] <= gate["log10 var ratio"]).all() and (gate["log10 var ratio"] <= gate["hi"]).all()
    html = records.style(effects, fmt="{:+.3f}", bold=c3.EFFECT_BOLD).to_html()  # the flags decide bold, hidden
    assert "excludes 0" not in html
    assert ("font-weight: bold" in html) == bool(effects[list(c3.EFFECT_BOLD.values())].to_numpy().any())


def test_c3_task_seeds_are_independent():
    """A seed's numbers do not depend on the other seeds (the sweep caches seed by seed)."""
    cfg = {"corpus": "markov", "arch": "gru", "label": "sc", "spec": {"design": "self_consume", "n_samples": 4,
                                                                       "length": 8}}
    kw = {**smoke_context(NB, c3.c3_task, device="cpu", plugin_code=""), "steps": 20, "eval_every": 2}
    both = c3.c3_task(cfg, [3, 4], **kw)
    one = c3.c3_task(cfg, [4], **kw)
    for k in ["gen_entropy", "seq_rep4_greedy", "heldout_ce", "stat_gen_entropy", "stat_tf_entropy"]:
        np.testing.assert_allclose(both[k][1], one[k][0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- records
def test_joint_record_holds_only_when_every_part_holds():
    rep = records.Report("t", {}, [0])
    base = np.zeros(6)
    good = rep.joint("J[a]", "both", [
        {"name": "down", "treated": -1 - 0.1 * np.arange(6), "baseline": base, "threshold": 0.0, "comparator": "<"},
        {"name": "up", "treated": 0.05 + 0.01 * np.arange(6), "baseline": base, "threshold": 0.0, "comparator": ">"}])
    assert good.holds and good.rule == "joint" and len(good.parts) == 2
    assert good.worst == "up"  # the smaller standardised margin
    bad = rep.joint("J[b]", "both", [
        {"name": "down", "treated": -1 - 0.1 * np.arange(6), "baseline": base, "threshold": 0.0, "comparator": "<"},
        {"name": "up", "treated": np.array([-1, 1, -1, 1, -1, 1.2]), "baseline": base, "threshold": 0.0,
         "comparator": ">"}])
    assert not bad.holds and bad.worst == "up" and bad.interval[0] < 0
    agg = rep.aggregate("J", "all", [good, bad])
    assert not agg.holds and agg.worst == "J[b]"
    assert rep.aggregate("J2", "all", [good]).holds


# ---------------------------------------------------------------- a design from outside the package
PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass
    from stabliab import feedback

    @feedback.register("damped")
    class Damped(feedback.Design):
        """Maximum likelihood at half the loss: a design written outside the package."""
        statistic = "data_ce"
        prediction = "slower learning"

        @dataclass
        class Params:
            start: int = 0
            factor: float = 0.5

        def loss(self, params, step, batch):
            ce = super().loss(params, step, batch)
            return ce * self.p.factor if self.active(step) else ce
''')


def test_a_new_design_registers_and_runs_through_the_smoke_notebook(tmp_path):
    """In a copy of its own: its run of notebook 03 replaces the smoke results other tests read."""
    from stabliab import runner
    repo = copy_repo(tmp_path / "repo")
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "my_designs.py").write_text(PLUGIN)
    name = "03_cross_seed_repetition"
    env = {**os.environ, "STABLIAB_PROGRESS": "0", "PYTHONPATH": f"{plug}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([str(Path(sys.executable).parent / "stabliab"), "--root", str(repo), "run", name, "--profile",
                        "smoke", "-p", "designs", '["damped", "hold_entropy", "self_consume", "logit_hold"]',
                        "-p", "plugins", '["my_designs"]', "-p", "design_specs", '{"damped": {"design": "damped", "factor": 0.25}}'],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(runner.results_path(repo, "smoke", name).read_text())
    ids = {c["id"] for c in res["claims"]}
    corpus, arch = res["parameters"]["corpora"][0], res["parameters"]["archs"][0]
    assert f"C3x.stabilises[{corpus}:{arch}:damped]" in ids and f"C3x[{corpus}:{arch}:damped]" in ids


def test_plugin_hash_follows_the_plugin_source(tmp_path, monkeypatch):
    (tmp_path / "plug_h.py").write_text(PLUGIN.replace('"damped"', '"damped_h"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = feedback.plugin_hash(["plug_h"])
    assert "damped_h" in feedback.DESIGNS and before == feedback.plugin_hash(["plug_h"])
    (tmp_path / "plug_h.py").write_text(PLUGIN.replace('"damped"', '"damped_h"').replace("0.5", "0.4"))
    assert feedback.plugin_hash(["plug_h"]) != before
    assert feedback.plugin_hash([]) == feedback.plugin_hash([])


def test_plateau_and_posthoc_tables_of_the_small_runs(small_runs):
    """C3x.plateau is the share of runs the plateau test passes (a diagnostic); the post-hoc table counts
    the combinations gated with the settling time as the gate records do, and without it from the
    whole-window ratios, and decides C3[corpus] either way with records.combine."""
    held = {d: feedback.make(d).statistic for d in ["hold_entropy", "hold_spread", "logit_hold"]}
    start = c3.acting_start(SMALL["steps"], SMALL["start_frac"])
    rep = records.Report("t", {}, [0, 1, 2])
    gates = c3.gate_statistics(small_runs, ["markov"], ["mlp"], held, start, SETTLE)
    c3.write_records(rep, small_runs, gates, held, start, 2.0, SETTLE)
    table = c3.plateau_runs(small_runs, [0, 1, 2])
    assert len(table) == 3 * len(small_runs) and table["at_plateau"].dtype == bool
    steps, y = c3.series(small_runs["markov", "mlp", "off"], "data_ce")
    assert table.loc[("markov", "mlp", "off", 1), "slope"] == pytest.approx(
        plateau.measure(steps, y[1], tol=c3.PLATEAU_TOL)["slope"])
    summary = c3.plateau_records(rep, table)
    c = {c.id: c for c in rep.claims}["C3x.plateau"]
    assert c.kind == "diagnostic" and c.n == len(table) and c.value == pytest.approx(table["at_plateau"].mean())
    assert summary.loc[("markov", "mlp"), "runs"] == len(table)
    post = c3.posthoc_table(rep, gates).loc["markov"]
    claims = {c.id: c for c in rep.claims}
    gated = [d for d in held if claims[f"C3x.stabilises[markov:mlp:{d}]"].holds]
    assert post["gated, with settling time"] == len(gated) and post["combinations"] == len(held)
    assert post["all gated give C3x, with settling time"] == records.combine(claims[f"C3x[markov:mlp:{d}]"].verdict
                                                                            for d in gated)
    whole = [d for d in held if stats.mean_interval(gates["markov", "mlp", d]["whole"])[1] < 0
             and np.ptp(gates["markov", "mlp", d]["whole"]) > 0]  # the paired rule: all-equal ratios not from 3 seeds
    assert post["gated, whole acting window"] == len(whole)
    assert post["all gated give C3x, whole acting window"] == records.combine(claims[f"C3x[markov:mlp:{d}]"].verdict
                                                                             for d in whole)

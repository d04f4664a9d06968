"""Claim C2's room (experiments/c2.py), with the smoke profile's parameters of notebook 02."""
import inspect

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import smoke_parameters

from stabliab import records, train
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
    assert row["holds"] == (row["hi"] < P["ratio_threshold"]) and not row["holds"]
    assert table.dtypes["holds"] == bool and report.metrics["c2_early_table"][0]["holds"] is False


def test_memorise_table_holds_numbers_and_the_records_values(report, src):
    H, (N0, N1) = src.entropy_rate, (min(P["n_values"]), max(P["n_values"]))
    runs = {(a, N): {"traj": fake_trajectory([[H + 0.5] * 2], [[H] * 2], [[0.3, 0.5]]), "h_final": np.array(h) * H}
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

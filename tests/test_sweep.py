"""The sweep engine (executors, cache, resume, failures), the C4 measures and the
rank-correlation helpers."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps


from stabliab import io, measures, stats, sweep
from stabliab.experiments import c1, c4

from conftest import smoke_context

CONTEXT = smoke_context("04_stability_vs_expressivity", c4.c4_task, device="cpu")  # the smoke profile's values
CONFIGS = sweep.space_filling({"lr": ("log", 0.001, 0.3), "batch": ("int-log", 4, 16), "n_train": ("int-log", 8, 32),
                               "weight_decay": ("lin", 0.0, 0.1), "label_smoothing": ("lin", 0.0, 0.2),
                               "clip": ("choice", [0.0, 1.0]), "ema": ("choice", [0.0, 0.9]),
                               "warmup": ("lin", 0.0, 0.3), "source": ("choice", ["dense", "sparse"])}, 4, seed=1)


def test_designs_cover_their_space_and_are_seeded():
    space = {"lr": ("log", 1e-3, 1.0), "n": ("int-log", 8, 512), "c": ("choice", ["a", "b"])}
    for method in ["sobol", "lhs"]:
        d = sweep.space_filling(space, 64, seed=3, method=method)
        assert d == sweep.space_filling(space, 64, seed=3, method=method)
        lr = np.array([c["lr"] for c in d])
        assert lr.min() >= 1e-3 and lr.max() <= 1.0 and np.log10(lr).std() > 0.7  # spread on the log scale
        assert {c["c"] for c in d} == {"a", "b"} and all(8 <= c["n"] <= 512 for c in d)


def test_a_sobol_design_of_another_size_than_a_power_of_2_warns_through_the_runner_not_on_stderr(capsys,
                                                                                                tmp_path, monkeypatch):
    """scipy's UserWarning would land on a notebook's stderr and fail the strict build; io.warn goes to the
    runner's warnings file instead (its terminal), and the design is the sequence's first n points."""
    space = {"lr": ("log", 1e-3, 1.0), "n": ("int-log", 8, 512)}
    monkeypatch.setenv(io.WARNINGS, str(tmp_path / "warnings.txt"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any Python warning fails the test
        five = sweep.space_filling(space, 5, seed=3)
        eight = sweep.space_filling(space, 8, seed=3)
    assert five == eight[:5] and not capsys.readouterr().err
    said = (tmp_path / "warnings.txt").read_text().splitlines()
    assert len(said) == 1 and "5 configurations, not a power of 2" in said[0]


def _square(config, seeds, offset=0.0, marker=None):
    if marker:
        with open(marker, "a") as f:
            f.write(json.dumps({**config, "seeds": seeds}) + "\n")
    if config.get("fail"):
        raise ValueError(f"deliberate failure of {config['x']}")
    if config.get("sleep"):
        time.sleep(config["sleep"])
    return {"y": [config["x"] ** 2 + s + offset for s in seeds]}


def test_executors_give_identical_results_for_the_c4_task(tmp_path):
    res = {}
    for executor in ["local", "processes", "ray"]:
        out = sweep.run_sweep(c4.c4_task, CONFIGS, [0, 1], tmp_path / executor, executor=executor,
                              workers=2, context=CONTEXT)
        res[executor] = [r["result"] for r in out]
    assert len(res["local"]) == 4 and all(np.isfinite(r["forward_kl"]).all() for r in res["local"])
    assert res["processes"] == res["local"] and res["ray"] == res["local"]  # the same numbers to the last bit


def test_cached_configurations_are_not_recomputed_and_new_ones_are(tmp_path):
    marker = tmp_path / "ran.txt"
    cfgs = [{"x": i} for i in range(3)]
    sweep.run_sweep(_square, cfgs, [0, 1], tmp_path / "s", context={"marker": str(marker)})
    assert len(marker.read_text().splitlines()) == 3
    out = sweep.run_sweep(_square, cfgs + [{"x": 7}], [0, 1], tmp_path / "s", context={"marker": str(marker)})
    assert len(marker.read_text().splitlines()) == 4 and out[-1]["result"]["y"] == [49, 50]
    out = sweep.run_sweep(_square, cfgs, [0, 1, 2], tmp_path / "s", context={"marker": str(marker)})
    calls = [json.loads(ln) for ln in marker.read_text().splitlines()]
    assert len(calls) == 7 and all(c["seeds"] == [2] for c in calls[4:])  # more seeds: only the new seed ran
    assert [r["result"]["y"] for r in out] == [[i * i, i * i + 1, i * i + 2] for i in range(3)]


def test_a_task_must_return_one_value_per_seed(tmp_path):
    with pytest.raises(sweep.SweepError, match="not one per seed"):
        sweep.run_sweep(lambda c, s: {"y": 1.0}, [{"x": 1}], [0, 1], tmp_path)


def test_a_killed_sweep_resumes_and_computes_only_the_rest(tmp_path):
    out_dir, marker = tmp_path / "s", tmp_path / "ran.txt"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from stabliab import sweep\nfrom test_sweep import _square\n"
            f"sweep.run_sweep(_square, [{{'x': i, 'sleep': 0.5}} for i in range(8)], [0], {str(out_dir)!r},"
            f" context={{'marker': {str(marker)!r}}})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "STABLIAB_PROGRESS": "0"})
    deadline = time.time() + 60
    while len(list(out_dir.glob("*.json"))) < 3 and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(out_dir.glob("*.json")))
    assert 3 <= done < 8
    marker.write_text("")
    out = sweep.run_sweep(_square, [{"x": i, "sleep": 0.5} for i in range(8)], [0], out_dir,
                          context={"marker": str(marker)})
    assert len(marker.read_text().splitlines()) == 8 - done  # only the rest ran
    assert [r["result"]["y"] for r in out] == [[i * i] for i in range(8)]


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_a_failing_configuration_is_named_and_the_others_are_kept(tmp_path, executor):
    cfgs = [{"x": 1}, {"x": 2, "fail": True}, {"x": 3}]
    with pytest.raises(sweep.SweepError) as e:
        sweep.run_sweep(_square, cfgs, [0], tmp_path, executor=executor, workers=2)
    assert '"x": 2' in str(e.value) and "deliberate failure of 2" in str(e.value)
    kept = [json.loads(p.read_text())["config"]["x"] for p in tmp_path.glob("*.json")]
    assert sorted(kept) == [1, 3]


def test_unknown_executor_is_refused(tmp_path):
    with pytest.raises(ValueError, match="executor"):
        sweep.run_sweep(_square, [{"x": 1}], [0], tmp_path, executor="slurm")


# ---------------------------------------------------------------- correlations
def test_spearman_and_partial_spearman_against_scipy_and_the_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(size=200)
    x, y = z + rng.normal(size=200), z ** 3 + rng.normal(size=200)
    assert stats.spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    rxy, rxz, ryz = (sps.spearmanr(a, b).statistic for a, b in [(x, y), (x, z), (y, z)])
    formula = (rxy - rxz * ryz) / np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
    assert stats.partial_spearman(x, y, z) == pytest.approx(formula, abs=1e-12)
    assert abs(stats.partial_spearman(x, y, z)) < 0.5 * abs(rxy)  # z explains most of it


def test_the_vectorised_rank_correlations_are_spearman_and_partial_spearman_row_by_row():
    rng = np.random.default_rng(7)
    X, Y, Z = rng.normal(size=(3, 50, 9))
    Y = Y + X  # correlated rows
    X[0, :3] = X[0, 3]  # ties
    rows = stats._rank_corr_rows(X, Y)
    part = stats._rank_corr_rows(X, Y, Z)
    for b in range(len(X)):
        assert rows[b] == pytest.approx(stats.spearman(X[b], Y[b]), abs=1e-12)
        assert part[b] == pytest.approx(stats.partial_spearman(X[b], Y[b], Z[b]), abs=1e-12)
    assert np.isnan(stats._rank_corr_rows(np.ones((1, 5)), Y[:1, :5]))[0]  # a constant row: undefined


def test_rank_bootstrap_covers_and_shrinks():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    Y = X + rng.normal(scale=0.5, size=(40, 5))
    v, (lo, hi) = stats.rank_bootstrap(X, Y, n_boot=500, seed=0)
    assert lo < v < hi and lo > 0.5
    v0, (lo0, hi0) = stats.rank_bootstrap(X, rng.normal(size=(40, 5)), n_boot=500, seed=0)
    assert lo0 < 0 < hi0


# ---------------------------------------------------------------- measures with known answers
def test_stability_and_quality_measures_on_known_cases():
    t = np.arange(20.0)
    assert measures.detrended_std(np.stack([3 * t + 1, -t], 1)) == pytest.approx([0.0, 0.0], abs=1e-12)
    alt = np.where(np.arange(20) % 2, 1.0, -1.0)
    assert measures.detrended_std(2 * t + alt) == pytest.approx(1.0, rel=0.06)
    p, q = np.array([0.5, 0.5, 0.0, 0.0]), np.array([0.0, 0.0, 0.5, 0.5])
    assert measures.js_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    assert measures.js_divergence(p, q) == pytest.approx(np.log(2), abs=1e-15)


# ---------------------------------------------------------------------- parallel_map
def _boom(x):
    if x == 2:
        raise ValueError("two is refused")
    return x * x


def test_parallel_map_gives_the_local_numbers_in_order_for_c1_standard_training():
    """A training run through a spawned pool returns what it returns in this process (one torch
    thread each), in the order of the items."""
    kw = smoke_context("01_forward_kl_stationarity", c1.standard_training, seeds=[0, 1], device="cpu",
                       std_steps=30, adamw_lrs=[0.01, 0.1], sgd_lrs=[0.5], batch_sizes=[4])
    out = {ex: c1.standard_training(**{**kw, "executor": ex, "workers": 2}) for ex in ["local", "processes"]}
    pd.testing.assert_frame_equal(out["local"], out["processes"])
    assert list(out["local"].lr.unique()) == [0.01, 0.1, 0.5]


def test_parallel_map_in_this_process_restores_the_thread_count():
    keep = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert sweep.parallel_map(torch.get_num_threads, [(), ()], executor="local", threads=1) == [1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(keep)


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_parallel_map_names_the_failed_item_after_the_others(executor):
    with pytest.raises(sweep.SweepError, match="two is refused") as e:
        sweep.parallel_map(_boom, [(1,), (2,), (3,)], executor=executor, workers=2)
    assert [c for c, _ in e.value.failed] == [{"item": 1}]
    assert sweep.parallel_map(_boom, [(1,), (3,)], executor=executor, workers=2) == [1, 9]


def test_parallel_map_refuses_an_unknown_executor():
    with pytest.raises(ValueError, match="executor"):
        sweep.parallel_map(_boom, [(1,)], executor="slurm")


def _die(x):
    if x == 1:
        os._exit(3)  # a worker killed mid-call (out of memory, a signal)
    return x


def test_parallel_map_names_an_item_whose_worker_died():
    with pytest.raises(sweep.SweepError, match="BrokenProcessPool") as e:
        sweep.parallel_map(_die, [(0,), (1,)], executor="processes", workers=1)
    assert {"item": 1} in [c for c, _ in e.value.failed]


CALLS = []


def _double(x):  # a module-level function for parallel_map, remembering the order of its calls
    CALLS.append(x)
    return 2 * x


def test_parallel_map_starts_the_costliest_first_and_returns_in_order():
    """cost orders the calls (decreasing, ties in the items' order), never the results; one cost per item."""
    CALLS.clear()
    assert sweep.parallel_map(_double, [(1,), (2,), (3,), (4,)], executor="local", cost=[1, 3, 1, 2]) == [2, 4, 6, 8]
    assert CALLS == [2, 4, 1, 3]
    with pytest.raises(ValueError, match="one number per item"):
        sweep.parallel_map(_double, [(1,), (2,)], cost=[1])

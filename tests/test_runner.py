"""The runner end to end on a throw-away copy of the repository (smoke profile)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from stabliab import book, calibrate, io, params, runner
from stabliab.cli import main as cli_main

from conftest import copy_repo

NB = "01_forward_kl_stationarity"
BIN = Path(sys.executable).parent


def cli(root, *args):
    return subprocess.run([str(BIN / "stabliab"), "--root", str(root), *args], capture_output=True, text=True,
                          env={**os.environ, "STABLIAB_PROGRESS": "0"}, timeout=600)


# ---------------------------------------------------------------- parameters (no execution)
SRC = textwrap.dedent('''
    # %% [markdown]
    # hi
    # %% tags=["parameters"]
    seed = 0  # in [0, 100]: first seed
    lr = 0.5  # in (0, 1): step size
    arch = "gru"  # one of {mlp, gru, transformer}
    fracs = [0.5, 0.9]  # in (0, 1): fractions
    flag = True
    # %%
    print(seed)
''')


def test_command_line_values_use_yaml_12_booleans():
    assert params.parse_value("off") == "off" and params.parse_value("[off, self]") == ["off", "self"]
    assert params.parse_value("true") is True and params.parse_value("3") == 3
    assert params.parse_value("0.5") == 0.5 and params.parse_value("[0.1, 1]") == [0.1, 1]


def test_parse_parameters_reads_defaults_and_constraints():
    specs = params.parse_parameters(SRC)
    assert list(specs) == ["seed", "lr", "arch", "fracs", "flag"]
    assert specs["seed"].check(7) == 7
    assert specs["lr"].check(0.25) == 0.25
    assert specs["lr"].allowed() == "a number in (0, 1)"
    assert specs["arch"].choices == ("mlp", "gru", "transformer")
    assert specs["fracs"].check([0.1, 0.2]) == [0.1, 0.2]


@pytest.mark.parametrize("name,value,needle", [
    ("seed", 1.5, "integer"), ("seed", -1, "out of range"), ("lr", 1.0, "out of range"),
    ("lr", "fast", "number"), ("arch", "lstm", "one of {mlp, gru, transformer}"),
    ("fracs", [0.5, 2.0], "out of range"), ("fracs", 0.5, "list"), ("flag", 1, "true or false"),
])
def test_bad_values_name_the_parameter_and_what_is_allowed(name, value, needle):
    with pytest.raises(params.ParameterError) as e:
        params.parse_parameters(SRC)[name].check(value)
    assert repr(name) in str(e.value) and needle in str(e.value)
    assert "\n" not in str(e.value)


def test_every_profile_is_valid_for_every_notebook(repo):
    for profile in params.PROFILES:
        for name in book.toc_notebooks(repo):
            params.resolve_parameters(repo, name, profile)


# ---------------------------------------------------------------- execution
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Notebook 01 with -p seed 3, in a copy of its own (the shared `repo` holds the smoke book's runs; this
    one edits its package, and under pytest-xdist it runs beside that copy's tests)."""
    repo = copy_repo(tmp_path_factory.mktemp("runner"))
    r = cli(repo, "run", NB, "--profile", "smoke", "-p", "seed", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    return repo, r


def test_smoke_run_writes_results_whose_c1_holds(smoke_run):
    repo, r = smoke_run
    res = json.loads(runner.results_path(repo, "smoke", NB).read_text())
    assert res["notebook"] == NB and res["profile"] == "smoke"
    assert res["parameters"]["seed"] == 3
    assert res["manifest"]["seeds"] == [3, 4]
    for key in ["git_commit", "source_hash", "started", "seconds", "python", "torch", "device", "precision"]:
        assert key in res["manifest"]
    assert res["parameters"]["device"] == "auto"
    assert res["manifest"]["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    cal = res["manifest"]["calibration"]  # the machine's calibration figure (stabliab.calibrate), measured once
    assert cal["from"] == os.environ[io.CALIBRATION]  # for the session (conftest), read from its file
    assert cal["matmul_gflops_worst"] <= cal["matmul_gflops"] <= cal["matmul_gflops_best"] and cal["train_step_ms"] > 0
    assert cal["speed_vs_reference"] == pytest.approx(cal["matmul_gflops"] / calibrate.REFERENCE_GFLOPS, abs=2e-3)
    claims = {c["id"]: c for c in res["claims"]}
    assert claims["C1"]["holds"] and claims["C1.identity"]["holds"] and claims["C1.unstable"]["holds"]
    assert claims["C1"]["interval"][1] < claims["C1"]["threshold"]
    nb = json.loads(runner.executed_path(repo, "smoke", NB).read_text())
    assert nb["metadata"]["stabliab"]["cache_key"] == res["manifest"]["cache_key"]
    assert "ran in" in r.stdout and NB in r.stdout


def test_unchanged_rerun_is_skipped_and_source_edits_make_it_stale(smoke_run, monkeypatch):
    repo, _ = smoke_run
    written = runner.results_path(repo, "smoke", NB).stat().st_mtime_ns
    r = cli(repo, "run", NB, "--profile", "smoke", "-p", "seed", "3")
    assert r.returncode == 0 and "cached" in r.stdout
    assert runner.results_path(repo, "smoke", NB).stat().st_mtime_ns == written  # nothing was executed or rewritten
    resolved = params.resolve_parameters(repo, NB, "smoke", {"seed": 3})
    key = runner.cache_key(repo, NB, resolved, "smoke")
    assert runner.is_cached(repo, NB, "smoke", key)
    assert not runner.is_cached(repo, NB, "smoke", runner.cache_key(repo, NB, {**resolved, "seed": 4}, "smoke"))
    # the key hashes the package the kernel imports (io.PACKAGE); point it at the copy's identical one to edit it
    monkeypatch.setattr(io, "PACKAGE", repo / "src" / "stabliab")
    assert runner.is_cached(repo, NB, "smoke", runner.cache_key(repo, NB, resolved, "smoke"))
    lib = repo / "src" / "stabliab" / "measures.py"
    original = lib.read_text()
    try:
        lib.write_text(original + "\n# an edit\n")
        assert not runner.is_cached(repo, NB, "smoke", runner.cache_key(repo, NB, resolved, "smoke"))
    finally:
        lib.write_text(original)
    assert runner.is_cached(repo, NB, "smoke", runner.cache_key(repo, NB, resolved, "smoke"))


@pytest.mark.parametrize("args,needle", [
    (["-p", "nope", "1"], "unknown parameter 'nope'"),
    (["-p", "n_seeds", "two"], "parameter 'n_seeds'"),
    (["-p", "rank", "0"], "out of range"),
    (["-p", "lr_fractions", "[0.5, 1.5]"], "out of range"),
    (["--profile", "huge"], "unknown profile 'huge'"),
    (["-p", "device", "gpu"], "parameter 'device'"),
] + ([] if torch.cuda.is_available() else [(["-p", "device", "cuda"], "parameter 'device'")]))
def test_bad_parameters_exit_2_with_one_line_and_leave_results_intact(smoke_run, args, needle, capsys):
    """The command line in this process (cli.main; the subprocess path is smoke_run's)."""
    repo, _ = smoke_run
    res = runner.results_path(repo, "smoke", NB)
    before = (res.read_bytes(), res.stat().st_mtime_ns)
    argv = ["run", NB, "--profile", "smoke", *args] if "--profile" not in args else ["run", NB, *args]
    code = cli_main(["--root", str(repo), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1
    assert (res.read_bytes(), res.stat().st_mtime_ns) == before


def test_a_bad_parameter_through_the_command_exits_2_with_one_line(smoke_run):
    """One case of the above through the installed command, in a process of its own: exit code 2 and a
    single line on stderr (no warning or traceback from starting up)."""
    repo, _ = smoke_run
    r = cli(repo, "run", NB, "--profile", "smoke", "-p", "nope", "1")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "unknown parameter 'nope'" in r.stderr


def test_plain_papermill_on_the_executed_notebook(smoke_run, tmp_path):
    repo, _ = smoke_run
    out = tmp_path / "out.ipynb"
    # papermill replaces the runner's injected cell: pass the smoke parameters again (seed 3, as smoke_run did)
    smoke = {k: v for k, v in params.resolve_parameters(repo, NB, "smoke", {"seed": 3}).items()}
    r = subprocess.run([str(BIN / "papermill"), str(runner.executed_path(repo, "smoke", NB)), str(out),
                        "-y", json.dumps(smoke), "-k", "python3", "--cwd", str(tmp_path)],
                       capture_output=True, text=True, env={**os.environ, "STABLIAB_PROGRESS": "0"}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "results" / "adhoc" / f"{NB}.json").read_text())
    assert res["manifest"]["seeds"] == [3, 4]
    ran = json.loads(runner.results_path(repo, "smoke", NB).read_text())  # the runner's run, same parameters
    assert [(c["id"], c["verdict"]) for c in res["claims"]] == [(c["id"], c["verdict"]) for c in ran["claims"]]
    for a, b in zip(res["claims"], ran["claims"]):  # a NaN is stored as the string "nan"
        assert a["value"] == b["value"] if isinstance(b["value"], str) else a["value"] == pytest.approx(
            b["value"], rel=1e-6, abs=1e-9)
    assert not any(c["exploratory"] for c in res["claims"])  # no pre-registered value was changed


def test_a_notebook_that_raises_makes_book_fail(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "src" / "stabliab").mkdir(parents=True)
    (tmp_path / "profiles" / "smoke.yaml").write_text("notebooks: {}\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       "  - file: book/generated/99_broken\n")
    (tmp_path / "notebooks" / "99_broken.py").write_text(
        '# %% tags=["parameters"]\nx = 1  # in [0, 5]: a value\n\n# %%\nprint("fine")\n\n'
        '# %%\nraise ValueError("deliberate failure")\n')
    r = cli(tmp_path, "book", "--profile", "smoke")
    assert r.returncode == 1
    assert "99_broken" in r.stderr and "cell" in r.stderr and "deliberate failure" in r.stderr
    assert not runner.results_path(tmp_path, "smoke", "99_broken").exists()
    assert not (tmp_path / "_build").exists()

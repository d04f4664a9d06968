"""The book as an artifact: per-profile caches, locks and clean interruption, the
reader's view, verdict files and `stabliab diff`, the workflow, and what a browser shows."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from stabliab import book, runner
from stabliab.cli import main as cli_main

from conftest import ROOT

BIN = Path(sys.executable).parent
NB = "01_forward_kl_stationarity"


def cli(root, *args, env=None, timeout=600, **kw):
    return subprocess.run([str(BIN / "stabliab"), "--root", str(root), *args], capture_output=True, text=True,
                          env={**os.environ, "STABLIAB_PROGRESS": "0", **(env or {})}, timeout=timeout, **kw)


def tiny_repo(path: Path, body: str, parameters: str = "secs = 0.0  # in [0, 600]: seconds to sleep\n") -> Path:
    """A repository with one notebook 99_tiny: `parameters` (by default `secs`, which TINY
    sleeps for) as its parameters cell, then `body`."""
    for d in ["notebooks", "profiles", "src/stabliab"]:
        (path / d).mkdir(parents=True, exist_ok=True)
    (path / "profiles" / "smoke.yaml").write_text("notebooks: {}\n")
    (path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/generated/99_tiny\n")
    (path / "notebooks" / "99_tiny.py").write_text('# %% tags=["parameters"]\n' + parameters + '\n# %%\n' + body)
    return path


TINY = ("import time\nfrom stabliab import records\ntime.sleep(secs)\n"
        "r = records.Report('99_tiny', {'secs': secs}, [0, 1])\nr.mean('T', 's', [1.0, 2.0], 0.0, '>')\nr.save()\n")


# ---------------------------------------------------------------- reader's view
def test_readers_view_removes_injected_parameters_and_collapses_code():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("plot()"),
                nbformat.v4.new_code_cell("shown()", metadata={"tags": ["show-input"]})]
    tags = [c.metadata.get("tags", []) for c in book.readers_view(nb).cells]
    assert tags[1] == ["parameters"] and "remove-cell" in tags[2] and tags[3] == ["hide-input"]
    assert tags[4] == ["show-input"] and tags[0] == []


# ---------------------------------------------------------------- caches, locks, interruption
def test_profiles_keep_their_own_executed_notebooks_and_caches(tmp_path):
    root = tiny_repo(tmp_path, TINY)
    (root / "profiles" / "other.yaml").write_text("notebooks:\n  99_tiny:\n    secs: 0.1\n")
    assert "ran in" in cli(root, "run", "99_tiny", "--profile", "smoke").stdout
    assert "ran in" in cli(root, "run", "99_tiny", "--profile", "other").stdout
    for p in ["smoke", "other"]:
        assert runner.executed_path(root, p, "99_tiny").is_file() and runner.results_path(root, p, "99_tiny").is_file()
    assert "cached" in cli(root, "run", "99_tiny", "--profile", "smoke").stdout  # 'other' did not invalidate it
    r = cli(root, "book", "--profile", "smoke", "--no-build")
    assert r.returncode == 0 and r.stdout.strip().splitlines() == ["99_tiny: cached"]  # one line, no kernel noise
    placed = nbformat.read(book.generated_path(root, "99_tiny"), as_version=4)
    assert placed.metadata["stabliab"]["profile"] == "smoke"


def test_a_second_run_waits_for_the_lock_or_exits_3(tmp_path):
    root = tiny_repo(tmp_path, TINY)
    lk = runner.lock(root, "smoke", "99_tiny")
    try:
        r = cli(root, "run", "99_tiny", "--profile", "smoke", "--no-wait")
        assert r.returncode == 3 and "another run of 99_tiny" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        proc = subprocess.Popen([str(BIN / "stabliab"), "--root", str(root), "run", "99_tiny", "--profile", "smoke"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # said at once, then it waits
        time.sleep(1)
        assert "waiting for another run" in first and proc.poll() is None  # still waiting
    finally:
        lk.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "ran in" in out


PAIR = ("import time, torch\nfrom stabliab import records\nfrom stabliab.device import setup\nsetup('cpu')\n"
        "t0 = time.time()\ntime.sleep(secs)\nr = records.Report(NAME, {'secs': secs}, [0, 1])\n"
        "r.mean('T', 's', [1.0, 2.0], 0.0, '>')\nr.metric('threads', torch.get_num_threads(), glue_it=False)\n"
        "r.metric('t0', t0, glue_it=False)\nr.metric('t1', time.time(), glue_it=False)\nr.save()\n")


def jobs_repo(path: Path, secs: dict[str, float]) -> Path:
    """A repository whose toc holds the notebooks of `secs`, each sleeping its seconds (PAIR: it records when,
    and its torch threads), and whose smoke profile runs two at a time with one torch thread each."""
    root = tiny_repo(path, "")
    names = list(secs)
    for n in names:
        (root / "notebooks" / f"{n}.py").write_text(f'# %% tags=["parameters"]\nsecs = {secs[n]}  # in [0, 600]: '
                                                   f'seconds\n\n# %%\nNAME = "{n}"\n' + PAIR)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n" +
                                   "".join(f"  - file: book/generated/{n}\n" for n in names))
    (root / "profiles" / "smoke.yaml").write_text("jobs: 2\nthreads: 1\nnotebooks: {}\n")
    return root


def test_a_book_of_jobs_2_runs_two_notebooks_at_a_time_and_stops_at_a_failure(tmp_path):
    """The profile's jobs: never more than two notebooks at once, each kernel with the profile's torch threads,
    the lines in the toc's order. A notebook that raises fails the book (exit 1, named): the run under way
    ends and is kept, the one not yet started does not start (its last results untouched)."""
    names = ["97_a", "98_b", "99_c"]
    root = jobs_repo(tmp_path, {"97_a": 8.0, "98_b": 0.0, "99_c": 6.0})  # the rerun starts the longest first
    (root / "profiles" / "smoke.yaml").write_text("jobs: 2\nthreads: 1\nfirst: [99_c]\nnotebooks: {}\n")
    r = cli(root, "book", "--profile", "smoke", "--no-build")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [line.split(":")[0] for line in r.stdout.strip().splitlines()] == names
    res = {n: json.loads(runner.results_path(root, "smoke", n).read_text()) for n in names}
    spans = sorted((m["t0"], m["t1"], n) for n, m in ((n, res[n]["metrics"]) for n in names))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the first two at the same time
    assert spans[2][0] >= min(spans[0][1], spans[1][1])  # the third after one of them ended: two at most
    assert spans[2][2] == "98_b"  # no last results: the profile's `first` (99_c) and 97_a, then 98_b
    for n in names:
        assert res[n]["metrics"]["threads"] == 1 and res[n]["manifest"]["jobs"] == 2
    (root / "notebooks" / "97_a.py").write_text('# %% tags=["parameters"]\nsecs = 2.0  # in [0, 600]: seconds\n\n'
                                                '# %%\nraise ValueError("deliberate failure")\n')
    r = cli(root, "book", "--profile", "smoke", "--no-build", "--force")  # 97_a fails at once, 99_c is under way
    assert r.returncode == 1 and "97_a" in r.stderr and "deliberate failure" in r.stderr, r.stderr[-3000:]
    after = {n: json.loads(runner.results_path(root, "smoke", n).read_text()) for n in names}
    assert r.stdout.strip().splitlines()[0].startswith("99_c: ran in")
    assert after["99_c"]["metrics"]["t0"] > res["99_c"]["metrics"]["t1"]  # ran again, to its end
    assert after["97_a"] == res["97_a"] and after["98_b"] == res["98_b"]  # failed, and never started


def test_a_terminated_book_of_jobs_2_cleans_up_every_run(tmp_path):
    root = jobs_repo(tmp_path / "repo", {"98_a": 120.0, "99_b": 120.0})
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([str(BIN / "stabliab"), "--root", str(root), "book", "--profile", "smoke", "--no-build"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp), "STABLIAB_PROGRESS": "0"})
    deadline = time.time() + 60
    while len(list(tmp.glob("stabliab-*"))) < 2 and time.time() < deadline:  # both runs' work folders
        time.sleep(0.2)
    assert len(list(tmp.glob("stabliab-*"))) == 2, "the two runs never started"
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (proc.returncode, out, err[-3000:])
    time.sleep(1)
    assert not list(tmp.glob("stabliab-*")), "a temporary folder was left behind"
    assert not _kernels_under(tmp), "a kernel is still running"
    assert not any(runner.results_path(root, "smoke", n).exists() for n in ["98_a", "99_b"])


def _kernels_under(runtime: Path, kernel: bool = False) -> list[str]:
    """The command lines of the processes that name `runtime` (a run's watchdog, its kernel and what that
    starts); with `kernel`, the kernel's alone."""
    found = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = p.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(runtime) in cmd and (not kernel or "ipykernel" in cmd):
            found.append(cmd)
    return found


@pytest.mark.parametrize("how", ["ctrl-c", "failing cell"])
def test_an_interrupted_or_failed_run_cleans_up_and_keeps_the_last_good_results(tmp_path, how):
    root = tiny_repo(tmp_path / "repo", TINY if how == "ctrl-c" else TINY + "if secs > 0:\n    raise ValueError('x')\n")
    tmp = tmp_path / "tmp"  # the run's work folder and the kernel's connection file live here
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    assert cli(root, "run", "99_tiny", "--profile", "smoke", env=env).returncode == 0
    res, nb = runner.results_path(root, "smoke", "99_tiny"), runner.executed_path(root, "smoke", "99_tiny")
    before = (res.read_bytes(), nb.read_bytes())
    if how == "ctrl-c":
        proc = subprocess.Popen([str(BIN / "stabliab"), "--root", str(root), "run", "99_tiny", "--profile", "smoke",
                                 "-p", "secs", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **env})
        deadline = time.time() + 60
        while not _kernels_under(tmp, kernel=True) and time.time() < deadline:  # the kernel, not the watchdog
            time.sleep(0.5)
        assert _kernels_under(tmp, kernel=True), "the kernel never started"
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and err.strip().splitlines() == [
            "error: interrupted; the last good results and notebooks are untouched"], (proc.returncode, out, err)
    else:
        r = cli(root, "run", "99_tiny", "--profile", "smoke", "-p", "secs", "0.5", env=env)
        assert r.returncode == 1 and "ValueError" in r.stderr
    time.sleep(1)
    assert not list(tmp.glob("stabliab-*")), "the temporary folder was left behind"
    assert not _kernels_under(tmp), "a kernel is still running"
    assert (res.read_bytes(), nb.read_bytes()) == before


# ---------------------------------------------------------------- verdict files and diff
def _results(tmp_path, name, claims):
    p = tmp_path / name
    p.write_text(json.dumps({"notebook": "nb", "claims": claims}))
    return p


def _diff(capsys, old, new):
    """`stabliab diff OLD NEW` in this process: (exit code, stdout)."""
    code = cli_main(["diff", old, new])
    return code, capsys.readouterr().out


def test_diff_reports_flips_moves_and_exits_1_on_a_flip(tmp_path, capsys):
    """cli.main in this process for each comparison; the last one through the installed command."""
    rec = lambda id, v, h: {"id": id, "value": v, "holds": h}  # noqa: E731
    old = _results(tmp_path, "old.json", [rec("A", 1.0, True), rec("B", 1.0, True), rec("C", 1.0, True)])
    same = _results(tmp_path, "same.json", [rec("A", 1.01, True), rec("B", 1.0, True), rec("C", 1.0, True)])
    moved = _results(tmp_path, "moved.json", [rec("A", 1.5, True), rec("B", 1.0, True), rec("C", 1.0, True)])
    flip = _results(tmp_path, "flip.json", [rec("A", 1.0, True), rec("B", 0.9, False), rec("D", 1.0, True)])
    code, out = _diff(capsys, str(old), str(same))
    assert code == 0 and "no verdict flipped" in out
    code, out = _diff(capsys, str(old), str(moved))
    assert code == 0 and "nb A: value moved 1 -> 1.5" in out
    code, out = _diff(capsys, str(old), str(flip))
    assert code == 1
    assert "nb B: verdict flipped supported -> inconclusive" in out and "nb C: only in OLD" in out
    assert "nb D: only in NEW" in out
    three = _results(tmp_path, "three.json", [{"id": "A", "value": 1.0, "verdict": "contradicted"},
                                              {"id": "B", "value": 1.0, "verdict": "inconclusive"},
                                              {"id": "C", "value": "nan", "verdict": "untestable"}])
    code, out = _diff(capsys, str(flip), str(three))  # any change of state is a flip
    assert code == 1 and "nb A: verdict flipped supported -> contradicted" in out
    assert "nb B: verdict flipped" not in out
    site = tmp_path / "claims.json"  # the published form: {"notebooks": {name: results}}
    site.write_text(json.dumps({"profile": "x", "notebooks": {"nb": json.loads(old.read_text())}}))
    assert cli(tmp_path, "diff", str(site), str(old)).returncode == 0


def test_workflow_is_valid_against_the_github_schema():
    wf = ROOT / ".github" / "workflows" / "book.yml"
    r = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(wf)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    text = wf.read_text()
    for needle in ["make test", "make book", "actions/upload-pages-artifact", "actions/deploy-pages", "self-hosted",
                   "workflow_dispatch"]:
        assert needle in text


def test_stderr_left_in_a_notebook_fails_the_strict_build_naming_the_page(tmp_path):
    root = tiny_repo(tmp_path, TINY + "import sys\nprint('something went to stderr', file=sys.stderr)\n")
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    (root / "book").mkdir()
    shutil.copy(ROOT / "book" / "references.bib", root / "book" / "references.bib")
    (root / "book" / "intro.md").write_text("# Intro\n\nA page.\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/generated/99_tiny\n"
                                   "  - file: book/claims\n")
    r = cli(root, "book", "--profile", "smoke")
    assert r.returncode == 1
    assert "warnings are errors" in r.stderr and "99_tiny" in r.stderr and "stderr" in r.stderr.lower()

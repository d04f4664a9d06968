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

from stabliab import book, records, runner
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


def _kernels_under(runtime: Path) -> list[str]:
    found = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = p.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(runtime) in cmd:
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
        while not _kernels_under(tmp) and time.time() < deadline:
            time.sleep(0.5)
        assert _kernels_under(tmp), "the kernel never started"
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


# ---------------------------------------------------------------- the built book, in a browser
def _chromium():
    for exe in ["chromium", "chromium-browser", "google-chrome"]:
        if shutil.which(exe):
            return shutil.which(exe)
    if os.environ.get("CI"):
        pytest.fail("no Chromium on PATH (.ci/run installs it)")
    pytest.skip("no Chromium on PATH")


@pytest.fixture(scope="module")
def smoke_book(repo):
    r = cli(repo, "book", "--profile", "smoke", timeout=1800)  # five smoke notebooks and the build: minutes
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(book.toc_notebooks(repo)) + 1 and "book: built" in lines[-1]  # one line per notebook
    return repo / "_build" / "html"


def test_the_site_carries_the_verdicts(smoke_book):
    data = json.loads((smoke_book / "claims.json").read_text())
    assert data["profile"] == "smoke" and set(data["notebooks"]) == set(book.toc_notebooks(smoke_book.parent.parent))
    for name, res in data["notebooks"].items():
        assert res["claims"] and "git_commit" in res["manifest"]
    html = (smoke_book / "book" / "claims.html").read_text()
    assert 'href="../claims.json"' in html
    for name, res in data["notebooks"].items():  # three-valued verdicts, exploratory flags, pre-registered values
        assert all(c["verdict"] in records.VERDICTS and isinstance(c["exploratory"], bool) for c in res["claims"])
        assert not res["manifest"]["confirmatory_seeds"] and isinstance(res["manifest"]["decisive"], dict)
        assert res["manifest"]["decisive"] and res["manifest"]["decisive_commit"]
    intro = (smoke_book / "book" / "intro.html").read_text()
    assert "Findings at a glance" in intro and all(f">{k}<" in intro for k in book.CLAIMS)
    for name in data["notebooks"]:  # the executed notebook is downloadable from its page
        assert (smoke_book / "_sources" / "book" / "generated" / f"{name}.ipynb").is_file()


def test_pages_render_offline_in_a_browser(smoke_book):
    from playwright.sync_api import sync_playwright
    pages = ["book/intro.html", "book/theory.html", "book/claims.html"] + \
        [f"book/generated/{n}.html" for n in book.toc_notebooks(smoke_book.parent.parent)]
    shots = os.environ.get("STABLIAB_SCREENSHOTS")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        remote = []
        page.route("**/*", lambda route: (route.continue_() if route.request.url.startswith("file:")
                                          else (remote.append(route.request.url), route.abort())))
        for rel in pages:
            page.goto((smoke_book / rel).as_uri(), wait_until="load")
            math = page.locator("span.math, div.math").count()
            if math:
                page.wait_for_function("document.querySelectorAll('mjx-container').length > 0", timeout=30_000)
                page.wait_for_timeout(500)
            text = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")
            assert "\\(" not in text and "\\[" not in text, f"raw TeX left on {rel}"
            assert "{glue" not in text and "{prf:" not in text, f"unrendered directive on {rel}"
            broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                                   ".map(i => i.src)")
            assert not broken, f"images that did not load on {rel}: {broken}"
            if "generated" in rel:
                assert page.locator("img").count() > 0, f"no figure on {rel}"
                assert "# Parameters" not in text, f"injected parameters shown on {rel}"
            if rel.endswith("claims.html"):
                assert page.locator("table").count() >= 2 and "✓" in text + "✗"
            if rel.endswith("theory.html"):
                assert math > 10
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(shots) / (Path(rel).stem + ".png")), full_page=False)
        browser.close()
    assert not remote, f"pages asked the network for {remote[:5]}"


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

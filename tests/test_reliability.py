"""Reliability (issue 17), drill by drill, each test able to fail: bad values refused where
they enter (run, profiles, plain papermill), unique design names, a diff that never crashes
on its own inputs, caches that heal, faults that end in one line and lose nothing finished,
and no process left behind when the runner is killed. Tiny synthetic notebooks only."""
import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import namedtuple
from pathlib import Path

import nbformat
import pytest

from stabliab import book, cli, feedback, io, params, registry, runner, sweep

from test_book import BIN, cli as run_cli, tiny_repo

NB = "99_tiny"
PARAMS = ('secs = 0.0  # in [0, 600]: seconds to sleep\nthr = 0.5  # in [0, 1]: threshold of T\n'
          'plugins = [""]  # modules to import first; "" for none\n')
BODY = ("import time\nfrom stabliab import feedback, records\n"
        "report = records.Report.from_notebook('99_tiny', globals(), [0, 1])\n"
        "feedback.load_plugins([m for m in plugins if m])\nopen('started', 'w').close()\ntime.sleep(secs)\n"
        "if thr > 0.9:\n    raise ValueError('deliberate failure')\n"
        "report.mean('T', 'T is above thr', [1.0, 1.1, 0.9], thr, '>')\nreport.save()\n")


def repo(tmp_path: Path) -> Path:
    return tiny_repo(tmp_path / "repo", BODY, PARAMS)


def main(capsys, *argv):
    """The CLI in this process: (exit code, stdout, stderr lines)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


# ---------------------------------------------------------------- values checked where they enter
def test_nan_and_infinity_are_refused_wherever_a_number_is_required():
    specs = params.parse_cell("x = 0.5  # in [0, 1]: a\nxs = [0.5]  # in (0, 1): b\ny = 1.0\nn = 3  # in [1, 9]: c\n")
    for name, v in [("x", math.nan), ("x", math.inf), ("xs", [0.5, math.nan]), ("y", math.nan), ("y", -math.inf),
                    ("n", math.nan)]:
        with pytest.raises(params.ParameterError) as e:
            specs[name].check(v)
        assert repr(name) in str(e.value) and "\n" not in str(e.value)
        assert e.value._render_traceback_() == [f"ParameterError: {e.value}"]  # what a notebook shows: one line
    assert specs["x"].check(1) == 1.0 and specs["xs"].check([0.25]) == [0.25]


def test_a_nan_threshold_is_refused_by_run_and_the_results_stay(tmp_path, capsys):
    root = repo(tmp_path)
    code, out, err = main(capsys, "--root", root, "run", NB, "--profile", "smoke")
    assert code == 0, err
    res = runner.results_path(root, "smoke", NB)
    before = res.read_bytes()
    for value in [".nan", "[.nan]", ".inf"]:
        code, out, err = main(capsys, "--root", root, "run", NB, "--profile", "smoke", "-p", "thr", value)
        assert code == 2 and len(err) == 1 and "parameter 'thr'" in err[0], err
    assert res.read_bytes() == before


def test_plain_papermill_refuses_a_nan_threshold_in_one_line(tmp_path):
    root, elsewhere = repo(tmp_path), tmp_path / "elsewhere"  # not a repository: the cell is read from the kernel
    elsewhere.mkdir()
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(runner.to_notebook(root / "notebooks" / f"{NB}.py"), src)
    r = subprocess.run([str(BIN / "papermill"), str(src), str(out), "-p", "thr", "nan", "-k", "python3", "--cwd",
                        str(elsewhere)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "STABLIAB_PROGRESS": "0"})
    line = "ParameterError: parameter 'thr': nan is not a finite number; allowed: a number in [0, 1]"
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1] == line, r.stderr[-2000:]
    errors = [o for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert [e.traceback for e in errors] == [[line]]  # the notebook shows the line, not a traceback
    assert not (elsewhere / "started").exists() and not (elsewhere / "results").exists()


# ---------------------------------------------------------------- profiles validated strictly
@pytest.mark.parametrize("text,line,needle", [
    ("cel_timeout: 5\nnotebooks: {}\n", 1, "unknown key 'cel_timeout'"),
    ("cell_timeout: abc\n", 1, "cell_timeout: got 'abc'"),
    ("cell_timeout: 0\n", 1, "a positive integer"),
    ("notebooks:\n  99_tiyn:\n    thr: 0.2\n", 2, "unknown notebook '99_tiyn'"),
    ("notebooks: [a, b]\n", 1, "notebooks: got ['a', 'b']"),
    ("first: [99_tiyn]\nnotebooks: {}\n", 1, "first: got ['99_tiyn']; allowed: a list of notebooks (99_tiny)"),
    ("notebooks:\n  99_tiny: 5\n", 2, "99_tiny: got 5"),
    ("notebooks:\n  99_tiny:\n    thr: .nan\n", 3, "not a finite number"),
    ("notebooks:\n  99_tiny:\n    thr: [0.5, .nan]\n", 3, "parameter 'thr'"),
    ("notebooks:\n  99_tiny:\n    tthr: 1\n", 3, "unknown parameter 'tthr'"),
    ("notebooks:\n  99_tiny:\n   thr: [1\n", 4, "YAML syntax error"),
    ("- 1\n- 2\n", 1, "got [1, 2]"),
])
@pytest.mark.parametrize("command", ["check", "run"])
def test_profile_mistakes_are_one_line_naming_the_file_and_line(tmp_path, capsys, text, line, needle, command):
    root = repo(tmp_path)
    (root / "profiles" / "bad.yaml").write_text(text)
    argv = ["check", "--profile", "bad"] if command == "check" else ["run", NB, "--profile", "bad"]
    code, out, err = main(capsys, "--root", root, *argv)
    assert code == 2 and len(err) == 1 and f"profiles/bad.yaml:{line}:" in err[0] and needle in err[0], err
    assert not (root / "results").exists()


def test_check_covers_every_notebook_a_profile_names(tmp_path, capsys):
    root = repo(tmp_path)
    (root / "notebooks" / "98_other.py").write_text('# %% tags=["parameters"]\nk = 2  # in [1, 5]: k\n')
    (root / "profiles" / "p.yaml").write_text("notebooks:\n  98_other:\n    k: 9\n")  # not in the toc
    code, out, err = main(capsys, "--root", root, "check", "--profile", "p")
    assert code == 2 and "profiles/p.yaml:3:" in err[0] and "parameter 'k'" in err[0]


def test_a_path_is_not_a_notebook_name(tmp_path, capsys):
    root = repo(tmp_path)
    code, out, err = main(capsys, "--root", root, "run", root / "notebooks" / NB, "--profile", "smoke")
    assert code == 2 and "unknown notebook" in err[0] and not (root / "results").exists()


# ---------------------------------------------------------------- design names are unique
STEAL = textwrap.dedent('''
    from stabliab import feedback

    @feedback.register("{name}")
    class Stolen(feedback.Design):
        """A design under a name that is taken."""
''')


@pytest.mark.parametrize("name,owner", [("off", "stabliab.feedback.Design"),
                                        ("hold_entropy", "stabliab.feedback.HoldEntropy")])
def test_a_plugin_cannot_take_a_builtin_design_name(tmp_path, monkeypatch, name, owner):
    (tmp_path / f"steal_{name}.py").write_text(STEAL.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = feedback.DESIGNS[name]
    with pytest.raises(ValueError, match="registered twice") as e:
        feedback.load_plugins([f"steal_{name}"])
    assert owner in str(e.value) and f"steal_{name}.Stolen" in str(e.value)
    assert feedback.DESIGNS[name] is before and type(feedback.make("off")) is feedback.Design
    with pytest.raises(ValueError, match="registered twice"):
        feedback.DESIGNS[name] = type("Other", (feedback.Design,), {})
    for remove in [lambda: feedback.DESIGNS.pop("off"), lambda: feedback.DESIGNS.__delitem__("off"),
                   lambda: feedback.DESIGNS.update(off=None), feedback.DESIGNS.clear]:
        with pytest.raises(TypeError):
            remove()
    assert feedback.DESIGNS["off"] is feedback.Design
    reg = registry.Registry("thing")
    cls = reg.register("a")(type("A", (), {}))
    assert reg.register("a")(cls) is cls  # the same class again (a module imported anew) is no conflict


def test_a_plugin_taking_a_builtin_name_stops_the_notebook_before_any_work(tmp_path):
    root = repo(tmp_path)
    (tmp_path / "steal_hold.py").write_text(STEAL.format(name="hold_entropy"))
    r = run_cli(root, "run", NB, "--profile", "smoke", "-p", "plugins", '["steal_hold"]',
                env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(err) == 1 and "registered twice" in err[0] and "steal_hold.Stolen" in err[0], err
    assert not (root / "started").exists() and not runner.results_path(root, "smoke", NB).exists()


# ---------------------------------------------------------------- diff never crashes on its own inputs
def _doc(path: Path, claims) -> Path:
    path.write_text(json.dumps({"notebook": "nb", "claims": claims}))
    return path


def test_diff_compares_nan_and_untestable_values_by_state(tmp_path, capsys):
    rec = lambda id, v, h: {"id": id, "value": v, "holds": h}  # noqa: E731
    old = _doc(tmp_path / "old.json", [rec("A", "nan", False), rec("B", 1.0, True), rec("C", "untestable", None),
                                        rec("D", "nan", None)])
    new = _doc(tmp_path / "new.json", [rec("A", "nan", False), rec("B", "nan", True), rec("C", "untestable", None),
                                        rec("D", 2.0, False)])
    code, out, err = main(capsys, "diff", old, old)
    assert code == 0 and "no verdict flipped" in out and not err
    code, out, err = main(capsys, "diff", old, new)
    assert code == 1 and not err
    assert out.strip().splitlines() == ["nb B: value moved 1 -> nan (verdict supported in both)",
                                        "nb D: verdict flipped untestable -> inconclusive (value nan -> 2)"]


@pytest.mark.parametrize("content,why", [
    ('{"notebook": "nb", "claims": [{"id": "A", "val', "not valid JSON"), ("[]", "not a results object"),
    ('{"manifest": []}', "names no notebook"), ('{"notebook": "nb"}', "no list of claim records"),
    ('{"notebooks": []}', "not a mapping"), (b"\xff\xfe\x00", "not a text file"), (None, "no such file"),
    ("edited", "checksum does not match"),
])
def test_diff_names_a_corrupt_file_and_exits_4(tmp_path, capsys, content, why):
    good = _doc(tmp_path / "good.json", [{"id": "A", "value": 1.0, "holds": True}])
    bad = tmp_path / "bad.json"
    if content == "edited":
        io.write_json_atomic(bad, {"notebook": "nb", "claims": [{"id": "A", "value": 1.0, "holds": True}]}, checksum=True)
        bad.write_text(bad.read_text().replace("1.0", "0.2"))
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content)
    for argv in [(good, bad), (bad, good)]:
        code, out, err = main(capsys, "diff", *argv)
        assert code == 4 and len(err) == 1 and str(bad) in err[0] and why in err[0], err


# ---------------------------------------------------------------- caches heal
def _count(config, seeds, marker):
    with open(marker, "a") as f:
        f.write(json.dumps({**config, "seeds": seeds}) + "\n")
    return {"y": [config["x"] * 10 + s for s in seeds]}


def _calls(marker: Path) -> list:
    return [json.loads(line) for line in marker.read_text().splitlines()] if marker.exists() else []


def _halve(p):
    p.write_text(p.read_text()[: len(p.read_text()) // 2])


def _edit_a_number(p):
    p.write_text(p.read_text().replace('"y": 10', '"y": 11'))


def _drop_the_checksum(p):
    doc = json.loads(p.read_text())
    del doc["checksum"]
    p.write_text(json.dumps(doc))


def _reshape(p):  # a valid checksum over the wrong shape
    io.write_json_atomic(p, {"config": {"x": 1}, "key": p.stem, "per_seed": []}, checksum=True)


@pytest.mark.parametrize("damage,why", [
    (_halve, "not valid JSON"), (lambda p: p.write_text("[]"), "not an object"),
    (_edit_a_number, "checksum does not match"), (_drop_the_checksum, "carries no checksum"),
    (_reshape, "per_seed is not"), (lambda p: p.write_bytes(b"\xff\xfe"), "not a text file"),
])
def test_a_corrupt_sweep_file_is_named_and_recomputed_alone(tmp_path, capsys, damage, why):
    marker, out_dir, cfgs = tmp_path / "ran.txt", tmp_path / "s", [{"x": i} for i in range(3)]
    first = sweep.run_sweep(_count, cfgs, [0, 1], out_dir, context={"marker": str(marker)})
    damaged = out_dir / f"{first[1]['key']}.json"
    damage(damaged)
    capsys.readouterr()
    again = sweep.run_sweep(_count, cfgs, [0, 1], out_dir, context={"marker": str(marker)})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(damaged) in err[0] and why in err[0] and "recomputing" in err[0], err
    assert [c["x"] for c in _calls(marker)] == [0, 1, 2, 1]  # only the damaged configuration ran again
    assert again == first and io.read_json(damaged, checksum=True)["per_seed"]["0"] == {"y": 10}


def test_cached_seeds_of_another_shape_than_the_task_returns_are_recomputed(tmp_path, capsys):
    marker, out_dir, cfg = tmp_path / "ran.txt", tmp_path / "s", {"x": 2}
    key = sweep.config_key(_count, cfg, {"marker": str(marker)}, io.code_hash())
    io.write_json_atomic(out_dir / f"{key}.json", {"config": cfg, "key": key, "per_seed": {"0": {"z": 5}}}, checksum=True)
    out = sweep.run_sweep(_count, [cfg], [0, 1], out_dir, context={"marker": str(marker)})
    assert out[0]["result"] == {"y": [20, 21]} and [c["seeds"] for c in _calls(marker)] == [[1], [0, 1]]
    assert "lack the shape" in capsys.readouterr().err


def _fake_results(root: Path, doc) -> str:
    """Results and executed notebook as the runner writes them, with the key of the smoke parameters."""
    key = runner.cache_key(root, NB, params.resolve_parameters(root, NB, "smoke"), "smoke")
    nb = nbformat.v4.new_notebook(metadata={"stabliab": {"cache_key": key}})
    body = doc(key) if callable(doc) else doc
    io.write_atomic({runner.executed_path(root, "smoke", NB): nbformat.writes(nb).encode(),
                     runner.results_path(root, "smoke", NB): io.json_bytes(body, checksum=True)})
    return key


def test_a_results_file_without_claims_or_of_another_shape_is_stale(tmp_path):
    root = repo(tmp_path)
    whole = lambda key: {"notebook": NB, "claims": [{"id": "T", "value": 1.0, "holds": True}],  # noqa: E731
                         "manifest": {"cache_key": key, "seeds": [0, 1]}}
    key = _fake_results(root, whole)
    assert runner.is_cached(root, NB, "smoke", key)
    res = runner.results_path(root, "smoke", NB)
    res.write_text(res.read_text().replace("1.0", "2.0"))  # an edited number
    assert not runner.is_cached(root, NB, "smoke", key)
    for doc in [[], {"manifest": []}, lambda k: {"notebook": NB, "manifest": {"cache_key": k}},
                lambda k: {**whole(k), "notebook": "98_other"}]:
        key = _fake_results(root, doc)
        assert not runner.is_cached(root, NB, "smoke", key)
        with pytest.raises(io.CorruptFile, match=re.escape(str(res))):
            book.collect(root, "smoke", [NB])


# ---------------------------------------------------------------- faults end in one line, lose nothing
def test_a_full_disk_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    root = repo(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(io.shutil, "disk_usage", lambda p: usage(2**30, 2**30 - 2**20, 2**20))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, out, err = main(capsys, "--root", root, "run", NB, "--profile", "smoke")
    assert code == 5 and len(err) == 1 and "no space left" in err[0] and "results/smoke" in err[0], err
    assert not (root / "started").exists() and not list(tmp_path.glob("stabliab-*"))


def test_a_full_disk_while_writing_keeps_the_last_results_and_no_partial_file(tmp_path, monkeypatch, capsys):
    root = repo(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(capsys, "--root", root, "run", NB, "--profile", "smoke")[0] == 0
    res, nb = runner.results_path(root, "smoke", NB), runner.executed_path(root, "smoke", NB)
    before = (res.read_bytes(), nb.read_bytes())

    def full(fd, data):  # half of it reaches the disk, then the disk is full
        os.write(fd, data[: len(data) // 2])
        os.close(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io, "_write", full)
    code, out, err = main(capsys, "--root", root, "run", NB, "--profile", "smoke", "-p", "thr", "0.6")
    assert code == 5 and len(err) == 1 and "No space left on device" in err[0] and "results/smoke" in err[0], err
    assert (res.read_bytes(), nb.read_bytes()) == before
    assert not [p for p in res.parent.iterdir() if p.name.endswith(".tmp")] and not list(tmp_path.glob("stabliab-*"))
    # a failing cell: its error is the message, the copy that could not be written only a note
    code, out, err = main(capsys, "--root", root, "run", NB, "--profile", "smoke", "-p", "thr", "0.95")
    assert code == 1 and len(err) == 1 and "ValueError: deliberate failure" in err[0], err
    assert "could not be written" in err[0] and not res.with_name(f"{NB}.failed.ipynb").exists()
    assert (res.read_bytes(), nb.read_bytes()) == before


def test_a_dangling_symlink_or_a_read_only_folder_is_one_line(tmp_path, monkeypatch, capsys):
    root = repo(tmp_path)
    (root / "results").symlink_to(tmp_path / "gone")
    code, out, err = main(capsys, "--root", root, "run", NB, "--profile", "smoke")
    assert code == 5 and len(err) == 1 and "results: a dangling symbolic link" in err[0], err
    (root / "results").unlink()

    class ReadOnly:
        def __init__(self, path):
            self.path = path

        def acquire(self, timeout=None):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), self.path)

    monkeypatch.setattr(runner, "FileLock", ReadOnly)
    code, out, err = main(capsys, "--root", root, "run", NB, "--profile", "smoke")
    assert code == 5 and len(err) == 1 and ".99_tiny.lock: Read-only file system" in err[0], err


# ---------------------------------------------------------------- nothing left behind
def test_stale_work_folders_are_removed_on_the_next_start(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, alive = tmp_path / f"stabliab-{NB}-{gone.pid}-abc", tmp_path / f"stabliab-{NB}-{os.getpid()}-def"
    for d in (dead, alive):
        (d).mkdir()
        (d / "tmp1234.json").write_text("{}")  # a kernel's connection file
    runner.clean_stale_work()
    assert not dead.exists() and alive.exists()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_the_watchdog_ends_every_process_of_its_run_and_removes_its_folder(tmp_path):
    """What ends Ray's daemons after SIGKILL of the runner: they live in sessions of their own,
    but inherit STABLIAB_RUN."""
    work = tmp_path / "stabliab-x-1-abc"
    work.mkdir()
    guard = io.watchdog(work)
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True,
                              env={**os.environ, io.RUN: str(work)})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        time.sleep(0.5)
        io.end_watchdog(guard)
        assert daemon.wait(timeout=10) == -signal.SIGKILL and not work.exists()
        assert other.poll() is None  # a process of no run is left alone
    finally:
        other.kill()
        daemon.kill()


TASKS = "import time\n\ndef nap(config, seeds, *, secs):\n    time.sleep(secs)\n    return {'y': [1.0 for s in seeds]}\n"
POOL = ("import tiny_tasks\nfrom stabliab import sweep\n"
        "sweep.run_sweep(tiny_tasks.nap, [{'x': 0}, {'x': 1}], [0], sweep.results_dir('99_tiny'), executor='processes',"
        " workers=1, context={'secs': secs})\n")


def _marked(tmp: Path) -> list[str]:
    """Live processes started under TMPDIR=tmp (the runner's descendants inherit it)."""
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"TMPDIR={tmp}".encode() in env and state != "Z" and "stabliab run" not in cmd:
            found.append(cmd)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_process_of_a_run_outlives_the_runner(tmp_path, sig):
    root = tiny_repo(tmp_path / "repo", POOL)
    (tmp_path / "tiny_tasks.py").write_text(TASKS)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "STABLIAB_PROGRESS": "0",
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([str(BIN / "stabliab"), "--root", str(root), "run", NB, "--profile", "smoke", "-p", "secs",
                             "300"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any("multiprocessing.spawn" in c for c in _marked(tmp)) and time.time() < deadline:
        time.sleep(0.5)
    assert any("ipykernel" in c for c in _marked(tmp)) and any("multiprocessing.spawn" in c for c in _marked(tmp))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    deadline = time.time() + 20
    while _marked(tmp) and time.time() < deadline:
        time.sleep(0.5)
    assert not _marked(tmp), _marked(tmp)  # kernel, pool worker, resource tracker: all gone
    assert not list(tmp.iterdir()), list(tmp.iterdir())  # work folder and connection file removed
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and err.strip().splitlines() == [
            "error: terminated; the last good results and notebooks are untouched"], err

"""Execute one notebook with papermill: cache keys, a lock per notebook and profile,
atomic results.

Each profile keeps its own executed notebooks and results side by side:

    results/PROFILE/NAME.ipynb   the executed notebook (its metadata holds the cache key)
    results/PROFILE/NAME.json    claim records, metrics and manifest

so running one profile never invalidates another's cache. `stabliab book` places a
profile's notebooks where the table of contents expects them (book.py).

What a run leaves behind, however it ends: nothing but finished files. Its work folder
(system temp, stabliab-NAME-PID-*) holds the kernel's connection file and its stderr
log; a watchdog process (io.watchdog) kills every process of the run (kernel, pool
workers, Ray) and removes that folder when the runner ends, even by SIGKILL; the next
run removes any folder whose runner is gone. A results file carries a checksum; one that
fails it, or lacks claims, is stale.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jupytext
import nbformat
import papermill as pm
from filelock import FileLock, Timeout

from . import hardware, io
from .params import load_profile, notebook_path, require_device, resolve_parameters

# the kernel's own log (its warning about TCP transport, its complaints when a run is
# interrupted) is not the notebook's output; errors in cells reach papermill as messages
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]


class NotebookFailed(RuntimeError):
    """A notebook that raised (ename: the exception's class name), timed out or lost its kernel."""

    def __init__(self, name: str, cell: str, error: str, saved: Path | None, ename: str = "", note: str = ""):
        self.name, self.cell, self.error, self.saved, self.ename, self.note = name, cell, error, saved, ename, note
        where = f" (executed copy: {saved})" if saved else note
        super().__init__(f"notebook {name} failed in {cell}: {error}{where}")

    def __reduce__(self):  # pickled whole: it travels back from run_notebooks' workers
        return type(self), (self.name, self.cell, self.error, self.saved, self.ename, self.note)


class Busy(RuntimeError):
    """Another run of the same notebook and profile holds the lock."""


# ---------------------------------------------------------------------- cache
def cache_key(root: Path, name: str, params: dict, profile: str | None = None) -> str:
    """sha256 of notebook source, the package's code hash (io.code_hash), parameters, the
    profile's torch threads where it sets them, the device's name, Python and torch versions."""
    h = hashlib.sha256()
    h.update(notebook_path(root, name).read_bytes())
    h.update(io.code_hash().encode())
    h.update(json.dumps(params, sort_keys=True).encode())
    threads = load_profile(root, profile)["threads"] if profile else None
    if threads:  # results of another thread count may differ in rounding (keys of profiles without it unchanged)
        h.update(f"threads={threads}".encode())
    if "device" in params:  # 'auto' is a different computation on a GPU machine
        h.update(hardware.device_name(params["device"]).encode())
    h.update(platform.python_version().encode())
    h.update(io.torch_version().encode())
    return h.hexdigest()


def results_path(root: Path, profile: str, name: str) -> Path:
    return root / "results" / profile / f"{name}.json"


def executed_path(root: Path, profile: str, name: str) -> Path:
    return root / "results" / profile / f"{name}.ipynb"


def check_results(doc, path, name: str | None = None, manifest: bool = True) -> dict:
    """`doc` when it has the shape of a results file (notebook, claims with id and verdict,
    and a manifest unless manifest=False); CorruptFile naming `path` otherwise."""
    if not isinstance(doc, dict):
        raise io.CorruptFile(path, f"a JSON {type(doc).__name__}, not a results object")
    claims = doc.get("claims")
    if not isinstance(doc.get("notebook"), str) or (name is not None and doc["notebook"] != name):
        raise io.CorruptFile(path, "names no notebook, or another one")
    if not isinstance(claims, list) or not all(isinstance(c, dict) and "id" in c and ("verdict" in c or "holds" in c) for c in claims):
        raise io.CorruptFile(path, "has no list of claim records (id, verdict)")
    if manifest and not isinstance(doc.get("manifest"), dict):
        raise io.CorruptFile(path, "has no manifest")
    return doc


def read_results(path: Path, name: str | None = None, checksum: bool | None = None, manifest: bool = True) -> dict:
    """A results file, its checksum verified (required with checksum=True, where it carries
    one with None) and its shape checked (check_results)."""
    return check_results(io.read_json(path, checksum=checksum), path, name, manifest)


def is_cached(root: Path, name: str, profile: str, key: str) -> bool:
    """Both files present, whole (the results' checksum and shape; the notebook readable) and of this key."""
    res, nb = results_path(root, profile, name), executed_path(root, profile, name)
    if not (res.is_file() and nb.is_file()):
        return False
    try:
        doc = read_results(res, name, checksum=True)
        n_key = io.read_json(nb).get("metadata", {}).get("stabliab", {}).get("cache_key")
    except (io.CorruptFile, AttributeError):
        return False
    return doc["manifest"].get("cache_key") == key == n_key


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


DECISIVE_SOURCES = ["src/stabliab/plateau.py", "src/stabliab/predict.py", "src/stabliab/records.py",
                    "src/stabliab/stats.py", "src/stabliab/verdicts.py"]  # rules, tests


def decisive_files(root: Path, name: str, profile: str) -> list[str]:
    """The files that hold what decides a notebook's records: the notebook (its parameters cell), the
    profile, its claim's room (src/stabliab/experiments/cN*.py, where module constants marked
    [pre-registered] live) and DECISIVE_SOURCES (the plateau test, the verdict rules, the intervals)."""
    room = sorted(p.relative_to(root).as_posix() for p in (Path(root) / "src" / "stabliab" / "experiments").glob(
        f"c{int(name[:2])}*.py")) if name[:2].isdigit() else []
    return [f"notebooks/{name}.py", f"profiles/{profile}.yaml", *room, *DECISIVE_SOURCES]


def _decisive_commit(root: Path, name: str, profile: str) -> str:
    """The last commit that changed any of decisive_files; "unknown" outside git, and "uncommitted"
    when one of them differs from that commit."""
    files = decisive_files(root, name, profile)
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h", "--", *files], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return "uncommitted" if dirty else (out or "unknown")
    except Exception:
        return "unknown"


# ---------------------------------------------------------------------- execution
@dataclass
class RunResult:
    name: str
    status: str  # "ran" or "cached"
    seconds: float
    results: Path
    notebook: Path
    claims: list = field(default_factory=list)


def to_notebook(py_path: Path):
    """jupytext percent source -> nbformat notebook with kernel python3."""
    nb = jupytext.read(py_path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    return nb


def lock(root: Path, profile: str, name: str, wait: bool = True, echo=None):
    """The lock of one notebook and profile (results/PROFILE/.NAME.lock). A second run
    waits for the first (saying so once) or, with wait=False, raises Busy; a folder where
    no lock can be made is a FileFault naming it."""
    path = io.ensure_dir(root / "results" / profile) / f".{name}.lock"
    lk = FileLock(str(path))
    try:
        lk.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise Busy(f"another run of {name} (profile {profile}) is in progress; lock {path}") from None
        if echo:
            echo(f"{name}: waiting for another run of it (profile {profile}) to finish")
        lk.acquire()
    except OSError as e:
        raise io.FileFault.of(e, path) from None
    return lk


_WORK = re.compile(r"^stabliab-.+-(\d+)-[^-]+$")


def clean_stale_work() -> None:
    """Remove the work folders (stabliab-NAME-PID-*) of runs whose runner is gone."""
    for d in Path(tempfile.gettempdir()).glob("stabliab-*"):
        m = _WORK.match(d.name)
        if not (m and d.is_dir()):
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


@contextlib.contextmanager
def _isolated(work: Path):
    """Inside the block, processes started here (the kernel and all it starts) write their
    stdout and stderr to work/kernel.log, not this terminal (a dying kernel's and Ray's C++
    noise) nor this process's pipes (a kernel that outlived an interrupted run would hold a
    caller's pipe open until the watchdog ends it), and temporary files of this process (the
    kernel's connection file) go to `work`. This process's own sys.stdout and sys.stderr keep
    writing where they did."""
    streams = {1: "stdout", 2: "stderr"}
    for attr in streams.values():
        with contextlib.suppress(OSError, ValueError):
            getattr(sys, attr).flush()
    kept, tempdir = {fd: getattr(sys, a) for fd, a in streams.items()}, tempfile.tempdir
    saved = {fd: os.dup(fd) for fd in streams}
    try:
        log = os.open(work / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        for fd in saved.values():
            os.close(fd)
        raise
    for fd, attr in streams.items():
        setattr(sys, attr, open(saved[fd], "w", buffering=1, closefd=False,
                                encoding=getattr(kept[fd], "encoding", None), errors=getattr(kept[fd], "errors", None)))
        os.dup2(log, fd)
    os.close(log)
    tempfile.tempdir = str(work)
    try:
        yield
    finally:
        tempfile.tempdir = tempdir
        for fd, attr in streams.items():  # each put back whatever the others do (a closed pipe fails a flush)
            with contextlib.suppress(OSError, ValueError):
                getattr(sys, attr).flush()
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            setattr(sys, attr, kept[fd])


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f" (kernel log: {lines[-1][:200]})" if lines else ""


def _free_space_needed(res_path: Path, nb_path: Path) -> int:
    """Twice the size of the last results and executed notebook (a temporary copy and the
    file), at least 8 MiB."""
    last = sum(p.stat().st_size for p in (res_path, nb_path) if p.is_file())
    return 2 * max(last, 4 * 2**20)


def _execute(root: Path, name: str, params: dict, timeout, work: Path, env: dict, res_path: Path, bar: bool):
    """papermill on the notebook in `work`; the executed notebook (a failing cell raises
    NotebookFailed, after saving the executed copy beside the results when it can)."""
    src_nb, out_nb = work / f"{name}.in.ipynb", work / f"{name}.ipynb"
    nbformat.write(to_notebook(notebook_path(root, name)), src_nb)
    # papermill writes the executed notebook once, at the end (or where a cell fails), not before and after
    # every cell: those copies in the temporary work folder were read by nothing, and each one validated and
    # wrote the whole notebook (tens of milliseconds, twice per cell)
    # failures reach us as exceptions (reported below, one line); papermill's and nbclient's
    # own log lines (e.g. "Kernel died" while a run is being interrupted) would repeat them
    pm_log = logging.getLogger("papermill")
    pm_level = pm_log.level
    pm_log.setLevel(logging.CRITICAL)
    try:
        with io.environment(**env), _isolated(work):
            pm.execute_notebook(str(src_nb), str(out_nb), parameters=params, kernel_name="python3", cwd=str(root),
                                progress_bar=bar, log_output=False, execution_timeout=timeout,
                                extra_arguments=KERNEL_ARGS, request_save_on_cell_execute=False)
    except pm.PapermillExecutionError as e:
        failed, note = res_path.with_name(f"{name}.failed.ipynb"), ""
        try:  # the cell's error is the message; a copy that cannot be written only adds a note
            io.write_atomic({failed: out_nb.read_bytes()})
        except OSError as w:
            failed, note = None, f" (its executed copy could not be written: {w})"
        first = (e.source or "").strip().splitlines()
        cell = f"cell [{e.exec_count}]" + (f" `{first[0][:60]}`" if first else "")
        raise NotebookFailed(name, cell, f"{e.ename}: {e.evalue}", failed, e.ename, note) from None
    except Exception as e:  # cell timeouts, dead kernels; a fault of the work folder's file system
        if isinstance(e, OSError) and not isinstance(e, TimeoutError):
            raise io.FileFault.of(e, work) from None
        msg = str(e).splitlines()[0] if str(e) else ""
        raise NotebookFailed(name, "execution", f"{type(e).__name__}: {msg}{_last_line(work / 'kernel.log')}",
                             None) from None
    finally:
        pm_log.setLevel(pm_level)
    return nbformat.read(out_nb, as_version=4)


def _repeat_warnings(path: Path) -> None:
    """The warning lines the kernel wrote (io.warn), once each, on this terminal."""
    with contextlib.suppress(OSError):
        for line in dict.fromkeys(path.read_text().splitlines()):
            print(line, file=sys.stderr)


def run_notebooks(root: Path, names: list[str], profile: str, force: bool = False, jobs: int = 1,
                  echo=print) -> list[RunResult]:
    """run_notebook on each of `names`, up to `jobs` at a time, echoing "NAME: ran in S s" (or "cached")
    in the order of `names`. With jobs > 1 every notebook's parameters are checked first, the stale ones
    are found, and, where two or more are, the calibration figure is measured once on the idle machine
    and given to each run, which goes to a process pool (never more runs handed to it than it runs at
    once; the longest by the last results' seconds first, then the profile's `first`, then the order of
    `names`; the same computation whichever process runs it: papermill starts a kernel either way). A
    failure stops new runs; those under way end, their lines are echoed, then the first failure in the
    order of `names` is raised. Interrupted (Ctrl-C, SIGTERM), the runs under way are interrupted and clean
    up as a single run does; on Linux the workers die with this process however it ends. A worker killed
    abruptly (e.g. out of memory) stops the pool: the book fails naming every run that was under way."""
    def said(r: RunResult) -> RunResult:
        echo(f"{r.name}: {'cached' if r.status == 'cached' else f'ran in {r.seconds:.1f} s'}")
        return r

    if jobs > 1 and len(names) > 1:
        keys = {n: cache_key(root, n, resolve_parameters(root, n, profile), profile) for n in names}  # bad: exit 2
        stale = [n for n in names if force or not is_cached(root, n, profile, keys[n])]
        if len(stale) > 1:
            return _run_pool(root, names, stale, profile, force, min(jobs, len(stale)), said)
    return [said(run_notebook(root, name, profile, force=force, echo=echo)) for name in names]


def _run_pool(root: Path, names: list[str], stale: list[str], profile: str, force: bool, jobs: int,
              said) -> list[RunResult]:
    """run_notebooks' pool: `stale` run `jobs` at a time, the others read back as cached."""
    require_device(root, profile)
    cal = calibration()
    first = load_profile(root, profile)["first"]  # the longest by the profile, where no last results say
    queue = sorted(stale, key=lambda n: (-_last_seconds(root, profile, n),
                                         first.index(n) if n in first else len(first)))
    done: dict[str, RunResult | BaseException] = {}
    running: dict[concurrent.futures.Future, str] = {}
    broken: list[str] = []  # the runs under way when a worker ended abruptly (the pool stops them all)
    shown = 0

    def show():  # the lines of the names finished so far, in order, up to the first one still to come
        nonlocal shown
        while shown < len(names) and isinstance(done.get(names[shown]), RunResult):
            said(done[names[shown]])
            shown += 1

    for n in names:
        if n not in stale:
            done[n] = RunResult(n, "cached", 0.0, results_path(root, profile, n), executed_path(root, profile, n))
    show()
    echo = functools.partial(print, flush=True)  # a worker's lock-wait line, at once through a pipe too
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(
        pool_start_method()), initializer=_pool_worker, initargs=(os.getpid(),))
    try:
        while (queue or running) and not broken:
            try:
                while queue and len(running) < jobs and not any(isinstance(v, BaseException) for v in done.values()):
                    n = queue.pop(0)
                    running[pool.submit(_pool_run, root, n, profile, force=force, echo=echo, measured=cal, jobs=jobs,
                                        bar=False)] = n
            except concurrent.futures.BrokenExecutor:
                broken = sorted({*broken, *running.values()}, key=names.index)
                break
            if not running:
                break
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for f in finished:
                n = running.pop(f)
                try:
                    done[n] = f.result()
                except concurrent.futures.BrokenExecutor:  # a worker was killed (e.g. out of memory)
                    broken = sorted({*broken, n, *running.values()}, key=names.index)
                except KeyboardInterrupt:  # a signal to that worker alone (the book's own comes to this process)
                    done[n] = NotebookFailed(n, "execution", "its worker process was interrupted", None)
                except Exception as e:  # a failed run: no new ones start; those under way end
                    done[n] = e
            show()
    except BaseException:  # Ctrl-C or SIGTERM here: the runs under way are interrupted and clean up
        for proc in list((pool._processes or {}).values()):
            with contextlib.suppress(OSError):
                proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for n in names[shown:]:  # after a failure: the lines of the runs that ended, then the first failure
        if isinstance(done.get(n), RunResult):
            said(done[n])
    if broken:  # which worker was killed is not known here: every run under way is named
        raise NotebookFailed(", ".join(broken), "execution", "a worker process of the book ended abruptly (killed, "
                             "e.g. out of memory); the pool stopped the runs under way", None)
    failed = [done[n] for n in names if isinstance(done.get(n), BaseException)]
    if failed:
        raise failed[0]
    return [done[n] for n in names]


def pool_start_method() -> str:
    """How _run_pool starts its workers: forked on Linux with a CPU build of torch (a spawned worker imports this
    module and its dependencies again; the book's process has started no thread or kernel by then), spawned
    elsewhere: macOS's fork is unsafe, and on a GPU build the cache keys asked torch for the device's name, which
    started CUDA in the book's process, and CUDA cannot be used again in a forked child."""
    return "fork" if sys.platform.startswith("linux") and not hardware.gpu_build() else "spawn"


_IN_RUN = False  # in a worker of _run_pool: whether a run is under way
_STOPPED = False  # and whether it was told to stop (SIGINT or SIGTERM): it starts no run after that


def _pool_run(*args, **kwargs) -> RunResult:
    global _IN_RUN
    _IN_RUN = True  # first, then the check: a signal between the two interrupts this call either way
    try:
        if _STOPPED:
            raise KeyboardInterrupt()
        return run_notebook(*args, **kwargs)
    finally:
        _IN_RUN = False


def _pool_worker(parent: int) -> None:
    """Initializer of _run_pool's workers: die with the book's process (on Linux). The first SIGINT or SIGTERM
    interrupts the run under way (it cleans up as after Ctrl-C; Ctrl-C reaches the workers too, then the
    book's SIGTERM) or, in an idle worker, stops the next run from starting; later ones are ignored (the
    pool's shutdown ends the worker). asyncio's log is silenced: a kernel that Ctrl-C reached as well
    leaves nbclient tasks whose DeadKernelError nobody retrieves (the run's own failure is reported)."""
    io.die_with_parent(parent)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    def stop(signum, frame):  # stays installed: setting SIG_IGN here races with a signal already pending
        global _STOPPED
        if _STOPPED:
            return
        _STOPPED = True
        if _IN_RUN:
            raise KeyboardInterrupt()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _last_seconds(root: Path, profile: str, name: str) -> float:
    """A notebook's seconds in its last results of this profile (0 when there are none readable)."""
    try:
        return float(read_results(results_path(root, profile, name), name)["manifest"]["seconds"])
    except (OSError, ValueError, KeyError, TypeError):  # io.CorruptFile is a ValueError
        return 0.0


@functools.lru_cache(maxsize=1)
def calibration() -> dict:
    """This machine's calibration figure (stabliab.calibrate), measured once per process in a child
    process (a few seconds, in a process of its own, as `python -m stabliab.calibrate` measures it);
    {"error": ...} if it fails.
    With STABLIAB_CALIBRATION naming a file, the figure is read from it (written by `python -m
    stabliab.calibrate --json` on this machine: the test suite measures once for all its runs) and the
    manifest says so ("from")."""
    given = os.environ.get(io.CALIBRATION)
    if given:
        try:
            return {**dict(json.loads(Path(given).read_text())), "from": given}
        except (OSError, ValueError, TypeError) as e:  # unreadable, not JSON, or not an object
            return {"error": f"{io.CALIBRATION}={given}: {type(e).__name__}: {e}"}
    try:
        out = subprocess.run([sys.executable, "-m", "stabliab.calibrate", "--json"], capture_output=True, text=True,
                             timeout=120)
        return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr.strip()[-500:]}
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def run_notebook(root: Path, name: str, profile: str = "default", overrides: dict | None = None,
                 force: bool = False, cell_timeout: int | None = None, wait: bool = True,
                 echo=None, measured: dict | None = None, jobs: int = 1, bar: bool | None = None) -> RunResult:
    """Execute one notebook with papermill; write executed notebook and results atomically.

    Parameters and the profile are validated before anything else, then free space. The
    run holds the notebook's lock; its work happens in a temporary folder that is removed
    however the run ends (success, a failing cell, Ctrl-C, SIGTERM; after SIGKILL by the
    watchdog), so the last good results stay untouched. `measured`: the calibration figure when
    the caller measured it (run_notebooks, before its notebooks started); `jobs`: the most notebooks
    run_notebooks runs at once, recorded in the manifest (above 1 its seconds are shared-machine
    seconds); `bar`: papermill's progress bar (default: when stderr is a terminal)."""
    root = Path(root).resolve()
    params = resolve_parameters(root, name, profile, overrides)  # raises before any work
    require_device(root, profile)
    timeout = cell_timeout or load_profile(root, profile)["cell_timeout"]
    key = cache_key(root, name, params, profile)
    res_path, nb_path = results_path(root, profile, name), executed_path(root, profile, name)
    if not force and is_cached(root, name, profile, key):
        return RunResult(name, "cached", 0.0, res_path, nb_path)
    clean_stale_work()
    lk = lock(root, profile, name, wait=wait, echo=echo)
    work = guard = None
    try:
        if not force and is_cached(root, name, profile, key):  # the run we waited for made it
            return RunResult(name, "cached", 0.0, res_path, nb_path)
        need = _free_space_needed(res_path, nb_path)
        io.require_free(res_path.parent, need)
        work = Path(tempfile.mkdtemp(prefix=f"stabliab-{name}-{os.getpid()}-"))
        guard = io.watchdog(work)
        io.require_free(work, need)
        tmp_res, warnings = work / "results.json", work / "warnings.txt"
        threads = load_profile(root, profile)["threads"]
        env = {io.RESULTS_FILE: str(tmp_res), io.PROGRESS: "0", io.PROFILE: profile, io.WARNINGS: str(warnings),
               io.RUN: str(work), io.THREADS: str(threads) if threads else None}
        cal = calibration() if measured is None else measured  # before the run, on an idle machine
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        try:
            nb = _execute(root, name, params, timeout, work, env, res_path,
                          sys.stderr.isatty() if bar is None else bar)
        finally:
            _repeat_warnings(warnings)
        seconds = time.perf_counter() - t0
        if not tmp_res.is_file():
            raise NotebookFailed(name, "its end", "the notebook did not save its Report (report.save())", None)
        result = json.loads(tmp_res.read_text())
        result["profile"] = profile
        result["parameters"] = params
        result["manifest"].update(calibration=cal,
                                  git_commit=_git_commit(root), decisive_commit=_decisive_commit(root, name, profile),
                                  source_hash=key, cache_key=key,
                                  started=started.isoformat(timespec="seconds"), seconds=round(seconds, 2),
                                  jobs=jobs)
        nb.metadata["stabliab"] = {"cache_key": key, "profile": profile, "parameters": params}
        # both written beside their targets first, then renamed: a full disk leaves both old files
        io.write_atomic({nb_path: nbformat.writes(nb).encode(), res_path: io.json_bytes(result, checksum=True)})
        return RunResult(name, "ran", seconds, res_path, nb_path, result["claims"])
    finally:
        if guard is not None:
            io.end_watchdog(guard)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        lk.release()

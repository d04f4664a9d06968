"""Execute one notebook with papermill: cache keys, a lock per notebook and profile,
atomic results.

Each profile keeps its own executed notebooks and results side by side:

    results/PROFILE/NAME.ipynb   the executed notebook (its metadata holds the cache key)
    results/PROFILE/NAME.json    claim records, metrics and manifest

so running one profile never invalidates another's cache. `stabliab book` places a
profile's notebooks where the table of contents expects them (book.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
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

from . import io
from .device import describe, resolve
from .params import load_profile, notebook_path, resolve_parameters

# the kernel's own log (its warning about TCP transport, its complaints when a run is
# interrupted) is not the notebook's output; errors in cells reach papermill as messages
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]


class NotebookFailed(RuntimeError):
    def __init__(self, name: str, cell: str, error: str, saved: Path | None):
        self.name, self.cell, self.error, self.saved = name, cell, error, saved
        where = f" (executed copy: {saved})" if saved else ""
        super().__init__(f"notebook {name} failed in {cell}: {error}{where}")


class Busy(RuntimeError):
    """Another run of the same notebook and profile holds the lock."""


# ---------------------------------------------------------------------- cache
def cache_key(root: Path, name: str, params: dict) -> str:
    """sha256 of notebook source, the package's code hash (io.code_hash), parameters, the
    device's name, Python and torch versions."""
    h = hashlib.sha256()
    h.update(notebook_path(root, name).read_bytes())
    h.update(io.code_hash().encode())
    h.update(json.dumps(params, sort_keys=True).encode())
    if "device" in params:  # 'auto' is a different computation on a GPU machine
        h.update(describe(resolve(params["device"]))["device_name"].encode())
    h.update(platform.python_version().encode())
    h.update(io.torch_version().encode())
    return h.hexdigest()


def results_path(root: Path, profile: str, name: str) -> Path:
    return root / "results" / profile / f"{name}.json"


def executed_path(root: Path, profile: str, name: str) -> Path:
    return root / "results" / profile / f"{name}.ipynb"


def is_cached(root: Path, name: str, profile: str, key: str) -> bool:
    res, nb = results_path(root, profile, name), executed_path(root, profile, name)
    if not (res.is_file() and nb.is_file()):
        return False
    try:
        r_key = json.loads(res.read_text())["manifest"].get("cache_key")
        n_key = json.loads(nb.read_text())["metadata"].get("stabliab", {}).get("cache_key")
    except (json.JSONDecodeError, KeyError):
        return False
    return r_key == key == n_key


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("-dirty" if dirty else "")
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
    waits for the first (saying so once) or, with wait=False, raises Busy."""
    path = root / "results" / profile / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lk = FileLock(str(path))
    try:
        lk.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise Busy(f"another run of {name} (profile {profile}) is in progress; lock {path}") from None
        if echo:
            echo(f"{name}: waiting for another run of it (profile {profile}) to finish")
        lk.acquire()
    return lk


def run_notebook(root: Path, name: str, profile: str = "default", overrides: dict | None = None,
                 force: bool = False, cell_timeout: int | None = None, wait: bool = True,
                 echo=None) -> RunResult:
    """Execute one notebook with papermill; write executed notebook and results atomically.

    Parameters are validated before anything else. The run holds the notebook's lock;
    its work happens in a temporary folder that is removed however the run ends
    (success, a failing cell, Ctrl-C), so the last good results stay untouched."""
    root = Path(root).resolve()
    params = resolve_parameters(root, name, profile, overrides)  # raises before any work
    key = cache_key(root, name, params)
    res_path, nb_path = results_path(root, profile, name), executed_path(root, profile, name)
    if not force and is_cached(root, name, profile, key):
        return RunResult(name, "cached", 0.0, res_path, nb_path)
    lk = lock(root, profile, name, wait=wait, echo=echo)
    work = None
    try:
        if not force and is_cached(root, name, profile, key):  # the run we waited for made it
            return RunResult(name, "cached", 0.0, res_path, nb_path)
        timeout = cell_timeout or load_profile(root, profile).get("cell_timeout")
        work = Path(tempfile.mkdtemp(prefix=f"stabliab-{name}-"))
        src_nb, out_nb, tmp_res = work / f"{name}.in.ipynb", work / f"{name}.ipynb", work / "results.json"
        nbformat.write(to_notebook(notebook_path(root, name)), src_nb)
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        # failures reach us as exceptions (reported below, one line); papermill's and nbclient's
        # own log lines (e.g. "Kernel died" while a run is being interrupted) would repeat them
        pm_log = logging.getLogger("papermill")
        pm_level = pm_log.level
        pm_log.setLevel(logging.CRITICAL)
        env = {io.RESULTS_FILE: str(tmp_res), io.PROGRESS: "0", io.PROFILE: profile}
        with io.environment(**env):
            try:
                pm.execute_notebook(str(src_nb), str(out_nb), parameters=params, kernel_name="python3",
                                    cwd=str(root), progress_bar=sys.stderr.isatty(), log_output=False,
                                    execution_timeout=timeout, extra_arguments=KERNEL_ARGS)
            except pm.PapermillExecutionError as e:
                failed = res_path.with_name(f"{name}.failed.ipynb")
                shutil.copy(out_nb, failed)
                first = (e.source or "").strip().splitlines()
                cell = f"cell [{e.exec_count}]" + (f" `{first[0][:60]}`" if first else "")
                raise NotebookFailed(name, cell, f"{e.ename}: {e.evalue}", failed) from None
            except KeyboardInterrupt:
                raise
            except Exception as e:  # timeouts, dead kernels
                msg = str(e).splitlines()[0] if str(e) else ""
                raise NotebookFailed(name, "execution", f"{type(e).__name__}: {msg}", None) from None
            finally:
                pm_log.setLevel(pm_level)
        seconds = time.perf_counter() - t0
        if not tmp_res.is_file():
            raise NotebookFailed(name, "its end", "the notebook did not save its Report (report.save())", None)
        result = json.loads(tmp_res.read_text())
        result["profile"] = profile
        result["parameters"] = params
        result["manifest"].update(git_commit=_git_commit(root), source_hash=key, cache_key=key,
                                  started=started.isoformat(timespec="seconds"), seconds=round(seconds, 2))
        nb = nbformat.read(out_nb, as_version=4)
        nb.metadata["stabliab"] = {"cache_key": key, "profile": profile, "parameters": params}
        nbformat.write(nb, out_nb)
        tmp_nb = nb_path.with_name(f".{name}.ipynb.tmp")  # atomic: write beside the target, then rename
        shutil.copy(out_nb, tmp_nb)
        os.replace(tmp_nb, nb_path)
        io.write_json_atomic(res_path, result)
        return RunResult(name, "ran", seconds, res_path, nb_path, result["claims"])
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        lk.release()

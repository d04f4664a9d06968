"""Files and the process environment: atomic writes, the one code hash, progress bars,
and the environment contract between the runner, notebook kernels and sweep workers.

Every STABLIAB_* variable the package reads or sets is named here, and only here:

    STABLIAB_ROOT          the repository root (params.find_root); unset: the nearest folder
                           above the working directory with notebooks/ and _toc.yml
    STABLIAB_RESULTS_FILE  set by the runner for its kernel: where Report.save writes;
                           unset: results/adhoc/NAME.json under the working directory
    STABLIAB_PROFILE       set by the runner: whose sweep caches a notebook reads and writes
                           (results/PROFILE/sweeps/); unset: 'adhoc'
    STABLIAB_PROGRESS      '0' hides the tqdm bars (the runner's kernel, sweep workers, tests)
    STABLIAB_SCREENSHOTS   tests only: a folder where the browser test saves screenshots
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tqdm import tqdm

ROOT, RESULTS_FILE, PROFILE, PROGRESS = "STABLIAB_ROOT", "STABLIAB_RESULTS_FILE", "STABLIAB_PROFILE", "STABLIAB_PROGRESS"
SCREENSHOTS = "STABLIAB_SCREENSHOTS"
PACKAGE = Path(__file__).resolve().parent


def env(name: str, default: str | None = None) -> str | None:
    """The value of one variable of the contract (a clear error for a name not in it)."""
    if name not in (ROOT, RESULTS_FILE, PROFILE, PROGRESS, SCREENSHOTS):
        raise KeyError(f"{name} is not a variable of the stabliab environment contract (io.py)")
    return os.environ.get(name, default)


@contextlib.contextmanager
def environment(**values: str | None):
    """Set variables of the contract for the duration of a block (None unsets), then
    restore what was there before."""
    keep = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            env(k)  # refuse names outside the contract
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def progress(iterable, **kw):
    """tqdm bar for interactive use. `stabliab run` sets STABLIAB_PROGRESS=0 (the
    kernel would capture the bar into the executed notebook) and shows its own
    bar over cells on the terminal instead."""
    if env(PROGRESS) == "0":
        kw["disable"] = True
    kw.setdefault("leave", False)
    kw.setdefault("mininterval", 1.0)
    return tqdm(iterable, **kw)


def code_hash() -> str:
    """sha256 of every file of the package (relative paths and contents): the runner's
    cache key and every sweep configuration's key contain it, so a change of code makes
    both stale."""
    h = hashlib.sha256()
    for f in sorted(p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(PACKAGE)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def torch_version() -> str:
    """The installed torch version (without importing torch), 'none' without one."""
    try:
        return version("torch")
    except PackageNotFoundError:  # pragma: no cover
        return "none"


def plain(x):
    """JSON-safe Python scalars and lists from numpy / torch values (non-finite floats as strings)."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    return x


def write_json_atomic(path: Path, obj) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(plain(obj), f, indent=1, ensure_ascii=False)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; results and the published claims.json are not
    os.replace(tmp, path)

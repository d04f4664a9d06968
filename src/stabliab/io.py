"""Files and the process environment: atomic writes and checksummed reads, the one code
hash, progress bars, one-line faults, and the environment contract between the runner,
notebook kernels and sweep workers.

Every STABLIAB_* variable the package reads or sets is named here, and only here:

    STABLIAB_ROOT          the repository root (params.find_root); unset: the nearest folder
                           above the working directory with notebooks/ and _toc.yml
    STABLIAB_RESULTS_FILE  set by the runner for its kernel: where Report.save writes;
                           unset: results/adhoc/NAME.json under the working directory
    STABLIAB_PROFILE       set by the runner: whose sweep caches a notebook reads and writes
                           (results/PROFILE/sweeps/); unset: 'adhoc'
    STABLIAB_PROGRESS      '0' hides the tqdm bars (the runner's kernel, sweep workers, tests)
    STABLIAB_WARNINGS      set by the runner for its kernel: a file that `warn` appends its lines
                           to (the runner repeats them on its terminal); unset: they go to stderr
    STABLIAB_RUN           set by the runner for its kernel: the run's work folder; every process
                           of the run inherits it, which is how the runner's watchdog finds them
    STABLIAB_SCREENSHOTS   tests only: a folder where the browser test saves screenshots
    STABLIAB_THREADS       set by the runner from the profile's `threads`: the torch threads of its
                           kernel (device.setup sets them); unset: torch's default, one per core
    STABLIAB_CALIBRATION   a file holding this machine's calibration figure (`python -m
                           stabliab.calibrate --json`), which the runner reads instead of measuring
                           (the test suite measures once per session); unset: the runner measures
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tqdm import tqdm

ROOT, RESULTS_FILE, PROFILE, PROGRESS = "STABLIAB_ROOT", "STABLIAB_RESULTS_FILE", "STABLIAB_PROFILE", "STABLIAB_PROGRESS"
WARNINGS, RUN, SCREENSHOTS = "STABLIAB_WARNINGS", "STABLIAB_RUN", "STABLIAB_SCREENSHOTS"
CALIBRATION, THREADS = "STABLIAB_CALIBRATION", "STABLIAB_THREADS"
PACKAGE = Path(__file__).resolve().parent


def env(name: str, default: str | None = None) -> str | None:
    """The value of one variable of the contract (a clear error for a name not in it)."""
    if name not in (ROOT, RESULTS_FILE, PROFILE, PROGRESS, WARNINGS, RUN, SCREENSHOTS, THREADS):
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


# ---------------------------------------------------------------------- faults
class FileFault(OSError):
    """A file-system fault (read-only folder, dangling symbolic link, full disk, no
    permission): one line naming the path and the fault."""

    def __init__(self, path, fault: str, code: int = 0):
        super().__init__(code, fault, str(path))
        self.path, self.fault = Path(path), fault

    def __str__(self):
        return f"{self.path}: {self.fault}"

    def __reduce__(self):  # pickled whole (a run in a worker process raises it)
        return type(self), (self.path, self.fault, self.errno or 0)

    @classmethod
    def of(cls, e: OSError, path) -> "FileFault":
        if isinstance(e, cls):
            return e
        return cls(e.filename or path, e.strerror or str(e), e.errno or 0)


class CorruptFile(ValueError):
    """A file that cannot be read as what it should be: one line naming it and why."""

    def __init__(self, path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = Path(path), why

    def __reduce__(self):  # pickled whole (a run in a worker process raises it)
        return type(self), (self.path, self.why)


def warn(message: str) -> None:
    """One warning line: appended to the runner's warnings file (STABLIAB_WARNINGS), which the
    runner repeats on its terminal, so that it never lands in a published notebook; on
    stderr when the notebook runs any other way."""
    path = env(WARNINGS)
    if path:
        with contextlib.suppress(OSError), open(path, "a") as f:
            f.write(f"warning: {message}\n")
            return
    print(f"warning: {message}", file=sys.stderr)


def ensure_dir(path: Path) -> Path:
    """mkdir -p, or a FileFault naming a dangling symbolic link or a folder that cannot be made."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        for q in [path, *path.parents]:
            if q.is_symlink() and not q.exists():
                raise FileFault(q, f"a dangling symbolic link (to {os.readlink(q)})", errno.ENOENT) from None
            if q.exists() and not q.is_dir():
                raise FileFault(q, "not a folder", errno.ENOTDIR) from None
        raise FileFault.of(e, path) from None
    return path


def require_free(path: Path, need: int) -> None:
    """A FileFault before expensive work when the file system of `path` has less than `need` bytes free."""
    q = Path(path)
    while not q.exists() and q != q.parent:
        q = q.parent
    free = shutil.disk_usage(q).free
    if free < need:
        raise FileFault(q, f"no space left for this run: {free / 2**20:.1f} MiB free, about {need / 2**20:.1f} MiB "
                           "needed", errno.ENOSPC)


# ---------------------------------------------------------------------- files
def checksum_of(obj) -> str:
    """sha256 of the JSON content of `obj` without its own "checksum" entry."""
    body = {k: v for k, v in obj.items() if k != "checksum"} if isinstance(obj, dict) else obj
    return hashlib.sha256(json.dumps(plain(body), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _write(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_atomic(files: dict) -> None:
    """Write each {path: bytes} to a temporary file beside its target, then rename them all
    over their targets: a fault while writing (a full disk, a read-only folder) leaves every
    old file in place and no temporary file behind, and raises FileFault naming the path."""
    tmps: dict[Path, str] = {}
    try:
        for path, data in files.items():
            path = Path(path)
            ensure_dir(path.parent)
            try:
                fd, tmps[path] = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                _write(fd, data)
                os.chmod(tmps[path], 0o644)  # mkstemp makes it private; results and claims.json are not
            except OSError as e:
                raise FileFault.of(e, path) from None
        for path, tmp in list(tmps.items()):
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise FileFault.of(e, path) from None
            del tmps[path]
    finally:
        for tmp in tmps.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def json_bytes(obj, checksum: bool = False) -> bytes:
    """The JSON text of `obj` (non-finite floats as strings); with checksum=True a dict also
    carries "checksum", the sha256 of the rest of its content, which read_json verifies."""
    obj = plain(obj)
    if checksum and isinstance(obj, dict):
        obj = {**obj, "checksum": checksum_of(obj)}
    return json.dumps(obj, indent=1, ensure_ascii=False).encode()


def write_json_atomic(path: Path, obj, checksum: bool = False) -> None:
    """`obj` as JSON (json_bytes), written atomically (write_atomic)."""
    write_atomic({Path(path): json_bytes(obj, checksum)})


def read_json(path: Path, checksum: bool | None = False):
    """The JSON content of `path` (without its "checksum" entry); CorruptFile naming the file
    when it cannot be read, is not valid JSON, or its checksum does not match its content. checksum:
    True requires one, None verifies one where present, False ignores it."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise CorruptFile(path, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except UnicodeDecodeError:
        raise CorruptFile(path, "not a text file") from None
    except OSError as e:
        raise CorruptFile(path, f"cannot be read ({e.strerror or e})") from None
    if checksum is False:
        return doc
    if not isinstance(doc, dict) or "checksum" not in doc:
        if checksum:
            raise CorruptFile(path, "carries no checksum (written by hand or by an older version?)" if isinstance(
                doc, dict) else f"a JSON {type(doc).__name__}, not an object")
        return doc
    if doc["checksum"] != checksum_of(doc):
        raise CorruptFile(path, "its checksum does not match its content (edited by hand?)")
    return {k: v for k, v in doc.items() if k != "checksum"}


# ---------------------------------------------------------------------- processes
def die_with_parent(parent: int) -> None:
    """In a child process (a pool worker's initializer): be killed when `parent` ends (Linux:
    prctl PR_SET_PDEATHSIG through ctypes; elsewhere nothing), and exit at once if it has
    ended already."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


# Started by the runner in a session of its own. When its stdin closes (the run ended, however:
# even SIGKILL of the runner closes the pipe), it kills every process whose environment holds
# STABLIAB_RUN=<folder> (the kernel, pool workers, Ray's daemons), except the runner, and removes
# the run's folder (temporary files, the kernel's connection file).
_WATCHDOG = r"""
import os, shutil, signal, sys, time
runner, folder = int(sys.argv[1]), sys.argv[2]
token = ("STABLIAB_RUN=" + folder).encode()
sys.stdin.read()
def marked():
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if d.isdigit() and int(d) not in (runner, os.getpid()):
            try:
                with open("/proc/" + d + "/environ", "rb") as f:
                    if token in f.read().split(b"\0"):
                        yield int(d)
            except OSError:
                pass
for _ in range(10):
    pids = list(marked())
    if not pids:
        break
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.2)
shutil.rmtree(folder, ignore_errors=True)
"""


def watchdog(folder: Path) -> subprocess.Popen:
    """A watchdog of one run (see _WATCHDOG); end it with end_watchdog."""
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def end_watchdog(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Close the watchdog's stdin and wait until it has ended what the run left behind."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from stabliab import io, params, sweep

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("STABLIAB_PROGRESS", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, here and in every
    os.environ["OMP_NUM_THREADS"] = "1"  # process a test starts (a kernel, a pool), rather than four threads
    torch.set_num_threads(1)


# the longest test files, longest first: under `--dist loadfile` a file runs whole in one worker, and with
# --no-loadscope-reorder (the Makefile) files are handed out in collection order; xdist's own order, most tests
# first, started the smoke book's file (about half of one worker's time) late, and it ran last
FIRST = ("test_smoke_book.py", "test_book.py", "test_sweep.py", "test_runner.py", "test_reliability.py",
         "test_pretrained.py", "test_feedback.py", "test_head_theorem.py", "test_calibrate.py", "test_c4.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: the rest keep their order


def pytest_configure(config):
    """The machine's calibration figure, measured once for the session's runs (runner.calibration reads
    STABLIAB_CALIBRATION) rather than once per `stabliab run` (a few seconds each, some forty runs)."""
    if os.environ.get(io.CALIBRATION):
        return
    out = subprocess.run([sys.executable, "-m", "stabliab.calibrate", "--json"], capture_output=True, text=True,
                         check=True, timeout=300)
    fd, path = tempfile.mkstemp(prefix="stabliab-calibration-", suffix=".json")
    os.write(fd, out.stdout.encode())
    os.close(fd)
    os.environ[io.CALIBRATION] = config._stabliab_calibration = path


def pytest_unconfigure(config):
    if getattr(config, "_stabliab_calibration", None):
        Path(config._stabliab_calibration).unlink(missing_ok=True)


def copy_repo(dst: Path) -> Path:
    """A throw-away copy of what the runner reads (so tests never touch the real results)."""
    for d in ["notebooks", "profiles", "src/stabliab", "book"]:
        shutil.copytree(ROOT / d, dst / d, ignore=shutil.ignore_patterns("__pycache__", "generated", "claims.md", "_extra"))
    for f in ["_toc.yml", "_config.yml"]:
        shutil.copy(ROOT / f, dst / f)
    return dst


@pytest.fixture(scope="session")
def repo(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("repo"))


def smoke_parameters(notebook: str) -> dict:
    """The parameters a notebook runs with in the smoke profile (its cell's defaults, then the
    profile): tests take their values from here, so a test and a notebook cannot disagree."""
    return params.resolve_parameters(ROOT, notebook, "smoke")


def smoke_context(notebook: str, task, **extra) -> dict:
    """A sweep task's keyword arguments as the notebook passes them in the smoke profile."""
    return sweep.task_context(task, smoke_parameters(notebook), **extra)

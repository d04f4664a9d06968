import os
import shutil
from pathlib import Path

import pytest

from stabliab import params, sweep

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("STABLIAB_PROGRESS", "0")


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

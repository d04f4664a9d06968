import os
import shutil
from pathlib import Path

import pytest

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

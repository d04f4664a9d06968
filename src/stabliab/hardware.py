"""Which devices this machine can offer, read without importing torch: the command line
(`stabliab run`, `book`, `check`) checks a `device` parameter and keys its caches by the
device's name, and importing torch costs 1.5-2 s of every command and every kernel.

A torch built without CUDA or ROCm (torch/version.py says so, read as a file) can only run on
the CPU: there `auto` is the CPU and a CUDA name is refused, as device.resolve refuses it.
Any other build asks torch itself (device.py), the one place where this module imports it."""
from __future__ import annotations

import ast
import importlib.util
import re
from functools import lru_cache
from pathlib import Path

ALLOWED = "auto, cpu, cuda or cuda:N"


@lru_cache(maxsize=1)
def gpu_build() -> bool:
    """Whether the installed torch was built with CUDA or ROCm (False for a CPU build), from the
    constants of torch/version.py; True (ask torch) when that file cannot be read."""
    spec = importlib.util.find_spec("torch")
    try:
        tree = ast.parse((Path(spec.submodule_search_locations[0]) / "version.py").read_text())
    except (AttributeError, IndexError, TypeError, OSError, SyntaxError, ValueError):  # ValueError: not UTF-8
        return True
    found = {}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id in ("cuda", "hip") and node.value is not None:
            found[target.id] = node.value
    if set(found) != {"cuda", "hip"}:
        return True
    return not all(isinstance(v, ast.Constant) and v.value is None for v in found.values())


def check_name(name) -> None:
    """ValueError (one line) for a `device` value that is not auto, cpu, cuda or cuda:N."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"got {name!r}; allowed: {ALLOWED}")


def no_such_device(name: str, have: str) -> ValueError:
    """The one refusal of a CUDA device this machine lacks (here and in device.resolve)."""
    return ValueError(f"got {name!r}, but this machine has no such CUDA device; available: {have}")


def available() -> str:
    """What this machine offers, for error messages: 'cpu' or 'cpu, cuda:0 (NAME), ...'."""
    if not gpu_build():
        return "cpu"
    from .device import available as with_torch  # a GPU build: torch knows (see the module's note)
    return with_torch()


def check(name) -> None:
    """ValueError (one line, naming what this machine has) for a malformed `device` value or a CUDA
    device this machine lacks, as device.resolve refuses it."""
    check_name(name)
    if not gpu_build():
        if name.startswith("cuda"):
            raise no_such_device(name, "cpu")
        return
    from .device import resolve  # a GPU build: torch knows (see the module's note)
    resolve(name)


@lru_cache(maxsize=None)
def device_name(name: str) -> str:
    """The name of the device a `device` value resolves to here ('cpu' or the GPU's name, as
    device.describe gives it); ValueError as `check`."""
    check(name)
    if not gpu_build():
        return "cpu"
    from .device import name_of, resolve  # a GPU build: torch knows (see the module's note)
    return name_of(resolve(name))

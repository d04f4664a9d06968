"""Where a notebook computes, and in which precision.

Every notebook has a `device` parameter (auto, cpu, cuda or cuda:N; auto is the
first CUDA device when there is one, else the CPU) and the neural notebooks a
`precision` (fp32, or bf16 autocast with the cross-entropy and every reported
entropy in fp32). Tensors are created on the device; nothing moves back and forth
inside a training loop.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import torch

from . import io
from .hardware import check_name, no_such_device

PRECISIONS = ("fp32", "bf16")


def available() -> str:
    """What this machine offers, for error messages: 'cpu' or 'cpu, cuda:0 (NAME), ...'."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return ", ".join(out)


def resolve(name: str) -> torch.device:
    """torch.device for a `device` parameter; ValueError (one line, naming what this
    machine has) for a malformed name or a CUDA device that is not there."""
    check_name(name)
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        index = int(name.split(":")[1]) if ":" in name else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise no_such_device(name, available())
        return torch.device(f"cuda:{index}")
    return torch.device("cpu")


def setup(name: str, precision: str = "fp32") -> torch.device:
    """Resolve the device and ask PyTorch for deterministic algorithms where it has
    them (on CUDA this needs CUBLAS_WORKSPACE_CONFIG before the first cuBLAS call); in a kernel of
    the runner, the profile's torch threads (STABLIAB_THREADS)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: got {precision!r}; allowed: {', '.join(PRECISIONS)}")
    threads = io.env(io.THREADS)
    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve(name)
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    deterministic()
    return dev


def deterministic() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True), without the import of
    torch._inductor.config that call makes to set inductor's own flag (sympy and mpmath: 1.3-2 s
    of every kernel's start). The book compiles nothing, so that flag has no reader; where
    inductor is loaded already, or torch lacks the private setter, the public call runs."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)


def _driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def name_of(dev: torch.device) -> str:
    """'cpu', or the CUDA device's name."""
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def describe(dev: torch.device, precision: str = "fp32") -> dict:
    """The manifest's account of where the numbers were computed."""
    info = {"device": str(dev), "precision": precision, "torch": torch.__version__, "device_name": name_of(dev)}
    if dev.type == "cuda":
        info.update(cuda=torch.version.cuda, driver=_driver())
    else:
        info.update(threads=torch.get_num_threads())
    return info


def autocast(dev: torch.device, precision: str):
    """bf16 autocast on the device (matrix products in bf16), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

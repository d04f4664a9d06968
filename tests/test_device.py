"""device.setup: deterministic algorithms, as torch's public call sets them, without its import of inductor;
hardware: torch's answers about this machine's devices, read without importing torch."""
import importlib.util
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from stabliab import device, hardware, runner

CHECK = """
import sys, torch
from stabliab import device
dev = device.setup("cpu")
assert dev.type == "cpu"
assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
assert "torch._inductor.config" not in sys.modules, "setup imported inductor"
import torch._inductor.config as inductor_config  # loaded by now (someone compiles): the public call, which sets it
torch.use_deterministic_algorithms(False)
device.setup("cpu")
assert torch.are_deterministic_algorithms_enabled() and inductor_config.deterministic
"""


def test_setup_asks_for_deterministic_algorithms_without_importing_inductor():
    r = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


# ---------------------------------------------------------------- hardware: the same answers without torch
def test_the_build_read_from_torch_version_is_torchs_own():
    assert hardware.gpu_build() == (torch.version.cuda is not None or torch.version.hip is not None)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1", "gpu", "cuda:x", 3])
def test_device_names_and_refusals_agree_with_torchs(name):
    try:
        want = device.describe(device.resolve(name))["device_name"]
    except ValueError as e:
        with pytest.raises(ValueError) as got:
            hardware.device_name(name)
        assert str(got.value) == str(e)
    else:
        assert hardware.device_name(name) == want
    assert hardware.available() == device.available()


@pytest.mark.parametrize("text,gpu", [
    ("cuda: Optional[str] = None\nhip: Optional[str] = None\n", False),
    ("cuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n", True),
    ("cuda = None\nhip = '6.2'\n", True),
    ("cuda = None\n", True),  # hip not said: ask torch
    ("cuda = compute()\nhip = None\n", True),  # not a constant: ask torch
    (None, True),  # no version.py: ask torch
    (b"cuda = None\nhip = '\xff'\n", True),  # not UTF-8: ask torch
])
def test_a_build_that_is_not_plainly_cpu_only_is_asked_of_torch(tmp_path, monkeypatch, text, gpu):
    if isinstance(text, bytes):
        (tmp_path / "version.py").write_bytes(text)
    elif text is not None:
        (tmp_path / "version.py").write_text(text)
    torch_here = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: torch_here)
    hardware.gpu_build.cache_clear()
    try:
        assert hardware.gpu_build() is gpu
    finally:
        monkeypatch.undo()
        hardware.gpu_build.cache_clear()


def test_the_command_and_records_import_no_torch():
    """`stabliab` starts without torch (1.5-2 s a command), and so does a kernel's `from stabliab import records`."""
    code = "import sys, stabliab.cli, stabliab.records; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_book_forks_its_workers_only_with_a_cpu_build_of_torch_on_linux(monkeypatch):
    """On a GPU build the parent's cache keys start CUDA (the device's name), which a forked child cannot use."""
    for gpu, platform, method in [(False, "linux", "fork"), (True, "linux", "spawn"), (False, "darwin", "spawn")]:
        monkeypatch.setattr(hardware, "gpu_build", lambda gpu=gpu: gpu)
        monkeypatch.setattr(sys, "platform", platform)
        assert runner.pool_start_method() == method

"""The gpu check profile's plumbing, on a machine without a GPU: it refuses to run (exit 2, naming the
device), its parameters are valid, and the check's extrapolation arithmetic runs from the profiles."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stabliab import params

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


def _check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_gpu_profile_is_valid_and_a_slice_of_the_paper_profile():
    gc = _check_module()
    names = params.check_profile(ROOT, "gpu", [])
    assert len(names) == 5 and params.load_profile(ROOT, "gpu")["requires"] == "cuda"
    for name, p in names.items():
        g, pp = gc.WORK(name, p), gc.WORK(name, params.resolve_parameters(ROOT, name, "paper"))
        assert len(g) == len(pp) and all(wg <= wp and mg <= mp for (wg, mg), (wp, mp) in zip(g, pp)), name  # a slice
    rows = gc.extrapolate({n: 10.0 for n in names})
    assert all(r["paper_s_low"] == pytest.approx(10.0 * r["paper_work"] / r["slice_work"]) for r in rows)
    assert all(r["paper_s_low"] <= r["paper_s_high"] for r in rows)
    # 01's L-BFGS fits count, with their random starts as members: paper 16 starts x 20 seeds, the slice 2 x 2
    p01 = names["01_forward_kl_stationarity"]
    assert gc.WORK("01_forward_kl_stationarity", p01)[-1] == (gc.LBFGS_RESTARTS * 2 * p01["lbfgs_iters"],
                                                              p01["n_seeds"] * p01["lbfgs_starts"])
    assert gc.totals([(10.0, 2), (5.0, 4)]) == (15.0, 40.0)


@NO_CUDA
@pytest.mark.parametrize("cmd", [["-m", "stabliab.cli", "run", "04_stability_vs_expressivity", "--profile", "gpu"],
                                 [str(ROOT / "bench" / "gpu_check.py")]])
def test_without_cuda_the_gpu_profile_refuses_with_exit_2_naming_the_device(cmd):
    out = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "requires a CUDA device" in out.stderr and "this machine has: cpu" in out.stderr
    assert not (ROOT / "results" / "gpu" / "04_stability_vs_expressivity.json").exists()


def test_a_profile_may_require_only_what_is_known(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles" / "x.yaml").write_text("requires: tpu\n")
    with pytest.raises(params.ParameterError, match="requires: got 'tpu'; allowed: cuda"):
        params.load_profile(tmp_path, "x")

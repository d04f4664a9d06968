"""The machine's calibration figure: how fast this CPU runs the book's kind of work.

    python -m stabliab.calibrate            # prints the figure
    python -m stabliab.calibrate --json     # as one JSON object (what the runner stores)

Budgets (DESIGN.md, README's cost table) are stated for the **reference machine**, a 2-core
AVX2 CPU whose fp32 1024 x 1024 matmul runs at REFERENCE_GFLOPS with 2 threads. A timing
measured elsewhere is translated by the ratio of the two matmul rates (`reference_seconds`),
which is only a first-order correction: small models are bound by per-operation overhead as
much as by arithmetic, so the fixed training step is measured and stored beside it.

Two fixed workloads, each timed as the median of repeated runs in this process:
  matmul_gflops   fp32 1024 x 1024 @ 1024 x 1024 with `threads` threads, GFLOP/s (2 n^3 / t);
  train_step_ms   one step of the book's AdamW (optim.AdamW, as the notebooks train) on 5 seed-stacked
                  MLP n-gram models (notebook 02's sizes: d = 32, hidden 64, 3-token window, 32
                  sequences of 33 tokens, vocab 12), ms. Until 2026-12-07 the step was
                  torch.optim.AdamW's (figures of earlier manifests: about 11-13 ms here).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

# the reference machine's matmul rate: the 2-core AMD EPYC (AVX2, no AVX-512) on which issue 19 measured the default
# book at commit e21ed58 (fp32 1024 x 1024, 2 threads, median 142 GFLOP/s, range 117-149)
REFERENCE_GFLOPS = 142.0
N = 1024


def _median_seconds(fn, reps: int, inner: int = 1) -> tuple[float, float, float]:
    fn()  # warm-up
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        t.append((time.perf_counter() - t0) / inner)
    return statistics.median(t), min(t), max(t)


def matmul_gflops(threads: int = 2, reps: int = 15) -> dict:
    """fp32 N x N matmul rate with `threads` threads: median, best and worst GFLOP/s."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(N, N, generator=g), torch.randn(N, N, generator=g)
        med, lo, hi = _median_seconds(lambda: a @ b, reps, inner=5)
    finally:
        torch.set_num_threads(old)
    flop = 2 * N ** 3
    return {"matmul_gflops": flop / med / 1e9, "matmul_gflops_best": flop / lo / 1e9, "matmul_gflops_worst": flop / hi / 1e9}


def train_step_ms(threads: int = 2, reps: int = 30) -> float:
    """Median milliseconds of one AdamW step of the fixed seed-stacked MLP workload."""
    import torch

    from . import members
    from .lm import build_lm
    from .optim import AdamW  # the book's (torch.optim's first step imports torch._dynamo: 1.5 s)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 12, (5, 32, 33), generator=g)
        base = build_lm("mlp", 12, 0, d=32, hidden=64, context=3)
        params = members.stack_members([build_lm("mlp", 12, s, d=32, hidden=64, context=3) for s in range(5)])
        params = {k: v.requires_grad_(True) for k, v in params.items()}
        opt = AdamW(1e-3)

        def step():
            grads = torch.autograd.grad(members.lm_loss(base, params, x, batched=False).sum(), list(params.values()))
            with torch.no_grad():
                opt.step(params, dict(zip(params, grads)), 5)
        med, _, _ = _median_seconds(step, reps)
    finally:
        torch.set_num_threads(old)
    return 1000 * med


def measure(threads: int = 2) -> dict:
    """The calibration figure: the two workloads, the CPU's name and core count, the ratio of the matmul
    rate to the reference machine's (above 1: faster than the reference)."""
    out = {**matmul_gflops(threads), "train_step_ms": train_step_ms(threads), "threads": threads,
           "cpu": _cpu_name(), "cores": os.cpu_count(), "reference_gflops": REFERENCE_GFLOPS}
    out["speed_vs_reference"] = out["matmul_gflops"] / REFERENCE_GFLOPS
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def reference_seconds(seconds: float, calibration: dict) -> float:
    """A wall time measured on a machine with this calibration, translated to the reference machine
    (first order: the ratio of the matmul rates)."""
    return seconds * calibration["matmul_gflops"] / REFERENCE_GFLOPS


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    m = measure(a.threads)
    if a.json:
        print(json.dumps(m))
    else:
        print(f"{m['cpu']}, {m['cores']} cores, {m['threads']} threads: matmul {m['matmul_gflops']:.0f} GFLOP/s "
              f"(best {m['matmul_gflops_best']:.0f}, worst {m['matmul_gflops_worst']:.0f}), training step "
              f"{m['train_step_ms']:.2f} ms; {m['speed_vs_reference']:.2f}x the reference machine "
              f"({REFERENCE_GFLOPS:.0f} GFLOP/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Throughput of the neural families on whatever device is here.

    .venv/bin/python bench/throughput.py            # device auto; paper sizes on a GPU, small on a CPU
    .venv/bin/python bench/throughput.py --device cuda:1 --size paper --steps 20

Prints, measured in one run:
  training tokens/s and achieved TFLOP/s (6 x parameters x tokens / time) in fp32 and
  bf16, as a share of the device's dense peak where it is known;
  sampling tokens/s with and without the key/value cache (Transformer);
  seeds looped against seeds batched (vmap) at 1, 4 and 16 seeds, for training and sampling.
  --cross-entropy: the cross-entropy's two layouts on the CPU (classes last, or along dim 1 as
  lm.cross_entropy takes them for a short vocabulary), forward and backward.
  --cpu-families: every family at the book's default sizes on the CPU, stacked / vmap / loop at 1,
  5 and 16 seeds, the stacked path's GFLOP/s as a share of the calibration matmul rate, and the
  rule train_lm uses to pick a path (train.default_batched) checked (exit 1 where, from 2 seeds
  on, it picks a path more than 25% slower than the loop).
Sizes: `paper` is the paper profile's notebook-03 model (d=256, hidden=512, 4 layers, 8
heads, 256 tokens, batch 64); `small` is for a 2-core CPU.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from stabliab import calibrate, lm, members, optim, train
from stabliab.device import describe, setup

BOOK = dict(d=32, hidden=64, layers=2, heads=2, context=3, seq_len=32, batch=32, vocab=12)  # notebook 02's default
SIZES = {
    "paper": dict(d=256, hidden=512, layers=4, heads=8, seq_len=256, batch=64, vocab=65, new_tokens=256),
    "small": dict(d=64, hidden=128, layers=2, heads=4, seq_len=64, batch=16, vocab=65, new_tokens=64),
}
# dense peak FLOP/s by device name fragment (vendor data sheets, SXM parts)
PEAK = {"H200": {"bf16": 989e12, "fp32": 67e12}, "H100": {"bf16": 989e12, "fp32": 67e12},
        "A100": {"bf16": 312e12, "fp32": 19.5e12}}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, reps: int) -> float:
    """Seconds per call: one warm-up call, then the mean of `reps` calls."""
    fn()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(dev)
    return (time.perf_counter() - t0) / reps


def setup_members(arch, M, sz, dev):
    mods = [lm.build_lm(arch, sz["vocab"], s, d=sz["d"], hidden=sz["hidden"], layers=sz["layers"],
                            heads=sz["heads"], max_len=sz["seq_len"] + sz["new_tokens"] + 1).to(dev) for s in range(M)]
    params = {k: v.requires_grad_(True) for k, v in members.stack_members(mods).items()}
    x = members.with_bos(np.random.default_rng(0).integers(0, sz["vocab"], (M, sz["batch"], sz["seq_len"])),
                       sz["vocab"], dev)
    return mods[0], params, x


def train_step_time(arch, M, sz, dev, precision, batched, reps):
    base, params, x = setup_members(arch, M, sz, dev)
    opt = optim.AdamW(1e-4)

    def step():
        loss = members.lm_loss(base, params, x, batched=batched, precision=precision)
        grads = dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
        with torch.no_grad():
            opt.step(params, grads, M)
    n_params = sum(v[0].numel() for v in params.values())
    return timed(step, dev, reps), n_params


def step_flops(arch: str, n_params: int, sz: dict, M: int) -> float:
    """Counted FLOPs of one training step of M members: 6 x (matrix parameters) x tokens (forward and
    backward), plus the Transformer's attention products (QK^T and AV: 12 L T^2 d per sequence, both passes)."""
    tokens = sz["batch"] * sz["seq_len"]
    f = 6 * n_params * tokens
    if arch == "transformer":
        f += 12 * sz["layers"] * sz["batch"] * sz["seq_len"] ** 2 * sz["d"]
    return M * f


def family_step(arch: str, M: int, sz: dict, batched, reps: int) -> tuple[float, int]:
    """Seconds per AdamW training step of M members on the CPU (batched: True = the stacked forward,
    "vmap", or False = a loop over members), and the matrix parameters of one member."""
    mods = [lm.build_lm(arch, sz["vocab"], s, d=sz["d"], hidden=sz["hidden"], layers=sz["layers"], heads=sz["heads"],
                        context=sz["context"], max_len=sz["seq_len"] + 1) for s in range(M)]
    params = {k: v.requires_grad_(True) for k, v in members.stack_members(mods).items()}
    x = members.with_bos(np.random.default_rng(0).integers(0, sz["vocab"], (M, sz["batch"], sz["seq_len"])), sz["vocab"])
    opt = optim.AdamW(1e-3)

    def step():
        loss = members.lm_loss(mods[0], params, x, batched=batched)
        grads = dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
        with torch.no_grad():
            opt.step(params, grads, M)
    n = sum(v[0].numel() for k, v in params.items() if not k.startswith(("emb.", "pos.")) and v.ndim > 2)
    return timed(step, torch.device("cpu"), reps), n


def cpu_families(seeds=(1, 5, 16), reps: int = 10, slack: float = 1.25) -> bool:
    """Every family at the book's default sizes: ms per step stacked, vmapped and looped at each number
    of seeds, achieved GFLOP/s of the stacked path as a share of this machine's calibration matmul rate,
    and the rule train_lm uses (train.default_batched) checked: from 2 members on, the path it picks is never
    more than `slack` times the loop over members (each time the best of two runs of `reps` steps: a 2-core
    machine's timings move by 10-20% from run to run). Returns whether the rule held everywhere."""
    cal = calibrate.matmul_gflops(torch.get_num_threads())["matmul_gflops"]
    print(f"\nCPU, the book's default sizes {BOOK}; calibration matmul {cal:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads)")
    print(f"  {'family':12s} {'seeds':>5s} {'stacked ms':>10s} {'vmap ms':>8s} {'loop ms':>8s} {'stacked GFLOP/s':>15s} "
          f"{'of matmul':>9s} {'rule picks':>10s}")
    ok = True
    for arch in ["mlp", "gru", "lstm", "transformer"]:
        for M in seeds:
            t = {b: min(family_step(arch, M, BOOK, b, reps)[0] for _ in range(2)) for b in (True, "vmap", False)}
            n = family_step(arch, 1, BOOK, True, 1)[1]
            gf = step_flops(arch, n, BOOK, M) / t[True] / 1e9
            pick = train.default_batched(arch, M, "cpu")
            held = M == 1 or t[pick] <= slack * t[False]  # never slower than the loop, where there is a stack
            ok &= held
            name = {True: "stacked", "vmap": "vmap", False: "loop"}[pick]
            print(f"  {arch:12s} {M:5d} {t[True] * 1e3:10.1f} {t['vmap'] * 1e3:8.1f} {t[False] * 1e3:8.1f} {gf:15.1f} "
                  f"{gf / cal:9.0%} {name + ('' if held else ' SLOWER'):>10s}")
    print(f"  rule {'held' if ok else 'VIOLATED'}: from 2 seeds on, the picked path at most {slack - 1:.0%} slower than "
          "the loop")
    return ok


def cross_entropy_layouts(vocabs=(5, 12, 15, 16, 65), n: int = 10240, reps: int = 50) -> None:
    """lm.cross_entropy's two layouts on the CPU at notebook 02's token count per step (5 seeds x 32 x 64):
    microseconds for the forward and backward of the mean loss with the classes last ([n, V], torch's usual
    layout) and along dim 1 ([1, V, n], what lm.cross_entropy takes below lm.SMALL_VOCAB), and which one it
    takes."""
    print(f"\ncross-entropy, forward + backward of the mean over {n} positions, CPU, {torch.get_num_threads()} threads")
    print(f"  {'V':>4s} {'[n, V] us':>10s} {'[1, V, n] us':>13s} {'speed-up':>9s}  lm.cross_entropy takes")
    for V in vocabs:
        z = torch.randn(n, V, generator=torch.Generator().manual_seed(V)).requires_grad_()
        y = torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(V))
        last = timed(lambda: torch.autograd.grad(F.cross_entropy(z, y), z), torch.device("cpu"), reps)
        dim1 = timed(lambda: torch.autograd.grad(F.cross_entropy(z.T.unsqueeze(0), y.unsqueeze(0)), z),
                     torch.device("cpu"), reps)
        print(f"  {V:4d} {last * 1e6:10.0f} {dim1 * 1e6:13.0f} {last / dim1:8.1f}x  "
              f"{'[1, V, n]' if V < lm.SMALL_VOCAB else '[n, V]'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", choices=list(SIZES), default=None, help="default: paper on CUDA, small on CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed repetitions (default 10 on CUDA, 3 on CPU)")
    ap.add_argument("--cpu-families", action="store_true", help="only the CPU section (every family, book sizes)")
    ap.add_argument("--cross-entropy", action="store_true", help="only the cross-entropy's two layouts on the CPU")
    a = ap.parse_args()
    if a.cpu_families:
        return 0 if cpu_families() else 1
    if a.cross_entropy:
        return cross_entropy_layouts()
    dev = setup(a.device)
    sz = SIZES[a.size or ("paper" if dev.type == "cuda" else "small")]
    reps = a.steps or (10 if dev.type == "cuda" else 3)
    info = describe(dev)
    print(f"device {info['device']} ({info['device_name']}), torch {info['torch']}, size {a.size or 'auto'}: {sz}")
    peak = next((v for k, v in PEAK.items() if k in info["device_name"]), None)
    tokens = sz["batch"] * sz["seq_len"]

    print("\ntraining, one seed (forward + backward + AdamW)")
    for arch in ["transformer", "gru"]:
        row = {}
        for prec in ["fp32", "bf16"]:
            sec, n_params = train_step_time(arch, 1, sz, dev, prec, True, reps)
            flops = 6 * n_params * tokens / sec
            share = f", {flops / peak[prec]:.1%} of peak" if peak else ""
            print(f"  {arch:11s} {prec}: {tokens / sec:12,.0f} tokens/s, {flops / 1e12:8.3f} TFLOP/s{share} "
                  f"({n_params:,} parameters)")
            row[prec] = sec
        print(f"  {arch:11s} bf16 / fp32 speed-up: {row['fp32'] / row['bf16']:.2f}x")

    print("\nsampling, one seed, Transformer")
    base, params, _ = setup_members("transformer", 1, sz, dev)
    mod = members.member(base, params, 0)
    n = sz["batch"]
    res = {}
    for cache in [True, False]:
        mod.use_cache = cache
        res[cache] = timed(lambda: mod.sample(n, sz["new_tokens"], seed=0), dev, max(1, reps // 3))
        print(f"  {'with' if cache else 'without'} key/value cache: {n * sz['new_tokens'] / res[cache]:12,.0f} tokens/s")
    print(f"  cache speed-up: {res[False] / res[True]:.1f}x")

    print("\nseeds looped against seeds batched (vmap)")
    for arch in ["transformer", "gru"]:
        for M in [1, 4, 16]:
            loop, _ = train_step_time(arch, M, sz, dev, "fp32", False, max(1, reps // 2))
            vm, _ = train_step_time(arch, M, sz, dev, "fp32", True, max(1, reps // 2))
            base, params, _ = setup_members(arch, M, sz, dev)
            with torch.no_grad():
                s_loop = timed(lambda: members.sample_members(base, params, n, sz["new_tokens"], 0, batched=False),
                               dev, 1)
                s_vm = timed(lambda: members.sample_members(base, params, n, sz["new_tokens"], 0, batched=True),
                             dev, 1)
            print(f"  {arch:11s} {M:2d} seeds: training step looped {loop * 1e3:8.1f} ms, batched {vm * 1e3:8.1f} ms "
                  f"({loop / vm:.2f}x); sampling looped {s_loop:6.2f} s, batched {s_vm:6.2f} s ({s_loop / s_vm:.2f}x)")
    if dev.type == "cpu":
        return 0 if cpu_families() else 1


if __name__ == "__main__":
    raise SystemExit(main())

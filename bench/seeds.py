"""Seeds at once: one vmapped model against a loop over seeds, per training step.

    .venv/bin/python bench/seeds.py [--archs mlp gru transformer] [--seeds 1 4 16] [--steps 20]

Prints milliseconds per step for both forms and the ratio loop / batched (> 1: the
batched form is faster). Both forms compute the same numbers (tests check that).
"""
import argparse
import time

import torch

from stabliab import members, train
from stabliab.sources import MarkovSource


def step_ms(arch, n_seeds, batched, steps, d, hidden, seq_len):
    src = MarkovSource.random(32, seed=0)
    seeds = list(range(n_seeds))
    data = members.with_bos(src.sample(256, seq_len, seed=0), 32)[None].expand(n_seeds, -1, -1)
    kw = dict(vocab=32, seeds=seeds, lr=1e-3, batch_size=32, batched=batched, d=d, hidden=hidden, layers=2,
              heads=4, context=4, max_len=seq_len + 1)
    train.train_lm(arch, data, steps=2, **kw)  # warm-up
    t0 = time.perf_counter()
    train.train_lm(arch, data, steps=steps, **kw)
    return (time.perf_counter() - t0) / (steps + 1) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", nargs="+", default=["mlp", "gru", "transformer"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=64)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, "
          f"d={a.d} hidden={a.hidden} seq_len={a.seq_len}")
    print(f"{'arch':12s} {'seeds':>5s} {'loop ms/step':>13s} {'vmap ms/step':>13s} {'loop/vmap':>10s}")
    for arch in a.archs:
        for n in a.seeds:
            loop = step_ms(arch, n, False, a.steps, a.d, a.hidden, a.seq_len)
            vm = step_ms(arch, n, True, a.steps, a.d, a.hidden, a.seq_len)
            print(f"{arch:12s} {n:5d} {loop:13.1f} {vm:13.1f} {loop / vm:10.2f}")


if __name__ == "__main__":
    main()

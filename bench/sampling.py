"""Transformer sampling: tokens per second with and without the key/value cache.

    .venv/bin/python bench/sampling.py [--new 256] [--batch 8] [--d 128] [--layers 4]

Both modes draw the same tokens (same seed); the ratio is what the cache buys.
"""
import argparse
import time

import torch

from stabliab import lm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new", type=int, default=256, help="new tokens per sequence")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    m = lm.build_lm("transformer", a.vocab, seed=0, d=a.d, layers=a.layers, heads=a.heads, max_len=a.new + 1)
    rates, toks = {}, {}
    for use_cache in (True, False):
        m.use_cache = use_cache
        best = float("inf")
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            toks[use_cache], _ = m.sample(a.batch, a.new, seed=0)
            best = min(best, time.perf_counter() - t0)
        rates[use_cache] = a.batch * a.new / best
    same = torch.equal(toks[True], toks[False])
    print(f"transformer d={a.d} layers={a.layers} batch={a.batch}, {a.new} new tokens, torch threads={torch.get_num_threads()}")
    print(f"  with KV cache : {rates[True]:10.0f} tokens/s")
    print(f"  recompute     : {rates[False]:10.0f} tokens/s")
    print(f"  speed-up      : {rates[True] / rates[False]:10.1f} x   (same tokens: {same})")


if __name__ == "__main__":
    main()

"""The sweep engine's executors on the same design: local (in process) against a
process pool and Ray, measured in one run, nothing cached.

    .venv/bin/python bench/sweep.py [--configs 16] [--seeds 5] [--steps 300]

On a 2-core machine expect at most 2x (two workers, one torch thread each).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from stabliab import sweep
from stabliab.experiments import c4


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--workers", type=int, default=0, help="processes / Ray CPUs (default: one per core)")
    a = ap.parse_args()
    space = {"lr": ("log", 1e-3, 1.0), "batch": ("int-log", 8, 128), "n_train": ("int-log", 16, 1024),
             "weight_decay": ("lin", 0.0, 0.1), "label_smoothing": ("lin", 0.0, 0.2), "clip": ("choice", [0.0, 1.0]),
             "ema": ("choice", [0.0, 0.99]), "warmup": ("lin", 0.0, 0.3), "schedule": ("choice", ["constant", "cosine"])}
    configs = sweep.space_filling(space, a.configs, seed=0)
    seeds = list(range(a.seeds))
    times, results = {}, {}
    for executor in ["local", "processes", "ray"]:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            out = sweep.run_sweep(c4.c4_task, configs, seeds, Path(d), executor=executor,
                                  workers=a.workers or None, context={"steps": a.steps})
            times[executor] = time.perf_counter() - t0
            results[executor] = [r["result"] for r in out]
        print(f"{executor:9s}: {times[executor]:7.1f} s for {a.configs} configurations x {a.seeds} seeds "
              f"(same results as local: {results[executor] == results['local']})")
    for ex in ["processes", "ray"]:
        print(f"{ex} / local speed-up: {times['local'] / times[ex]:.2f}x")


if __name__ == "__main__":
    main()

"""Designs over training settings, one task per configuration, and executors that run
them in this process, in a process pool, or on Ray (a local instance, or a cluster
through RAY_ADDRESS).

A task is a picklable function task(config: dict, seeds: list[int], **context) -> dict
of measurements, every value a list with one entry per seed (member m of a
seeds-at-once run depends only on its own seed). Every finished configuration is
written atomically to OUT/KEY.json, KEY = sha256(task name, configuration, context,
code hash), holding its results seed by seed, so a killed sweep resumes where it
stopped and a rerun with more configurations or more seeds computes only the new
configurations and seeds. Each file carries a checksum of its content: a file that cannot
be read, fails its checksum (edited numbers) or lacks the shape written here is named in
one warning line (io.warn) and recomputed, for that configuration only.

Every executor runs through one loop over the concurrent.futures interface (submit ->
future, wait for the first completed): this process (`_Inline`), a spawned process pool
whose workers die with their parent, or Ray (`_Ray`, a small adapter).

    results = run_sweep(task, configs, seeds, out_dir, executor="local" | "processes" | "ray")

Runs whose results are objects rather than per-seed numbers (a trained model, its
trajectory) go through the same executors uncached:

    outs = parallel_map(fn, [args, ...], executor="processes")  # [fn(*args), ...] in order
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import traceback
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.stats import qmc

from . import io
from .params import task_context  # noqa: F401  sweep.task_context: the notebooks' name

EXECUTORS = ("local", "processes", "ray")


class SweepError(RuntimeError):
    """Some configurations failed; the others are written. .failed: [(config, message)]."""

    def __init__(self, failed: list[tuple[dict, str]]):
        self.failed = failed
        names = "; ".join(f"{json.dumps(c, sort_keys=True)}: {m}" for c, m in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(f"{len(failed)} configuration(s) failed: {names}{more}")


# ---------------------------------------------------------------------- designs
def space_filling(space: dict, n: int, seed: int, method: str = "sobol") -> list[dict]:
    """n configurations from a seeded Sobol or Latin-hypercube design. space maps a name
    to ("log", lo, hi), ("lin", lo, hi), ("int-log", lo, hi) or ("choice", [values])."""
    sampler = (qmc.Sobol(len(space), scramble=True, seed=seed) if method == "sobol"
               else qmc.LatinHypercube(len(space), seed=seed))
    with warnings.catch_warnings():  # said once through io.warn (the runner's terminal), not on a notebook's stderr
        warnings.filterwarnings("ignore", message="The balance properties of Sobol", category=UserWarning)
        u = sampler.random(n)  # [n, dims] in [0, 1): the first n points of the sequence
    if method == "sobol" and n & (n - 1):
        io.warn(f"a Sobol design of {n} configurations, not a power of 2: its first {n} points, without the balance "
                f"of a whole block of 2^m")
    out = []
    for row in u:
        cfg = {}
        for (name, spec), x in zip(space.items(), row):
            kind = spec[0]
            if kind == "log":
                cfg[name] = float(np.exp(np.log(spec[1]) + x * (np.log(spec[2]) - np.log(spec[1]))))
            elif kind == "lin":
                cfg[name] = float(spec[1] + x * (spec[2] - spec[1]))
            elif kind == "int-log":
                cfg[name] = int(round(np.exp(np.log(spec[1]) + x * (np.log(spec[2]) - np.log(spec[1])))))
            elif kind == "choice":
                cfg[name] = spec[1][min(int(x * len(spec[1])), len(spec[1]) - 1)]
            else:
                raise ValueError(f"unknown kind {kind!r} for {name}")
        out.append(cfg)
    return out


def results_dir(notebook: str, name: str = "") -> Path:
    """results/PROFILE/sweeps/NOTEBOOK[/name]: PROFILE is the runner's (env STABLIAB_PROFILE),
    'adhoc' when the notebook runs any other way."""
    base = Path("results") / io.env(io.PROFILE, "adhoc") / "sweeps" / notebook
    return base / name if name else base


def config_key(task: Callable, config: dict, context: dict, code: str) -> str:
    blob = json.dumps({"task": f"{task.__module__}.{task.__qualname__}", "config": config,
                       "context": context, "code": code}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------- cache
def _shape_problem(rec, key: str, config: dict) -> str | None:
    """What is wrong with a stored configuration's record, None when it has the shape run_sweep writes."""
    if not isinstance(rec, dict) or not {"config", "key", "per_seed"} <= set(rec):
        return "lacks config, key or per_seed"
    if rec["key"] != key or rec["config"] != json.loads(json.dumps(io.plain(config))):
        return "belongs to another configuration"
    per = rec["per_seed"]
    if not isinstance(per, dict) or not all(isinstance(v, dict) and v for v in per.values()):
        return "per_seed is not seed -> measurements"
    if len({tuple(sorted(v)) for v in per.values()}) > 1:
        return "its seeds do not hold the same measurements"
    return None


def _stored(path: Path, key: str, config: dict) -> dict:
    """The cached record of one configuration; an empty one (to be computed) when there is
    none, or, with one warning line naming the file, when it cannot be read, fails its
    checksum or lacks the shape this function writes."""
    empty = {"config": config, "key": key, "per_seed": {}}
    if not path.is_file():
        return empty
    try:
        rec = io.read_json(path, checksum=True)
        problem = _shape_problem(rec, key, config)
    except io.CorruptFile as e:
        problem = str(e).removeprefix(f"{path}: ")
    if problem:
        io.warn(f"{path}: {problem}; recomputing this configuration")
        return empty
    return rec


# ---------------------------------------------------------------------- executors
class _Inline:
    """The local executor in the concurrent.futures interface: submit runs the call at once."""

    def submit(self, fn, *args) -> Future:
        f = Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, wait=True, cancel_futures=False) -> None:
        pass


class _Ray:
    """Ray in the concurrent.futures interface (the optional [ray] extra): a local
    instance, or a cluster through RAY_ADDRESS; submit returns the ObjectRef's future."""

    def __init__(self, workers: int | None, device: str):
        import ray
        self.ray, self.started = ray, not ray.is_initialized()
        if self.started:
            ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=True,
                     **({} if os.environ.get("RAY_ADDRESS") else {"num_cpus": workers or os.cpu_count()}))
        self.options = dict(num_gpus=1 if device.startswith("cuda") else 0, num_cpus=1)
        self.remotes: dict = {}

    def submit(self, fn, *args) -> Future:
        if fn not in self.remotes:
            self.remotes[fn] = self.ray.remote(**self.options)(fn)
        return self.remotes[fn].remote(*args).future()

    def shutdown(self, wait=True, cancel_futures=False) -> None:
        if self.started:
            self.ray.shutdown()


def _executor(executor: str, workers: int | None, threads: int, device: str, n_tasks: int):
    """(executor with submit -> Future and shutdown, how many calls it runs at once)."""
    if executor == "local":
        return _Inline(), 1
    if executor == "processes":
        n = workers or max(1, (os.cpu_count() or 1) // max(threads, 1))
        # spawned workers die with this process, however it ends (io.die_with_parent)
        return ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=io.die_with_parent,
                                   initargs=(os.getpid(),)), n
    return _Ray(workers, device), max(n_tasks, 1)


def _apply(fn, args, threads, kwargs=None):
    """fn(*args, **kwargs) with `threads` torch threads (the caller's count restored after), so
    that every executor computes with the same number of threads, and no inner progress bars
    (one bar, over the calls); (ok, result or formatted error): a failure is reported by name
    and the other calls go on."""
    keep = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    with io.environment(**{io.PROGRESS: "0"}):
        try:
            return True, fn(*args, **(kwargs or {}))
        except Exception as e:
            return False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
        finally:
            torch.set_num_threads(keep)


def parallel_map(fn: Callable, items: list[tuple], *, executor: str = "local", workers: int | None = None,
                 threads: int = 1, device: str = "cpu", desc: str = "runs", cost=None) -> list:
    """[fn(*args) for args in items], in order, each call on `executor` ("local": this process;
    "processes": a spawned pool, one worker per core by default; "ray") with `threads` torch
    threads, so that every executor computes the same numbers. fn must be a module-level
    function and its arguments and result picklable. Failures (an exception in fn, a worker
    that died, a result that cannot travel back) raise one SweepError naming their items (by
    position in `items`), after every call has finished. On a CUDA device a process pool runs one
    worker unless `workers` says otherwise (every worker would hold a context on the same device).
    `cost` (one number per item): the calls start in decreasing cost, ties in order (a pool that
    starts its longest runs first finishes sooner); results come back in the order of `items`."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    items = [tuple(a) for a in items]
    if cost is not None and len(cost) != len(items):
        raise ValueError(f"cost must have one number per item: {len(cost)} for {len(items)} items")
    order = range(len(items)) if cost is None else sorted(range(len(items)), key=lambda i: -cost[i])
    if executor == "processes" and str(device).startswith("cuda") and not workers:
        workers = 1
    pool, width = _executor(executor, workers, threads, device, len(items))
    width = min(width, max(len(items), 1))
    out: list = [None] * len(items)
    failed: list[tuple[dict, str]] = []
    queue, running = deque(order), {}
    bar = io.progress(None, total=len(items), desc=desc)
    try:
        while queue or running:
            while queue and len(running) < width:
                i = queue.popleft()
                running[pool.submit(_apply, fn, items[i], threads)] = i
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                i = running.pop(f)
                try:
                    ok, res = f.result()
                except Exception as e:  # the worker died, or its result could not be unpickled
                    ok, res = False, f"{type(e).__name__}: {e}"
                if ok:
                    out[i] = res
                else:
                    failed.append(({"item": i}, res.strip().splitlines()[0]))
                bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if failed:
        raise SweepError(failed)
    return out


def run_sweep(task: Callable, configs: list[dict], seeds, out_dir: Path, *, executor: str = "local",
              workers: int | None = None, context: dict | None = None, threads: int = 1, desc: str = "sweep",
              device: str = "cpu") -> list[dict]:
    """Results of task(config, seeds, **context) for every configuration, in order, each
    {"config", "key", "seeds", "result": {name: [value per seed]}}; what is cached in
    out_dir is read, and the task runs only for the missing seeds of each configuration.
    Raises SweepError naming the failed configurations after all others are written."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    out_dir = io.ensure_dir(Path(out_dir))
    context = dict(context or {})
    code = io.code_hash()
    seeds = [int(s) for s in seeds]
    keys = [config_key(task, c, context, code) for c in configs]
    stored = {k: _stored(out_dir / f"{k}.json", k, c) for k, c in zip(keys, configs)}
    todo = [(k, c, [s for s in seeds if str(s) not in stored[k]["per_seed"]]) for k, c in zip(keys, configs)]
    queue = deque((k, c, missing) for k, c, missing in todo if missing)
    n_cached = len(configs) - len(queue)
    failed: list[tuple[dict, str]] = []
    bar = io.progress(None, total=len(configs), desc=desc, initial=n_cached)

    def done(k, c, missing, ok, res):
        if ok:
            bad = [n for n, v in res.items() if not isinstance(v, list) or len(v) != len(missing)]
            if bad:
                ok, res = False, f"task returned values that are not one per seed: {', '.join(bad)}"
        rec = stored[k]
        if ok and rec["per_seed"] and set(next(iter(rec["per_seed"].values()))) != set(res):
            io.warn(f"{out_dir / f'{k}.json'}: its cached seeds lack the shape the task returns; recomputing them")
            stored[k] = {"config": c, "key": k, "per_seed": {}}
            queue.append((k, c, seeds))
            return
        if ok:
            for i, s in enumerate(missing):
                rec["per_seed"][str(s)] = {n: v[i] for n, v in res.items()}
            io.write_json_atomic(out_dir / f"{k}.json", rec, checksum=True)
        else:
            failed.append((c, res.strip().splitlines()[0]))
        bar.update(1)

    # one loop for every executor: at most `width` calls in flight, the next one submitted
    # as soon as one is done, each written as it finishes (a killed sweep keeps them)
    pool, width = _executor(executor, workers, threads, device, len(queue)) if queue else (_Inline(), 1)
    running: dict[Future, tuple] = {}
    try:
        while queue or running:
            while queue and len(running) < width:
                k, c, missing = item = queue.popleft()
                running[pool.submit(_apply, task, (c, list(missing)), threads, context)] = item
            bar.set_postfix(cached=n_cached, running=len(running))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                done(*running.pop(f), *f.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if failed:
        raise SweepError(failed)
    out = []
    for k in keys:
        per = stored[k]["per_seed"]
        names = list(per[str(seeds[0])])
        out.append({"config": stored[k]["config"], "key": k, "seeds": seeds,
                    "result": {n: [per[str(s)][n] for s in seeds] for n in names}})
    return out

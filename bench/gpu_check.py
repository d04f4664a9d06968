"""The GPU check: a slice of the paper profile, timed, and the whole paper profile extrapolated.

    .venv/bin/python bench/gpu_check.py            # or: make gpu-check
    .venv/bin/python bench/gpu_check.py --dry-run  # the arithmetic only, from the profiles (any machine)

Runs every notebook of the `gpu` profile (paper sizes, a few seeds and configurations; it refuses
to start without a CUDA device, exit 2), then bench/throughput.py at paper sizes (tokens/s and
achieved TFLOP/s), and prints per notebook: the slice's seconds, its work (training steps or L-BFGS
iterations times configurations, each with the members trained at once beside it, from the resolved
parameters: WORK), the paper profile's work, and the extrapolated paper seconds = slice seconds x paper
work / slice work, with members free (a stacked model of 20 seeds costing what one of 2 does: low) and
with time linear in members (high).
The extrapolation assumes the time per unit of work is the slice's: it ignores each notebook's fixed start-up
(imports, data, a few seconds, which makes the estimate high) and the mix of families where the
slice trains fewer of them than the paper profile. Writes results/gpu/check.json.
Target (DESIGN.md): the whole check within 5 minutes on one H200, the paper profile within 60.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from stabliab import params, runner
from stabliab.book import toc_notebooks

ROOT = Path(__file__).resolve().parents[1]
N_STABILISERS = 6  # notebook 04's reference configuration and its five stabilisers (experiments.c4)


LBFGS_RESTARTS = 5  # optim.minimize_lbfgs: each fit is up to this many restarts of lbfgs_iters iterations


def WORK(name: str, p: dict) -> list[tuple[float, int]]:
    """Notebook `name`'s work at resolved parameters p, as terms (steps x configurations, members): the
    members of a term (seeds, and for 01's L-BFGS fits seeds x random starts) train at once, as one
    stacked model. An L-BFGS iteration counts as a training step (one full-batch loss and gradient, a few
    in its line search)."""
    S = int(p["n_seeds"])
    if name.startswith("01"):  # gradient descent at each step size, standard training, then the forward and
        # reverse L-BFGS fits at their cap (the reverse fit always reaches it; the forward one stops earlier)
        return [(p["steps"] * (len(p["lr_fractions"]) + 1), S),
                (p["std_steps"] * (len(p["adamw_lrs"]) + len(p["sgd_lrs"])) * len(p["batch_sizes"]), S),
                (2 * LBFGS_RESTARTS * p["lbfgs_iters"], S * int(p["lbfgs_starts"]))]
    if name.startswith("02"):
        return [(len(p["archs"]) * (len(p["n_values"]) * p["steps"] + p["mode_steps"]) + p["mechanism_steps"], S)]
    if name.startswith("03"):  # the decisive design's prefix and its arms (ML, design, dose, sham), then exploratory;
        arms = 3 + len(p["dose_gains"])  # the donor trains beside the seeds
        return [(len(p["corpora"]) * len(p["archs"]) * (p["switch_on"] + arms * p["window"]
                                                         + (len(p["designs"]) + 1) * p["steps"]), S + 1)]
    if name.startswith("04"):  # every configuration at most max_steps (the stopping rule ends most runs earlier)
        return [((p["n_configs"] * len(p["sources"]) + N_STABILISERS) * p["max_steps"], S)]
    if name.startswith("05"):  # fine-tuning steps of one seed, plus the model as shipped (passages and prompts)
        return [(p["ft_steps"] + p["n_passages"] + p["n_prompts"] * p["gen_len"] / 64, S)]
    raise ValueError(f"no work formula for {name}")


def totals(terms: list[tuple[float, int]]) -> tuple[float, float]:
    """(work with members free, work times members) of WORK's terms."""
    return float(sum(w for w, _ in terms)), float(sum(w * m for w, m in terms))


def extrapolate(seconds: dict[str, float]) -> list[dict]:
    """One row per notebook: slice seconds, slice and paper work (steps x configurations; and times the
    members trained at once), and the extrapolated paper seconds two ways: members free (stacked members
    cost nothing more: a lower estimate) and members linear (each costs its share: an upper estimate)."""
    rows = []
    for name in toc_notebooks(ROOT):
        (wg, hg), (wp, hp) = (totals(WORK(name, params.resolve_parameters(ROOT, name, prof)))
                              for prof in ("gpu", "paper"))
        sec = seconds.get(name, float("nan"))
        rows.append({"notebook": name, "slice_s": sec, "slice_work": wg, "slice_member_work": hg, "paper_work": wp,
                     "paper_member_work": hp, "paper_s_low": sec * wp / wg, "paper_s_high": sec * hp / hg})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="print the work arithmetic without running anything")
    a = ap.parse_args()
    seconds, throughput = {}, ""
    if not a.dry_run:
        params.require_device(ROOT, "gpu")  # exit 2 below, naming what this machine has
        t0 = time.perf_counter()
        for name in toc_notebooks(ROOT):
            r = runner.run_notebook(ROOT, name, "gpu", force=True)
            seconds[name] = r.seconds
            print(f"{name}: {r.seconds:.1f} s", flush=True)
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "throughput.py"), "--size", "paper", "--steps", "5"],
                             capture_output=True, text=True)
        throughput = out.stdout + out.stderr
        print(throughput, flush=True)
        print(f"the check took {time.perf_counter() - t0:.0f} s")
    rows = extrapolate(seconds)
    print(f"{'notebook':30s} {'slice s':>8s} {'slice work, x members':>22s} {'paper work, x members':>22s} "
          f"{'paper s, low':>13s} {'high':>9s}")
    for r in rows:
        print(f"{r['notebook']:30s} {r['slice_s']:8.1f} {r['slice_work']:10.3g} {r['slice_member_work']:11.3g} "
              f"{r['paper_work']:10.3g} {r['paper_member_work']:11.3g} {r['paper_s_low']:13.0f} "
              f"{r['paper_s_high']:9.0f}")
    low, high = (sum(r[k] for r in rows) / 60 for k in ("paper_s_low", "paper_s_high"))
    print(f"paper profile, extrapolated: {low:.1f} to {high:.1f} min (slice seconds x paper work / slice work, "
          "summed; low: members stacked for free, high: time linear in members)")
    if not a.dry_run:
        out = ROOT / "results" / "gpu" / "check.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows, "paper_minutes_low": low, "paper_minutes_high": high, "throughput": throughput},
                                  indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except params.ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

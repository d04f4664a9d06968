"""Claim C4's room: stability against expressivity. c4_task trains an order-matched MLP
n-gram model on a Markov source with exact ground truth and measures, per seed, how
stable the optimisation was and how good the generative model is (exactly, from the
model's full conditional table); the functions below run the design, turn the sweep's
results into numeric tables and write the claim's records into the notebook's Report."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .. import lm, measures, members, optim, plateau, stats, sweep, train
from ..seeds import stream, streams
from ..sources import MarkovSource

NOTEBOOK = "04_stability_vs_expressivity"
STABILITY = ["loss_std", "grad_norm", "sharpness", "drift"]  # per seed; plus "disagreement" per configuration
QUALITY = ["entropy_ratio", "forward_kl", "reverse_kl", "coverage", "distinct4", "overconfidence", "heldout_ce"]
# the quality measures of the records: label -> name in c4_table
QUALITY_LABELS = {"entropy gap |log H_model/H*|": "entropy_gap", "forward KL rate": "forward_kl",
                  "reverse KL rate": "reverse_kl", "coverage": "coverage", "distinct-4": "distinct4",
                  "over-confidence": "overconfidence"}
# fixed parts of the measurement protocol (the same in every profile)
SOURCE_SEED = 0  # the Markov source
N_FIXED = 64  # sequences of the fixed evaluation batch (loss noise, sharpness)
N_GEN = 64  # sequences generated per seed (distinct-4)
N_EVALS = 40  # evaluations of the fixed-batch loss over training
SHARP_ITERS = 20  # power iterations for the top Hessian eigenvalue
PLATEAU_TOL = plateau.Tolerances()  # [pre-registered] the book's plateau test, as in C2
# the stabiliser study: a reference configuration (lr = the reference_lr parameter) and one stabiliser each
REFERENCE = dict(batch=32, n_train=256, weight_decay=0.0, label_smoothing=0.0, clip=0.0, ema=0.0, warmup=0.0,
                 schedule="constant")
STABILISERS = {"clipping": dict(clip=0.1), "moving average": dict(ema=0.99), "warm-up": dict(warmup=0.2)}
DELTAS = {"Δ forward KL": "forward_kl", "Δ coverage": "coverage", "Δ H_model/H*": "entropy_ratio"}
# bold a paired mean where its interval excludes 0 (records.style)
STABILISER_BOLD = {lab: f"{lab} ≠ 0" for lab in ["Δ instability", *DELTAS]}


def schedule_fn(steps: int, warmup: float, shape: str):
    """Learning-rate factor at step t: linear warm-up over a share of the steps, then
    constant or cosine decay to 0."""
    w = int(warmup * steps)

    def f(t):
        if t < w:
            return (t + 1) / w
        if shape == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (t - w) / max(1, steps - w)))
        return 1.0
    return f


def design_configs(*, n_configs: int, design: str, design_seed: int, lr_range: list, batch_range: list,
                   n_train_range: list, weight_decay_max: float, label_smoothing_max: float, clip_choices: list,
                   ema_choices: list, warmup_max: float) -> list[dict]:
    """The sweep's configurations: a seeded space-filling design (sweep.space_filling) over
    the learning rate, batch size and training-set size (log scales), weight decay, label
    smoothing, clipping, moving average, warm-up and schedule."""
    space = {"lr": ("log", *lr_range), "batch": ("int-log", *batch_range), "n_train": ("int-log", *n_train_range),
             "weight_decay": ("lin", 0.0, weight_decay_max), "label_smoothing": ("lin", 0.0, label_smoothing_max),
             "clip": ("choice", clip_choices), "ema": ("choice", ema_choices), "warmup": ("lin", 0.0, warmup_max),
             "schedule": ("choice", ["constant", "cosine"])}
    return sweep.space_filling(space, n_configs, seed=design_seed, method=design)


def stabiliser_configs(*, reference_lr: float) -> tuple[dict, dict[str, dict]]:
    """The reference configuration and, by name, the same with one stabiliser added
    (clipping, a moving average, warm-up, a learning rate ten times smaller)."""
    reference = dict(lr=reference_lr, **REFERENCE)
    with_one = {name: dict(reference, **change) for name, change in STABILISERS.items()}
    return reference, {**with_one, "smaller lr": dict(reference, lr=reference_lr / 10)}


def source(*, vocab: int, order: int, alpha: float) -> MarkovSource:
    """The one Markov source every C4 run learns (dense Dirichlet(alpha) rows)."""
    return MarkovSource.random(vocab, sparsity=0.0, alpha=alpha, order=order, seed=stream("source", SOURCE_SEED))


def c4_task(config: dict, seeds: list[int], *, vocab: int, order: int, alpha: float, seq_len: int, steps: int,
            d_model: int, hidden: int, tail: float, tau: float, device: str) -> dict:
    """config: lr, batch, weight_decay, label_smoothing, clip (0 = none), ema (0 = none),
    warmup (share of steps), schedule (constant | cosine), n_train (sequences). The keywords
    are the notebook's parameters of the same names (sweep.task_context)."""
    dev = torch.device(device)
    src = source(vocab=vocab, order=order, alpha=alpha)
    pi, H = src.stationary, src.entropy_rate
    data = torch.stack([members.with_bos(src.sample(int(config["n_train"]), seq_len, seed=stream("data", s)), vocab, dev)
                        for s in seeds])
    fixed = members.with_bos(src.sample(N_FIXED, seq_len, seed=stream("fixed", 0)), vocab, dev)[None].expand(len(seeds), -1, -1)
    every = max(1, steps // N_EVALS)
    t_snap = steps - int(tail * steps)
    snap = {}

    def fixed_loss(base, p, t):
        if t == t_snap:
            snap.update({k: v.detach().clone() for k, v in p.items()})
        return members.lm_loss(base, p, fixed)
    evals = sorted(set(range(0, steps + 1, every)) | {t_snap})
    traj, base = train.train_lm(
        "mlp", data, vocab=vocab, seeds=seeds, steps=steps, lr=float(config["lr"]), batch_size=int(config["batch"]),
        weight_decay=float(config["weight_decay"]), label_smoothing=float(config["label_smoothing"]),
        clip=float(config["clip"]) or None, ema=float(config["ema"]),
        schedule=schedule_fn(steps, float(config["warmup"]), config["schedule"]),
        eval_every=evals, eval_fns={"fixed": fixed_loss}, context=order, d=d_model, hidden=hidden, desc="c4")
    final = traj.ema_params if traj.ema_params is not None else traj.params
    M = len(seeds)
    # ---- stability, per seed
    fl = traj["fixed"]  # [E, M] loss on the fixed batch
    last = traj.eval_step >= t_snap
    out = {"diverged": [bool(not np.isfinite(fl[-1, m])) for m in range(M)]}
    pl = plateau.measure_members(traj.eval_step, fl, tol=PLATEAU_TOL)  # the fixed batch: fresh source sequences
    out["at_plateau"], out["plateau_slope"] = pl["at_plateau"].tolist(), pl["slope"].tolist()  # (a population loss)
    # one seed at a time: a least-squares fit over several columns rounds differently (per-seed caching)
    out["loss_std"] = [float(measures.detrended_std(fl[last, m])) for m in range(M)]
    out["grad_norm"] = traj.grad_norm[-max(1, int(tail * steps)):].mean(0).tolist()
    lam = optim.top_hessian_eigenvalue(lambda p: members.lm_loss(base, p, fixed), traj.params, iters=SHARP_ITERS,
                                       member_seeds=streams("power", seeds))
    out["sharpness"] = (float(config["lr"]) * lam.abs().cpu().numpy()).tolist()
    num = optim.member_norm([traj.params[k] - snap[k] for k in snap], M)
    out["drift"] = (num / optim.member_norm(traj.params.values(), M)).cpu().numpy().tolist()
    # ---- quality, per seed, exact from the model's conditional table
    Q = np.stack([lm.ngram_table(members.member(base, final, m), src.context_tokens()).cpu().numpy()
                  for m in range(M)])  # [M, C, V]
    for name in QUALITY:
        out[name] = []
    tok, _ = members.sample_members(base, final, N_GEN, seq_len, seed=0, member_seeds=streams("sample", seeds))
    for m in range(M):
        chain = MarkovSource(Q[m] / Q[m].sum(1, keepdims=True), order)
        Hm = chain.entropy_rate
        fkl = measures.conditional_kl(pi, src.P, Q[m])
        out["entropy_ratio"].append(Hm / H)
        out["forward_kl"].append(fkl)
        out["reverse_kl"].append(measures.conditional_kl(chain.stationary, Q[m], src.P))
        out["coverage"].append(float(np.dot(pi, (src.P * (Q[m] >= tau)).sum(1))))
        out["distinct4"].append(measures.distinct_n(tok[m], 4))
        out["heldout_ce"].append(H + fkl)
        out["overconfidence"].append(Hm - (H + fkl))
    # ---- for the seed-to-seed disagreement, computed across seeds afterwards (disagreement)
    out["table"] = Q.tolist()
    out["weights"] = [pi.tolist()] * M
    return out


def run_c4(parameters: dict, seeds: list[int], device: str) -> dict:
    """Every configuration of the notebook (the design, the reference, each stabiliser) for
    every seed, through the sweep engine with the notebook's executor, cached under
    results/PROFILE/sweeps/. -> {"design": [sweep record per configuration], "reference":
    record, "stabilisers": {name: record}}."""
    configs = design_configs(**sweep.task_context(design_configs, parameters))
    reference, stabilisers = stabiliser_configs(**sweep.task_context(stabiliser_configs, parameters))
    out = sweep.run_sweep(c4_task, configs + [reference, *stabilisers.values()], seeds, sweep.results_dir(NOTEBOOK),
                          executor=parameters["executor"], workers=parameters["workers"] or None,
                          context=sweep.task_context(c4_task, parameters, device=device), device=device,
                          desc="C4 configurations")
    n = len(configs)
    return {"design": out[:n], "reference": out[n], "stabilisers": dict(zip(stabilisers, out[n + 1:]))}


def instability_index(values: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """The pre-registered index: the mean over stability measures (columns; each larger
    when less stable, all positive) of their standardised logarithms. Larger = less stable."""
    return stats.standardise(values, ref).mean(-1)


def disagreement(result: dict) -> float:
    """Seed-to-seed disagreement of one configuration: the mean over pairs of seeds of
    the Jensen-Shannon divergence between their conditional tables, weighted by the
    source's stationary law (result["table"]: per seed [C, V]; result["weights"]: [C])."""
    Q = np.asarray(result["table"], dtype=np.float64)
    w = np.asarray(result["weights"][0], dtype=np.float64)
    js = [float(np.dot(w, measures.js_divergence(Q[a], Q[b]))) for a in range(len(Q)) for b in range(a + 1, len(Q))]
    return float(np.mean(js)) if js else float("nan")


def stability_measures(result: dict, stability: list[str]) -> np.ndarray:
    """[S, K] one configuration's stability measures per seed: the per-seed ones, then
    the configuration's seed disagreement (the same for every seed)."""
    per_seed = np.stack([np.asarray(result[n], dtype=np.float64) for n in stability], -1)  # [S, K-1]
    return np.concatenate([per_seed, np.full((len(per_seed), 1), disagreement(result))], -1)


def c4_table(records: list[dict], stability: list[str], quality: list[str]) -> dict:
    """Sweep records -> {"configs": [...], name: [C, S] per-seed values,
    "entropy_gap": |log H_model / H*| [C, S], "measures": [C, S, K] stability measures,
    "diverged": [C] (a non-finite loss or measure in any seed)}."""
    res = [r["result"] for r in records]
    t = {"configs": [r["config"] for r in records]}
    for name in quality:
        t[name] = np.array([r[name] for r in res], dtype=np.float64)
    t["entropy_gap"] = np.abs(np.log(t["entropy_ratio"]))
    t["measures"] = np.stack([stability_measures(r, stability) for r in res])
    bad = np.array([any(r["diverged"]) for r in res]) | ~np.isfinite(t["measures"]).all((1, 2))
    for name in quality:
        bad |= ~np.isfinite(t[name]).all(1)
    t["diverged"] = bad
    return t


def instability(values: np.ndarray, table: dict) -> np.ndarray:
    """Per-seed instability index of measures [..., K], standardised by the usable
    configurations of the design in `table`."""
    ref = table["measures"][~table["diverged"]].reshape(-1, table["measures"].shape[-1])
    return instability_index(np.maximum(values, 1e-300), np.maximum(ref, 1e-300))


# ---------------------------------------------------------------------- tables and records
def record_parameters(report) -> None:
    """The design's sizes and the values fixed before the run, as glued metrics."""
    p = report.parameters
    report.metric("c4_tail", p["tail"])
    report.metric("c4_rank_bound", p["rank_bound"])
    report.metric("c4_n_configs", p["n_configs"])
    report.metric("c4_n_seeds", p["n_seeds"])
    report.metric("c4_reference_lr", p["reference_lr"])
    report.metric("c4_reference_batch", REFERENCE["batch"])
    report.metric("c4_reference_n_train", REFERENCE["n_train"])


def config_table(table: dict, inst: np.ndarray) -> pd.DataFrame:
    """One row per usable configuration, most stable first: its settings, the mean over
    seeds of its instability index (inst [C, S]) and of each quality measure."""
    means = {lab: table[q].mean(1) for lab, q in QUALITY_LABELS.items()}  # [C] each
    df = pd.DataFrame(table["configs"]).assign(instability=inst.mean(1), **means)
    return df[~table["diverged"]].sort_values("instability")


def record_design(report, table: dict, design: list[dict]) -> None:
    """How many configurations enter the analysis and how many diverged; C4.plateau (a diagnostic): the
    share of the design's runs (configuration × seed; sweep records) whose fixed-batch loss reached its
    plateau, against plateau.SHARE. The C4 records do not yet count only runs at plateau (the C4 issue
    trains every configuration to its plateau)."""
    report.metric("c4_n_diverged", int(table["diverged"].sum()))
    report.metric("c4_n_used", int((~table["diverged"]).sum()))
    used = ~table["diverged"]  # the configurations the C4 records use
    at = np.array([r["result"]["at_plateau"] for r in design], dtype=bool)[used]  # [C', S]
    report.mark(report.share("C4.plateau", "the C4 design's runs (every usable configuration and seed, pooled) "
                             "reached their plateau: loss on the fixed batch flat over the last window "
                             "(plateau.measure, tolerances fixed in advance); share of runs", at, plateau.SHARE),
                "diagnostic")
    slope = np.array([r["result"]["plateau_slope"] for r in design], dtype=np.float64)[used]
    report.metric("c4_plateau_median_slope", float(np.nanmedian(slope)))


def _rank_record(report, id: str, statement: str, stab, Y, Z=None) -> dict:
    """One bootstrap rank-correlation record within +-rank_bound; its table row."""
    p = report.parameters
    bound = p["rank_bound"]
    v, ci = stats.rank_bootstrap(stab, Y, Z, n_boot=p["n_boot"], seed=p["seed"])
    c = report.claim(id, f"{statement} within ±{bound:g}", v, ci, (-bound, bound), "within", rule="bootstrap",
                     n=len(stab))
    return {"ρ": v, "lo": ci[0], "hi": ci[1], "verdict": c.verdict}


def rank_records(report, table: dict, inst: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """C4.rank[Q] (Spearman's rho between the stability index and quality Q over usable
    configurations) and C4.partial[Q] (the same given the held-out cross-entropy; none
    for the forward KL rate, which is that cross-entropy minus a constant). Returns the
    two tables (index: quality; rho, lo, hi, verdict) and glues how many are supported and
    how many contradicted."""
    ok = ~table["diverged"]
    stab, ce = -inst[ok], table["heldout_ce"][ok]  # [C', S]
    rank, partial = {}, {}
    for lab, q in QUALITY_LABELS.items():
        Y = table[q][ok]
        rank[lab] = _rank_record(report, f"C4.rank[{q}]", f"stability index vs {lab}: Spearman ρ over "
                                 "configurations", stab, Y)
        if q != "forward_kl":
            partial[lab] = _rank_record(report, f"C4.partial[{q}]", f"stability index vs {lab} given held-out "
                                        "cross-entropy: partial Spearman ρ", stab, Y, ce)
    report.metric("c4_rho_ce", stats.spearman(stab.mean(1), ce.mean(1)))
    rank, partial = (pd.DataFrame.from_dict(t, orient="index").rename_axis("quality") for t in (rank, partial))
    for name, t in [("rank", rank), ("partial", partial)]:
        report.metric(f"c4_{name}_holds", int((t["verdict"] == "supported").sum()))
        report.metric(f"c4_{name}_contradicted", int((t["verdict"] == "contradicted").sum()))
        report.metric(f"c4_{name}_count", len(t))
    return rank, partial


def paired_columns(name: str, treated, baseline) -> dict:
    """Table cells of a paired difference treated - baseline (same seeds): its mean, the
    Student-t interval (name lo, name hi) and whether that interval excludes 0."""
    d = np.asarray(treated, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    lo, hi = stats.paired_interval(treated, baseline)
    return {name: float(d.mean()), f"{name} lo": lo, f"{name} hi": hi, f"{name} ≠ 0": not lo <= 0 <= hi}


def stabiliser_records(report, runs: dict, table: dict) -> tuple[pd.DataFrame, dict]:
    """C4.stabilisers[NAME]: adding one stabiliser to the reference configuration lowers
    each seed's instability index (paired over seeds; standardised by the design in
    `table`). Returns the table (index: stabiliser; paired change of the index and of each
    quality in DELTAS, with a verdict column) and, per stabiliser, the per-seed changes
    {"instability", "forward_kl"} for the figure."""
    ref = runs["reference"]["result"]
    a = instability(stability_measures(ref, STABILITY), table)  # [S]
    rows, deltas = {}, {}
    for name, rec in runs["stabilisers"].items():
        res = rec["result"]
        b = instability(stability_measures(res, STABILITY), table)
        c = report.paired(f"C4.stabilisers[{name}]", f"adding {name} to the reference configuration lowers each "
                          "seed's instability index (paired difference)", b, a, 0.0, "<")
        rows[name] = {**paired_columns("Δ instability", b, a), "verdict": c.verdict,
                      **{k: v for lab, q in DELTAS.items() for k, v in paired_columns(lab, res[q], ref[q]).items()}}
        deltas[name] = {"instability": b - a, "forward_kl": np.subtract(res["forward_kl"], ref["forward_kl"])}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("stabiliser"), deltas

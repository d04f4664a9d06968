"""Claim C4's room: stability against expressivity at matched training progress. The task
(c4_task.py) trains every seed of a configuration until its loss stops falling and
measures stability and exact quality; the functions below run the design on each source,
turn the sweep's results into numeric tables and write the claim's records into the
notebook's Report:

- C4.insufficient[Q] (one-sided): stability does not predict better quality Q (oriented so
  that higher is better): the upper end of the interval of Spearman's rho lies below the
  pre-registered bound; also given the learning rate and given the held-out loss;
- C4.liability (directional): more stable training ends with less entropy than the source,
  rho(stability, log H_model / H*) < 0; also given the learning rate and the loss;
- C4.beyond[Q]: what the stability measures add to the held-out loss in cross-validated
  prediction of Q (R^2 gain, scikit-learn folds by configuration) stays below a floor;
- C4.stabilisers[NAME]: one stabiliser added to a reference configuration, paired by seed.
Each record is made per source and aggregated over the sources (every source must agree)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import measures, plateau, predict, stats, sweep
from .c4_task import QUALITY, STABILITY, STATES, c4_task

NOTEBOOK = "04_stability_vs_expressivity"
SOURCES = ("dense", "sparse")
# the quality measures of C4.insufficient and C4.beyond, each oriented so that higher is better:
# label -> (name in the table, sign); "calibration" is -|overconfidence| (0 = calibrated)
ORIENTED = {"forward KL (negated)": ("forward_kl", -1), "coverage": ("coverage", 1), "distinct-4": ("distinct4", 1),
            "calibration": ("overconfidence", 0)}
ENTROPY = "log H_model/H*"  # C4.liability's signed endpoint: < 0 = less entropy than the source
COMPONENTS = [*STABILITY, "disagreement"]  # the index's components (the last one per configuration)
FACTORS = {"learning rate": "lr", "training sequences": "n_train", "batch size": "batch"}  # the design's log-scale axes
MOSTLY = 0.7  # an index with |rho| >= this against the learning rate is "mostly the learning rate" (set after the
# C4 issue reported rho = -0.77 on the earlier design: named in the notebook)
MIN_CONFIGS = 5  # fewer used configurations than this: a rank record is untestable
# the stabiliser study: a reference configuration (lr = the reference_lr parameter) and one stabiliser each
REFERENCE = dict(batch=32, n_train=256, weight_decay=0.0, label_smoothing=0.0, clip=0.0, ema=0.0, warmup=0.0)
STABILISERS = {"clipping": dict(clip=0.1), "moving average": dict(ema=0.99), "warm-up": dict(warmup=0.5),
               "weight decay": dict(weight_decay=0.1)}
DELTAS = {"Δ forward KL": "forward_kl", "Δ coverage": "coverage", "Δ distinct-4": "distinct4",
          "Δ over-confidence": "overconfidence", f"Δ {ENTROPY}": "log_entropy_ratio", "Δ steps": "steps"}
# bold a paired mean where its interval excludes 0 (records.style)
STABILISER_BOLD = {lab: f"{lab} ≠ 0" for lab in ["Δ instability", *DELTAS]}


def design_configs(*, n_configs: int, design: str, design_seed: int, sources: list, lr_range: list,
                   batch_range: list, n_train_range: list, weight_decay_max: float, label_smoothing_max: float,
                   clip_choices: list, ema_choices: list, warmup_max: float) -> list[dict]:
    """The sweep's configurations: one seeded space-filling design (sweep.space_filling) over
    the learning rate, batch size and training-set size (log scales), weight decay, label
    smoothing, clipping, moving average and warm-up, the same points for every source."""
    space = {"lr": ("log", *lr_range), "batch": ("int-log", *batch_range), "n_train": ("int-log", *n_train_range),
             "weight_decay": ("lin", 0.0, weight_decay_max), "label_smoothing": ("lin", 0.0, label_smoothing_max),
             "clip": ("choice", clip_choices), "ema": ("choice", ema_choices), "warmup": ("lin", 0.0, warmup_max)}
    points = sweep.space_filling(space, n_configs, seed=design_seed, method=design)
    return [dict(p, source=s) for s in sources for p in points]


def stabiliser_configs(*, reference_lr: float, sources: list) -> tuple[dict, dict[str, dict]]:
    """The reference configuration (on the first source) and, by name, the same with one
    stabiliser added (clipping, a moving average, warm-up, weight decay, a learning rate ten
    times smaller)."""
    reference = dict(lr=reference_lr, **REFERENCE, source=sources[0])
    with_one = {name: dict(reference, **change) for name, change in STABILISERS.items()}
    return reference, {**with_one, "smaller lr": dict(reference, lr=reference_lr / 10)}


def run_c4(parameters: dict, seeds: list[int], device: str) -> dict:
    """Every configuration of the notebook (the design on each source, the reference, each
    stabiliser) for every seed, through the sweep engine with the notebook's executor, cached
    under results/PROFILE/sweeps/. -> {"design": {source: [sweep record per configuration]},
    "reference": record, "stabilisers": {name: record}}."""
    configs = design_configs(**sweep.task_context(design_configs, parameters))
    reference, stabilisers = stabiliser_configs(**sweep.task_context(stabiliser_configs, parameters))
    out = sweep.run_sweep(c4_task, configs + [reference, *stabilisers.values()], seeds, sweep.results_dir(NOTEBOOK),
                          executor=parameters["executor"], workers=parameters["workers"] or None,
                          context=sweep.task_context(c4_task, parameters, device=device), device=device,
                          desc="C4 configurations")
    n = len(configs)
    design = {s: [r for r in out[:n] if r["config"]["source"] == s] for s in parameters["sources"]}
    return {"design": design, "reference": out[n], "stabilisers": dict(zip(stabilisers, out[n + 1:]))}


# ---------------------------------------------------------------------- tables
def disagreement(result: dict) -> float:
    """Seed-to-seed disagreement of one configuration: the mean over pairs of seeds of
    the Jensen-Shannon divergence between their conditional tables, weighted by the
    source's stationary law (result["table"]: per seed [C, V], None for a seed whose parameters
    are not finite: then NaN; result["weights"]: [C])."""
    if any(q is None for q in result["table"]):
        return float("nan")
    Q = np.asarray(result["table"], dtype=np.float64)
    w = np.asarray(result["weights"][0], dtype=np.float64)
    js = [float(np.dot(w, measures.js_divergence(Q[a], Q[b]))) for a in range(len(Q)) for b in range(a + 1, len(Q))]
    return float(np.mean(js)) if js else float("nan")


def seed_measures(result: dict) -> np.ndarray:
    """[S, 4] one configuration's per-seed stability measures (STABILITY; NaN where None)."""
    return np.stack([np.array(result[n], dtype=np.float64) for n in STABILITY], -1)


def c4_table(records: list[dict]) -> dict:
    """One source's sweep records -> {"configs": [...], name: [C, S] per-seed values of QUALITY,
    "steps", "log_entropy_ratio"; "measures": [C, S, 4] per-seed stability measures,
    "disagreement": [C] (one per configuration); "state": [C, S] (c4_task.STATES), "at_plateau"
    [C, S]; per configuration [C]: "used" (every seed at plateau: a stationary point of its
    training loss), "diverged" (a seed diverged, or a measure is not finite), "oscillating" (not
    diverged, a seed oscillating in place: it never settles), "unfinished" (the rest: a seed still
    descending or rising at max_steps)}."""
    res = [r["result"] for r in records]
    t = {"configs": [r["config"] for r in records]}
    for name in [*QUALITY, "steps"]:
        t[name] = np.array([r[name] for r in res], dtype=np.float64)
    t["log_entropy_ratio"] = np.log(t["entropy_ratio"])
    t["state"] = np.array([r["state"] for r in res], dtype=object)
    t["at_plateau"] = t["state"] == "plateau"
    t["measures"] = np.stack([seed_measures(r) for r in res])
    t["disagreement"] = np.array([disagreement(r) for r in res])
    bad = (t["state"] == "diverged").any(1) | ~np.isfinite(t["measures"]).all((1, 2))
    for name, _ in ORIENTED.values():
        bad |= ~np.isfinite(t[name]).all(1)
    t["diverged"] = bad
    t["used"] = ~bad & t["at_plateau"].all(1)
    t["oscillating"] = ~bad & ~t["used"] & (t["state"] == "oscillating").any(1)
    t["unfinished"] = ~bad & ~t["used"] & ~t["oscillating"]
    return t


def oriented(table: dict, label: str) -> np.ndarray:
    """[C, S] quality measure `label` of ORIENTED, higher = better."""
    name, sign = ORIENTED[label]
    v = table[name]
    return -np.abs(v) if sign == 0 else sign * v


def instability(table: dict, per_seed: np.ndarray | None = None, disagree: np.ndarray | None = None) -> np.ndarray:
    """The pre-registered instability index: the mean over components of their standardised
    logarithms (stats.standardise, with the mean and sd of the used configurations of `table`);
    larger = less stable. Default: the design's own index [C, S], the four per-seed measures and
    the configuration's disagreement (the same for its seeds). per_seed [..., 4] (and no
    disagree): the per-seed index of other runs, from the four per-seed measures only."""
    ok = table["used"]
    ref = np.maximum(table["measures"][ok].reshape(-1, len(STABILITY)), 1e-300)
    if per_seed is not None:
        return stats.standardise(np.maximum(per_seed, 1e-300), ref).mean(-1)
    z = stats.standardise(np.maximum(table["measures"], 1e-300), ref)  # [C, S, 4]
    d = stats.standardise(np.maximum(table["disagreement"], 1e-300), np.maximum(table["disagreement"][ok], 1e-300))
    return np.concatenate([z, np.broadcast_to(d[:, None, None], z.shape[:2] + (1,))], -1).mean(-1)


def config_table(table: dict, inst: np.ndarray) -> pd.DataFrame:
    """One row per configuration of one source, most stable first: its settings, the steps it
    trained, whether it is used (or diverged, or oscillating), the mean over seeds of its
    instability index (inst [C, S]) and of each quality measure."""
    means = {lab: oriented(table, lab).mean(1) for lab in ORIENTED}
    df = pd.DataFrame(table["configs"]).drop(columns="source").assign(
        steps=table["steps"].mean(1), used=table["used"], diverged=table["diverged"],
        oscillating=table["oscillating"], instability=inst.mean(1),
        **{ENTROPY: table["log_entropy_ratio"].mean(1)}, **means)
    return df.sort_values("instability")


def component_table(table: dict) -> pd.DataFrame:
    """Spearman's rho (over used configurations, means over seeds) of each stability component
    and of the index with each log-scale factor of the design: is stability measured, or is it
    the learning rate relabelled?"""
    ok = table["used"]
    comps = {n: table["measures"][ok][..., i].mean(1) for i, n in enumerate(STABILITY)}
    comps["disagreement"] = table["disagreement"][ok]
    comps["instability index"] = instability(table)[ok].mean(1)
    cfg = pd.DataFrame(table["configs"])[ok]
    rows = {n: {f"ρ vs {lab}": stats.spearman(v, cfg[f].to_numpy()) for lab, f in FACTORS.items()}
            for n, v in comps.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("component")


def figure_data(tables: dict) -> dict:
    """For plots.c4.quality_against_stability: per source, the used configurations' stability
    index (mean over seeds) and, per quality label (ORIENTED, then ENTROPY), the [C', S] values."""
    out = {}
    for s, t in tables.items():
        ok = t["used"]
        out[s] = {"stability": -instability(t)[ok].mean(1),
                  **{lab: oriented(t, lab)[ok] for lab in ORIENTED}, ENTROPY: t["log_entropy_ratio"][ok]}
    return out


def factor(table: dict, name: str) -> np.ndarray:
    """[C, S] the log of a configuration setting, the same for its seeds."""
    v = np.log(np.array([c[name] for c in table["configs"]], dtype=np.float64))
    return np.broadcast_to(v[:, None], table["steps"].shape)


# ---------------------------------------------------------------------- records
def record_parameters(report) -> None:
    """The design's sizes and the values fixed before the run, as glued metrics."""
    p = report.parameters
    for name in ["tail", "rank_bound", "r2_floor", "n_configs", "n_seeds", "reference_lr", "min_steps", "max_steps"]:
        report.metric(f"c4_{name}", p[name])
    report.metric("c4_reference_batch", REFERENCE["batch"])
    report.metric("c4_reference_n_train", REFERENCE["n_train"])
    report.metric("c4_mostly", MOSTLY)


def record_design(report, tables: dict) -> None:
    """Per source: how many configurations are used (every seed at plateau), diverged (the
    learning rates where that begins), oscillating in place and unfinished; the steps the used
    ones needed; C4.plateau[SOURCE] (diagnostic: the share of the design's non-diverged runs
    that reached a stationary point of their training loss, against plateau.SHARE)."""
    for s, t in tables.items():
        key = f"c4_{s}"
        for name in ["used", "diverged", "oscillating", "unfinished"]:
            report.metric(f"{key}_n_{name}", int(t[name].sum()))
        lr = np.array([c["lr"] for c in t["configs"]])
        for name, pick, f in [("min_diverged_lr", t["diverged"], np.min), ("min_oscillating_lr", t["oscillating"], np.min),
                              ("max_used_lr", t["used"], np.max), ("min_used_lr", t["used"], np.min)]:
            report.metric(f"{key}_{name}", float(f(lr[pick])) if pick.any() else float("nan"))
        report.metric(f"{key}_median_steps", float(np.median(t["steps"][t["used"]])) if t["used"].any() else float("nan"))
        report.mark(report.share(f"C4.plateau[{s}]", f"the {s} source's design runs that did not diverge (every "
                                 "configuration and seed, pooled) reached a stationary point of their training loss "
                                 "(plateau.measure) before max_steps; share of runs",
                                 t["at_plateau"][~t["diverged"]], plateau.SHARE), "diagnostic")


def state_table(tables: dict) -> pd.DataFrame:
    """Per source and state (c4_task.STATES): how many runs (configuration x seed) ended there, and
    the range of their learning rates: the design's regions."""
    rows = {}
    for s, t in tables.items():
        lr = np.broadcast_to(np.array([c["lr"] for c in t["configs"]])[:, None], t["state"].shape)
        for st in STATES:
            pick = t["state"] == st
            rows[(s, st)] = {"runs": int(pick.sum()), "lr min": float(lr[pick].min()) if pick.any() else np.nan,
                             "lr max": float(lr[pick].max()) if pick.any() else np.nan}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["source", "state"])
    return df


def _rank(report, id: str, statement: str, stab, Y, Z, threshold: float) -> dict:
    """One bootstrap rank-correlation record, supported when the whole interval lies below
    `threshold`; its table row."""
    p = report.parameters
    if len(stab) >= MIN_CONFIGS:
        v, ci = stats.rank_bootstrap(stab, Y, Z, n_boot=p["n_boot"], seed=p["seed"])
    else:  # too few used configurations for a rank correlation: untestable
        v, ci = float("nan"), (float("nan"), float("nan"))
    c = report.claim(id, statement, v, ci, threshold, "<", rule="bootstrap", n=len(stab))
    return {"ρ": v, "lo": ci[0], "hi": ci[1], "verdict": c.verdict, "claim": c}


GIVEN = {"": "", "given lr": " (partial, given the log learning rate)",
         "given loss": " (partial, given the held-out cross-entropy)"}  # the conditions of the rank records


def record_id(name: str, *parts: str) -> str:
    """"C4.liability" + ("dense", "given lr") -> "C4.liability[dense, given lr]"; a name that has
    brackets already takes the parts inside them: "C4.insufficient[coverage]" + ("dense",) ->
    "C4.insufficient[coverage, dense]"."""
    parts = [x for x in parts if x]
    if not parts:
        return name
    if name.endswith("]"):
        return f"{name[:-1]}, {', '.join(parts)}]"
    return f"{name}[{', '.join(parts)}]"


def rank_records(report, tables: dict) -> pd.DataFrame:
    """C4.insufficient[Q, SOURCE] and C4.liability[SOURCE], each plain, given the learning rate
    and given the held-out cross-entropy (none for the forward KL given the loss: it is that loss
    minus a constant), over the used configurations; then their aggregates over the sources
    (C4.insufficient[Q], C4.insufficient[Q, given lr], ..., C4.liability, ...). Returns one
    table: index (record, source); rho, lo, hi, verdict."""
    p = report.parameters
    rows, members = {}, {}
    for s, t in tables.items():
        ok = t["used"]
        stab = -instability(t)[ok]  # [C', S] stability index: higher = more stable
        Z = {"": None, "given lr": factor(t, "lr")[ok], "given loss": t["heldout_ce"][ok]}
        targets = {f"C4.insufficient[{lab}]": (oriented(t, lab)[ok], p["rank_bound"],
                                               f"stability does not predict better {lab}: Spearman ρ(stability "
                                               f"index, {lab}){{}} over configurations < {p['rank_bound']:g}")
                   for lab in ORIENTED}
        targets["C4.liability"] = (t["log_entropy_ratio"][ok], 0.0, "more stable training ends with less entropy "
                                   f"than the source: Spearman ρ(stability index, {ENTROPY}){{}} < 0")
        for name, (Y, bound, statement) in targets.items():
            for g, z in Z.items():
                if g == "given loss" and "forward KL" in name:
                    continue
                agg = record_id(name, g)
                row = _rank(report, record_id(name, s, g), f"{s} source: {statement.format(GIVEN[g])}",
                            stab, Y, z, bound)
                members.setdefault(agg, (statement.format(GIVEN[g]), []))[1].append(row.pop("claim"))
                rows[(agg, s)] = row
    for agg, (statement, claims) in members.items():
        c = report.aggregate(agg, f"for every source: {statement}", claims)
        rows[(agg, "all")] = _row(c, "ρ")
    return _indexed(rows)


def _row(c, name: str) -> dict:
    """The table row of an aggregate record."""
    lo, hi = c.interval if c.interval is not None else (np.nan, np.nan)
    return {name: c.value, "lo": lo, "hi": hi, "verdict": c.verdict}


def _indexed(rows: dict) -> pd.DataFrame:
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["record", "source"])
    return df


def beyond_records(report, tables: dict) -> pd.DataFrame:
    """C4.beyond[Q, SOURCE]: the gain in cross-validated R^2 (predict.r2_gain_bootstrap: ridge on the
    held-out cross-entropy and its square, with and without the instability index;
    folds and bootstrap by configuration) in predicting each seed's quality Q, supported when
    its interval lies below r2_floor ("stability adds nothing beyond the loss"); aggregated
    over sources as C4.beyond[Q]. Q: every oriented measure but the forward KL (the loss minus
    a constant) and the signed entropy. Returns (record, source) -> gain, lo, hi, verdict."""
    p = report.parameters
    rows, members = {}, {}
    labels = [lab for lab in ORIENTED if ORIENTED[lab][0] != "forward_kl"] + [ENTROPY]
    for s, t in tables.items():
        ok = t["used"]
        C, S = int(ok.sum()), t["steps"].shape[1]
        X = instability(t)[ok].reshape(C * S, 1)  # the pre-registered index: one column (tens of configurations)
        groups = np.repeat(np.arange(C), S)
        for lab in labels:
            y = (t["log_entropy_ratio"] if lab == ENTROPY else oriented(t, lab))[ok].ravel()
            folds = min(predict.CV_FOLDS, C // 2)  # fewer folds only where there are few configurations
            if folds >= 2:
                v, ci = predict.r2_gain_bootstrap(t["heldout_ce"][ok].ravel(), X, y, groups,
                                                n_boot=p["n_boot_cv"], seed=p["seed"], folds=folds)
            else:
                v, ci = float("nan"), (float("nan"), float("nan"))
            c = report.claim(record_id(f"C4.beyond[{lab}]", s), f"{s} source: the instability index adds less than "
                             f"{p['r2_floor']:g} to the held-out loss's cross-validated R² for {lab}", v, ci,
                             p["r2_floor"], "<", rule="cv-bootstrap", n=C)
            members.setdefault(lab, []).append(c)
            rows[(f"C4.beyond[{lab}]", s)] = {"R² gain": v, "lo": ci[0], "hi": ci[1], "verdict": c.verdict}
    for lab, claims in members.items():
        c = report.aggregate(f"C4.beyond[{lab}]", f"for every source: the instability index adds less than "
                             f"{p['r2_floor']:g} to the held-out loss's cross-validated R² for {lab}", claims)
        rows[(f"C4.beyond[{lab}]", "all")] = _row(c, "R² gain")
    return _indexed(rows)


def summary(report, tables: dict) -> pd.DataFrame:
    """Per source: rho of the index with the learning rate (and whether that makes it "mostly the
    learning rate", |rho| >= MOSTLY), glued; the component table of each source, stacked."""
    out = []
    for s, t in tables.items():
        ct = component_table(t)
        rho = float(ct.loc["instability index", "ρ vs learning rate"])
        report.metric(f"c4_{s}_rho_index_lr", rho)
        report.metric(f"c4_{s}_mostly_lr", "is" if abs(rho) >= MOSTLY else "is not")
        out.append(ct.assign(source=s).set_index("source", append=True))
    return pd.concat(out)


def paired_columns(name: str, treated, baseline) -> dict:
    """Table cells of a paired difference treated - baseline (same seeds): its mean, the
    Student-t interval (name lo, name hi) and whether that interval excludes 0."""
    d = np.asarray(treated, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if d.size < 2 or not np.isfinite(d).all():  # too few pairs for an interval
        return {name: float(d.mean()) if d.size else np.nan, f"{name} lo": np.nan, f"{name} hi": np.nan,
                f"{name} ≠ 0": False}
    lo, hi = stats.paired_interval(treated, baseline)
    return {name: float(d.mean()), f"{name} lo": lo, f"{name} hi": hi, f"{name} ≠ 0": not lo <= 0 <= hi}


NOT_ON_TRAJECTORY = ("moving average",)  # stabilisers that change the delivered model only, not the trajectory


def stabiliser_records(report, runs: dict, table: dict) -> tuple[pd.DataFrame, dict]:
    """C4.stabilisers[NAME]: adding one stabiliser to the reference configuration lowers each
    seed's instability index, from the four per-seed measures only (paired over the seeds at
    plateau in both runs, n in the table; standardised by the used design configurations of the
    reference's source in `table`); the configuration's seed disagreement is one number per run,
    so its change (Δ disagreement) has no interval. A stabiliser in NOT_ON_TRAJECTORY leaves the
    trajectory the index measures unchanged by construction: its record is untestable (not
    applicable), its quality changes are shown. Returns the table (index: stabiliser; paired
    change of the index and of every quality in DELTAS, n, verdict) and, per stabiliser, the
    per-seed changes {"instability", "forward_kl"} for the figure."""
    ref = runs["reference"]["result"]
    a_all = instability(table, seed_measures(ref))  # [S]
    rows, deltas = {}, {}

    def value(res, q, pick):
        v = np.log(np.array(res["entropy_ratio"], dtype=np.float64)) if q == "log_entropy_ratio" else \
            np.array(res[q], dtype=np.float64)
        return v[pick]
    for name, rec in runs["stabilisers"].items():
        res = rec["result"]
        pick = np.array(ref["at_plateau"], bool) & np.array(res["at_plateau"], bool)  # seeds at plateau in both
        a, b = a_all[pick], instability(table, seed_measures(res))[pick]
        statement = (f"adding {name} to the reference configuration lowers each seed's instability index (per-seed "
                     "measures; paired difference over the seeds at plateau in both runs)")
        if name in NOT_ON_TRAJECTORY:
            c = report.claim(f"C4.stabilisers[{name}]", statement + ": not applicable, it acts on the delivered model "
                             "only", float("nan"), None, 0.0, "<", n=int(pick.sum()))
        else:
            c = report.paired(f"C4.stabilisers[{name}]", statement, b, a, 0.0, "<")
        rows[name] = {**paired_columns("Δ instability", b, a), "n": int(pick.sum()), "verdict": c.verdict,
                      "Δ disagreement": disagreement(res) - disagreement(ref),
                      **{k: v for lab, q in DELTAS.items()
                         for k, v in paired_columns(lab, value(res, q, pick), value(ref, q, pick)).items()}}
        deltas[name] = {"instability": b - a, "forward_kl": value(res, "forward_kl", pick) - value(ref, "forward_kl", pick)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("stabiliser"), deltas

"""Claim C3's room: feedback designs on the Markov source and Shakespeare. The task and
its result format are in experiments.c3_task (re-exported here, so that the notebook and
the tests name one module); this module resolves the notebook's designs, computes the
gate, writes the claim's records, and turns records and results into numeric tables
(formatting happens only at glue time, records.style)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import feedback, measures, plateau, records, sweep
from ..stats import mean_interval
from .c3_task import (ARM_STATISTICS, DONOR, EVAL_STEP, HALVES, N_TEXTS, OUTCOMES, PREFIX, TEXTS, acting_start,
                      arm_configurations, arm_key, arms, c3_arms_runs, c3_arms_task, c3_data, c3_runs, c3_task,
                      configurations, donor_positions, dose_arm, feedback_key, outcomes, own_statistics, plugin_code,
                      plugin_modules, series, sham_arm, stat_key, statistics)

__all__ = [  # the task's names, re-exported, and this module's
    "ARM_STATISTICS", "DONOR", "EVAL_STEP", "HALVES", "N_TEXTS", "OUTCOMES", "PREFIX", "TEXTS", "acting_start",
    "arm_configurations", "arm_key", "arms", "c3_arms_runs", "c3_arms_task", "c3_data", "c3_runs", "c3_task",
    "configurations", "donor_positions", "dose_arm", "feedback_key", "outcomes", "own_statistics", "plugin_code",
    "plugin_modules", "series", "sham_arm", "stat_key", "statistics",
    "DECISIVE_STAT", "msd", "decisive_gate", "prefix_plateau", "donor_table", "verdict_summary", "glue_decisive", "decisive_records", "decisive_table",
    "dose_table", "seed_table", "EXPLORATORY",
    "KEYS", "EFFECT_BOLD", "VERDICTS", "excludes_zero", "resolve_designs", "held_statistics", "design_table",
    "GLUED", "glue_parameters", "detrended_var", "gate_window", "c3_gate", "gate_statistics", "c3_roughness",
    "write_records", "exploratory_records", "gate_table", "gate_wide", "gate_floor", "differences", "effects_detail",
    "effects_table", "regime_points", "design_summary", "glue_counts",
    "c3_human", "c3_reference", "text_table", "PLATEAU_TOL", "plateau_runs", "plateau_records", "posthoc_table"]

KEYS = ["corpus", "family", "design"]  # the index of every per-combination table
EXPLORATORY = "C3x"  # the record prefix of the exploratory designs (outside the C3 verdict)
DECISIVE_STAT = "own_entropy"  # the statistic the decisive design holds (feedback.PIEntropy.statistic)


def excludes_zero(label: str) -> str:
    """The boolean column flagging an effect whose interval excludes 0."""
    return f"{label} excludes 0"


EFFECT_BOLD = {label: excludes_zero(label) for label in OUTCOMES.values()}  # records.style(bold=...)


# ---------------------------------------------------------------- designs
def resolve_designs(designs: list[str], design_specs: dict, plugins: list[str]) -> dict[str, dict]:
    """label -> feedback spec {"design": NAME, **parameters}, after importing the plugins:
    a label of design_specs has its spec, any other label is a design name with defaults."""
    feedback.load_plugins(plugin_modules(plugins))
    if "off" in designs:
        raise ValueError("'off' is the baseline and always runs; leave it out of `designs`")
    return {label: design_specs.get(label, {"design": label}) for label in designs}


def held_statistics(specs: dict[str, dict]) -> dict[str, str]:
    """label -> the statistic its design holds (one of feedback.STATISTICS)."""
    return {label: feedback.make(spec).statistic for label, spec in specs.items()}


def design_table(specs: dict[str, dict]) -> pd.DataFrame:
    """Per label: its design, the parameters it sets (others at their defaults), the
    statistic it holds and the prediction written into the package before measuring."""
    df = pd.DataFrame([{"label": label, "design": spec["design"], "holds": feedback.make(spec).statistic,
                        **{k: v for k, v in spec.items() if k != "design"},
                        "prediction": feedback.DESIGNS[spec["design"]].prediction} for label, spec in specs.items()])
    return df[[c for c in df.columns if c != "prediction"] + ["prediction"]].set_index("label")


GLUED = ("markov_vocab", "seq_len", "steps", "n_gen", "prompt_len", "gen_len", "eval_every", "n_stat_samples",
         "d_model", "switch_on", "window", "gate_max", "floor_max", "n_seeds", "seed", "donor_seed", "kp", "ki",
         "kappa_max", "gain")  # parameters the prose cites


def glue_parameters(report) -> None:
    """Glue c3_NAME for every parameter the prose cites, and c3_start (acting_start)."""
    p = report.parameters
    for k in GLUED:
        report.metric(f"c3_{k}", p[k])
    report.metric("c3_start", acting_start(p["steps"], p["start_frac"]))


# ---------------------------------------------------------------- the gate
def detrended_var(y: np.ndarray) -> np.ndarray:
    """[S] variance of the residuals of a least-squares line, per seed, of y [S, E]
    (a statistic over evaluation steps): its fluctuation around its trend."""
    return measures.detrended_std(np.asarray(y, dtype=np.float64).T) ** 2


def gate_window(start: int, steps: int, settle: float) -> tuple[float, int]:
    """The steps the gate looks at: the acting window after its settling share."""
    return start + settle * (steps - start), steps


def c3_gate(design: dict, off: dict, statistic: str, start: int, settle: float) -> dict:
    """How much a design steadies its statistic where it acts, against maximum likelihood
    with the same seeds: log10 of the detrended variance ratio per seed [S] over the
    acting window after a settling time (evaluation steps >= start + settle * (end -
    start)), so that the move of the statistic to its held level when the design
    switches on is not counted as fluctuation; "whole": the same ratio over the whole
    acting window, switch-on included; "floor": the split-half noise floor (the
    detrended variance of half the difference of the two half-batch measurements under
    maximum likelihood) relative to maximum likelihood's variance, log10 [S]."""
    steps, y = series(design, statistic)
    _, y0 = series(off, statistic)
    acting = steps >= start
    w = steps >= start + settle * (steps[-1] - start)
    if w.sum() < 3:
        raise ValueError("the gate window holds fewer than 3 evaluation steps; lower eval_every or start")

    def ratio(mask):
        return np.log10(detrended_var(y[:, mask]) / detrended_var(y0[:, mask]))
    half = (series(off, statistic, "a")[1][:, w] - series(off, statistic, "b")[1][:, w]) / 2
    return {"log_ratio": ratio(w), "whole": ratio(acting), "floor": np.log10(detrended_var(half) / detrended_var(y0[:, w]))}


def gate_statistics(runs: dict, corpora: list[str], archs: list[str], held: dict[str, str], start: int,
                    settle: float) -> dict:
    """{(corpus, family, label): c3_gate of the design against maximum likelihood}."""
    return {(c, a, d): c3_gate(runs[c, a, d], runs[c, a, "off"], stat, start, settle)
            for c in corpora for a in archs for d, stat in held.items()}


def c3_roughness(design: dict, start: int) -> np.ndarray:
    """[S] detrended standard deviation of the data cross-entropy on the fixed evaluation
    batch over the acting window: how rough the loss curve is, free of minibatch noise."""
    steps, y = series(design, "data_ce")
    return np.sqrt(detrended_var(y[:, steps >= start]))


# ---------------------------------------------------------------- records
def write_records(report, runs: dict, gates: dict, held: dict[str, str], start: int, smooth_factor: float,
                  settle: float) -> None:
    """The exploratory records (prefix EXPLORATORY, every one marked exploratory, outside the
    C3 verdict), for each (corpus, family, label) of `gates` against 'off':
      C3x.stabilises[c:a:d]  log10 detrended variance ratio of the statistic < 0 (paired; c3_gate);
      C3x[c:a:d]            generation entropy lower AND seq-rep-4 higher at T = 1 (joint, paired);
      C3x.greedy[c:a:d]     seq-rep-4 higher under greedy decoding (paired);
      C3x.smooth[c:a:d]     the fixed-batch data CE at most smooth_factor times rougher (log10 ratio).
    The first edition's C3[corpus] (every gated design gives C3) and C3.cause (a rank
    correlation over designs) are dropped: the designs were never a sample of anything."""
    for corpus in dict.fromkeys(c for c, _, _ in gates):
        for (c, a, d), g in gates.items():
            if c == corpus:
                r, off, what = runs[c, a, d], runs[c, a, "off"], f"{a} on {c}, design '{d}':"
                gr = report.paired(f"C3x.stabilises[{c}:{a}:{d}]", f"{what} its statistic ({held[d]}) varies less "
                                   f"where the design acts (after {settle:.0%} of the acting window as settling time) "
                                   "than under maximum likelihood (log10 detrended variance ratio, paired by seed)",
                                   g["log_ratio"], np.zeros_like(g["log_ratio"]), 0.0, "<")
                report.mark(gr, "diagnostic")  # the gate: a premise of C3[...], not evidence for C3
                j = report.joint(f"C3x[{c}:{a}:{d}]", f"{what} lower generation entropy and higher seq-rep-4 than "
                                 "maximum likelihood at temperature 1 (paired by seed)", [
                                     {"name": "Δ gen. entropy", "treated": r["gen_entropy"],
                                      "baseline": off["gen_entropy"], "threshold": 0.0, "comparator": "<",
                                      "unit": "nats/token"},
                                     {"name": "Δ seq-rep-4", "treated": r["seq_rep4"], "baseline": off["seq_rep4"],
                                      "threshold": 0.0, "comparator": ">"}])
                gg = report.paired(f"C3x.greedy[{c}:{a}:{d}]", f"{what} higher seq-rep-4 than maximum likelihood under "
                              "greedy decoding (paired)", r["seq_rep4_greedy"], off["seq_rep4_greedy"], 0.0, ">")
                sm = report.paired(f"C3x.smooth[{c}:{a}:{d}]", f"{what} the data cross-entropy on the fixed evaluation "
                              f"batch is at most {smooth_factor:g}× as rough as under maximum likelihood over the "
                              "acting window (log10 ratio of detrended std)", np.log10(c3_roughness(r, start)),
                              np.log10(c3_roughness(off, start)), float(np.log10(smooth_factor)), "<")
                for rec in (gr, j, gg, sm):
                    rec.exploratory = True  # outside the C3 verdict: not pre-registered as the decisive design


def exploratory_records(report, runs: dict, seeds: list[int], corpus: str, archs: list[str], held: dict[str, str],
                        start: int, smooth_factor: float, settle: float) -> None:
    """The exploratory part on one corpus: gate_statistics, write_records, the plateau records,
    and the glued effects table (c3_effects_table, its rows as c3_effects_detail), the
    gate-floor table (c3_gate_floor_table) and the corpus's name (c3_explore_corpus)."""
    report.metric("c3_explore_corpus", corpus)
    xgates = gate_statistics(runs, [corpus], archs, held, start, settle)
    write_records(report, runs, xgates, held, start, smooth_factor, settle)
    detail = effects_detail(differences(runs, seeds, xgates))
    report.glue_table("c3_effects_table", effects_table(report, detail, xgates), fmt="{:+.3f}", bold=EFFECT_BOLD)
    report.metric("c3_effects_detail", detail.to_dict(orient="records"), glue_it=False)
    report.glue_table("c3_gate_floor_table", gate_floor(gate_table(report, xgates, held)), fmt="{:+.2f}")
    plateau_records(report, plateau_runs(runs, seeds))


# ---------------------------------------------------------------- numeric tables
def _claims(report) -> dict:
    return {c.id: c for c in report.claims}


def gate_table(report, gates: dict, held: dict[str, str]) -> pd.DataFrame:
    """Per (corpus, family, design): the C3.stabilises record (mean log10 variance ratio,
    interval, verdict), the median noise floor and the mean ratio over the whole window."""
    cl = _claims(report)
    return pd.DataFrame([{"corpus": c, "family": a, "design": d, "statistic": held[d],
                          "log10 var ratio": (r := cl[f"C3x.stabilises[{c}:{a}:{d}]"]).value, "lo": r.interval[0],
                          "hi": r.interval[1], "noise floor (log10, vs ML)": float(np.median(g["floor"])),
                          "stabilises": r.holds, "whole window, switch-on included": float(np.mean(g["whole"]))}
                         for (c, a, d), g in gates.items()]).set_index(KEYS)


def _by_cell(gate: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """design x (corpus:family) of gate-table columns {column: suffix of its wide column}."""
    g = gate.reset_index()
    cells = list(dict.fromkeys(g.corpus + ":" + g.family))
    wide = {f"{cell} {suffix}".strip(): g[g.corpus + ":" + g.family == cell].set_index("design")[col]
            for cell in cells for col, suffix in columns.items()}
    return pd.DataFrame(wide).loc[list(dict.fromkeys(g.design))].rename_axis("design")


def gate_wide(gate: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """design x (corpus:family): mean log10 variance ratio, and bold = {cell: its flag}
    for records.style (bold where C3.stabilises holds)."""
    df = _by_cell(gate, {"log10 var ratio": "", "stabilises": "stabilises"})
    return df, {c: f"{c} stabilises" for c in df.columns if not c.endswith(" stabilises")}


def gate_floor(gate: pd.DataFrame) -> pd.DataFrame:
    """design x (corpus:family): the noise floor and the ratio over the whole acting window."""
    return _by_cell(gate, {"noise floor (log10, vs ML)": "floor", "whole window, switch-on included": "whole"})


def differences(runs: dict, seeds: list[int], gates: dict) -> pd.DataFrame:
    """Per seed, design minus maximum likelihood (same seed) for every outcome, for each
    (corpus, family, design) of `gates`: a long table."""
    return pd.DataFrame([{"corpus": c, "family": a, "design": d, "outcome": name, "seed": s, "diff": v}
                         for c, a, d in gates for name in OUTCOMES
                         for s, v in zip(seeds, runs[c, a, d][name] - runs[c, a, "off"][name])])


def effects_detail(diffs: pd.DataFrame) -> pd.DataFrame:
    """Mean paired difference and its Student-t interval per combination and outcome
    (outcomes that do not exist on a corpus, such as the KL rates on Shakespeare, left out)."""
    rows = []
    for key, g in diffs.groupby([*KEYS, "outcome"], sort=False):
        v = g["diff"].to_numpy()
        if np.all(np.isfinite(v)):
            lo, hi = mean_interval(v)
            rows.append({**dict(zip([*KEYS, "outcome"], key)), "mean": v.mean(), "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


VERDICTS = {"gate": "C3x.stabilises", "C3": "C3x", "greedy": "C3x.greedy", "smooth": "C3x.smooth"}  # column -> record


def effects_table(report, detail: pd.DataFrame, gates: dict) -> pd.DataFrame:
    """Per (corpus, family, design): the verdicts of the gate, C3, C3.greedy and C3.smooth,
    then the mean paired difference of every outcome (column label OUTCOMES[outcome], nan
    where it does not exist) and whether its interval excludes 0 (EFFECT_BOLD)."""
    cl, idx = _claims(report), pd.MultiIndex.from_tuples(list(gates), names=KEYS)
    d = detail.assign(label=detail.outcome.map(OUTCOMES)).set_index([*KEYS, "label"])

    def wide(s, fill):
        return s.unstack(fill_value=fill).reindex(index=idx, columns=list(OUTCOMES.values()), fill_value=fill)
    verdicts = pd.DataFrame({col: [cl[f"{rid}[{c}:{a}:{des}]"].verdict for c, a, des in gates]
                             for col, rid in VERDICTS.items()}, index=idx)
    excl = wide((d.lo > 0) | (d.hi < 0), False).rename(columns=excludes_zero)
    return pd.concat([verdicts, wide(d["mean"], np.nan), excl], axis=1)


def regime_points(gate: pd.DataFrame, detail: pd.DataFrame, effects: pd.DataFrame) -> pd.DataFrame:
    """The regime map, per (corpus, family, design): stabilisation achieved x = -log10
    variance ratio with its interval, Δ generation entropy with its interval, Δ seq-rep-4,
    and the verdicts of the gate and of C3."""
    out = detail.set_index([*KEYS, "outcome"])
    dH, dR = out.xs("gen_entropy", level="outcome"), out.xs("seq_rep4", level="outcome")
    return pd.DataFrame({"stabilises": gate.stabilises, "x": -gate["log10 var ratio"], "x_lo": -gate.hi,
                         "x_hi": -gate.lo, "dH": dH["mean"], "dH_lo": dH.lo, "dH_hi": dH.hi, "dRep": dR["mean"],
                         "C3": effects.C3 == "supported"}, index=gate.index).reset_index()


def design_summary(runs: dict, effects: pd.DataFrame, specs: dict[str, dict]) -> pd.DataFrame:
    """Per design, the share of (corpus, family) cells where it passes the gate, gives C3
    and keeps the loss smooth; for a PI loop, the standard error of its statistic it
    measured (nats per measurement, mean over runs) and its tolerance z in units of it."""
    out = (effects[["gate", "C3", "smooth"]] == "supported").groupby("design", sort=False).mean()
    pi = {d: s for d, s in specs.items() if s["design"] == "pi_own_samples"}
    out["PI noise se"] = [np.mean([runs[k][feedback_key("noise_se")].mean() for k in runs if k[2] == d])
                          if d in pi else np.nan for d in out.index]
    out["PI tolerance z"] = [float(feedback.make(pi[d]).p.z) if d in pi else np.nan for d in out.index]
    return out


def glue_counts(report, gate: pd.DataFrame, points: pd.DataFrame) -> None:
    """The counts the prose cites: combinations that pass the gate, and how many of the
    gated and the ungated give C3."""
    report.metric("c3_n_gated", int(gate.stabilises.sum()))
    report.metric("c3_n_pairs", len(gate))
    report.metric("c3_gated_with_c3", int((points.stabilises & points.C3).sum()))
    report.metric("c3_ungated_with_c3", int((~points.stabilises & points.C3).sum()))
    report.metric("c3_n_ungated", int((~points.stabilises).sum()))


# ---------------------------------------------------------------- stationarity and choices made after seeing data
PLATEAU_TOL = plateau.Tolerances()  # [pre-registered] the book's plateau test, as in C2


def plateau_runs(runs: dict, seeds: list[int]) -> pd.DataFrame:
    """One row per (corpus, family, design, seed): plateau.measure_members of its data cross-entropy on the
    fixed evaluation batch over the evaluation steps (the training windows of Shakespeare; fresh source
    sequences on the Markov source, where it is the population loss, so an over-fitting run reads as
    rising there). No held-out series is logged."""
    parts = []
    for (c, a, d), r in runs.items():
        steps, y = series(r, "data_ce")
        m = plateau.measure_members(steps, y.T, tol=PLATEAU_TOL)
        parts.append(m.assign(corpus=c, family=a, design=d, seed=list(seeds)))
    return pd.concat(parts, ignore_index=True).set_index([*KEYS, "seed"])


def plateau_records(report, table: pd.DataFrame) -> pd.DataFrame:
    """C3x.plateau (a diagnostic): the share of the exploratory runs at plateau against plateau.SHARE; glues the per
    (corpus, family) summary as c3_plateau_table (share at plateau, median slope, states) and returns it.
    The C3 records do not yet count only runs at plateau (the C3 issue resizes the grid)."""
    report.mark(report.share("C3x.plateau", "the exploratory C3 runs (every corpus, family, design and seed) reached their plateau: "
                             "data cross-entropy on the fixed evaluation batch flat over the last window "
                             "(plateau.measure, tolerances fixed in advance); share of runs", table["at_plateau"],
                             plateau.SHARE), "diagnostic")
    g = table.groupby(level=["corpus", "family"], sort=False)
    out = pd.DataFrame({"runs": g.size(), "share at plateau": g["at_plateau"].mean(),
                        **{s: g[s].sum().astype(int) for s in plateau.STATES[1:]},
                        "median slope [nats/1000 steps]": g["slope"].median()})
    report.glue_table("c3_plateau_table", out, fmt={"share at plateau": "{:.0%}",
                                                    "median slope [nats/1000 steps]": "{:+.3g}"})
    return out


def posthoc_table(report, gates: dict) -> pd.DataFrame:
    """What the exploratory gate's settling window (added after the first edition's first run) changes,
    per corpus: the combinations that pass the gate with it and without it (the whole acting window), and
    whether every gated combination gives C3x either way (records.combine over the gated joint records)."""
    cl, rows, scratch = _claims(report), [], records.Report(report.notebook, {}, report.seeds)
    for corpus in dict.fromkeys(c for c, _, _ in gates):
        keys = [k for k in gates if k[0] == corpus]
        whole = [k for k in keys if scratch.paired(":".join(k), "", gates[k]["whole"], np.zeros_like(gates[k]["whole"]),
                                                   0.0, "<").holds]  # the registered gate's rule, whole window
        settled = [k for k in keys if cl[f"C3x.stabilises[{':'.join(k)}]"].holds]
        rows.append({"corpus": corpus, "combinations": len(keys), "gated, with settling time": len(settled),
                     "gated, whole acting window": len(whole),
                     "all gated give C3x, with settling time": records.combine(
                         cl[f"C3x[{':'.join(k)}]"].verdict for k in settled),
                     "all gated give C3x, whole acting window": records.combine(
                         cl[f"C3x[{':'.join(k)}]"].verdict for k in whole)})
    return pd.DataFrame(rows).set_index("corpus")


def c3_human(corpora: list[str], context: dict) -> pd.DataFrame:
    """The human reference per corpus, data as c3_task builds it from `context` (its
    keywords): seq-rep-4 and loop share of the true continuations of the held-out prompts,
    and the entropy rate where it is known (Markov)."""
    rows = {}
    for c in corpora:  # the reference depends on neither the seed nor the training sequences
        data = c3_data(c, [0], **sweep.task_context(c3_data, context, markov_sequences=1, device="cpu"))
        rows[c] = {"seq-rep-4": float(np.mean([measures.seq_rep_n(s, 4) for s in data["human"]])),
                   "loop share": float(np.mean([measures.ends_in_loop(s, 32) for s in data["human"]])),
                   "entropy rate": data["source"].entropy_rate if data["source"] is not None else float("nan")}
    return pd.DataFrame(rows).T.rename_axis("corpus")


def c3_reference(runs: dict, human: pd.DataFrame, archs: list[str]) -> pd.DataFrame:
    """Absolute levels beside the human reference: per corpus, the true continuations and
    each family under maximum likelihood (mean over seeds): seq-rep-4 and loop share at
    temperature 1 and greedy, generation entropy, and the source's entropy rate (Markov)."""
    rows = []
    for c, h in human.iterrows():
        rows.append({"corpus": c, "text": "human (held-out)", "seq-rep-4": h["seq-rep-4"], "seq-rep-4 greedy": np.nan,
                     "loop share": h["loop share"], "loop share greedy": np.nan, "entropy": h["entropy rate"]})
        rows += [{"corpus": c, "text": f"{a}, maximum likelihood", "seq-rep-4": (r := runs[c, a, "off"])["seq_rep4"].mean(),
                  "seq-rep-4 greedy": r["seq_rep4_greedy"].mean(), "loop share": r["loops"].mean(),
                  "loop share greedy": r["loops_greedy"].mean(), "entropy": r["gen_entropy"].mean()} for a in archs]
    return pd.DataFrame(rows).set_index(["corpus", "text"])


def text_table(runs: dict, effects: pd.DataFrame, corpus: str, archs: list[str], labels: list[str],
               width: int = 64) -> pd.DataFrame:
    """The first held-out prompt's continuation (first seed; T = 1 and greedy, first
    `width` characters) per family, for maximum likelihood and every design, and whether
    C3[corpus:family:design] holds."""
    return pd.DataFrame([{"family": a, "design": d, "C3": None if d == "off" else effects.loc[(corpus, a, d), "C3"],
                          **{col: runs[corpus, a, d][k][0][0][:width] for col, k in zip(["T = 1", "greedy"], TEXTS)}}
                         for a in archs for d in ["off", *labels]]).set_index(["family", "design"])


# ---------------------------------------------------------------- the decisive experiment (c3_arms_task)
def msd(y: np.ndarray, s0: np.ndarray) -> np.ndarray:
    """[S] the mean squared deviation of y [S, E] (a statistic over evaluation steps) from its
    value at switch-on s0 [S]: a drift away from s0 counts in full (a detrended variance
    would hide it)."""
    y = np.asarray(y, dtype=np.float64)
    return ((y - np.asarray(s0, dtype=np.float64)[:, None]) ** 2).mean(1)


def decisive_gate(arm_runs: dict, settle: float) -> dict:
    """Per seed [S], over the acting window of one (corpus, family), with s0 the held statistic
    (DECISIVE_STAT, fixed seeds) at switch-on (the window's first evaluation, before any arm
    step: the same in every arm of a seed): "log_ratio", log10 of the design's mean squared
    deviation from s0 against the sham's, after the settling share `settle` of the window;
    "whole", the same over the whole window after switch-on; "vs_ml", the design against
    maximum likelihood (settled); "floor", the measurement noise under maximum likelihood (the
    mean square of half the difference of the two half-sample measurements: the Monte Carlo
    variance of the whole measurement) against maximum likelihood's mean squared deviation
    from s0, log10, settled; "saturated", the design's share of measurements at which its
    kappa sat at a bound."""
    d, sh, ml = arm_runs["design"], arm_runs["sham"], arm_runs["ml"]
    steps, y = series(d, DECISIVE_STAT)
    ys, ym = series(sh, DECISIVE_STAT)[1], series(ml, DECISIVE_STAT)[1]
    s0 = ym[:, 0]
    if not (np.allclose(y[:, 0], s0) and np.allclose(ys[:, 0], s0)):
        raise ValueError("the arms' first evaluations differ: the window must start with a measurement at switch-on")
    sp = d.get(feedback_key("setpoint"))  # logged by feedback.PIEntropy (absent from hand-made runs)
    if sp is not None and not np.allclose(sp, s0[:, None], rtol=0, atol=1e-6):
        raise ValueError("the design's setpoint is not the s0 its gate measures against")
    w = steps >= steps[0] + settle * (steps[-1] - steps[0])
    w[0] = False  # s0 itself is never part of the window
    if w.sum() < 3:
        raise ValueError("the settled window holds fewer than 3 evaluation steps; lower eval_every or gate_settle")
    after = steps > steps[0]
    half = (series(ml, DECISIVE_STAT, "a")[1] - series(ml, DECISIVE_STAT, "b")[1]) / 2
    return {"log_ratio": np.log10(msd(y[:, w], s0) / msd(ys[:, w], s0)),
            "whole": np.log10(msd(y[:, after], s0) / msd(ys[:, after], s0)),
            "vs_ml": np.log10(msd(y[:, w], s0) / msd(ym[:, w], s0)),
            "floor": np.log10((half[:, w] ** 2).mean(1) / msd(ym[:, w], s0)),
            "saturated": d[feedback_key("saturated")].mean(1)}


def prefix_plateau(arm_runs: dict) -> pd.DataFrame:
    """plateau.measure_members (PLATEAU_TOL) of each seed's maximum-likelihood prefix: the data
    cross-entropy on the fixed evaluation batch up to switch-on. At plateau there, a run is
    stationary when the designs switch on."""
    p = arm_runs[PREFIX]
    return plateau.measure_members(p[EVAL_STEP][0], p["data_ce"].T, tol=PLATEAU_TOL)


def donor_table(arms_runs: dict) -> pd.DataFrame:
    """Per (corpus, family): the donor (the seed whose design kappa every sham replays), its
    prefix's plateau state (plateau.measure_members, PLATEAU_TOL) at switch-on, and its
    design run's mean kappa and saturated share. The verdict is conditional on this one
    donor trajectory."""
    rows = []
    for (c, a), r in arms_runs.items():
        d = r[DONOR]
        pl = plateau.measure_members(r[PREFIX][EVAL_STEP][0], d["data_ce"][:1].T, tol=PLATEAU_TOL).iloc[0]
        rows.append({"corpus": c, "family": a, "donor seed": int(d["seed"][0]), "at plateau": bool(pl["at_plateau"]),
                     "slope": float(pl["slope"]), "mean kappa": float(d[feedback_key("kappa")][0].mean()),
                     "saturated": float(d[feedback_key("saturated")][0].mean())})
    return pd.DataFrame(rows).set_index(["corpus", "family"])


def _dose_slopes(arm_runs: dict, gain: float, dose_gains: list[float]) -> np.ndarray:
    """[S] per seed, the least-squares slope of ΔH (exact generation entropy, arm minus
    maximum likelihood) against log2 of the gain over the design's and the dose arms' gains."""
    g = [gain, *dose_gains]
    x = np.log2(g)
    dH = np.stack([arm_runs["design" if k == 0 else dose_arm(v)]["gen_entropy_exact"] for k, v in enumerate(g)])
    dH = dH - arm_runs["ml"]["gen_entropy_exact"][None]
    xc = x - x.mean()
    return (xc[:, None] * (dH - dH.mean(0))).sum(0) / (xc @ xc)


def _untestable(report, id: str, statement: str, why: str, threshold, comparator: str, rule: str):
    return report.claim(id, f"{statement} — untestable: {why}", float("nan"), None, threshold, comparator, rule=rule, n=0)


def decisive_records(report, arms_runs: dict, corpora: list[str], archs: list[str], *, gate_settle: float,
                     floor_max: float, gate_max: float, smooth_factor: float, gain: float,
                     dose_gains: list[float]) -> dict:
    """The C3 records, from the seeds whose maximum-likelihood prefix reached its plateau:
      C3.floor[c:a]   (diagnostic) the noise floor under ML < floor_max (mean over seeds, t):
                      measurement-noise variance against ML's mean squared deviation from s0;
      C3.gate[c:a]    (diagnostic) the design's mean squared deviation of the held statistic from
                      its switch-on value s0 against the sham's, log10 < gate_max (paired by
                      seed), settled window (decisive_gate);
      C3.rep[c:a]     (diagnostic) seq-rep-4 of the design minus the sham's > 0 (paired t): the
                      part of C3's outcome the loop does not hold (the held statistic is close to
                      the entropy outcome, so ΔH against the sham is near 0 by construction);
      C3[c:a]         the share of seeds in which the design lowers the exact generation
                      entropy AND raises seq-rep-4 against the sham (same seed, same prompts and
                      uniforms) > 0.5 (Clopper–Pearson: supported when its lower end exceeds 0.5,
                      contradicted when its upper end is at most 0.5);
      C3.dose[c:a]    ΔH against ML falls as the gain rises: mean per-seed slope of ΔH on log2(gain) < 0;
      C3.smooth[c:a]  the design's data CE on the fixed batch at most smooth_factor times as rough
                      as ML's over the window (log10 ratio of detrended std, paired);
    C3[c:a], C3.dose and C3.smooth are untestable where the floor or the gate does not hold;
    C3[c] aggregates C3[c:a] over the families (this design only); C3.plateau (diagnostic) is the
    share of prefixes at plateau. Returns {(c, a): the decisive_gate arrays, with "at_plateau"}."""
    gates, plateaus = {}, []
    for c in corpora:
        members = []
        for a in archs:
            r = arms_runs[c, a]
            at = prefix_plateau(r)["at_plateau"].to_numpy()
            plateaus.append(at)
            g = {**decisive_gate(r, gate_settle), "at_plateau": at}
            gates[c, a] = g
            what = f"{a} on {c} (seeds at plateau at switch-on: {int(at.sum())} of {at.size})"
            fl = report.mark(report.mean(f"C3.floor[{c}:{a}]", f"{what}: the noise floor of the held generation entropy "
                                         "under maximum likelihood (log10 split-half measurement-noise variance against "
                                         "its mean squared deviation from the switch-on value)",
                                         g["floor"][at], floor_max, "<"), "diagnostic")
            gt = report.mark(report.paired(f"C3.gate[{c}:{a}]", f"{what}: the design holds the generation entropy at "
                                           f"its switch-on value at least {10 ** -gate_max:.1f}× closer than the sham "
                                           "(log10 ratio of mean squared deviations from it, paired by seed, settled "
                                           "window)", g["log_ratio"][at], np.zeros(int(at.sum())), gate_max, "<"),
                             "diagnostic")
            d, sh, ml = r["design"], r["sham"], r["ml"]
            report.mark(report.paired(f"C3.rep[{c}:{a}]", f"{what}: the design raises seq-rep-4 against the sham (the "
                                      "outcome the loop does not hold; paired by seed)", d["seq_rep4"][at],
                                      sh["seq_rep4"][at], 0.0, ">"), "diagnostic")
            s3 = f"{what}: the design lowers the generation entropy and raises seq-rep-4 against the sham; share of seeds"
            s_dose = f"{what}: the entropy change against maximum likelihood falls as the controller's gain rises"
            s_smooth = (f"{what}: the design's data cross-entropy on the fixed batch is at most {smooth_factor:g}× as "
                        "rough as maximum likelihood's over the acting window (log10 ratio of detrended std)")
            if fl.holds and gt.holds:
                hits = (d["gen_entropy_exact"] < sh["gen_entropy_exact"]) & (d["seq_rep4"] > sh["seq_rep4"])
                members.append(report.share(f"C3[{c}:{a}]", s3, hits[at], 0.5, ">"))
                report.mean(f"C3.dose[{c}:{a}]", s_dose + " (mean per-seed slope, nats per doubling)",
                            _dose_slopes(r, gain, dose_gains)[at], 0.0, "<", unit="nats/token")
                _, yd = series(d, "data_ce")
                _, ym = series(ml, "data_ce")
                report.paired(f"C3.smooth[{c}:{a}]", s_smooth, 0.5 * np.log10(detrended_var(yd[at])),
                              0.5 * np.log10(detrended_var(ym[at])), float(np.log10(smooth_factor)), "<")
            else:
                why = (f"the noise floor is not shown below {floor_max:g} (floor {fl.verdict})" if not fl.holds else
                       f"the gate against the sham is not supported (gate {gt.verdict}); smoothness is read only where "
                       "the loop is shown to stabilise its statistic")
                members.append(_untestable(report, f"C3[{c}:{a}]", s3, why, 0.5, ">", "share"))
                _untestable(report, f"C3.dose[{c}:{a}]", s_dose, why, 0.0, "<", "mean")
                _untestable(report, f"C3.smooth[{c}:{a}]", s_smooth, why, float(np.log10(smooth_factor)), "<", "paired")
        report.aggregate(f"C3[{c}]", f"on {c}, for every family: the decisive design lowers entropy and raises "
                         "repetition against the sham in more than half of the seeds", members)
    report.mark(report.share("C3.plateau", "the maximum-likelihood prefixes of the decisive experiment (every corpus, "
                             "family and seed) reached their plateau at switch-on (plateau.measure, tolerances fixed in "
                             "advance)", np.concatenate(plateaus), plateau.SHARE), "diagnostic")
    return gates


def decisive_table(report, gates: dict) -> pd.DataFrame:
    """Per (corpus, family): seeds at plateau, the noise floor and the gate (mean, interval,
    verdict), the whole-window and against-ML ratios beside the settled one, the saturated
    share, the seq-rep-4 diagnostic against the sham (C3.rep), and the C3, dose and
    smoothness records (value, interval, verdict)."""
    cl, rows = _claims(report), []
    for (c, a), g in gates.items():
        at = g["at_plateau"]
        row = {"corpus": c, "family": a, "seeds": at.size, "at plateau": int(at.sum())}
        for name, rid in [("floor", "C3.floor"), ("gate", "C3.gate"), ("rep", "C3.rep"), ("C3", "C3"),
                          ("dose", "C3.dose"), ("smooth", "C3.smooth")]:
            r = cl[f"{rid}[{c}:{a}]"]
            iv = r.interval or (np.nan, np.nan)
            row.update({name: r.value, f"{name} lo": iv[0], f"{name} hi": iv[1], f"{name} verdict": r.verdict})
            if name == "gate":
                row.update({"whole window": _mean_at(g["whole"], at), "vs ML": _mean_at(g["vs_ml"], at),
                            "saturated": float(np.mean(g["saturated"]))})
        rows.append(row)
    return pd.DataFrame(rows).set_index(["corpus", "family"])


def verdict_summary(report, gates: dict, corpora: list[str], archs: list[str]) -> str:
    """One line naming, per corpus, every family's floor and gate verdicts, the design's MSD from s0
    against ML's (log10, mean over the seeds at plateau: > 0, the loop holds it less closely than
    no loop), C3.rep and C3 verdicts and the corpus record's: the prose cites it, so that it
    reads right whatever the verdicts are."""
    cl = _claims(report)
    parts = []
    for c in corpora:
        def vs_ml(a):
            v = _mean_at(gates[c, a]["vs_ml"], gates[c, a]["at_plateau"])
            return f"design vs ML {v:+.2f}" if np.isfinite(v) else "no seed at plateau"
        fam = "; ".join(f"{a}: floor {cl[f'C3.floor[{c}:{a}]'].verdict}, gate {cl[f'C3.gate[{c}:{a}]'].verdict} "
                        f"({vs_ml(a)}), Δrep vs sham {cl[f'C3.rep[{c}:{a}]'].verdict}, C3 {cl[f'C3[{c}:{a}]'].verdict}"
                        for a in archs)
        parts.append(f"{c} — {fam}; C3[{c}] {cl[f'C3[{c}]'].verdict}")
        parts[-1] += f" ({sum(cl[f'C3.gate[{c}:{a}]'].verdict == 'supported' for a in archs)} of {len(archs)} gates passed)"
    return " · ".join(parts)


def glue_decisive(report, arms_runs: dict, gates: dict, seeds: list[int], corpora: list[str], archs: list[str],
                  gain: float, dose_gains: list[float]) -> None:
    """Glue the decisive experiment's tables (decisive, seed, dose, donor) and verdict_summary."""
    report.glue_table("c3_decisive_table", decisive_table(report, gates), fmt="{:+.3g}")
    report.glue_table("c3_seed_table", seed_table(arms_runs, gates, seeds), fmt="{:+.3f}")
    report.glue_table("c3_dose_table", dose_table(arms_runs, gates, gain, dose_gains), fmt="{:+.3f}")
    report.glue_table("c3_donor_table", donor_table(arms_runs), fmt="{:+.3g}")
    report.metric("c3_verdicts", verdict_summary(report, gates, corpora, archs))


def seed_table(arms_runs: dict, gates: dict, seeds: list[int]) -> pd.DataFrame:
    """One row per (corpus, family, seed): at plateau, the gate ratio, and the design's ΔH (exact
    generation entropy) and Δ seq-rep-4 against the sham and against maximum likelihood."""
    rows = []
    for (c, a), r in arms_runs.items():
        d, sh, ml, g = r["design"], r["sham"], r["ml"], gates[c, a]
        for i, s in enumerate(seeds):
            rows.append({"corpus": c, "family": a, "seed": s, "at plateau": bool(g["at_plateau"][i]),
                         "log10 MSD ratio": g["log_ratio"][i],
                         "ΔH vs sham": d["gen_entropy_exact"][i] - sh["gen_entropy_exact"][i],
                         "Δrep vs sham": d["seq_rep4"][i] - sh["seq_rep4"][i],
                         "ΔH vs ML": d["gen_entropy_exact"][i] - ml["gen_entropy_exact"][i],
                         "Δrep vs ML": d["seq_rep4"][i] - ml["seq_rep4"][i]})
    return pd.DataFrame(rows).set_index(["corpus", "family", "seed"])


def _mean_at(x: np.ndarray, at: np.ndarray) -> float:
    return float(np.mean(x[at])) if at.any() else float("nan")


def dose_table(arms_runs: dict, gates: dict, gain: float, dose_gains: list[float]) -> pd.DataFrame:
    """Per (corpus, family, gain): the mean over seeds at plateau of ΔH (exact generation
    entropy) and Δ seq-rep-4 against maximum likelihood, and the held statistic's mean squared
    deviation from its switch-on value against ML's (log10, whole window): the dose-response."""
    rows = []
    for (c, a), r in arms_runs.items():
        at = gates[c, a]["at_plateau"]
        ml = r["ml"]
        _, ym = series(ml, DECISIVE_STAT)
        s0 = ym[:, 0]
        for g in sorted([gain, *dose_gains]):
            arm = r["design" if g == gain else dose_arm(g)]
            _, y = series(arm, DECISIVE_STAT)
            rows.append({"corpus": c, "family": a, "gain": g, "registered": g == gain,
                         "ΔH vs ML": _mean_at(arm["gen_entropy_exact"] - ml["gen_entropy_exact"], at),
                         "Δrep vs ML": _mean_at(arm["seq_rep4"] - ml["seq_rep4"], at),
                         "log10 MSD vs ML": _mean_at(np.log10(msd(y[:, 1:], s0) / msd(ym[:, 1:], s0)), at),
                         "mean kappa": _mean_at(arm[feedback_key("kappa")].mean(1), at)})
    return pd.DataFrame(rows).set_index(["corpus", "family", "gain"])

"""What notebooks would otherwise compute inline: rank correlations with their
intervals, the pre-registered stability index, and effect tables."""
from __future__ import annotations

import numpy as np
from scipy import stats


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    return float(stats.spearmanr(x, y).statistic)


def partial_spearman(x, y, z) -> float:
    """Rank correlation of x and y given z: the Pearson correlation of the residuals of
    rank(x) and rank(y) after a linear fit on rank(z)."""
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    A = np.stack([np.ones_like(rz), rz], 1)
    res = [r - A @ np.linalg.lstsq(A, r, rcond=None)[0] for r in (rx, ry)]
    return float(np.corrcoef(res[0], res[1])[0, 1])


def standardise(values: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """(log values - mean) / sd, with the mean and sd of `ref` (default: the values)."""
    lv = np.log(np.asarray(values, dtype=np.float64))
    lr = lv if ref is None else np.log(np.asarray(ref, dtype=np.float64))
    return (lv - np.nanmean(lr, 0)) / np.nanstd(lr, 0, ddof=1)


def instability_index(measures: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """The pre-registered index: the mean over stability measures (columns; each larger
    when less stable, all positive) of their standardised logarithms. Larger = less stable."""
    return standardise(measures, ref).mean(-1)


def rank_bootstrap(per_seed_x: np.ndarray, per_seed_y: np.ndarray, per_seed_z: np.ndarray | None = None,
                   n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Spearman (or partial Spearman given z) between configuration means of x and y,
    [configs, seeds] arrays, with a percentile bootstrap that resamples configurations,
    then seeds within each resampled configuration."""
    X, Y = np.asarray(per_seed_x, float), np.asarray(per_seed_y, float)
    Z = None if per_seed_z is None else np.asarray(per_seed_z, float)
    corr = (lambda a, b, c: spearman(a, b)) if Z is None else partial_spearman
    value = corr(X.mean(1), Y.mean(1), None if Z is None else Z.mean(1))
    rng = np.random.default_rng(seed)
    C, S = X.shape
    boots = []
    import warnings
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # a resample that repeats one configuration can be constant: its correlation is
        # undefined and it is left out (only with very few configurations)
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        for _ in range(n_boot):
            ci = rng.integers(0, C, C)
            si = rng.integers(0, S, (C, S))
            pick = lambda A: np.take_along_axis(A[ci], si, 1).mean(1)  # noqa: E731
            b = corr(pick(X), pick(Y), None if Z is None else pick(Z))
            if np.isfinite(b):
                boots.append(b)
    a = (1 - level) / 2
    return value, (float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)))


# ---------------------------------------------------------------------- C4
def disagreement(result: dict) -> float:
    """Seed-to-seed disagreement of one configuration: the mean over pairs of seeds of
    the Jensen-Shannon divergence between their conditional tables, weighted by the
    source's stationary law (result["table"]: per seed [C, V]; result["weights"]: [C])."""
    from .metrics import js_divergence
    Q = np.asarray(result["table"], dtype=np.float64)
    w = np.asarray(result["weights"][0], dtype=np.float64)
    js = [float(np.dot(w, js_divergence(Q[a], Q[b]))) for a in range(len(Q)) for b in range(a + 1, len(Q))]
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


def instability(measures: np.ndarray, table: dict) -> np.ndarray:
    """Per-seed instability index of measures [..., K], standardised by the usable
    configurations of the design in `table`."""
    ref = table["measures"][~table["diverged"]].reshape(-1, table["measures"].shape[-1])
    return instability_index(np.maximum(measures, 1e-300), np.maximum(ref, 1e-300))


# ---------------------------------------------------------------------- C3
C3_EFFECTS = {  # outcome of experiments.c3_task -> short column label
    "gen_entropy": "ΔH", "tf_entropy": "ΔH tf", "seq_rep4": "Δrep", "seq_rep4_greedy": "Δrep gr",
    "loops": "Δloop", "loops_greedy": "Δloop gr", "overconfidence": "Δover", "heldout_ce": "ΔCE",
    "forward_kl": "ΔKL→", "reverse_kl": "ΔKL←"}


def c3_runs(records: list[dict]) -> dict:
    """Sweep records of experiments.c3_task -> {(corpus, arch, label): {name: array}},
    per-seed lists as arrays with seeds first ([S] or [S, E])."""
    out = {}
    for r in records:
        c = r["config"]
        res = {}
        for k, v in r["result"].items():
            try:
                res[k] = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                res[k] = v  # texts
        out[c["corpus"], c["arch"], c["label"]] = res
    return out


def detrended_var(y: np.ndarray) -> np.ndarray:
    """[S] variance of the residuals of a least-squares line, per seed, of y [S, E]
    (a statistic over evaluation steps): its fluctuation around its trend."""
    from .metrics import detrended_std
    return detrended_std(np.asarray(y, dtype=np.float64).T) ** 2


def c3_gate(design: dict, off: dict, statistic: str, start: int, settle: float = 0.25) -> dict:
    """How much a design steadies its statistic where it acts, against maximum likelihood
    with the same seeds: log10 of the detrended variance ratio per seed [S] over the
    acting window after a settling time (evaluation steps >= start + settle * (end -
    start)), so that the move of the statistic to its held level when the design
    switches on is not counted as fluctuation; "whole": the same ratio over the whole
    acting window, switch-on included; "floor": the split-half noise floor (the
    detrended variance of half the difference of the two half-batch measurements under
    maximum likelihood) relative to maximum likelihood's variance, log10 [S]."""
    steps = design["eval_step"][0]
    acting = steps >= start
    w = steps >= start + settle * (steps[-1] - start)
    if w.sum() < 3:
        raise ValueError("the gate window holds fewer than 3 evaluation steps; lower eval_every or start")

    def ratio(mask):
        return np.log10(detrended_var(design[f"stat_{statistic}"][:, mask])
                        / detrended_var(off[f"stat_{statistic}"][:, mask]))
    half = (off[f"stat_{statistic}_a"][:, w] - off[f"stat_{statistic}_b"][:, w]) / 2
    return {"log_ratio": ratio(w), "whole": ratio(acting),
            "floor": np.log10(detrended_var(half) / detrended_var(off[f"stat_{statistic}"][:, w]))}


def c3_roughness(design: dict, start: int) -> np.ndarray:
    """[S] detrended standard deviation of the data cross-entropy on the fixed evaluation
    batch over the acting window: how rough the loss curve is, free of minibatch noise."""
    w = design["eval_step"][0] >= start
    return np.sqrt(detrended_var(design["stat_data_ce"][:, w]))


def c3_records(report, runs: dict, corpora: list[str], archs: list[str], designs: dict[str, str], start: int,
               smooth_factor: float = 2.0, settle: float = 0.25) -> dict:
    """Every C3 record for designs {label: statistic it holds} against 'off', and the tables
    the notebook shows:
      C3.stabilises[c:a:d]  log10 detrended variance ratio of the statistic < 0 (paired; c3_gate);
      C3[c:a:d]            generation entropy lower AND seq-rep-4 higher at T = 1 (joint, paired);
      C3.greedy[c:a:d]     seq-rep-4 higher under greedy decoding (paired);
      C3.smooth[c:a:d]     the fixed-batch data CE at most smooth_factor times rougher (log10 ratio);
      C3[c]                every (family, design) that passes the gate gives C3[c:a:d];
      C3.cause[c]          rank correlation across (family, design) between stabilisation
                           achieved (-log10 variance ratio) and Δ entropy < 0 (bootstrap).
    Returns DataFrames: "gate" (long), "gate_wide" (design x (corpus, family): mean log10 ratio,
    ✓ where the gate passes), "gate_floor" (noise floor / whole-window ratio), "effects"
    (mean paired differences, * where the 95% interval excludes 0), "effects_detail" (mean and
    interval of every outcome), "points" (the regime map), "overall"."""
    import pandas as pd

    from .claims import format_interval, mean_interval
    gate_rows, eff_rows, pts, overall, detail = [], [], [], [], []
    for c in corpora:
        gated, X, Y = [], [], []
        for a in archs:
            off = runs[c, a, "off"]
            for d, stat in designs.items():
                r = runs[c, a, d]
                g = c3_gate(r, off, stat, start, settle)
                gr = report.paired(f"C3.stabilises[{c}:{a}:{d}]", f"{a} on {c}, design '{d}': its statistic "
                                   f"({stat}) varies less where the design acts (after {settle:.0%} of the acting "
                                   "window as settling time) than under maximum likelihood "
                                   "(log10 detrended variance ratio, paired by seed)", g["log_ratio"],
                                   np.zeros_like(g["log_ratio"]), 0.0, "<")
                gate_rows.append({"corpus": c, "family": a, "design": d, "statistic": stat,
                                  "log10 var ratio": gr.value, "95% CI": format_interval(gr),
                                  "noise floor (log10, vs ML)": float(np.median(g["floor"])), "stabilises": gr.holds,
                                  "whole window, switch-on included": float(np.mean(g["whole"])),
                                  "cell": f"{gr.value:+.2f}{' ✓' if gr.holds else ''}",
                                  "floor / whole": f"{np.median(g['floor']):+.1f} / {np.mean(g['whole']):+.2f}"})
                j = report.joint(f"C3[{c}:{a}:{d}]", f"{a} on {c}, design '{d}': lower generation entropy and higher "
                                 "seq-rep-4 than maximum likelihood at temperature 1 (paired by seed)", [
                                     {"name": "Δ gen. entropy", "treated": r["gen_entropy"],
                                      "baseline": off["gen_entropy"], "threshold": 0.0, "comparator": "<",
                                      "unit": "nats/token"},
                                     {"name": "Δ seq-rep-4", "treated": r["seq_rep4"], "baseline": off["seq_rep4"],
                                      "threshold": 0.0, "comparator": ">"}])
                gre = report.paired(f"C3.greedy[{c}:{a}:{d}]", f"{a} on {c}, design '{d}': higher seq-rep-4 than "
                                    "maximum likelihood under greedy decoding (paired)", r["seq_rep4_greedy"],
                                    off["seq_rep4_greedy"], 0.0, ">")
                rough = report.paired(f"C3.smooth[{c}:{a}:{d}]", f"{a} on {c}, design '{d}': the data cross-entropy "
                                      f"on the fixed evaluation batch is at most {smooth_factor:g}× as rough as under "
                                      "maximum likelihood over the acting window (log10 ratio of detrended std)",
                                      np.log10(c3_roughness(r, start)), np.log10(c3_roughness(off, start)),
                                      float(np.log10(smooth_factor)), "<")
                row = {"corpus": c, "family": a, "design": d, "gate": "✓" if gr.holds else "",
                       "C3": "✓" if j.holds else "", "greedy": "✓" if gre.holds else "",
                       "smooth": "✓" if rough.holds else ""}
                for name, label in C3_EFFECTS.items():
                    diff = r[name] - off[name]
                    if np.all(np.isfinite(diff)):
                        lo, hi = mean_interval(diff)
                        row[label] = f"{diff.mean():+.3f}{'*' if lo > 0 or hi < 0 else ''}"
                        detail.append({"corpus": c, "family": a, "design": d, "outcome": name, "mean": diff.mean(),
                                       "lo": lo, "hi": hi})
                    else:
                        row[label] = ""
                eff_rows.append(row)
                dH = r["gen_entropy"] - off["gen_entropy"]
                dR = r["seq_rep4"] - off["seq_rep4"]
                x_lo, x_hi = gr.interval
                dH_lo, dH_hi = mean_interval(dH)
                pts.append({"corpus": c, "family": a, "design": d, "stabilises": gr.holds, "x": -gr.value,
                            "x_lo": -x_hi, "x_hi": -x_lo, "dH": dH.mean(), "dH_lo": dH_lo, "dH_hi": dH_hi,
                            "dRep": dR.mean(), "C3": j.holds})
                X.append(-g["log_ratio"])
                Y.append(dH)
                if gr.holds:
                    gated.append(j)
        if gated:
            agg = report.aggregate(f"C3[{c}]", f"on {c}, every (family, design) whose design stabilises its "
                                   "statistic gives lower entropy and more repetition", gated)
            overall.append({"corpus": c, "stabilising (family, design)": len(gated),
                            "of which give C3": sum(m.holds for m in gated), "least favourable": agg.worst,
                            "verdict": agg.verdict})
        else:
            report.claim(f"C3[{c}]", f"on {c}, every (family, design) whose design stabilises its statistic gives "
                         "lower entropy and more repetition: no design stabilised its statistic, nothing to test",
                         float("nan"), None, 0.0, "<", rule="aggregate", n=0, members=[])
            overall.append({"corpus": c, "stabilising (family, design)": 0, "of which give C3": 0,
                            "least favourable": "—", "verdict": "✗ does not hold"})
        rho, iv = rank_bootstrap(np.array(X), np.array(Y), n_boot=2000, seed=0)
        cause = report.claim(f"C3.cause[{c}]", f"on {c}, across (family, design): the more a design stabilises its "
                             "statistic, the lower the generation entropy against maximum likelihood (Spearman ρ of "
                             "stabilisation achieved and Δ entropy < 0)", rho, iv, 0.0, "<", rule="bootstrap",
                             n=len(X))
        overall[-1].update({"ρ(stabilisation, ΔH)": f"{rho:+.2f} [{iv[0]:+.2f}, {iv[1]:+.2f}]",
                            "C3.cause": cause.verdict})
    gate = pd.DataFrame(gate_rows)
    wide = lambda col: gate.pivot(index="design", columns=["corpus", "family"], values=col).loc[list(designs)]  # noqa: E731
    return {"gate": gate.drop(columns=["cell", "floor / whole"]).set_index(["corpus", "family", "design"]),
            "gate_wide": wide("cell"), "gate_floor": wide("floor / whole"),
            "effects": pd.DataFrame(eff_rows).set_index(["corpus", "family", "design"]),
            "effects_detail": pd.DataFrame(detail),
            "points": pd.DataFrame(pts), "overall": pd.DataFrame(overall).set_index("corpus")}


def opposite_movers(points, corpus: str) -> list[tuple[str, str]]:
    """Pairs of stabilising (family, design) points on one corpus whose entropy effects
    have opposite signs, each interval excluding zero: evidence that stabilisation as
    such does not set the direction of the entropy change."""
    p = points[(points.corpus == corpus) & points.stabilises]
    down = p[p.dH_hi < 0]
    up = p[p.dH_lo > 0]
    return [(f"{a.family}:{a.design}", f"{b.family}:{b.design}") for a in down.itertuples() for b in up.itertuples()]


def c3_human(data: dict) -> dict:
    """The human reference of one corpus (experiments.c3_data): seq-rep-4 and loop share of
    the true continuations, and the entropy rate where it is known (Markov)."""
    from .metrics import ends_in_loop, seq_rep_n
    h = data["human"]
    return {"seq-rep-4": float(np.mean([seq_rep_n(s, 4) for s in h])),
            "loop share": float(np.mean([ends_in_loop(s, 32) for s in h])),
            "entropy rate": data["source"].entropy_rate if data["source"] is not None else float("nan")}


def c3_reference(runs: dict, human: dict, corpora: list[str], archs: list[str]) -> "pd.DataFrame":
    """Absolute levels beside the human reference: per corpus, the true continuations and
    each family under maximum likelihood (mean over seeds): seq-rep-4 and loop share at
    temperature 1 and greedy, generation entropy, and the source's entropy rate (Markov)."""
    import pandas as pd
    rows = []
    for c in corpora:
        h = human[c]
        rows.append({"corpus": c, "text": "human (held-out)", "seq-rep-4": h["seq-rep-4"], "seq-rep-4 greedy": np.nan,
                     "loop share": h["loop share"], "loop share greedy": np.nan, "entropy": h["entropy rate"]})
        for a in archs:
            r = runs[c, a, "off"]
            rows.append({"corpus": c, "text": f"{a}, maximum likelihood", "seq-rep-4": r["seq_rep4"].mean(),
                         "seq-rep-4 greedy": r["seq_rep4_greedy"].mean(), "loop share": r["loops"].mean(),
                         "loop share greedy": r["loops_greedy"].mean(), "entropy": r["gen_entropy"].mean()})
    return pd.DataFrame(rows).set_index(["corpus", "text"])

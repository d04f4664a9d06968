"""Claim C3's room: feedback designs on the Markov source and Shakespeare. c3_data builds
the corpora, c3_task trains one (corpus, architecture, design) configuration for every
seed and measures the held statistics and the outcomes, and the functions below turn
the sweep's results into gate statistics, records and tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import feedback, measures, members, train
from ..records import format_interval
from ..sources import CharCorpus, MarkovSource
from ..stats import mean_interval, rank_bootstrap


C3_EFFECTS = {  # outcome of c3_task -> short column label
    "gen_entropy": "ΔH", "tf_entropy": "ΔH tf", "seq_rep4": "Δrep", "seq_rep4_greedy": "Δrep gr",
    "loops": "Δloop", "loops_greedy": "Δloop gr", "overconfidence": "Δover", "heldout_ce": "ΔCE",
    "forward_kl": "ΔKL→", "reverse_kl": "ΔKL←"}

@torch.no_grad()
def statistics(base, params, batch: torch.Tensor, n_samples: int, length: int, member_seeds,
               batched: bool = True, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Every statistic a design can hold, on a fixed evaluation batch [M, B, T+1] and on
    own samples with fixed seeds (so that two calls differ only through the parameters),
    each [3, M]: the whole measurement and its two halves (sequences 0..B/2-1 and the
    rest; samples likewise), from which the split-half noise floor is computed."""
    H, logz, ce = members.per_position(base, params, batch, batched, precision)  # [M, B, T] each
    h = batch.shape[1] // 2
    parts = [slice(None), slice(0, h), slice(h, None)]
    out = {}
    for name, per in [("tf_entropy", H), ("log_z", logz), ("data_ce", ce)]:
        out[name] = np.stack([per[:, sl].reshape(per.shape[0], -1).mean(1).double().cpu().numpy() for sl in parts])
    out["entropy_spread"] = np.stack([H[:, sl].reshape(H.shape[0], -1).var(1).double().cpu().numpy() for sl in parts])
    _, lq = members.sample_members(base, params, n_samples, length, seed=0, precision=precision,
                           member_seeds=[9_973 * int(s) + 5 for s in member_seeds])
    hs = n_samples // 2
    out["gen_entropy"] = np.stack([-lq[:, sl].reshape(lq.shape[0], -1).mean(1)
                                   for sl in [slice(None), slice(0, hs), slice(hs, None)]])
    return out


def c3_data(corpus: str, seeds: list[int], *, seq_len: int, prompt_len: int, gen_len: int, n_gen: int,
            n_eval: int, train_chars: int = 400_000, markov_sequences: int = 512, markov_vocab: int = 12,
            device: str = "cpu") -> dict:
    """Training data [S, N, T+1] (per seed for the Markov source, shared for Shakespeare),
    a fixed evaluation batch and held-out sequences [n_eval, T+1], and n_gen held-out
    prompts [n_gen, P] with their true continuations [n_gen, gen_len] (the human
    reference). The Markov source has every transition possible (finite KL both ways)."""
    dev = torch.device(device)
    S = len(seeds)
    if corpus == "shakespeare":
        c = CharCorpus.shakespeare(max_train_chars=train_chars)
        vocab = c.vocab
        train_x = members.with_bos(c.windows("train", seq_len), vocab, dev)[None].expand(S, -1, -1)
        fixed = c.windows("train", seq_len, n=n_eval, seed=1)
        held = c.windows("heldout", seq_len, n=n_eval, seed=2)
        pr = c.windows("heldout", prompt_len + gen_len, n=n_gen, seed=3)
        return dict(vocab=vocab, train=train_x, fixed=members.with_bos(fixed, vocab, dev),
                    heldout=members.with_bos(held, vocab, dev), prompts=pr[:, :prompt_len], human=pr[:, prompt_len:],
                    decode=c.decode, source=None)
    if corpus == "markov":
        src = MarkovSource.random(markov_vocab, sparsity=0.0, alpha=0.5, seed=0)
        vocab = markov_vocab
        train_x = torch.stack([members.with_bos(src.sample(markov_sequences, seq_len, seed=1_000 + s), vocab, dev)
                               for s in seeds])
        pr = src.sample(n_gen, prompt_len + gen_len, seed=99_000)
        return dict(vocab=vocab, train=train_x, fixed=members.with_bos(src.sample(n_eval, seq_len, seed=98_000), vocab, dev),
                    heldout=members.with_bos(src.sample(n_eval, seq_len, seed=97_000), vocab, dev),
                    prompts=pr[:, :prompt_len], human=pr[:, prompt_len:],
                    decode=lambda ids: " ".join(map(str, np.asarray(ids).reshape(-1).tolist())), source=src)
    raise ValueError(f"unknown corpus {corpus!r}; allowed: shakespeare, markov")


def c3_task(config: dict, seeds: list[int], *, seq_len: int = 32, prompt_len: int = 16, gen_len: int = 128,
            steps: int = 300, lr: float = 3e-3, batch_size: int = 32, start_frac: float = 0.5,
            eval_every: int = 10, n_eval: int = 32, n_stat_samples: int = 16, n_gen: int = 32, n_texts: int = 3,
            train_chars: int = 400_000, markov_sequences: int = 512, markov_vocab: int = 12,
            arch_kw: dict | None = None, device: str = "cpu", precision: str = "fp32", plugins=(),
            plugin_code: str = "") -> dict:
    """config: corpus, arch, label, spec (a feedback design, feedback.make). Trains every
    seed, measures every statistic of feedback.STATISTICS on the fixed evaluation batch
    every eval_every steps (with its two halves), then the outcomes: generation entropy
    (T = 1) and seq-rep-4 / loop share at T = 1 and greedy on continuations of held-out
    prompts, teacher-forced entropy and cross-entropy on held-out text, over-confidence
    (generation entropy - held-out CE), and on the Markov source the KL rates to the
    source in both directions (exact source probabilities, Monte Carlo over sequences).
    plugins: modules that register designs (imported here, in every process);
    plugin_code: their feedback.plugin_hash, only part of the sweep's cache key."""
    feedback.load_plugins(plugins)
    spec = dict(config["spec"])
    data = c3_data(config["corpus"], seeds, seq_len=seq_len, prompt_len=prompt_len, gen_len=gen_len, n_gen=n_gen,
                   n_eval=n_eval, train_chars=train_chars, markov_sequences=markov_sequences,
                   markov_vocab=markov_vocab, device=device)
    V, M = data["vocab"], len(seeds)
    start = int(start_frac * steps)
    design = feedback.make({**spec, "start": start})
    fixed = data["fixed"][None].expand(M, -1, -1)
    heldout = data["heldout"][None].expand(M, -1, -1)
    rec: dict[str, list] = {}
    kw = dict(arch_kw or {}, max_len=seq_len + 1)

    def stats(base, p, t):
        for name, v in statistics(base, p, fixed, n_stat_samples, seq_len, seeds,
                                           precision=precision).items():
            rec.setdefault(name, []).append(v)  # [3, M]
        return torch.zeros(M)

    evals = sorted(set(range(0, steps + 1, eval_every)) | {steps})
    traj, base = train.train_lm(config["arch"], data["train"], vocab=V, seeds=seeds, steps=steps, lr=lr,
                                batch_size=batch_size, feedback=design, precision=precision, eval_every=evals,
                                eval_fns={"stats": stats}, desc=f"{config['corpus']} {config['arch']} "
                                f"{config['label']}", **kw)
    out: dict[str, list] = {"eval_step": [traj.eval_step.tolist()] * M}
    for name, v in rec.items():
        a = np.stack(v)  # [E, 3, M]
        for j, suffix in enumerate(["", "_a", "_b"]):
            out[f"stat_{name}{suffix}"] = a[:, j].T.tolist()
    for name, v in traj.feedback.items():
        if name != "step":
            out[f"fb_{name}"] = np.asarray(v).T.tolist()
    # ---- outcomes
    prompts = torch.as_tensor(data["prompts"])
    H, _, ce = members.per_position(base, traj.params, heldout, precision=precision)  # [M, B, T] each
    out["heldout_ce"] = ce.reshape(M, -1).mean(1).double().cpu().numpy().tolist()
    out["tf_entropy"] = H.reshape(M, -1).mean(1).double().cpu().numpy().tolist()
    ms = [4_242 + int(s) for s in seeds]
    tok, lq = members.sample_members(base, traj.params, n_gen, gen_len, seed=0, prompt=prompts, member_seeds=ms,
                                   precision=precision)
    gtok, _ = members.sample_members(base, traj.params, n_gen, gen_len, seed=0, prompt=prompts, member_seeds=ms,
                                   greedy=True, precision=precision)
    out["gen_entropy"] = [float(-lq[m].mean()) for m in range(M)]
    out["overconfidence"] = [g - c for g, c in zip(out["gen_entropy"], out["heldout_ce"])]
    out["seq_rep4"] = [float(np.mean([measures.seq_rep_n(s, 4) for s in tok[m]])) for m in range(M)]
    out["seq_rep4_greedy"] = [float(np.mean([measures.seq_rep_n(s, 4) for s in gtok[m]])) for m in range(M)]
    out["loops"] = [float(np.mean([measures.ends_in_loop(s, 32) for s in tok[m]])) for m in range(M)]
    out["loops_greedy"] = [float(np.mean([measures.ends_in_loop(s, 32) for s in gtok[m]])) for m in range(M)]
    src = data["source"]
    if src is not None:
        logP = np.log(src.P)
        h = data["heldout"].cpu().numpy()[:, 1:]  # [B, T]
        fwd = (logP[h[:, :-1], h[:, 1:]][None] + ce.double().cpu().numpy()[:, :, 1:]).reshape(M, -1).mean(1)
        prev = np.concatenate([np.broadcast_to(data["prompts"][:, -1:], (M,) + data["prompts"][:, -1:].shape),
                               tok[:, :, :-1]], -1)  # [M, n, L] the token before each generated one
        rev = (lq - logP[prev, tok]).reshape(M, -1).mean(1)
        out["forward_kl"], out["reverse_kl"] = fwd.tolist(), rev.tolist()
    else:
        out["forward_kl"] = out["reverse_kl"] = [float("nan")] * M
    dec = data["decode"]
    out["texts"] = [[dec(tok[m, i]) for i in range(min(n_texts, n_gen))] for m in range(M)]
    out["texts_greedy"] = [[dec(gtok[m, i]) for i in range(min(n_texts, n_gen))] for m in range(M)]
    return out


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
    return measures.detrended_std(np.asarray(y, dtype=np.float64).T) ** 2


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
    h = data["human"]
    return {"seq-rep-4": float(np.mean([measures.seq_rep_n(s, 4) for s in h])),
            "loop share": float(np.mean([measures.ends_in_loop(s, 32) for s in h])),
            "entropy rate": data["source"].entropy_rate if data["source"] is not None else float("nan")}


def c3_reference(runs: dict, human: dict, corpora: list[str], archs: list[str]) -> "pd.DataFrame":
    """Absolute levels beside the human reference: per corpus, the true continuations and
    each family under maximum likelihood (mean over seeds): seq-rep-4 and loop share at
    temperature 1 and greedy, generation entropy, and the source's entropy rate (Markov)."""
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

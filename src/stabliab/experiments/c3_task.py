"""Claim C3's task: c3_data builds the corpora (the Markov source and Shakespeare);
c3_task trains one (corpus, architecture, design) configuration for every seed and
measures the held statistics and the outcomes, in the result format defined below (the
one place that names its keys). experiments.c3 re-exports these names with the rest of
the room (gate, records, tables)."""
from __future__ import annotations

import numpy as np
import torch

from .. import feedback, measures, members, train
from ..seeds import stream, streams
from ..sources import CharCorpus, MarkovSource

# ---------------------------------------------------------------- result format of c3_task
# c3_task returns lists with one entry per seed (the sweep's contract); c3_runs turns a
# sweep's records into {(corpus, arch, label): run}, run[key] an array with seeds first:
#   EVAL_STEP                  [S, E] the evaluation steps (the same for every seed)
#   stat_key(name, half)       [S, E] each of feedback.STATISTICS on the fixed evaluation batch;
#                              half "" the whole batch, "a" / "b" its two halves (the noise floor)
#   feedback_key(name)         [S, ...] each series the design logged (feedback.Design.arrays)
#   each key of OUTCOMES       [S] an outcome of the trained model (nan where it does not exist)
#   each key of TEXTS          [S][N_TEXTS] decoded continuations (a list, not an array)
EVAL_STEP = "eval_step"
HALVES = ("", "a", "b")
OUTCOMES = {  # outcome -> column label of the effects table
    "gen_entropy": "ΔH", "gen_entropy_exact": "ΔH exact", "tf_entropy": "ΔH tf", "seq_rep4": "Δrep", "seq_rep4_greedy": "Δrep gr",
    "loops": "Δloop", "loops_greedy": "Δloop gr", "overconfidence": "Δover", "heldout_ce": "ΔCE",
    "forward_kl": "ΔKL→", "reverse_kl": "ΔKL←"}
TEXTS = ("texts", "texts_greedy")  # at temperature 1, greedy
N_TEXTS = 3  # continuations kept as text per seed


def stat_key(name: str, half: str = "") -> str:
    return f"stat_{name}_{half}" if half else f"stat_{name}"


def feedback_key(name: str) -> str:
    return f"fb_{name}"


def series(run: dict, name: str, half: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(evaluation steps [E], statistic `name` per seed [S, E]) of one run."""
    return run[EVAL_STEP][0], run[stat_key(name, half)]


# ---------------------------------------------------------------- data and task
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
    out.update(own_statistics(base, params, n_samples, length, member_seeds, precision))
    return out


@torch.no_grad()
def own_statistics(base, params, n_samples: int, length: int, member_seeds, precision: str = "fp32") -> dict:
    """The generation statistics on n_samples own samples (fixed seeds), each [3, M] (the
    whole draw and its two halves): gen_entropy, mean -log q per token (Monte Carlo), and
    own_entropy, the exact entropy of each step's distribution along the same samples."""
    _, lq, ent = members.sample_members(base, params, n_samples, length, seed=0, precision=precision, batched=True,
                                        member_seeds=streams("statistics", member_seeds), entropy=True)
    hs = n_samples // 2
    parts = [slice(None), slice(0, hs), slice(hs, None)]
    return {"gen_entropy": np.stack([-lq[:, sl].reshape(lq.shape[0], -1).mean(1) for sl in parts]),
            "own_entropy": np.stack([ent[:, sl].reshape(ent.shape[0], -1).mean(1) for sl in parts])}


def c3_data(corpus: str, seeds: list[int], *, seq_len: int, prompt_len: int, gen_len: int, n_gen: int,
            n_eval: int, train_chars: int, markov_sequences: int, markov_vocab: int, device: str) -> dict:
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
        fixed = c.windows("train", seq_len, n=n_eval, seed=stream("fixed", 0))
        held = c.windows("heldout", seq_len, n=n_eval, seed=stream("heldout", 0))
        pr = c.windows("heldout", prompt_len + gen_len, n=n_gen, seed=stream("prompts", 0))
        return dict(vocab=vocab, train=train_x, fixed=members.with_bos(fixed, vocab, dev),
                    heldout=members.with_bos(held, vocab, dev), prompts=pr[:, :prompt_len], human=pr[:, prompt_len:],
                    decode=c.decode, source=None)
    if corpus == "markov":
        src = MarkovSource.random(markov_vocab, sparsity=0.0, alpha=0.5, seed=stream("source", 0))
        vocab = markov_vocab
        train_x = torch.stack([members.with_bos(src.sample(markov_sequences, seq_len, seed=stream("data", s)), vocab, dev)
                               for s in seeds])
        pr = src.sample(n_gen, prompt_len + gen_len, seed=stream("prompts", 0))
        return dict(vocab=vocab, train=train_x, fixed=members.with_bos(src.sample(n_eval, seq_len, seed=stream("fixed", 0)), vocab, dev),
                    heldout=members.with_bos(src.sample(n_eval, seq_len, seed=stream("heldout", 0)), vocab, dev),
                    prompts=pr[:, :prompt_len], human=pr[:, prompt_len:],
                    decode=lambda ids: " ".join(map(str, np.asarray(ids).reshape(-1).tolist())), source=src)
    raise ValueError(f"unknown corpus {corpus!r}; allowed: shakespeare, markov")


def acting_start(steps: int, start_frac: float) -> int:
    """The first step at which a design acts (the acting window runs from here to `steps`)."""
    return int(start_frac * steps)


def c3_task(config: dict, seeds: list[int], *, seq_len: int, prompt_len: int, gen_len: int, steps: int, lr: float,
            batch_size: int, start_frac: float, eval_every: int, n_eval: int, n_stat_samples: int, n_gen: int,
            train_chars: int, markov_sequences: int, markov_vocab: int, d_model: int, hidden: int, layers: int,
            heads: int, mlp_context: int, device: str, precision: str, plugins: list[str], plugin_code: str) -> dict:
    """config: corpus, arch, label, spec (a feedback design, feedback.make). Trains every
    seed, measures every statistic of feedback.STATISTICS on the fixed evaluation batch
    every eval_every steps (with its two halves), then the OUTCOMES: generation entropy
    (T = 1) and seq-rep-4 / loop share at T = 1 and greedy on continuations of held-out
    prompts, teacher-forced entropy and cross-entropy on held-out text, over-confidence
    (generation entropy - held-out CE), and on the Markov source the KL rates to the
    source in both directions (exact source probabilities, Monte Carlo over sequences).
    The keywords are the notebook's parameters of the same names; plugins: modules that
    register designs (imported here, in every process); plugin_code: their hash
    (plugin_code()), only part of the sweep's cache key."""
    feedback.load_plugins(plugin_modules(plugins))
    data = c3_data(config["corpus"], seeds, seq_len=seq_len, prompt_len=prompt_len, gen_len=gen_len, n_gen=n_gen,
                   n_eval=n_eval, train_chars=train_chars, markov_sequences=markov_sequences,
                   markov_vocab=markov_vocab, device=device)
    V, M = data["vocab"], len(seeds)
    design = feedback.make({**config["spec"], "start": acting_start(steps, start_frac)})
    fixed = data["fixed"][None].expand(M, -1, -1)
    heldout = data["heldout"][None].expand(M, -1, -1)
    rec: dict[str, list] = {}

    def stats(base, p, t):
        for name, v in statistics(base, p, fixed, n_stat_samples, seq_len, seeds, precision=precision).items():
            rec.setdefault(name, []).append(v)  # [3, M]
        return torch.zeros(M)

    evals = sorted(set(range(0, steps + 1, eval_every)) | {steps})
    traj, base = train.train_lm(config["arch"], data["train"], vocab=V, seeds=seeds, steps=steps, lr=lr,
                                batch_size=batch_size, feedback=design, precision=precision, eval_every=evals,
                                eval_fns={"stats": stats}, desc=f"{config['corpus']} {config['arch']} {config['label']}",
                                d=d_model, hidden=hidden, layers=layers, heads=heads, context=mlp_context,
                                max_len=seq_len + 1)
    out: dict[str, list] = {EVAL_STEP: [traj.eval_step.tolist()] * M}
    for name, v in rec.items():
        a = np.stack(v)  # [E, 3, M]
        for j, half in enumerate(HALVES):
            out[stat_key(name, half)] = a[:, j].T.tolist()
    for name, v in traj.feedback.items():
        if name != "step":
            out[feedback_key(name)] = np.asarray(v).T.tolist()
    out.update(outcomes(base, traj.params, data, seeds, gen_len, n_gen, heldout, precision))
    return out


def outcomes(base, params, data: dict, seeds, gen_len: int, n_gen: int, heldout: torch.Tensor,
             precision: str) -> dict[str, list]:
    """The OUTCOMES and TEXTS of trained members (seeds[m]'s sampling streams, so that two
    arms of one seed continue the same prompts with the same uniforms): generation entropy
    at T = 1 as mean -log q and as the exact entropy of each step along the continuations,
    seq-rep-4 and loop share at T = 1 and greedy, teacher-forced entropy and cross-entropy on
    held-out text [M, B, T+1], over-confidence, the KL rates to a Markov source."""
    M, out = len(seeds), {}
    prompts = torch.as_tensor(data["prompts"])
    H, _, ce = members.per_position(base, params, heldout, precision=precision)  # [M, B, T] each
    out["heldout_ce"] = ce.reshape(M, -1).mean(1).double().cpu().numpy().tolist()
    out["tf_entropy"] = H.reshape(M, -1).mean(1).double().cpu().numpy().tolist()
    ms = streams("sample", seeds)
    tok, lq, ent = members.sample_members(base, params, n_gen, gen_len, seed=0, prompt=prompts, member_seeds=ms,
                                          precision=precision, batched=True, entropy=True)
    gtok, _ = members.sample_members(base, params, n_gen, gen_len, seed=0, prompt=prompts, member_seeds=ms,
                                     greedy=True, precision=precision, batched=True)
    out["gen_entropy"] = [float(-lq[m].mean()) for m in range(M)]
    out["gen_entropy_exact"] = [float(ent[m].mean()) for m in range(M)]
    out["overconfidence"] = [g - c for g, c in zip(out["gen_entropy"], out["heldout_ce"])]
    for suffix, t in [("", tok), ("_greedy", gtok)]:
        out["seq_rep4" + suffix] = [float(np.mean([measures.seq_rep_n(s, 4) for s in t[m]])) for m in range(M)]
        out["loops" + suffix] = [float(np.mean([measures.ends_in_loop(s, 32) for s in t[m]])) for m in range(M)]
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
    for key, t in zip(TEXTS, [tok, gtok]):
        out[key] = [[data["decode"](t[m, i]) for i in range(min(N_TEXTS, n_gen))] for m in range(M)]
    return out



# ---------------------------------------------------------------- the decisive experiment: three arms and a dose
# c3_arms_task returns, per analysed seed (lists, the sweep's contract), for the prefix (maximum likelihood up to
# switch-on), for each arm of arms(gain, dose_gains) (and sham_arm(g) for each config["sham_gains"]), and
# for the donor (DONOR: one seed outside the analysed ones whose design run every sham replays; its values are
# the same in every seed's entry):
#   arm_key(PREFIX, EVAL_STEP), arm_key(PREFIX, "data_ce")   [S, E0] data CE on the fixed batch before switch-on
#   arm_key(arm, EVAL_STEP)                                  [S, E] evaluation steps of the acting window
#                                                            (counted from step 0 of training: switch_on + t;
#                                                            the first is switch_on itself, before any arm step)
#   arm_key(arm, stat_key(s, half))                          [S, E] s in ARM_STATISTICS, half in HALVES
#   arm_key(arm, feedback_key(k))                            [S, K] the controller's log at its K measurements:
#                                                            stat, setpoint, kappa, saturated
#   arm_key(arm, outcome)                                    [S] each of OUTCOMES; TEXTS as in c3_task
#   arm_key(DONOR, "seed")                                   [S] the donor's seed
#   arm_key(DONOR, "data_ce")                                [S, E0] the donor's prefix (its plateau state)
#   arm_key(DONOR, feedback_key(k))                          [S, K] the donor's design log (its kappa is the sham's)
PREFIX = "prefix"
DONOR = "donor"
ARM_STATISTICS = ("own_entropy", "data_ce")


def arm_key(arm: str, name: str) -> str:
    return f"{arm}:{name}"


def dose_arm(g: float) -> str:
    return f"gain={g:g}"


def sham_arm(g: float, gain: float) -> str:
    """The sham replaying the donor's design run at gain g: 'sham' at the registered gain."""
    return "sham" if g == gain else f"sham {dose_arm(g)}"


def arms(gain: float, dose_gains: list[float]) -> list[str]:
    """The arms, in the order they train: maximum likelihood, the design (its registered
    gain), the dose arms (the other gains), and the sham (replays the donor's kappa)."""
    return ["ml", "design", *[dose_arm(g) for g in dose_gains], "sham"]


def donor_positions(donor_seed: int, seeds: list[int]) -> list[int]:
    """The members of a decisive run: the donor first, then the analysed seeds in their order."""
    if int(donor_seed) in {int(s) for s in seeds}:
        raise ValueError(f"donor_seed {donor_seed} is one of the analysed seeds; it must lie outside them")
    return [int(donor_seed), *[int(s) for s in seeds]]


def _take(x: torch.Tensor, index: list[int]) -> torch.Tensor:
    return x[index]


def c3_arms_task(config: dict, seeds: list[int], *, seq_len: int, prompt_len: int, gen_len: int, lr: float,
                 batch_size: int, eval_every: int, n_eval: int, n_stat_samples: int, n_gen: int, train_chars: int,
                 markov_sequences: int, markov_vocab: int, d_model: int, hidden: int, layers: int, heads: int,
                 mlp_context: int, switch_on: int, window: int, control_every: int, n_control: int, kp: float,
                 ki: float, kappa_max: float, gain: float, dose_gains: list[float], donor_seed: int, device: str,
                 precision: str) -> dict:
    """config: corpus, arch (and optionally sham_gains: the gains, among gain and dose_gains,
    whose design run the donor also trains and a sham replays; default [gain]; the pilot,
    experiments.c3_pilot). Maximum likelihood trains every seed and
    the donor (donor_seed, outside the analysed seeds) for switch_on steps; from there, with
    parameters and optimiser state copied, the arms train for `window` more steps, stacked in
    one run: 'ml' (kappa = 0), 'design' (feedback.PIEntropy at `gain`), one dose arm per
    dose_gains (the donor in the design arm, and in a dose arm whose gain is in sham_gains);
    then, in a second run, 'sham' (sham_arm(g) per sham gain: the same actuator replaying
    the donor's design kappa trajectory, no feedback) for every analysed seed. Each seed's numbers depend only on
    itself and the donor (members of a stacked run do not interact), so the sweep's per-seed
    cache is exact. Every eval_every steps each arm measures ARM_STATISTICS on the fixed
    evaluation batch and on n_stat_samples own samples with fixed seeds (their two halves:
    the noise floor); at the end, the OUTCOMES with the same prompts and uniforms in every arm."""
    run_seeds = donor_positions(donor_seed, seeds)
    S, n = len(run_seeds), len(seeds)
    mine = list(range(1, S))  # the analysed seeds' positions among run_seeds (0: the donor)
    sham_gains = [float(g) for g in config.get("sham_gains", [gain])]
    data = c3_data(config["corpus"], run_seeds, seq_len=seq_len, prompt_len=prompt_len, gen_len=gen_len,
                   n_gen=n_gen, n_eval=n_eval, train_chars=train_chars, markov_sequences=markov_sequences,
                   markov_vocab=markov_vocab, device=device)
    V, arch = data["vocab"], config["arch"]
    model = dict(d=d_model, hidden=hidden, layers=layers, heads=heads, context=mlp_context, max_len=seq_len + 1)

    def evaluate(M, member_seeds, rec, own: bool):
        fixed = data["fixed"][None].expand(M, -1, -1)

        def fn(base, p, t):
            _, _, ce = members.per_position(base, p, fixed, precision=precision)
            rec.setdefault("data_ce", []).append(np.stack([ce.reshape(M, -1).mean(1).double().cpu().numpy()] * 3))
            if own:
                rec.setdefault("own_entropy", []).append(
                    own_statistics(base, p, n_stat_samples, seq_len, member_seeds, precision)["own_entropy"])
            return torch.zeros(M)
        return {"stats": fn}

    def window_run(arm_names, positions, spec):
        """Train the arms stacked: arm a's members are run_seeds[positions[a]]; the analysed
        seeds' numbers of each arm go to `out`. Returns the feedback log {name: [K, M]} and
        the member index of (arm, position)."""
        index = [p for pos in positions for p in pos]
        member_seeds = [run_seeds[p] for p in index]
        M = len(index)
        rec: dict[str, list] = {}
        traj, base = train.train_lm(arch, _take(data["train"], index), vocab=V, seeds=member_seeds, steps=window,
                                    lr=lr, batch_size=batch_size, precision=precision, eval_every=eval_every,
                                    eval_fns=evaluate(M, member_seeds, rec, True), feedback=feedback.make(spec),
                                    resume=({k: _take(v, index) for k, v in pre.params.items()},
                                            pre.optimizer.take(index), switch_on),
                                    desc=f"{config['corpus']} {arch} {'+'.join(arm_names)}", **model)
        res = outcomes(base, traj.params, data, member_seeds, gen_len, n_gen,
                       data["heldout"][None].expand(M, -1, -1), precision)
        fb = {k: np.asarray(v) for k, v in traj.feedback.items() if k != "step"}  # [K, M]
        where, j = {}, 0
        for a, pos in enumerate(positions):
            for p in pos:
                where[a, p], j = j, j + 1
        for a, arm in enumerate(arm_names):
            sl = [where[a, p] for p in mine]
            out[arm_key(arm, EVAL_STEP)] = [(switch_on + traj.eval_step).tolist()] * n
            for name, v in rec.items():
                arr = np.stack(v)  # [E, 3, M]
                for h, half in enumerate(HALVES):
                    if name != "data_ce" or not half:
                        out[arm_key(arm, stat_key(name, half))] = arr[:, h, sl].T.tolist()
            for name, v in fb.items():
                out[arm_key(arm, feedback_key(name))] = v[:, sl].T.tolist()
            for name, v in res.items():
                out[arm_key(arm, name)] = [v[i] for i in sl]
        return fb, where

    out: dict[str, list] = {}
    rec0: dict[str, list] = {}
    pre, pre_base = train.train_lm(arch, data["train"], vocab=V, seeds=run_seeds, steps=switch_on, lr=lr,
                            batch_size=batch_size, precision=precision, eval_every=eval_every,
                            eval_fns=evaluate(S, run_seeds, rec0, False), desc=f"{config['corpus']} {arch} ML",
                            **model)
    ce0 = np.stack(rec0["data_ce"])[:, 0]  # [E0, S]
    # s_0 [S]: the held statistic at switch-on, as every arm's first measurement reads it (the same
    # parameters and sample seeds): the controller's setpoint and the value the gate measures against
    s0 = own_statistics(pre_base, pre.params, n_stat_samples, seq_len, run_seeds, precision)["own_entropy"][0]
    out[arm_key(PREFIX, EVAL_STEP)] = [pre.eval_step.tolist()] * n
    out[arm_key(PREFIX, "data_ce")] = ce0[:, mine].T.tolist()
    ctrl = dict(design="pi_entropy", every=control_every, n_samples=n_control, length=seq_len, kp=kp, ki=ki,
                kappa_max=kappa_max)
    gains = [0.0, gain, *dose_gains]
    if not set(sham_gains) <= set(gains[1:]):
        raise ValueError(f"sham_gains {sham_gains} must be among the design's and the dose arms' gains {gains[1:]}")
    closed = ["ml", "design", *[dose_arm(g) for g in dose_gains]]
    positions = [list(range(S)) if g in sham_gains else mine for g in gains]  # the donor where a sham replays it
    fb, where = window_run(closed, positions, {**ctrl, "gains": [g for g, pos in zip(gains, positions) for _ in pos],
                                               "setpoints": [float(s0[p]) for pos in positions for p in pos]})
    donor_kappa = {g: fb["kappa"][:, where[gains.index(g), 0]] for g in sham_gains}  # [K] per gain
    out[arm_key(DONOR, "seed")] = [int(donor_seed)] * n
    out[arm_key(DONOR, "data_ce")] = [ce0[:, 0].tolist()] * n
    for name, v in fb.items():
        out[arm_key(DONOR, feedback_key(name))] = [v[:, where[1, 0]].tolist()] * n  # the registered gain's design
    shams = [sham_arm(g, gain) for g in sham_gains]
    window_run(shams, [mine] * len(shams), {**ctrl, "replay": [donor_kappa[g].tolist() for g in sham_gains
                                                               for _ in mine]})
    return out


def c3_arms_runs(records: list[dict]) -> dict:
    """Sweep records of c3_arms_task -> {(corpus, arch): {arm: run}}, each run in c3_task's
    format (EVAL_STEP, stat_key(...), feedback_key(...), OUTCOMES as arrays, TEXTS as lists)
    for the arms and PREFIX."""
    out = {}
    for r in records:
        runs: dict[str, dict] = {}
        for k, v in r["result"].items():
            arm, name = k.split(":", 1)
            runs.setdefault(arm, {})[name] = v if name in TEXTS else np.asarray(v, dtype=np.float64)
        out[r["config"]["corpus"], r["config"]["arch"]] = runs
    return out


def c3_runs(records: list[dict]) -> dict:
    """Sweep records of c3_task -> {(corpus, arch, label): run} in the result format above."""
    return {(r["config"]["corpus"], r["config"]["arch"], r["config"]["label"]):
            {k: v if k in TEXTS else np.asarray(v, dtype=np.float64) for k, v in r["result"].items()}
            for r in records}


# ---------------------------------------------------------------- designs and configurations
def plugin_modules(plugins: list[str]) -> list[str]:
    """The notebook's `plugins` without its empty entries ("" stands for none)."""
    return [m for m in plugins if m]


def plugin_code(plugins: list[str]) -> str:
    return feedback.plugin_hash(plugin_modules(plugins))


def arm_configurations(corpora: list[str], archs: list[str]) -> list[dict]:
    """One configuration of c3_arms_task per (corpus, family)."""
    return [{"corpus": c, "arch": a} for c in corpora for a in archs]


def configurations(corpora: list[str], archs: list[str], specs: dict[str, dict]) -> list[dict]:
    """One sweep configuration per (corpus, family, label), maximum likelihood ('off') first."""
    return [{"corpus": c, "arch": a, "label": label, "spec": spec} for c in corpora for a in archs
            for label, spec in {"off": {"design": "off"}, **specs}.items()]

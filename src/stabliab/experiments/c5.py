"""Claim C5's room: the book's mechanisms on a real pretrained LM (SmolLM2-135M-Instruct, through the
adapter in stabliab.pretrained). Held-out Shakespeare, tokenised by the model's own tokenizer, gives
passages for the softmax-head identity and prompts with their human continuations for the generative
entropy and the repetition measures; a small sample of N training passages is fine-tuned to its plateau
(stabliab.plateau) for C2 on a real LM, paired by seed against the model before fine-tuning."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from .. import io, measures, plateau
from ..pretrained import Pretrained
from ..seeds import rng
from ..sources import shakespeare_plays
from .c2 import ngram_share, plateau_mean, plateau_paired

NOTEBOOK = "05_pretrained_lm"
HELDOUT_EVERY = 10  # every 10th play (alphabetical) is held out, as CharCorpus.shakespeare holds them out
CHARS_PER_TOKEN = 8  # a passage is cut from a chunk of this many characters per token (more than BPE needs)
REP_N = 4  # [pre-registered] seq-rep-n of the repetition records (Welleck et al. 2020 report seq-rep-4)
LOOP_TAIL = 32  # [pre-registered] a continuation is in a loop when its last 32 tokens repeat (measures.ends_in_loop)
NGRAM = 4  # [pre-registered] the n of the copied n-gram share (tokens)
MIN_STEPS = 12  # fine-tuning steps before the plateau test is first applied (it needs >= 3 in its window)
PLATEAU_TOL = plateau.Tolerances(max_slope=1.0)  # [pre-registered] the book's rule; the slope tolerance is 1 nat
# per 1000 steps (0.01 nats over a 10-step window: a run of tens of steps, not thousands), the rest its defaults
GLUED = ("n_passages", "n_prompts", "prompt_len", "gen_len", "n_train", "train_len", "ft_blocks", "ft_lr", "ft_steps",
         "head_band")  # parameters the prose cites (c5_NAME)
TEXTS = {"human": "human", "T = 1": "sample", "greedy": "greedy"}  # column -> continuation in the text table


# ---------------------------------------------------------------------- data
def texts() -> tuple[str, str]:
    """(training text, held-out text): the book's Shakespeare plays, every HELDOUT_EVERY-th held out whole."""
    plays = shakespeare_plays()
    names = list(plays)
    held = {n for i, n in enumerate(names) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1}
    return "".join(plays[n] for n in names if n not in held), "".join(plays[n] for n in names if n in held)


def passages(pre: Pretrained, text: str, n: int, length: int, seed: int, name: str) -> np.ndarray:
    """[n, length] token ids: n distinct chunks of the text drawn on stream `name` (non-overlapping,
    CHARS_PER_TOKEN * length characters each), each tokenised from its first line start on and cut
    to `length` tokens."""
    size = CHARS_PER_TOKEN * length
    n_chunks = len(text) // size
    if n > n_chunks:
        raise ValueError(f"only {n_chunks} chunks of {size} characters in the text for {n} passages")
    out = []
    for c in np.sort(rng(name, seed).choice(n_chunks, n, replace=False)):
        chunk = text[c * size:(c + 1) * size]
        ids = pre.encode(chunk[chunk.find("\n") + 1:])
        if len(ids) < length:
            raise ValueError(f"a chunk of {size} characters gave {len(ids)} < {length} tokens")
        out.append(ids[:length])
    return np.array(out, dtype=np.int64)


def continuation_measures(tokens: np.ndarray) -> dict:
    """Per row of tokens [n, L]: seq-rep-REP_N and whether it ends in a loop (tail LOOP_TAIL)."""
    return {"rep": np.array([measures.seq_rep_n(t, REP_N) for t in tokens]),
            "loop": np.array([measures.ends_in_loop(t, LOOP_TAIL) for t in tokens], dtype=np.float64)}


# ---------------------------------------------------------------------- the pretrained model as shipped
def pretrained_task(pre: Pretrained, heldout_text: str, *, seed: int, n_passages: int, n_prompts: int,
                    prompt_len: int, gen_len: int) -> dict:
    """Teacher-forced entropy and cross-entropy on n_passages held-out passages of prompt_len + gen_len
    tokens (stream "heldout"), and continuations of the first n_prompts of them (their prompts: the first
    prompt_len tokens; the human continuation: the rest) at T = 1 (stream "sample", seed) and greedily."""
    if n_prompts > n_passages:
        raise ValueError(f"n_prompts ({n_prompts}) must not exceed n_passages ({n_passages})")
    x = passages(pre, heldout_text, n_passages, prompt_len + gen_len, seed, "heldout")
    ent, ce = pre.teacher_forced(x)  # [n, P+L-1]: position t predicts token t+1
    prompts, human = x[:n_prompts, :prompt_len], x[:n_prompts, prompt_len:]
    sample, logq = pre.sample(prompts, gen_len, seed=seed)
    greedy, _ = pre.sample(prompts, gen_len, seed=seed, greedy=True)
    return {"passages": x, "H_tf": ent.mean(1), "CE": ce.mean(1),
            "H_human": ent[:n_prompts, prompt_len - 1:].mean(1),  # the human continuation, teacher-forced
            "H_gen": measures.generation_entropy(logq), "prompts": prompts,
            "tokens": {"human": human, "sample": sample, "greedy": greedy},
            "measures": {k: continuation_measures(v) for k, v in {"human": human, "sample": sample,
                                                                 "greedy": greedy}.items()}}


# ---------------------------------------------------------------------- fine-tuning to the plateau
def trainable(pre: Pretrained, ft_blocks: int) -> tuple[torch.nn.Module, list]:
    """A copy of the model with only what fine-tuning changes left trainable: the last ft_blocks blocks,
    the final norm and the head, the head untied from the (frozen) input embeddings; ft_blocks = 0: the
    whole model (tied as shipped)."""
    net = copy.deepcopy(pre.model)
    if ft_blocks == 0:
        return net.train(), [p for p in net.parameters()]
    if not 0 < ft_blocks <= pre.n_blocks:
        raise ValueError(f"ft_blocks: got {ft_blocks}; allowed: 0 (the whole model) to {pre.n_blocks}")
    for p in net.parameters():
        p.requires_grad_(False)
    net.lm_head.weight = torch.nn.Parameter(net.lm_head.weight.detach().clone())
    net.config.tie_word_embeddings = False
    parts = [*net.model.layers[-ft_blocks:], net.model.norm, net.lm_head]
    params = [p for m in parts for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return net.train(), params


def tail_logits(pre: Pretrained, net: torch.nn.Module, hidden: torch.Tensor, ft_blocks: int) -> torch.Tensor:
    """The logits of the last ft_blocks blocks, the norm and the head on cached inputs `hidden` of the first
    of them (exactly the full forward: the frozen blocks' outputs do not change)."""
    layers = net.model.layers
    net.model.layers = layers[-ft_blocks:]
    try:
        with torch.autocast(pre.device.type, dtype=torch.bfloat16, enabled=pre.precision == "bf16"):
            return net(inputs_embeds=hidden).logits.float()
    finally:
        net.model.layers = layers


def finetune(pre: Pretrained, data: np.ndarray, *, ft_blocks: int, ft_lr: float, ft_steps: int) -> dict:
    """AdamW on the whole sample data [N, T] at every step (the fixed batch is the training sample), until
    plateau.measure finds the training loss at plateau (tested after every step from MIN_STEPS on, with
    PLATEAU_TOL) or ft_steps. The frozen blocks' outputs are computed once. -> {"model", "steps", "loss"
    (before each update), "grad_norm", "plateau" (measure's dict at the last step)}."""
    net, params = trainable(pre, ft_blocks)
    x = torch.as_tensor(data, device=pre.device)
    inp, tgt = x[:, :-1], x[:, 1:]
    if ft_blocks:
        with torch.no_grad():
            hidden = net(input_ids=inp, output_hidden_states=True).hidden_states[pre.n_blocks - ft_blocks]
    opt = torch.optim.AdamW(params, lr=ft_lr, weight_decay=0.0)
    loss_log, gn_log, state = [], [], None
    for t in io.progress(range(ft_steps), desc="fine-tuning", leave=False):
        z = tail_logits(pre, net, hidden, ft_blocks) if ft_blocks else pre.logits(inp, net)
        loss = torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), tgt.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn_log.append(float(torch.nn.utils.clip_grad_norm_(params, float("inf"))))
        loss_log.append(loss.item())
        opt.step()
        if t + 1 >= MIN_STEPS:
            state = plateau.measure(np.arange(t + 1), loss_log, tol=PLATEAU_TOL)
            if state["at_plateau"]:
                break
    return {"model": net.eval(), "steps": np.arange(len(loss_log)), "loss": np.array(loss_log),
            "grad_norm": np.array(gn_log), "plateau": state}


def plugin_entropy(data: np.ndarray, k: int) -> float:
    """H(p̂_N) given the previous k tokens: the conditional entropy (nats/token) of the sample's own
    next-token frequencies after each k-token context, weighted by the contexts' frequencies."""
    counts: dict = {}
    for row in data:
        for g in measures.ngrams(row, k + 1):
            counts.setdefault(g[:-1], []).append(g[-1])
    n = sum(len(v) for v in counts.values())
    return float(sum(len(v) / n * measures.plugin_entropy(v) for v in counts.values()))


def c2_task(pre: Pretrained, base: dict, train_text: str, *, seed: int, seeds: list[int], n_train: int,
            train_len: int, gen_len: int, ft_blocks: int, ft_lr: float, ft_steps: int) -> dict:
    """Per seed: N = n_train training passages (stream "data"), the model fine-tuned on them to the plateau
    (finetune), continuing the held-out prompts of `base` (pretrained_task) at T = 1 on the uniforms the
    model as shipped drew there (stream "sample", first seed: common random numbers, so the model before
    fine-tuning is base's own continuations): generative entropy, the share of its NGRAM-grams found in
    the training passages, the head gap (teacher-forced entropy minus cross-entropy) on the training
    passages and the teacher-forced entropy on the human continuations, before and after; and the
    references (the human continuations' NGRAM-gram share, H(p̂_N) given NGRAM - 1 tokens)."""
    S = len(seeds)
    out = {f"{c}_{w}": np.empty(S) for c in ("H_gen", "copy", "head_gap", "H_human") for w in ("before", "after")}
    out.update(ngram_human=np.empty(S), H_plugin=np.empty(S), at_plateau=np.zeros(S, bool), steps=np.empty(S),
               final_loss=np.empty(S), curves=[], sample_after=None)
    prompts, human = base["prompts"], base["tokens"]["human"]
    full, P = np.concatenate([prompts, human], 1), prompts.shape[1]
    for s, sd in enumerate(seeds):
        data = passages(pre, train_text, n_train, train_len, sd, "data")
        ent, ce = pre.teacher_forced(data)
        out["H_gen_before"][s], out["H_human_before"][s] = base["H_gen"].mean(), base["H_human"].mean()
        out["copy_before"][s], out["head_gap_before"][s] = ngram_share(base["tokens"]["sample"], data, NGRAM), \
            ent.mean() - ce.mean()
        run = finetune(pre, data, ft_blocks=ft_blocks, ft_lr=ft_lr, ft_steps=ft_steps)
        tok, lq = pre.sample(prompts, gen_len, seed=seed, model=run["model"])
        ent, ce = pre.teacher_forced(data, model=run["model"])
        out["H_gen_after"][s], out["copy_after"][s] = measures.generation_entropy(lq).mean(), ngram_share(tok, data, NGRAM)
        out["head_gap_after"][s] = ent.mean() - ce.mean()
        out["H_human_after"][s] = pre.teacher_forced(full, model=run["model"])[0][:, P - 1:].mean()
        out["sample_after"] = tok if s == 0 else out["sample_after"]
        out["ngram_human"][s], out["H_plugin"][s] = ngram_share(human, data, NGRAM), plugin_entropy(data, NGRAM - 1)
        out["at_plateau"][s] = bool(run["plateau"] and run["plateau"]["at_plateau"])
        out["steps"][s], out["final_loss"][s] = len(run["loss"]), run["loss"][-1]
        out["curves"].append(run["loss"])
        del run
    return out


# ---------------------------------------------------------------------- records and tables
def record_parameters(report, pre: Pretrained) -> None:
    """The model and the sizes, as glued metrics (c5_model_*), and the pre-registered constants."""
    for k, v in pre.describe().items():
        report.metric(f"c5_{k}", v if v is not None else "—")
    p = report.parameters
    for k in GLUED:
        report.metric(f"c5_{k}", p[k])
    report.metric("c5_passage_len", p["prompt_len"] + p["gen_len"])
    report.metric("c5_ngram_context", NGRAM - 1)
    report.metric("c5_rep_n", REP_N)
    report.metric("c5_loop_tail", LOOP_TAIL)
    report.metric("c5_ngram", NGRAM)
    report.metric("c5_tol_max_slope", PLATEAU_TOL.max_slope)
    report.metric("c5_tol_window", PLATEAU_TOL.window)
    report.metric("c5_min_steps", MIN_STEPS)


def pretrained_records(report, base: dict) -> pd.DataFrame:
    """C5.head[heldout] (diagnostic: the model's head need not be stationary on this text, so this
    reports the gap and its sign, it tests no claim): the mean over held-out passages of teacher-forced entropy minus
    cross-entropy within ±head_band (0 for a stationary head on its own training distribution; negative:
    over-confident); C5.generative: free-running T = 1 continuations have a lower entropy rate than the
    model teacher-forced on the human continuations of the same prompts (paired over prompts);
    C5.rep[sample | greedy], C5.loop[sample | greedy]: seq-rep-REP_N and the loop share of the model's
    continuations above the human continuations' (paired over prompts). Returns the table of levels."""
    band = report.parameters["head_band"]
    report.mark(report.mean("C5.head[heldout]", "teacher-forced entropy minus cross-entropy per token on held-out "
                            f"Shakespeare within ±{band:g} nats (the softmax-head identity near stationarity; mean "
                            "over passages)", base["H_tf"] - base["CE"], (-band, band), "within", "nats"), "diagnostic")
    report.paired("C5.generative", "free-running generation loses entropy: the entropy rate of T = 1 continuations "
                  "below the model's teacher-forced entropy on the human continuations of the same prompts (paired "
                  "over prompts)", base["H_gen"], base["H_human"], 0.0, "<", "nats")
    m = base["measures"]
    for kind, label in [("sample", "T = 1"), ("greedy", "greedy")]:
        report.paired(f"C5.rep[{kind}]", f"{label} continuations repeat more than human text: seq-rep-{REP_N} above "
                      "the human continuations' (paired over prompts)", m[kind]["rep"], m["human"]["rep"], 0.0, ">")
        report.paired(f"C5.loop[{kind}]", f"{label} continuations end in a loop more often than human text (last "
                      f"{LOOP_TAIL} tokens periodic; paired over prompts)", m[kind]["loop"], m["human"]["loop"], 0.0,
                      ">")
    table = pd.DataFrame({lab: {f"seq-rep-{REP_N}": m[k]["rep"].mean(), "loop share": m[k]["loop"].mean()}
                          for lab, k in TEXTS.items()}).T.rename_axis("continuation")
    table["entropy rate"] = [base["H_human"].mean(), base["H_gen"].mean(), np.nan]
    for k in ("H_tf", "CE"):
        report.metric(f"c5_{k.lower()}", float(base[k].mean()))
    report.metric("c5_h_gen", float(base["H_gen"].mean()))
    report.metric("c5_h_human", float(base["H_human"].mean()))
    report.glue_table("c5_repetition_table", table, fmt="{:.3f}")
    return table


def text_table(pre: Pretrained, base: dict, n: int = 3, width: int = 160) -> pd.DataFrame:
    """The first n prompts, each with the human continuation and the model's (T = 1, greedy), decoded
    (first `width` characters)."""
    rows = [{"prompt": pre.decode(base["prompts"][i])[-width:],
             **{lab: pre.decode(base["tokens"][k][i])[:width] for lab, k in TEXTS.items()}} for i in range(n)]
    return pd.DataFrame(rows).rename_axis("prompt #")


C2_COLUMNS = {"H_gen": "generative entropy", "copy": f"generated {NGRAM}-grams in the sample",
              "head_gap": "entropy − CE on the sample", "H_human": "teacher-forced entropy, human continuations"}


def c2_records(report, ft: dict) -> pd.DataFrame:
    """Over the seeds whose fine-tuning reached its plateau (C5.plateau, diagnostic: the share of seeds, at
    least plateau.SHARE), paired by seed against the model before fine-tuning: C5.c2.entropy (generative
    entropy falls), C5.c2.copy (a larger share of the generated NGRAM-grams occurs in the training
    passages: mass concentrates on the empirical modes) and C5.c2.head (boundary: entropy minus
    cross-entropy on the training passages within ±head_band at the plateau). Returns the table of
    means over seeds, before and after, with the references."""
    band, at = report.parameters["head_band"], ft["at_plateau"]
    report.mark(report.share("C5.plateau", "fine-tuning on the N training passages reached its plateau (training "
                             "loss flat over the last window, plateau.measure with C5's tolerances); share of seeds",
                             at, plateau.SHARE), "diagnostic")
    plateau_paired(report, "C5.c2.entropy", "fine-tuning to the plateau on N passages lowers the generative entropy "
                   "rate of T = 1 continuations of held-out prompts (nats/token, paired by seed)", ft["H_gen_after"],
                   ft["H_gen_before"], at, 0.0, "<")
    plateau_paired(report, "C5.c2.copy", f"and concentrates it on the empirical modes: a larger share of the generated "
                   f"{NGRAM}-grams occurs in the training passages (paired by seed)", ft["copy_after"],
                   ft["copy_before"], at, 0.0, ">")
    report.mark(plateau_mean(report, "C5.c2.head", "at the plateau, teacher-forced entropy minus cross-entropy on the "
                             f"training passages within ±{band:g} nats (the softmax-head identity; mean over seeds)",
                             ft["head_gap_after"], at, (-band, band), "within"), "boundary")
    table = pd.DataFrame({lab: {"before": ft[f"{c}_before"].mean(), "after": ft[f"{c}_after"].mean()}
                          for c, lab in C2_COLUMNS.items()}).T.rename_axis("measure")
    report.metric("c5_h_plugin", float(ft["H_plugin"].mean()))
    report.metric("c5_ngram_human", float(ft["ngram_human"].mean()))
    report.metric("c5_ft_steps_median", float(np.median(ft["steps"])))
    report.metric("c5_ft_final_loss", float(ft["final_loss"].mean()))
    report.glue_table("c5_c2_table", table, fmt="{:.3f}")
    return table


def after_table(pre: Pretrained, base: dict, ft: dict, n: int = 3, width: int = 160) -> pd.DataFrame:
    """The first n prompts' human continuation beside the first seed's T = 1 continuation after
    fine-tuning (decoded, first `width` characters)."""
    return pd.DataFrame([{"human": pre.decode(base["tokens"]["human"][i])[:width],
                          "T = 1, fine-tuned": pre.decode(ft["sample_after"][i])[:width]} for i in range(n)]
                        ).rename_axis("prompt #")

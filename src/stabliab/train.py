"""Maximum-likelihood training: one loop for every model family.

Parameters are a dict of tensors whose leading dimension indexes M independent
members (seeds, learning rates). The objective returns one loss per member,
Tensor[M]; since members share no parameter, the gradient of the sum is each
member's own gradient, and every logged quantity is per member.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .io import progress
from .lm import build_lm
from .members import lm_loss, stack_members
from .optim import OPTIMIZERS, Params, member_norm, per_member
from .seeds import generator

LossFn = Callable[[Params, int], torch.Tensor]  # (params, step) -> Tensor[M]


@dataclass
class Trajectory:
    """Per-member log of one training run, rows = logged steps."""
    step: np.ndarray  # [L]
    loss: np.ndarray  # [L, M] training objective at theta_t
    grad_norm: np.ndarray  # [L, M] ||grad L(theta_t)||
    step_size: np.ndarray  # [L, M] ||theta_{t+1} - theta_t||
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [L, M]
    params: Params | None = None  # final parameters
    eval_step: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # [E]
    evals: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [E, M] (expensive, every eval_every)
    feedback: dict[str, np.ndarray] = field(default_factory=dict)  # the feedback design's log: step [K], [K, M]
    ema_params: Params | None = None  # exponential moving average of the parameters (train(ema=...))
    stopped: np.ndarray | None = None  # [M] each member's last step (train(stop=...))
    optimizer: object = None  # the optimiser at the end, state included (train_lm(resume=...) continues it)

    def __getitem__(self, name: str) -> np.ndarray:
        for d in (self.extra, self.evals):
            if name in d:
                return d[name]
        return getattr(self, name)


def train(loss_fn: LossFn, params: Params, *, steps: int, lr, optimizer: str = "sgd",
          log_every: int = 1, log_fns: dict[str, Callable[[Params], torch.Tensor]] | None = None,
          eval_every=0, eval_fns: dict[str, Callable[[Params, int], torch.Tensor]] | None = None,
          desc: str | None = None, schedule: Callable[[int], float] | None = None, clip: float | None = None,
          ema: float = 0.0, stop: Callable[[np.ndarray, dict], np.ndarray] | None = None, opt=None,
          **opt_kw) -> Trajectory:
    """Minimise loss_fn by `optimizer`; log loss, gradient norm, step size and
    every log_fns[name](params) -> Tensor[M] at steps 0, log_every, ..., steps;
    every eval_fns[name](params, step) -> Tensor[M] at steps 0, eval_every, ..., steps,
    or at the steps listed when eval_every is a sequence (generation statistics,
    held-out loss). schedule(t) multiplies the learning rate at step t (warm-up, decay);
    clip rescales each member's gradient to norm <= clip (the logged gradient norm is
    the one before clipping); ema > 0 keeps a moving average of the parameters,
    returned as ema_params. opt: an optimiser to continue (its state included) instead of
    a new one; the one used is returned as trajectory.optimizer.

    stop(eval_steps, evals) -> bool [M], asked after every evaluation (eval_steps [E] so far,
    evals: name -> [E, M] so far): a member for which it returns True is done from that step
    on (its parameters and moving average no longer change; training to a plateau), and the run
    ends once every member is; trajectory.stopped [M] is each member's last step (steps for a
    member never stopped). A member's stop depends on its own evaluations only when `stop`
    reads only its column, so a seed trains the same alone or with others."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    M = next(iter(params.values())).shape[0]
    opt = OPTIMIZERS[optimizer](lr, **opt_kw) if opt is None else opt
    log_fns = log_fns or {}
    eval_fns = eval_fns or {}
    rows: dict[str, list] = {k: [] for k in ["step", "loss", "grad_norm", "step_size", *log_fns]}
    ev: dict[str, list] = {k: [] for k in ["step", *eval_fns]}
    at = set(int(x) for x in eval_every) if np.ndim(eval_every) else None
    avg = {k: v.detach().clone() for k, v in params.items()} if ema > 0 else None
    done = np.zeros(M, dtype=bool)
    stopped = np.full(M, steps, dtype=int)
    for t in progress(range(steps + 1), desc=desc or "train", total=steps + 1):
        due = (t in at) if at is not None else (t % max(int(eval_every), 1) == 0)
        if eval_fns and (due or t == steps):
            ev["step"].append(t)
            for name, fn in eval_fns.items():
                with torch.no_grad():
                    ev[name].append(np.asarray(torch.as_tensor(fn(params, t)).detach().cpu(), dtype=np.float64))
            if stop is not None and t < steps:
                new = np.asarray(stop(np.asarray(ev["step"]), {k: np.asarray(ev[k]) for k in eval_fns}), bool) & ~done
                stopped[new], done = t, done | new
                if done.all():
                    steps = t  # the last step: logged, not taken
        loss = loss_fn(params, t)  # [M]
        grads = dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
        logging = t % log_every == 0 or t == steps
        gnorm = member_norm(grads.values(), M).detach() if logging or clip is not None else None
        if logging:  # logged values stay on the device until the end (no sync per step)
            rows["step"].append(t)
            rows["loss"].append(loss.detach())
            rows["grad_norm"].append(gnorm)
            with torch.no_grad():
                for name, fn in log_fns.items():
                    rows[name].append(fn(params).detach())
        if t == steps:
            rows["step_size"].append(torch.zeros_like(rows["grad_norm"][-1]))
            break
        with torch.no_grad():
            before = {k: p.clone() for k, p in params.items()} if logging or done.any() else None
            if clip is not None:
                f = (clip / gnorm.clamp_min(1e-30)).clamp(max=1.0)  # [M]
                grads = {k: g * per_member(f, M, g) for k, g in grads.items()}
            opt.scale = 1.0 if schedule is None else float(schedule(t))
            opt.step(params, grads, M)
            if done.any():  # members that are done keep their parameters
                frozen = torch.as_tensor(done, device=next(iter(params.values())).device)
                for k, p in params.items():
                    p[frozen] = before[k][frozen]
            if avg is not None:
                for k, p in params.items():
                    keep = avg[k][frozen].clone() if done.any() else None
                    avg[k].mul_(ema).add_(p, alpha=1 - ema)
                    if keep is not None:
                        avg[k][frozen] = keep
            if logging:
                rows["step_size"].append(member_norm(torch._foreach_sub(list(params.values()), list(before.values())), M))
    arr = {k: (np.asarray(v) if k == "step" else torch.stack(v).cpu().numpy()) for k, v in rows.items()}
    return Trajectory(step=arr["step"], loss=arr["loss"], grad_norm=arr["grad_norm"],
                      step_size=arr["step_size"], extra={k: arr[k] for k in log_fns},
                      params={k: v.detach() for k, v in params.items()}, ema_params=avg, optimizer=opt,
                      eval_step=np.asarray(ev["step"], dtype=int), stopped=stopped,
                      evals={k: np.asarray(ev[k]) for k in eval_fns})


@dataclass
class SequenceBatches:
    """Per-member training sequences and a seeded minibatch sampler.

    data: [M, N, T+1] token ids with BOS at position 0 (each member may have its own
    sample of N sequences). batch(step) -> [M, B, T+1], B sequences drawn with
    replacement; member m's batches depend only on seeds[m], so a member trains
    identically alone or batched with others. batch_size 0: every step sees the whole
    sample (full-batch training, no draw)."""
    data: torch.Tensor
    batch_size: int
    seeds: list

    def __post_init__(self):
        self.gens = [generator("batches", s) for s in self.seeds]

    def skip(self, n: int) -> None:
        """Draw and drop n batches: the stream continues where a run of n steps left it."""
        for _ in range(n if self.batch_size else 0):
            self.batch(0)

    def batch(self, step: int) -> torch.Tensor:
        if self.batch_size == 0:
            return self.data
        N = self.data.shape[1]
        idx = torch.stack([torch.randint(N, (self.batch_size,), generator=g) for g in self.gens])  # [M, B]
        idx = idx.to(self.data.device)  # drawn on the CPU: the same batches on every device
        return torch.gather(self.data, 1, idx[..., None].expand(-1, -1, self.data.shape[2]))


def eval_schedule(steps: int, n: int) -> np.ndarray:
    """About n evaluation steps from 0 to `steps`, geometrically spaced (dense early,
    where held-out loss and generation statistics change fastest)."""
    return np.unique(np.concatenate([[0, steps], np.geomspace(1, max(steps, 1), n).astype(int)]))


def default_batched(arch: str, n_members: int, device) -> bool | str:
    """The path train_lm takes when `batched` is not given (members.lm_loss's argument): the family's
    hand-stacked forward (True) for every family and number of members. bench/throughput.py --cpu-families
    checks, at the book's sizes, that it is not slower than a loop over members at 2 members or more (on the
    2-core AVX2 reference CPU, after the foreach optimiser and the index_select lookup: 1.1-3.7x faster than
    the loop at 5 and 16 members for every family, the MLP at 16 included; timings noisy by 10-20%); a single
    member runs about as fast either way (the loop calls the module through functional_call)."""
    return True


def train_lm(arch: str, data: torch.Tensor, *, vocab: int, seeds, steps: int, lr: float = 3e-3,
             batch_size: int = 32, weight_decay: float = 0.0, batched: bool | None = None,
             heldout: torch.Tensor | None = None, eval_every=0, eval_fns=None,
             feedback=None, desc=None, precision: str = "fp32", label_smoothing: float = 0.0,
             schedule=None, clip: float | None = None, ema: float = 0.0, optimizer: str = "adamw", stop=None,
             resume: tuple | None = None, **arch_kw):
    """Maximum-likelihood training (AdamW, or `optimizer` "sgd") of one architecture for
    several seeds at once; batch_size 0 trains on the whole sample at every step.

    Everything runs on data's device (the models are built there). data [M, N, T+1]
    (M = len(seeds)); heldout [M, N_h, T+1] adds a 'heldout' evaluation;
    eval_fns[name](base, params, step) -> Tensor[M] run every eval_every steps.
    feedback: a feedback design (feedback.make(...); None or 'off': plain maximum likelihood),
    used through bind(base, M, vocab, batched, precision, seeds, label_smoothing),
    loss(params, step, batch) -> [M] and arrays(); its log lands in trajectory.feedback.
    stop: as in train (its evals carry the names of eval_fns, and 'heldout').
    resume = (params, optimizer, steps_done): continue a run of steps_done steps from its
    parameters and optimiser state (seeds[m]'s minibatch stream picks up at the draw of step
    steps_done; train(steps=a) then resume for b steps is the run of a + b steps, bit
    for bit); its steps count from 0 again. Returns (trajectory, base module)."""
    seeds = list(seeds)
    if batched is None:
        batched = default_batched(arch, len(seeds), data.device)
    if data.shape[0] != len(seeds):
        raise ValueError(f"data has {data.shape[0]} members for {len(seeds)} seeds")
    if resume is None:
        mods = [build_lm(arch, vocab, s, **arch_kw).to(data.device) for s in seeds]  # initialised on the CPU
        base, params, opt = mods[0], stack_members(mods), None
    else:
        params, opt, done = resume
        opt = opt.tile(1)  # a copy: the caller's optimiser is not advanced
        base = build_lm(arch, vocab, seeds[0], **arch_kw).to(data.device)
    batches = SequenceBatches(data, batch_size, seeds)
    if resume is not None:
        batches.skip(done)  # its step t = 0 draws the batch of step done, which the run only evaluated
    fb = None if feedback is None else feedback.bind(base, len(seeds), vocab, batched, precision, seeds,
                                                     label_smoothing)

    def loss_fn(p, t):
        batch = batches.batch(t)
        if fb is not None:
            return fb.loss(p, t, batch)
        return lm_loss(base, p, batch, batched, precision, label_smoothing)

    evals = {k: (lambda p, t, f=f: f(base, p, t)) for k, f in (eval_fns or {}).items()}
    if heldout is not None:
        evals = {"heldout": lambda p, t: lm_loss(base, p, heldout, batched, precision), **evals}
    if optimizer != "adamw" and weight_decay:
        raise ValueError(f"weight_decay is an AdamW setting; {optimizer!r} takes none")
    opt_kw = {"weight_decay": weight_decay} if optimizer == "adamw" else {}
    traj = train(loss_fn, params, steps=steps, lr=lr, optimizer=optimizer, **opt_kw,
                 log_every=1, eval_every=eval_every, eval_fns=evals, desc=desc or f"train {arch}",
                 schedule=schedule, clip=clip, ema=ema, stop=stop, opt=opt)
    if fb is not None:
        traj.feedback = fb.arrays()
    return traj, base

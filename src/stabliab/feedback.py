"""The feedback designs of claim C3: training loops that measure something of the
model's own and act on it, as plug-ins.

A design is a class with a `Params` dataclass (its own parameters, with defaults)
registered by name; `make({"design": NAME, **params})` builds one, and train_lm
takes it through a small interface (bind, loss, arrays), so train.py never imports
this module. Adding a design is one class plus @register.

Each design names the statistic it holds (a key of STATISTICS, measured on a fixed
evaluation batch with fixed sampling seeds by `statistics`), so that the book can
check whether it really stabilises it (the gate of notebook 03). The losses, with
CE the data cross-entropy of the training batch:

    off             CE                                   (maximum likelihood, bit for bit)
    pi_entropy      CE + kappa_t H_theta(own contexts)   THE decisive design of C3: H_theta the exact
                    predictive entropy along the model's own sampled contexts (differentiable given
                    the contexts), kappa_t in [-kappa_max, kappa_max] set by a signed PI controller
                    from s_t - s_0 (s_t: that entropy, s_0: its value at switch-on); per member a
                    gain (0: no feedback, maximum likelihood plus a zero term) or a replayed kappa
                    trajectory (the sham: the same actuator, no feedback)
    pi_own_samples  CE + beta_t CE(own samples)          beta_t from a PI controller on the
                    error |s_t - s_bar| - z se_t (or signed: s_t - s_bar - z se_t), s_t the
                    own-sample entropy, se_t its measured standard error (the noise floor)
    hold_entropy    CE + lam (H_theta(batch) - h_bar_t)^2      h_bar a moving average (no gradient)
    hold_spread     CE + lam Var_contexts H_theta(. | context)
    self_consume    (1 - lam) CE + lam CE(own samples at temperature tau, refreshed every k steps)
    score_hold      CE + lam mean_i (R_i - b_i) log p_theta(x_i) / L,  R_i = (s(x_i) - s_bar)^2,
                    x_i fresh own samples, s(x) the sequence's mean surprisal, s_bar its moving
                    average *before* this draw, b_i the leave-one-out mean of R (baseline); plus
                    the pathwise term (R's own dependence on theta): an unbiased gradient of E R
    logit_hold      CE + lam mean log^2 Z_theta(context)       (z-loss, PaLM's stabiliser)

At temperature 1 the expected gradient of CE(own samples) is zero
(E_{x~p_theta} grad log p_theta(x) = 0; `expected_own_sample_gradient`): what the
term does comes from the finiteness and the age of the sample. Below 1 it pulls
each conditional towards its tempered, lower-entropy version.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
from dataclasses import dataclass

import numpy as np
import torch

from .lm import cross_entropy
from .members import entropies, lm_logits, lm_loss, sample_members, with_bos
from .registry import Registry
from .seeds import streams

DESIGNS = Registry("feedback design")
register = DESIGNS.register
STATISTICS = ("gen_entropy", "own_entropy", "tf_entropy", "entropy_spread", "log_z", "data_ce")


def load_plugins(modules) -> None:
    """Import modules that register designs of their own (a notebook's `plugins`; every
    process of a sweep imports them again, so a design defined outside the package runs
    on every executor)."""
    for m in modules:
        importlib.import_module(m)


def plugin_hash(modules) -> str:
    """sha256 of the source files of plugin modules: goes into a sweep's context, so that
    editing a plugin makes its cached configurations stale, as editing the package does."""
    h = hashlib.sha256()
    for m in modules:
        h.update(m.encode())
        h.update(inspect.getsource(importlib.import_module(m)).encode())
    return h.hexdigest()[:16]


def make(spec) -> "Design":
    """A design from a name or {"design": NAME, **parameters}; unknown names and
    parameters raise ValueError naming what is allowed."""
    spec = {"design": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("design", None)
    cls = DESIGNS.get_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    bad = sorted(set(spec) - fields)
    if bad:
        raise ValueError(f"design {name!r} has no parameter {', '.join(bad)}; allowed: {', '.join(sorted(fields))}")
    return cls(cls.Params(**spec))


def _ce(logits: torch.Tensor, x: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """[M] mean cross-entropy of logits [M, B, T, V] against targets x[..., 1:] ([M, B, T+1])."""
    return cross_entropy(logits, x[..., 1:], label_smoothing, reduction="none").reshape(x.shape[0], -1).mean(1)


def _seeds(member_seeds, k: int, salt: int) -> list[int]:
    """Sampling seeds of draw k for each member: a function of the member's own seed only."""
    return streams("feedback", member_seeds, k, salt)


class Design:
    """Plain maximum likelihood; the base of every design."""
    name = "off"
    statistic: str | None = None  # the key of STATISTICS this design holds
    prediction = ""  # what it should do to entropy and repetition, stated before measuring

    @dataclass
    class Params:
        start: int = 0  # first step at which the design acts

    def __init__(self, params):
        self.p = params
        self.log: dict[str, list] = {}

    def bind(self, base, M: int, vocab: int, batched: bool, precision: str, member_seeds,
             label_smoothing: float = 0.0) -> "Design":
        self.base, self.M, self.vocab, self.batched, self.precision = base, M, vocab, batched, precision
        self.member_seeds, self.label_smoothing = [int(s) for s in member_seeds], label_smoothing
        self.log = {}
        return self

    def _log(self, name: str, value) -> None:
        self.log.setdefault(name, []).append(value)

    def active(self, step: int) -> bool:
        return step >= self.p.start

    def loss(self, params, step: int, batch: torch.Tensor) -> torch.Tensor:
        """[M] training loss at `step` on the data batch [M, B, T+1]."""
        return lm_loss(self.base, params, batch, self.batched, self.precision, self.label_smoothing)

    def logits(self, params, x: torch.Tensor) -> torch.Tensor:
        return lm_logits(self.base, params, x, self.batched, self.precision)

    def own_samples(self, params, n: int, length: int, k: int, salt: int, temperature: float = 1.0):
        """(tokens [M, n, L] on the CPU, the same with BOS [M, n, L+1] on the device, logq [M, n, L])."""
        tok, lq = sample_members(self.base, params, n, length, seed=0, temperature=temperature,
                                 precision=self.precision, member_seeds=_seeds(self.member_seeds, k, salt))
        dev = next(iter(params.values())).device
        return tok, with_bos(tok, self.vocab, dev), lq

    def arrays(self) -> dict[str, np.ndarray]:
        """What the design logged, each [E, M] (rows at the steps in 'step', [E])."""
        out = {}
        for k, v in self.log.items():
            out[k] = np.asarray(v) if k == "step" else np.stack([np.asarray(x, dtype=np.float64) for x in v])
        return out


register("off")(Design)


@register("pi_own_samples")
class PIOwnSamples(Design):
    """The loop of the first edition: a PI controller sets the weight of the loss on the
    model's own recent samples from the deviation of their entropy from its moving
    average. The error ignores deviations within z standard errors of the Monte Carlo
    estimate (measured each time from the per-sequence spread): the noise floor. The
    controller's samples and the fed-back samples are separate draws."""
    statistic = "gen_entropy"
    prediction = ("At temperature 1 the fed-back term has zero expected gradient: no systematic "
                  "change of entropy, only noise; below 1 it lowers entropy.")

    @dataclass
    class Params:
        start: int = 0
        every: int = 10  # steps between measurements (and refreshes of the fed-back samples)
        n_samples: int = 16  # own sequences per member per measurement (and as many fed back)
        length: int = 32
        temperature: float = 1.0  # of the fed-back samples
        kp: float = 4.0
        ki: float = 1.0
        beta_max: float = 1.0
        ema: float = 0.9  # setpoint <- ema setpoint + (1 - ema) s_t
        z: float = 2.0  # tolerance = z standard errors of s_t
        signed: bool = False  # error s_t - s_bar - z se (acts only when entropy rises)

    def bind(self, *a, **kw):
        super().bind(*a, **kw)
        self.ctrl = PIController(self.M, self.p.kp, self.p.ki, self.p.beta_max)
        self.beta = np.zeros(self.M)
        self.setpoint = None
        self.buffer = None
        self.k = 0
        return self

    @torch.no_grad()
    def _measure(self, params, step):
        p = self.p
        _, _, lq = self.own_samples(params, p.n_samples, p.length, self.k, 11)
        per_seq = -lq.mean(-1)  # [M, n]
        s = per_seq.mean(1)
        se = per_seq.std(1, ddof=1) / np.sqrt(per_seq.shape[1])
        if self.setpoint is None:
            self.setpoint = s.copy()
        if self.active(step):
            dev = s - self.setpoint
            e = (dev if p.signed else np.abs(dev)) - p.z * se
            self.beta = self.ctrl.update(e)
            _, self.buffer, _ = self.own_samples(params, p.n_samples, p.length, self.k, 12, p.temperature)
        self.setpoint = p.ema * self.setpoint + (1 - p.ema) * s
        self.k += 1
        for name, v in [("step", step), ("stat", s), ("noise_se", se), ("beta", self.beta.copy())]:
            self._log(name, v)

    def loss(self, params, step, batch):
        if step % self.p.every == 0:
            self._measure(params, step)
        ce = super().loss(params, step, batch)
        if self.buffer is None or not self.active(step) or not np.any(self.beta > 0):
            return ce
        own = lm_loss(self.base, params, self.buffer, self.batched, self.precision)
        return ce + torch.as_tensor(self.beta, dtype=ce.dtype, device=ce.device) * own

@register("pi_entropy")
class PIEntropy(Design):
    """The decisive closed loop of C3: a signed actuator on the generation entropy.

    Every `every` steps each member samples n_samples own contexts (its own streams, no
    gradient) and measures s_t, the exact predictive entropy along them (mean over
    positions and contexts: Rao-Blackwellised, far less noisy than mean -log q). The
    setpoint s_0 is setpoints[m] where given (notebook 03 gives the held statistic at
    switch-on, the s_0 its gate measures against), else the member's first measurement
    (a noisier estimate of the same value). A signed PI controller sets
    kappa_t = clip(g (kp e + ki I), -kappa_max, kappa_max), e = s_t - s_0, and until the
    next measurement the loss is CE + kappa_t H_theta(contexts), H_theta the same exact
    entropy as a differentiable function of the parameters at fixed contexts: kappa > 0
    lowers the entropy, kappa < 0 raises it (tests/test_feedback.py). Per member:
    gains[m] (0: no feedback, kappa = 0: maximum likelihood plus a zero term), or
    replay[m], a kappa trajectory (one value per measurement) applied as given, without
    feedback: the sham."""
    statistic = "own_entropy"
    prediction = ("Holds the generation entropy at its value at switch-on: steadier than the sham, whose "
                  "replayed kappa pushes it about; C3 predicts lower entropy and more repetition than the "
                  "sham all the same.")

    @dataclass
    class Params:
        start: int = 0
        every: int = 5  # steps between measurements (and refreshes of the contexts)
        n_samples: int = 32  # own contexts per member per measurement
        length: int = 32
        kp: float = 10.0  # kappa per nat of error
        ki: float = 2.0  # kappa per nat of error and measurement
        kappa_max: float = 1.0
        gain: float = 1.0  # multiplies kp and ki (the dose)
        gains: tuple = ()  # per member, overrides gain (0: no feedback)
        replay: tuple = ()  # per member: None, or the kappa of each measurement (the sham)
        setpoints: tuple = ()  # per member: s_0 (empty: each member's first measurement)

    def bind(self, *a, **kw):
        super().bind(*a, **kw)
        p = self.p
        g = np.asarray(p.gains if len(p.gains) else [p.gain] * self.M, dtype=np.float64)
        rep = list(p.replay) if len(p.replay) else [None] * self.M
        if g.shape != (self.M,) or len(rep) != self.M:
            raise ValueError(f"pi_entropy: gains and replay need one entry per member ({self.M})")
        if p.kappa_max <= 0 or p.every < 1 or p.n_samples < 2:
            raise ValueError("pi_entropy needs kappa_max > 0, every >= 1 and n_samples >= 2")
        self.replayed = np.array([r is not None for r in rep])
        self.replay = [np.asarray(r, dtype=np.float64) if r is not None else None for r in rep]
        self.ctrl = SignedPI(p.kp * g, p.ki * g, p.kappa_max)
        self.kappa = np.zeros(self.M)
        if len(p.setpoints) not in (0, self.M):
            raise ValueError(f"pi_entropy: setpoints need one entry per member ({self.M})")
        self.setpoint = np.asarray(p.setpoints, dtype=np.float64) if len(p.setpoints) else None
        self.ctx, self.k = None, 0
        return self

    @torch.no_grad()
    def _control(self, params, step):
        p = self.p
        tok, _, ent = sample_members(self.base, params, p.n_samples, p.length, seed=0, precision=self.precision,
                                     member_seeds=_seeds(self.member_seeds, self.k, 41), batched=True, entropy=True)
        s = ent.reshape(self.M, -1).mean(1)
        if self.setpoint is None:
            self.setpoint = s.copy()
        kappa, sat = self.ctrl.update(s - self.setpoint)
        for m in np.flatnonzero(self.replayed):
            if self.k >= len(self.replay[m]):
                raise ValueError(f"pi_entropy: member {m}'s replayed trajectory has {len(self.replay[m])} values, "
                                 f"measurement {self.k} needs one more")
            kappa[m], sat[m] = self.replay[m][self.k], abs(self.replay[m][self.k]) >= p.kappa_max
        self.kappa = kappa
        self.ctx = with_bos(tok, self.vocab, next(iter(params.values())).device)
        for name, v in [("step", step), ("stat", s), ("setpoint", self.setpoint.copy()), ("kappa", kappa.copy()),
                        ("saturated", sat.astype(np.float64))]:
            self._log(name, v)
        self.k += 1

    def loss(self, params, step, batch):
        ce = super().loss(params, step, batch)
        if not self.active(step):
            return ce
        if (step - self.p.start) % self.p.every == 0:
            self._control(params, step)
        H = entropies(self.logits(params, self.ctx[..., :-1])).reshape(self.M, -1).mean(1)
        return ce + torch.as_tensor(self.kappa, dtype=ce.dtype, device=ce.device) * H


class SignedPI:
    """Proportional-integral control of M independent plants with a signed output:
    u_t = clip(kp e_t + ki I_t, -limit, limit), I_t = I_{t-1} + e_t except while the output
    is saturated in the direction of e_t (conditional integration: no wind-up); kp, ki
    per member (0: no control). update returns (u [M], saturated [M])."""

    def __init__(self, kp, ki, limit: float):
        self.kp, self.ki, self.limit = np.asarray(kp, dtype=np.float64), np.asarray(ki, dtype=np.float64), float(limit)
        self.integral = np.zeros_like(self.kp)

    def update(self, error) -> tuple[np.ndarray, np.ndarray]:
        e = np.asarray(error, dtype=np.float64)
        trial = self.integral + e
        u = self.kp * e + self.ki * trial
        windup = (np.abs(u) > self.limit) & (np.sign(u) == np.sign(e))
        self.integral = np.where(windup, self.integral, trial)
        u = self.kp * e + self.ki * self.integral
        return np.clip(u, -self.limit, self.limit), np.abs(u) >= self.limit


class PIController:
    """Proportional-integral control of M independent plants; the gain is never negative:
    I_t = clip(I_{t-1} + e_t, 0, beta_max / ki), beta_t = clip(kp e_t + ki I_t, 0, beta_max)."""

    def __init__(self, M: int, kp: float, ki: float, beta_max: float):
        self.kp, self.ki, self.beta_max = kp, ki, beta_max
        self.integral = np.zeros(M)

    def update(self, error) -> np.ndarray:
        e = np.asarray(error, dtype=np.float64)
        cap = self.beta_max / self.ki if self.ki > 0 else 0.0
        self.integral = np.clip(self.integral + e, 0.0, cap)
        return np.clip(self.kp * e + self.ki * self.integral, 0.0, self.beta_max)


class _EMA:
    """A per-member moving average without gradient, started at its first value."""

    def __init__(self, rate: float):
        self.rate, self.value = rate, None

    def update(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        self.value = x.clone() if self.value is None else self.rate * self.value + (1 - self.rate) * x
        return self.value


@register("hold_entropy")
class HoldEntropy(Design):
    """A differentiable hold of the teacher-forced predictive entropy of the training
    batch at its own moving average. Defect (stated, not fixed: it is exploratory): the
    entropy is that of each fresh minibatch, so the penalty mostly punishes the
    minibatch-to-minibatch variation of the data, not a change of the model."""
    statistic = "tf_entropy"
    prediction = ("Resists every change of the predictive entropy: where maximum likelihood still lowers "
                  "entropy, the held model lags behind, so entropy ends higher, not lower.")

    @dataclass
    class Params:
        start: int = 0
        lam: float = 10.0  # a deviation of 0.1 nats costs 0.1 nats of cross-entropy
        ema: float = 0.9

    def bind(self, *a, **kw):
        super().bind(*a, **kw)
        self.avg = _EMA(self.p.ema)
        return self

    def loss(self, params, step, batch):
        if not self.active(step):
            return super().loss(params, step, batch)
        logits = self.logits(params, batch[..., :-1])  # [M, B, T, V]
        H = entropies(logits).reshape(self.M, -1).mean(1)  # [M]
        target = self.avg.update(H)
        return _ce(logits, batch, self.label_smoothing) + self.p.lam * (H - target) ** 2


@register("hold_spread")
class HoldSpread(Design):
    """A penalty on the variance, across the contexts of the batch, of the predictive entropy."""
    statistic = "entropy_spread"
    prediction = ("Pulls every context towards a common entropy: confident contexts become less "
                  "confident and uncertain ones more; the mean entropy can move either way.")

    @dataclass
    class Params:
        start: int = 0
        lam: float = 1.0  # a variance of 1 nat^2 costs 1 nat

    def loss(self, params, step, batch):
        if not self.active(step):
            return super().loss(params, step, batch)
        logits = self.logits(params, batch[..., :-1])
        H = entropies(logits).reshape(self.M, -1)  # [M, B*T]
        return _ce(logits, batch, self.label_smoothing) + self.p.lam * H.var(1)


@register("self_consume")
class SelfConsume(Design):
    """Open loop: a share lam of every batch's loss comes from the model's own samples at
    temperature tau, redrawn every `refresh` steps (1: fresh each step; larger: stale)."""
    statistic = "gen_entropy"
    prediction = ("Fresh samples at tau = 1: zero expected gradient, noise only. Below 1: pulls each "
                  "conditional towards its modes, lower entropy, more repetition. Stale samples pull "
                  "the model back towards its own past: slower change.")

    @dataclass
    class Params:
        start: int = 0
        lam: float = 0.5
        tau: float = 1.0
        refresh: int = 1
        n_samples: int = 16
        length: int = 32

    def bind(self, *a, **kw):
        super().bind(*a, **kw)
        if not 0 <= self.p.lam <= 1 or self.p.tau <= 0 or self.p.refresh < 1:
            raise ValueError("self_consume needs lam in [0, 1], tau > 0 and refresh >= 1")
        self.buffer, self.k = None, 0
        return self

    def loss(self, params, step, batch):
        ce = super().loss(params, step, batch)
        if not self.active(step):
            return ce
        if self.buffer is None or (step - self.p.start) % self.p.refresh == 0:
            with torch.no_grad():
                _, self.buffer, _ = self.own_samples(params, self.p.n_samples, self.p.length, self.k, 21, self.p.tau)
            self.k += 1
        own = lm_loss(self.base, params, self.buffer, self.batched, self.precision)
        return (1 - self.p.lam) * ce + self.p.lam * own


@register("score_hold")
class ScoreHold(Design):
    """A score-function (REINFORCE) penalty on the squared deviation of a sampled
    statistic, the mean surprisal of each fresh own sample, from its moving average over
    earlier draws, with a leave-one-out baseline and the pathwise term, so that the
    surrogate's gradient is unbiased for grad E R (the first edition updated the average
    with the current draw before forming R, and dropped the pathwise term: biased)."""
    statistic = "gen_entropy"
    prediction = ("Penalises samples whose surprisal is far from the usual, in both directions: "
                  "narrows the spread of sampled surprisal; the mean entropy can move either way.")

    @dataclass
    class Params:
        start: int = 0
        lam: float = 10.0  # as hold_entropy
        ema: float = 0.9
        n_samples: int = 8
        length: int = 32

    def bind(self, *a, **kw):
        super().bind(*a, **kw)
        if self.p.n_samples < 2:
            raise ValueError("score_hold needs n_samples >= 2 (leave-one-out baseline)")
        self.avg, self.k = _EMA(self.p.ema), 0
        return self

    def loss(self, params, step, batch):
        ce = super().loss(params, step, batch)
        if not self.active(step):
            return ce
        with torch.no_grad():
            _, x, lq = self.own_samples(params, self.p.n_samples, self.p.length, self.k, 31)
        self.k += 1
        n = x.shape[1]
        logits = self.logits(params, x[..., :-1])
        logp_tok = -cross_entropy(logits, x[..., 1:], reduction="none").reshape(self.M, n, -1).float()
        s_theta = -logp_tok.mean(-1)  # [M, n] mean surprisal, a function of theta (the pathwise part)
        s = s_theta.detach()
        # the reference: the moving average of earlier draws (the leave-one-out mean of this draw's
        # surprisals at the first one), so that no sample's reward contains itself
        ref = self.avg.value[:, None] if self.avg.value is not None else (s.sum(1, keepdim=True) - s) / (n - 1)
        R = (s - ref) ** 2
        b = (R.sum(1, keepdim=True) - R) / (n - 1)  # leave-one-out baseline: independent of sample i
        self.avg.update(s.mean(1))  # only now: the next draw's reference
        score = ((R - b) * logp_tok.sum(-1)).mean(1)  # E (R - b) grad log p(x): the whole sequence's score
        pathwise = ((s_theta - ref) ** 2).mean(1)  # E grad R(x; theta) at fixed x
        return ce + self.p.lam * (score + pathwise) / x[..., 1:].shape[-1]


@register("logit_hold")
class LogitHold(Design):
    """z-loss: a penalty on the squared log-partition of every context (Chowdhery et al.
    2022 use lam = 1e-4), the stabiliser of large-model training."""
    statistic = "log_z"
    prediction = ("Holds the softmax normaliser near 1 without changing the distribution it normalises "
                  "(log Z is free under a shift of all logits): no systematic effect on entropy.")

    @dataclass
    class Params:
        start: int = 0
        lam: float = 1e-4

    def loss(self, params, step, batch):
        if not self.active(step):
            return super().loss(params, step, batch)
        logits = self.logits(params, batch[..., :-1]).float()
        logz = torch.logsumexp(logits, -1).reshape(self.M, -1)
        return _ce(logits, batch, self.label_smoothing) + self.p.lam * (logz**2).mean(1)

def expected_own_sample_gradient(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """The exact expected gradient, over x ~ softmax(logits / tau), of the fed-back loss
    -log softmax(logits)[x] with respect to the logits of a categorical model (by
    enumeration and autograd): softmax(logits) - softmax(logits / tau), zero at tau = 1."""
    z = logits.detach().double().clone().requires_grad_(True)
    q = torch.softmax(z.detach() / tau, -1)
    loss = -(q * torch.log_softmax(z, -1)).sum()
    (g,) = torch.autograd.grad(loss, z)
    return g

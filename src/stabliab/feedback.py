"""The feedback framework of claim C3: the model's own generations, measured during
training, feed back into its loss.

Every `every` steps each member samples n sequences of its own (at temperature
`temperature`) and a generation statistic s_t is measured:

    entropy        mean -log q per token of its own samples (Monte Carlo entropy rate)
    distinct2      distinct bigrams / bigrams over its samples
    unigram_drift  total-variation distance between the unigram law of these samples
                   and of the previous measurement

A proportional-integral controller turns an error e_t into a gain

    I_t   = clip(I_{t-1} + e_t, 0, beta_max / ki)        (anti-windup: I >= 0)
    beta_t = clip(kp * e_t + ki * I_t, 0, beta_max)       (beta >= 0 always)

and the training loss becomes

    L(theta) = CE(data batch) + beta_t * CE(own recent samples).

Setpoint modes: `self` holds whatever the model currently does: the setpoint is
an exponential moving average s_bar of the model's own past statistic and the
controlled quantity is the deviation from it, e_t = |s_t - s_bar_t| - tolerance
(feedback grows while the statistic moves by more than the tolerance, in either
direction, and decays once it is steady); `target` holds a fixed value (e.g. the
true entropy rate) with the signed error e_t = s_t - target (feedback grows while
the statistic is above the target); `off` (beta = 0: plain maximum likelihood; the
statistic is still measured, with its own random generators, so training is
bit-for-bit the same as without feedback). The open-loop mode `self_consume`
replaces a fixed share lam of every batch by own samples:
L = (1 - lam) CE(data) + lam CE(own samples).

At temperature 1 the expected gradient of CE(own samples) is zero
(E_{x~p_theta} grad log p_theta(x) = 0): any effect comes from the finiteness of the
sample and its age. Below 1 the samples are sharper than the model and the term
pulls it towards its modes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

MODES = ("off", "self", "target", "self_consume")
STATISTICS = ("entropy", "distinct2", "unigram_drift")


@dataclass
class FeedbackConfig:
    mode: str = "off"
    statistic: str = "entropy"
    every: int = 10  # steps between measurements (and refreshes of the own-sample buffer)
    start: int = 0  # first step at which the loop acts (before: measured only, beta = 0)
    n_samples: int = 32  # own sequences per member per measurement
    length: int = 64  # tokens per own sequence
    temperature: float = 1.0  # temperature of the fed-back samples
    kp: float = 4.0
    ki: float = 1.0
    beta_max: float = 1.0
    setpoint: float | None = None  # `target` mode
    ema: float = 0.9  # `self` mode: setpoint <- ema * setpoint + (1 - ema) * s_t
    tolerance: float = 0.02  # `self` mode: deviation from the moving average that is left alone
    lam: float = 0.5  # `self_consume` share of own samples
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown feedback mode {self.mode!r}; allowed: {', '.join(MODES)}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {self.statistic!r}; allowed: {', '.join(STATISTICS)}")
        if self.mode == "target" and self.setpoint is None:
            raise ValueError("mode 'target' needs a setpoint")
        if not 0 <= self.lam <= 1:
            raise ValueError("lam must lie in [0, 1]")
        if self.temperature <= 0 or self.every < 1 or self.beta_max < 0:
            raise ValueError("temperature > 0, every >= 1 and beta_max >= 0 are required")


class PIController:
    """Proportional-integral control of M independent plants; the gain is never negative."""

    def __init__(self, M: int, kp: float, ki: float, beta_max: float):
        self.kp, self.ki, self.beta_max = kp, ki, beta_max
        self.integral = np.zeros(M)

    def update(self, error) -> np.ndarray:
        e = np.asarray(error, dtype=np.float64)
        cap = self.beta_max / self.ki if self.ki > 0 else 0.0
        self.integral = np.clip(self.integral + e, 0.0, cap)
        return np.clip(self.kp * e + self.ki * self.integral, 0.0, self.beta_max)


def generation_statistic(name: str, tokens: np.ndarray, logq: np.ndarray, previous_unigram=None,
                         vocab: int | None = None):
    """(value, unigram law) of one member's samples tokens [n, L], logq [n, L]."""
    from .metrics import distinct_n
    uni = np.bincount(tokens.reshape(-1), minlength=vocab or int(tokens.max()) + 1).astype(np.float64)
    uni /= uni.sum()
    if name == "entropy":
        value = float(-np.mean(logq))
    elif name == "distinct2":
        value = distinct_n(list(tokens), 2)
    else:
        value = 0.0 if previous_unigram is None else 0.5 * float(np.abs(uni - previous_unigram).sum())
    return value, uni


@dataclass
class Feedback:
    """State of the feedback loop for M members; plugged into train.train_lm."""
    cfg: FeedbackConfig
    M: int
    vocab: int
    batched: bool = True  # evaluate the own-sample loss as training does (vmap or loop over members)
    precision: str = "fp32"  # as training does
    log: dict = field(default_factory=lambda: {"step": [], "stat": [], "setpoint": [], "beta": []})

    def __post_init__(self):
        self.ctrl = PIController(self.M, self.cfg.kp, self.cfg.ki, self.cfg.beta_max)
        self.beta = np.zeros(self.M)
        self.setpoint = np.full(self.M, np.nan if self.cfg.setpoint is None else self.cfg.setpoint)
        self.buffer: torch.Tensor | None = None  # [M, n, L+1] own samples with BOS
        self.unigram = [None] * self.M
        self.n_measured = 0
        self.trace = {"data_loss": [], "own_loss": []}  # every step: data CE and own-sample CE (NaN if unused)

    @property
    def acts(self) -> bool:
        return self.cfg.mode != "off"

    def active(self, step: int) -> bool:
        return self.acts and step >= self.cfg.start

    def loss(self, base, params, step: int, data_loss: torch.Tensor) -> torch.Tensor:
        """[M] the training loss at `step` given the data cross-entropy."""
        from .train import lm_loss
        self.trace["data_loss"].append(data_loss.detach())  # on the device; moved once, in arrays()
        own = None
        if self.active(step) and self.buffer is not None and (self.cfg.mode == "self_consume" or np.any(self.beta > 0)):
            own = lm_loss(base, params, self.buffer, self.batched, self.precision)
        self.trace["own_loss"].append(torch.full_like(data_loss, float("nan")).detach() if own is None else own.detach())
        if own is None:
            return data_loss
        if self.cfg.mode == "self_consume":
            return (1 - self.cfg.lam) * data_loss + self.cfg.lam * own
        return data_loss + torch.as_tensor(self.beta, dtype=data_loss.dtype, device=data_loss.device) * own

    @torch.no_grad()
    def measure(self, base, params, step: int) -> None:
        """Every cfg.every steps (and at step 0): sample, measure, update beta and the buffer."""
        from .train import sample_members, with_bos
        if step % self.cfg.every:
            return
        tok, lq = sample_members(base, params, self.cfg.n_samples, self.cfg.length,
                                 seed=self.cfg.seed + 7919 * self.n_measured, temperature=self.cfg.temperature,
                                 precision=self.precision)
        self.n_measured += 1
        stats = np.empty(self.M)
        for m in range(self.M):
            stats[m], self.unigram[m] = generation_statistic(self.cfg.statistic, tok[m], lq[m], self.unigram[m],
                                                             self.vocab)
        if self.cfg.mode == "self":
            first = np.isnan(self.setpoint)
            self.setpoint[first] = stats[first]
        if self.active(step):
            if self.cfg.mode == "self":
                self.beta = self.ctrl.update(np.abs(stats - self.setpoint) - self.cfg.tolerance)
            elif self.cfg.mode == "target":
                self.beta = self.ctrl.update(stats - self.setpoint)
            elif self.cfg.mode == "self_consume":
                self.beta = np.full(self.M, self.cfg.lam)
            self.buffer = with_bos(tok, self.vocab, device=next(iter(params.values())).device)
        if self.cfg.mode == "self":
            self.setpoint = self.cfg.ema * self.setpoint + (1 - self.cfg.ema) * stats
        for k, v in [("step", step), ("stat", stats), ("setpoint", self.setpoint.copy()), ("beta", self.beta.copy())]:
            self.log[k].append(v)

    def arrays(self) -> dict[str, np.ndarray]:
        """step [E], stat / setpoint / beta [E, M] at the measurements; data_loss and
        own_loss [steps + 1, M] at every step (the data cross-entropy is what maximum
        likelihood alone would minimise; own_loss is NaN where the term is unused)."""
        return {**{k: np.asarray(v) for k, v in self.log.items()},
                **{k: torch.stack(v).cpu().numpy() for k, v in self.trace.items()}}

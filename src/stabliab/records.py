"""Claim records: what a notebook measured, against which threshold, with what verdict.

A notebook builds one Report, adds claims and metrics, and saves it at the end.
Every value is also glued (myst-nb) so the prose can cite it; nothing measured is
typed by hand. Under `stabliab run` the report goes to the file the runner names
(env STABLIAB_RESULTS_FILE), which the runner completes with its manifest and
moves into results/PROFILE/; run any other way (plain papermill, Jupyter) it
goes to results/adhoc/NAME.json.
"""
from __future__ import annotations

import math
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, params, sweep
from .stats import LEVEL, mean_interval, paired_interval

COMPARATORS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
               ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def glue(name: str, value, display: bool = False) -> None:
    """myst-nb glue where available (the book build reads it); silent otherwise."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # e.g. a bare GPU machine running the notebook as a script
        return
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalars -> Python (myst-nb formats repr())
    _glue(name, value, display=display)


RULES = {
    "mean": "Student-t interval of a mean over independent replicates (seeds, or Monte Carlo draws where "
            "the statement says so)",
    "paired": "Student-t interval of the mean paired difference (treatment minus baseline, same seed)",
    "share": "exact Clopper–Pearson interval of a share of seeds",
    "identity": "largest error over every check of a deterministic identity; no interval",
    "aggregate": "holds when every member record holds; value and interval of the least favourable member",
    "joint": "holds when every part holds (each a Student-t interval of a paired mean difference); value and "
             "interval of the part with the smallest standardised margin",
    "bootstrap": "percentile bootstrap of a rank correlation over configurations, then seeds within each "
                 "(stats.rank_bootstrap)",
}


# ---------------------------------------------------------------------- records
def _holds(comparator: str, threshold, lo: float, hi: float) -> bool:
    if comparator == "within":
        a, b = threshold
        return bool(a <= lo and hi <= b)
    edge = hi if comparator in ("<", "<=") else lo
    return bool(COMPARATORS[comparator](edge, threshold))


def margin(c: "Claim") -> float:
    """Signed distance from the deciding end of the interval to the threshold, positive
    when the record holds: what 'least favourable' ranks members by."""
    lo, hi = c.interval if c.interval is not None else (c.value, c.value)
    if c.comparator == "within":
        a, b = c.threshold
        return min(lo - a, b - hi)
    return c.threshold - hi if c.comparator in ("<", "<=") else lo - c.threshold


def standardised_margin(c) -> float:
    """margin / interval half-width: how many half-widths the deciding end clears the
    threshold by (comparable across units); +-inf for a zero-width interval."""
    m = margin(c)
    iv = c.interval
    hw = 0.0 if iv is None else (iv[1] - iv[0]) / 2
    return m / hw if hw > 0 else (math.inf if m > 0 else -math.inf)


def glue_key(id: str) -> str:
    """The glue prefix of a record: "C2.early[gru]" -> "c2_early_gru"."""
    return re.sub(r"\W+", "_", id.lower()).strip("_")


def _get(c, name):
    return c[name] if isinstance(c, dict) else getattr(c, name)


def format_threshold(c) -> str:
    """'< 0.001', '>= 0', 'in [0.9, 1.1]' for a Claim or its dict form."""
    cmp, t = _get(c, "comparator"), _get(c, "threshold")
    if cmp == "within":
        return f"in [{t[0]:.3g}, {t[1]:.3g}]"
    sign = {"<=": "≤", ">=": "≥"}.get(cmp, cmp)
    return f"{sign} {t:.3g}"


def format_interval(c) -> str:
    iv = _get(c, "interval")
    if iv is None:
        return "— (identity)" if _get(c, "rule") == "identity" else "—"
    return f"[{iv[0]:.3g}, {iv[1]:.3g}]"


def style(df: pd.DataFrame, fmt: str | dict = "{:.3g}", bold: dict | None = None):
    """The display form of a numeric table; the table itself keeps its numbers. Floats are
    shown by `fmt` (one format, or column -> format), booleans as ✓ / ✗, missing values as a
    dash; bold = {column: boolean column}: that column's cells in bold where the boolean
    column is True (boolean columns named only for bold are hidden)."""
    bold = bold or {}
    formats = {}
    for c in df.columns:
        if pd.api.types.is_bool_dtype(df[c]):
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
    holds: bool
    unit: str = ""
    rule: str = "mean"  # a key of RULES
    n: int | None = None  # replicates behind the interval
    members: list | None = None  # for an aggregate: ids of its members
    worst: str | None = None  # for an aggregate or a joint record: the least favourable member or part
    parts: list | None = None  # for a joint record: each part's name, value, interval, threshold, verdict

    @property
    def verdict(self) -> str:
        return "✓ holds" if self.holds else "✗ does not hold"


class Report:
    def __init__(self, notebook: str, parameters: dict, seeds):
        self.notebook = notebook
        self.parameters = dict(parameters)
        self.seeds = [int(s) for s in seeds]
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
        return cls(notebook, {k: specs[k].check(namespace[k]) for k in specs}, seeds)

    def call(self, task, *args, **extra):
        """task(*args, **kw), kw its keyword-only arguments taken by name from this run's
        parameters, its seeds (`seeds`) or `extra` (which wins; values the notebook derives,
        such as the resolved device): parameter names are written once, in the parameters cell."""
        return task(*args, **sweep.task_context(task, {**self.parameters, "seeds": self.seeds}, **extra))

    def set_device(self, info: dict) -> None:
        """Where the numbers were computed (device.describe): goes into the manifest."""
        self.device = dict(info)

    def claim(self, id: str, statement: str, value: float, interval, threshold, comparator: str = "<",
              unit: str = "", rule: str = "mean", n: int | None = None, **extra) -> Claim:
        """Record a claim. It holds when the whole interval lies on the claimed side of
        the threshold (for '<': interval[1] < threshold; for 'within' [a, b]:
        a <= interval[0] and interval[1] <= b); an identity (interval None) compares its
        value. Prefer the helpers below, which compute the interval by the book's rule.
        Glues <key>_value, _lo, _hi, _threshold and _verdict, key = id in lower case
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
        c = Claim(id, statement, float(value), iv, threshold, comparator, _holds(comparator, threshold, lo, hi),
                  unit, rule, n, **extra)
        self.claims.append(c)
        key = glue_key(id)
        for suffix, v in [("value", c.value), ("lo", lo), ("hi", hi), ("verdict", c.verdict),
                          ("threshold", threshold if comparator != "within" else format_threshold(c))]:
            glue(f"{key}_{suffix}", v)
        return c

    def mean(self, id: str, statement: str, values, threshold, comparator: str = "<", unit: str = "") -> Claim:
        """A claim about the mean of independent replicates (Student-t interval)."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        return self.claim(id, statement, v.mean(), mean_interval(v, self.level), threshold, comparator, unit,
                          rule="mean", n=v.size)

    def paired(self, id: str, statement: str, treated, baseline, threshold=0.0, comparator: str = "<",
               unit: str = "") -> Claim:
        """A claim about the mean paired difference treated - baseline (same seeds, same order)."""
        t, b = np.asarray(treated, dtype=np.float64).reshape(-1), np.asarray(baseline, dtype=np.float64).reshape(-1)
        if t.shape != b.shape:
            raise ValueError(f"paired claim {id!r}: {t.size} treated values against {b.size} baseline values")
        d = t - b
        return self.claim(id, statement, d.mean(), paired_interval(t, b, self.level), threshold, comparator, unit,
                          rule="paired", n=d.size)

    def identity(self, id: str, statement: str, errors, tolerance: float, unit: str = "") -> Claim:
        """A deterministic identity: holds when the largest absolute error is below tolerance."""
        e = np.abs(np.asarray(errors, dtype=np.float64))
        return self.claim(id, statement, e.max(), None, tolerance, "<", unit, rule="identity", n=e.size)

    def aggregate(self, id: str, statement: str, members: list[Claim]) -> Claim:
        """'For every member': holds when every member holds; value and interval are the
        least favourable member's (smallest margin to the threshold)."""
        if not members:
            raise ValueError(f"aggregate {id!r} has no members")
        mixed = len({(m.comparator, m.threshold, m.unit) for m in members}) > 1
        # one threshold: the smallest margin; several (joint records): the smallest standardised margin
        w = min(members, key=standardised_margin if mixed else margin)
        if mixed and all(m.holds for m in members) != w.holds:
            w = next(m for m in members if not m.holds)
        c = self.claim(id, f"{statement} (least favourable: {w.id})", w.value, w.interval, w.threshold, w.comparator,
                       w.unit, rule="aggregate", n=w.n, members=[m.id for m in members], worst=w.id)
        assert c.holds == all(m.holds for m in members)  # one comparator: the worst member decides
        return c

    def joint(self, id: str, statement: str, parts: list[dict]) -> Claim:
        """'All of these at once', each part a paired mean difference (same seeds):
        parts = [{"name", "treated", "baseline", "threshold", "comparator", "unit"}].
        Holds when every part holds; value and interval are those of the part with the
        smallest standardised margin (the first failing part if one fails)."""
        if not parts:
            raise ValueError(f"joint record {id!r} has no parts")
        done = []
        for p in parts:
            t = np.asarray(p["treated"], dtype=np.float64).reshape(-1)
            b = np.asarray(p["baseline"], dtype=np.float64).reshape(-1)
            if t.shape != b.shape:
                raise ValueError(f"joint record {id!r}, part {p['name']!r}: {t.size} treated against {b.size} baseline")
            d = t - b
            lo, hi = paired_interval(t, b, self.level)
            c = Claim(p["name"], p["name"], float(d.mean()), (lo, hi), float(p.get("threshold", 0.0)),
                      p.get("comparator", "<"), _holds(p.get("comparator", "<"), float(p.get("threshold", 0.0)), lo, hi),
                      p.get("unit", ""), "paired", d.size)
            done.append(c)
        w = min(done, key=standardised_margin)
        if not all(c.holds for c in done) and w.holds:
            w = next(c for c in done if not c.holds)
        summary = [{"name": c.id, "value": c.value, "interval": c.interval, "threshold": c.threshold,
                    "comparator": c.comparator, "unit": c.unit, "holds": c.holds} for c in done]
        c = self.claim(id, f"{statement} (least favourable: {w.id})", w.value, w.interval, w.threshold, w.comparator,
                       w.unit, rule="joint", n=w.n, worst=w.id, parts=summary)
        assert c.holds == all(d.holds for d in done)
        return c

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
        """Every record so far, one row each: value, interval (lo, hi; NaN for an identity),
        the threshold as its rule reads, the interval rule and whether it holds (numbers and
        booleans; display it through records.style)."""
        return pd.DataFrame([{"claim": c.id, "value": c.value,
                              "lo": np.nan if c.interval is None else c.interval[0],
                              "hi": np.nan if c.interval is None else c.interval[1],
                              "threshold": format_threshold(c), "rule": c.rule, "holds": c.holds}
                             for c in self.claims]).set_index("claim")

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "parameters": self.parameters,
                "claims": [asdict(c) for c in self.claims], "metrics": self.metrics,
                "manifest": {"python": platform.python_version(), "torch": io.torch_version(), **self.device,
                             "seeds": self.seeds}}

    def save(self) -> Path:
        path = io.env(io.RESULTS_FILE) or Path("results") / "adhoc" / f"{self.notebook}.json"
        io.write_json_atomic(Path(path), self.to_dict())
        return Path(path)

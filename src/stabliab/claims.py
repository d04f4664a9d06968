"""Claim records: what a notebook measured, against which threshold, with what verdict.

A notebook builds one Report, adds claims and metrics, and saves it at the end.
Every value is also glued (myst-nb) so the prose can cite it; nothing measured is
typed by hand. Under `stabliab run` the report goes to the file the runner names
(env STABLIAB_RESULTS_FILE), which the runner completes with its manifest and
moves into results/PROFILE/; run any other way (plain papermill, Jupyter) it
goes to results/adhoc/NAME.json.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

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


def _plain(x):
    """JSON-safe Python scalars and lists from numpy / torch values."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


@dataclass
class Claim:
    id: str
    statement: str
    value: float
    interval: tuple[float, float]
    threshold: float
    comparator: str  # how the *whole interval* must compare with the threshold
    holds: bool
    unit: str = ""

    @property
    def verdict(self) -> str:
        return "✓ holds" if self.holds else "✗ does not hold"


def write_json_atomic(path: Path, obj) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(_plain(obj), f, indent=1, ensure_ascii=False)
    os.replace(tmp, path)


class Report:
    def __init__(self, notebook: str, parameters: dict, seeds):
        self.notebook = notebook
        self.parameters = dict(parameters)
        self.seeds = [int(s) for s in seeds]
        self.claims: list[Claim] = []
        self.metrics: dict = {}

    def claim(self, id: str, statement: str, value: float, interval, threshold: float,
              comparator: str = "<", unit: str = "") -> Claim:
        """Record a claim. It holds when the whole interval lies on the claimed side
        of the threshold (for '<': interval[1] < threshold). Glues
        <key>_value, _lo, _hi, _threshold and _verdict, key = id in lower case with
        every run of non-word characters as one underscore."""
        if comparator not in COMPARATORS:
            raise ValueError(f"comparator must be one of {list(COMPARATORS)}")
        lo, hi = float(interval[0]), float(interval[1])
        edge = hi if comparator in ("<", "<=") else lo
        c = Claim(id, statement, float(value), (lo, hi), float(threshold), comparator,
                  bool(COMPARATORS[comparator](edge, threshold)), unit)
        self.claims.append(c)
        key = re.sub(r"\W+", "_", id.lower()).strip("_")  # "C2.early[gru]" -> "c2_early_gru"
        for suffix, v in [("value", c.value), ("lo", lo), ("hi", hi), ("threshold", c.threshold),
                          ("verdict", c.verdict)]:
            glue(f"{key}_{suffix}", v)
        return c

    def metric(self, name: str, value, glue_it: bool = True) -> None:
        """Record a metric and glue it under its name (returns nothing, so that a
        cell ending in report.metric(...) displays nothing)."""
        self.metrics[name] = _plain(value)
        if glue_it:
            glue(name, value)

    def table(self):
        import pandas as pd
        return pd.DataFrame([{"claim": c.id, "value": c.value, "interval": f"[{c.interval[0]:.3g}, {c.interval[1]:.3g}]",
                              "threshold": f"{c.comparator} {c.threshold:.3g}", "verdict": c.verdict}
                             for c in self.claims]).set_index("claim")

    def to_dict(self) -> dict:
        try:
            import torch
            tv, dev = torch.__version__, ("cuda" if torch.cuda.is_available() else "cpu")
        except ImportError:  # pragma: no cover
            tv, dev = None, "cpu"
        return {"notebook": self.notebook, "parameters": self.parameters,
                "claims": [asdict(c) for c in self.claims], "metrics": self.metrics,
                "manifest": {"python": platform.python_version(), "torch": tv, "device": dev,
                             "seeds": self.seeds}}

    def save(self) -> Path:
        path = os.environ.get("STABLIAB_RESULTS_FILE") or Path("results") / "adhoc" / f"{self.notebook}.json"
        write_json_atomic(Path(path), self.to_dict())
        return Path(path)


def bootstrap_claim_interval(values, seed: int = 0):
    """(mean, (lo, hi)) of per-seed values: mean with a 95% percentile bootstrap."""
    from .metrics import bootstrap_ci
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), bootstrap_ci(v, seed=seed)

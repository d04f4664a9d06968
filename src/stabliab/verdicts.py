"""Verdicts: how a record's state is read from its interval and threshold, combined over
members, ranked, and written. Plain Python (no numpy, torch or scipy), so that the `stabliab`
command reads verdicts without importing what the notebooks compute with; records.py builds
the records themselves and re-exports these names.
"""
from __future__ import annotations

import math
import re

COMPARATORS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
               ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


RULES = {
    "mean": "Student-t interval of a mean over independent replicates (seeds, or Monte Carlo draws where "
            "the statement says so)",
    "paired": "Student-t interval of the mean paired difference (treatment minus baseline, same seed)",
    "share": "exact Clopper–Pearson interval of a share of seeds or runs (runs pooled across configurations: descriptive)",
    "identity": "largest error over every check of a deterministic identity; no interval",
    "aggregate": "for every member: contradicted if one member is, supported if all are, untestable if all are, "
                 "inconclusive otherwise; value and interval of the least favourable member",
    "joint": "all parts at once (each a Student-t interval of a paired mean difference), combined as an aggregate; "
             "value and interval of the least favourable part (worst verdict, then smallest standardised margin)",
    "bootstrap": "percentile bootstrap of a rank correlation over configurations, then seeds within each "
                 "(stats.rank_bootstrap)",
    "cv-bootstrap": "percentile bootstrap over configurations of a gain in cross-validated R² (folds by "
                    "configuration; predict.r2_gain_bootstrap)",
    "equal": "every replicate gave the same value (a zero-width interval): reported as 'all seeds equal'; with at "
             "least 6 replicates (a sign test's 2^-5 < 0.05) decided by the common value, as an identity, with fewer "
             "inconclusive; a common value exactly at the threshold (e.g. every paired difference 0) has no sign and is "
             "inconclusive whatever the number",
    "single": "one replicate (n = 1): no interval; never supported or contradicted, only inconclusive",
}

# A record's state. supported: the whole interval on the claimed side of the threshold (inside the
# band); contradicted: the whole interval on the opposite side (outside the band); inconclusive:
# the interval straddles the threshold (a band's edge), or n = 1; untestable: no data (NaN).
VERDICTS = ("supported", "inconclusive", "contradicted", "untestable")
KINDS = {"claim": "a part of the paper's claim as the book states it: supported is evidence for it",
         "boundary": "a limit the book states (where the claim does not apply): supported confirms the limit",
         "diagnostic": "a premise of other records (a gate, a plateau share): not evidence for or against the claim"}
EQUAL_MIN = 6  # all-equal replicates decide a record from this many on: 6 of one sign has sign-test p = 2^-5 < 0.05
LABELS = {"supported": "✓ supported", "inconclusive": "? inconclusive", "contradicted": "✗ contradicted",
          "untestable": "— untestable"}
SYMBOLS = {"supported": "✓", "inconclusive": "?", "contradicted": "✗", "untestable": "—"}
DECIDE = {  # how a record's verdict is read from its interval [lo, hi] and threshold t
    "<": ("hi < t", "lo ≥ t"), "<=": ("hi ≤ t", "lo > t"), ">": ("lo > t", "hi ≤ t"), ">=": ("lo ≥ t", "hi < t"),
    "within": ("a ≤ lo and hi ≤ b", "hi < a or lo > b"),
}


_NEGATION = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def decide(comparator: str, threshold, lo: float, hi: float) -> str:
    """The verdict of an interval [lo, hi] (lo = hi for an identity) against a threshold
    (DECIDE): supported when the whole interval satisfies the comparator, contradicted
    when the whole interval satisfies its negation, inconclusive otherwise; untestable
    when an end is NaN."""
    if math.isnan(lo) or math.isnan(hi):
        return "untestable"
    if comparator == "within":
        a, b = threshold
        return "supported" if a <= lo and hi <= b else "contradicted" if hi < a or lo > b else "inconclusive"
    near, far = (hi, lo) if comparator in ("<", "<=") else (lo, hi)  # the deciding end for each side
    if COMPARATORS[comparator](near, threshold):
        return "supported"
    if COMPARATORS[_NEGATION[comparator]](far, threshold):
        return "contradicted"
    return "inconclusive"


def combine(verdicts) -> str:
    """The verdict of "all of these": contradicted if any is, supported if all are,
    untestable if all are (or there are none), inconclusive otherwise."""
    v = list(verdicts)
    if not v:
        return "untestable"
    if "contradicted" in v:
        return "contradicted"
    if all(x == "supported" for x in v):
        return "supported"
    if all(x == "untestable" for x in v):
        return "untestable"
    return "inconclusive"


_RANK = {"contradicted": 0, "inconclusive": 1, "untestable": 2, "supported": 3}


def least_favourable(members: list, key) -> "Claim":
    """The member that decides an "all of these" record: the worst state first, then the
    smallest (finite) margin by `key`."""
    def order(m):
        k = key(m)
        return _RANK[m.verdict], (math.inf if math.isnan(k) else k)
    return min(members, key=order)


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
    iv, rule = _get(c, "interval"), _get(c, "rule")
    if iv is not None:  # a results file stores a NaN bound as the string "nan" (io.json_bytes)
        lo, hi = (float(x) for x in iv)
        if not (math.isnan(lo) and math.isnan(hi)):
            return f"[{lo:.3g}, {hi:.3g}]"
        if _get(c, "n") == 0:
            return "— (n = 0)"
    return {"identity": "— (identity)", "equal": "— (all seeds equal)", "single": "— (n = 1)"}.get(rule, "—")


def verdict_of(c) -> str:
    """A record's state from a Claim or its dict form. A record written before verdicts had three
    values (only `holds`) is decided again from its stored interval (or value), threshold and
    comparator (decide); without those, `holds` True reads as supported, False as inconclusive,
    None as untestable."""
    v = _get(c, "verdict") if (not isinstance(c, dict) or "verdict" in c) else None
    if v in VERDICTS:
        return v
    try:
        iv, val = c.get("interval"), float(c["value"])
        lo, hi = (float(iv[0]), float(iv[1])) if iv is not None else (val, val)
        t = c["threshold"]
        return decide(c["comparator"], tuple(t) if c["comparator"] == "within" else float(t), lo, hi)
    except (KeyError, TypeError, ValueError, IndexError):
        h = c.get("holds") if isinstance(c, dict) else None
        return "supported" if h is True else "inconclusive" if h is False else "untestable"

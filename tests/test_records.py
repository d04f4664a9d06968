"""Claim records: interval rules (coverage, exactness), comparator edges, aggregates."""
import numpy as np
import pytest
from scipy import stats as sps

from stabliab import records, stats


@pytest.mark.parametrize("n", [5, 20])
def test_mean_interval_covers_the_true_mean_at_its_level(n):
    rng = np.random.default_rng(n)
    draws, mu = 2000, 1.7
    hits = 0
    for _ in range(draws):
        lo, hi = stats.mean_interval(rng.normal(mu, 2.0, size=n))
        hits += lo <= mu <= hi
    assert 0.93 <= hits / draws <= 0.97


def test_mean_interval_matches_the_t_formula_and_refuses_one_value():
    v = np.array([1.0, 2.0, 4.0])
    lo, hi = stats.mean_interval(v)
    half = sps.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3)
    assert (lo, hi) == pytest.approx((v.mean() - half, v.mean() + half), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_interval([1.0])
    with pytest.raises(ValueError, match="non-finite"):
        stats.mean_interval([1.0, np.nan])


@pytest.mark.parametrize("k,n", [(0, 5), (1, 5), (3, 5), (5, 5), (7, 20), (20, 20)])
def test_share_interval_solves_the_clopper_pearson_equations(k, n):
    lo, hi = stats.share_interval(k, n)
    # defining property (independent of the Beta form): each end leaves 2.5% in its tail
    if k > 0:
        assert sps.binom.sf(k - 1, n, lo) == pytest.approx(0.025, abs=1e-9)
    else:
        assert lo == 0.0
    if k < n:
        assert sps.binom.cdf(k, n, hi) == pytest.approx(0.025, abs=1e-9)
    else:
        assert hi == 1.0


def test_share_interval_closed_forms_and_bad_input():
    assert stats.share_interval(5, 5)[0] == pytest.approx(0.025 ** (1 / 5), rel=1e-9)  # 0.478, not 1
    assert stats.share_interval(0, 5)[1] == pytest.approx(1 - 0.025 ** (1 / 5), rel=1e-9)
    for bad in [(6, 5), (-1, 5), (1, 0), (1.5, 5)]:
        with pytest.raises(ValueError, match="share_interval needs integers"):
            stats.share_interval(*bad)
    with pytest.raises(ValueError, match="level"):
        stats.share_interval(1, 5, 1.0)


def test_share_interval_equals_the_beta_quantile_formula():
    """scipy's exact binomtest interval against the hand-written Beta form it replaced
    (its root finder stops at an absolute 2e-12, hence the absolute tolerance)."""
    for level in [0.9, 0.95]:
        a = 1 - level
        for n in [1, 2, 3, 5, 8, 13, 20]:
            for k in range(n + 1):
                lo = 0.0 if k == 0 else sps.beta.ppf(a / 2, k, n - k + 1)
                hi = 1.0 if k == n else sps.beta.ppf(1 - a / 2, k + 1, n - k)
                got = stats.share_interval(k, n, level)
                assert got == pytest.approx((lo, hi), rel=1e-12, abs=4e-12)
                assert (got[0] == 0.0) == (k == 0) and (got[1] == 1.0) == (k == n)


def test_paired_interval_is_the_t_interval_of_the_differences():
    rng = np.random.default_rng(4)
    for n in [2, 3, 5, 20]:
        for level in [0.5, 0.95]:
            b = rng.normal(size=n) * 1e3
            t = (b + rng.normal(0.3, 2.0, size=n))[:, None]  # [n, 1]: flattened like the baseline
            ref = stats.mean_interval(t.reshape(-1) - b, level)
            assert stats.paired_interval(t, b, level) == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert stats.paired_interval([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]) == pytest.approx((1.0, 1.0), abs=1e-12)
    with pytest.raises(ValueError, match="2 treated values against 3"):
        stats.paired_interval([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 2"):
        stats.paired_interval([1.0], [0.0])
    with pytest.raises(ValueError, match="non-finite"):
        stats.paired_interval([1.0, np.nan], [0.0, 0.0])


@pytest.mark.parametrize("comparator,interval,holds", [
    ("<", (0.0, 1.0), False), ("<=", (0.0, 1.0), True),   # upper end equal to the threshold 1
    (">", (1.0, 2.0), False), (">=", (1.0, 2.0), True),   # lower end equal to the threshold 1
    ("<", (0.0, 0.999), True), (">", (1.001, 2.0), True), (">", (0.5, 2.0), False),
])
def test_comparator_edges(comparator, interval, holds):
    r = records.Report("t", {}, [0])
    assert r.claim("x", "s", 1.0, interval, 1.0, comparator).holds is holds


def test_within_band_is_inclusive_and_identity_compares_its_value():
    r = records.Report("t", {}, [0])
    assert r.claim("a", "s", 1.0, (0.9, 1.1), (0.9, 1.1), "within").holds
    assert not r.claim("b", "s", 1.0, (0.89, 1.05), (0.9, 1.1), "within").holds
    assert not r.identity("c", "s", [1e-12, -1e-10], 1e-10).holds  # max |error| equal to the tolerance
    ok = r.identity("d", "s", [1e-12, -1e-11], 1e-10)
    assert ok.holds and ok.interval is None and ok.rule == "identity" and ok.value == pytest.approx(1e-11)
    with pytest.raises(ValueError, match="twice"):
        r.identity("d", "s", [0.0], 1.0)


def test_helpers_use_the_rule_of_their_kind():
    r = records.Report("t", {}, [0, 1, 2, 3, 4])
    m = r.mean("m", "s", [1.0, 2.0, 3.0], 0.0, ">")
    assert m.interval == pytest.approx(stats.mean_interval([1.0, 2.0, 3.0])) and m.rule == "mean" and m.n == 3
    p = r.paired("p", "s", [2.0, 3.0, 5.0], [1.0, 1.0, 1.0], 0.0, ">")
    assert p.value == pytest.approx(7 / 3) and p.interval == pytest.approx(stats.mean_interval([1.0, 2.0, 4.0]))
    with pytest.raises(ValueError, match="paired"):
        r.paired("p2", "s", [1.0, 2.0], [1.0], 0.0)


def test_aggregate_is_the_least_favourable_member_and_holds_only_if_all_do():
    r = records.Report("t", {}, [0])
    a = r.claim("m[a]", "s", 0.2, (0.1, 0.3), 0.5, "<")
    b = r.claim("m[b]", "s", 0.4, (0.3, 0.45), 0.5, "<")  # holds, but closest to the threshold
    agg = r.aggregate("m", "every member", [a, b])
    assert agg.holds and agg.worst == "m[b]" and agg.interval == b.interval and agg.rule == "aggregate"
    c = r.claim("m[c]", "s", 0.1, (-0.5, 0.6), 0.5, "<")
    agg2 = r.aggregate("m2", "every member", [a, b, c])
    assert not agg2.holds and agg2.worst == "m[c]"
    # different thresholds or units: the smallest standardised margin (margin / half-width)
    d = r.claim("m[d]", "s", 0.1, (0.0, 0.2), 0.7, "<")  # margin 0.5 over half-width 0.1: 5
    agg3 = r.aggregate("m3", "s", [a, d])  # a: margin 0.2 over half-width 0.1: 2
    assert agg3.holds and agg3.worst == "m[a]"
    e = r.claim("m[e]", "s", 2.0, (1.9, 2.1), 1.0, ">")  # margin 0.9 / 0.1 = 9, but a fails below
    f = r.claim("m[f]", "s", 0.45, (0.3, 0.6), 0.5, "<")  # fails
    agg4 = r.aggregate("m4", "s", [e, f, d])
    assert not agg4.holds and agg4.worst == "m[f]"
    assert records.standardised_margin(a) == pytest.approx(2.0)


def test_results_dict_carries_the_rule():
    r = records.Report("t", {"x": 1}, [0, 1])
    r.mean("m", "s", [1.0, 2.0], 0.0, ">")
    r.identity("i", "s", [0.0], 1.0)
    d = r.to_dict()["claims"]
    assert [c["rule"] for c in d] == ["mean", "identity"] and d[1]["interval"] is None


def test_percentile_bootstrap_over_five_seeds_undercovers():
    """Why the book does not use it: the intro states this coverage (about 84%)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    idx = rng.integers(0, 5, size=(2000, 2000, 5))
    boots = np.take_along_axis(x[:, None, :].repeat(2000, 1), idx, 2).mean(2)  # [draws, resamples]
    lo, hi = np.quantile(boots, 0.025, axis=1), np.quantile(boots, 0.975, axis=1)
    cover = np.mean((lo <= 0) & (0 <= hi))
    assert 0.79 <= cover <= 0.87


# ---------------------------------------------------------------- three-valued verdicts
@pytest.mark.parametrize("comparator,interval,verdict", [
    ("<", (0.0, 0.999), "supported"), ("<", (0.0, 1.0), "inconclusive"),   # touching from below: not supported
    ("<", (1.0, 2.0), "contradicted"), ("<", (0.999, 2.0), "inconclusive"),  # touching from above: the negation >= holds
    ("<=", (0.0, 1.0), "supported"), ("<=", (1.0, 2.0), "inconclusive"), ("<=", (1.001, 2.0), "contradicted"),
    (">", (1.001, 2.0), "supported"), (">", (1.0, 2.0), "inconclusive"), (">", (0.0, 1.0), "contradicted"),
    (">=", (1.0, 2.0), "supported"), (">=", (0.0, 1.0), "inconclusive"), (">=", (0.0, 0.999), "contradicted"),
])
def test_verdict_states_at_their_edges(comparator, interval, verdict):
    assert records.decide(comparator, 1.0, *interval) == verdict
    c = records.Report("t", {}, [0]).claim("x", "s", sum(interval) / 2, interval, 1.0, comparator)
    assert c.verdict == verdict and c.holds == (verdict == "supported")


@pytest.mark.parametrize("interval,verdict", [
    ((0.9, 1.1), "supported"), ((0.89, 1.05), "inconclusive"), ((1.05, 1.2), "inconclusive"),
    ((0.5, 0.899), "contradicted"), ((1.101, 2.0), "contradicted"), ((0.0, 2.0), "inconclusive"),
])
def test_band_verdicts(interval, verdict):
    assert records.decide("within", (0.9, 1.1), *interval) == verdict


def test_nan_is_untestable_not_false():
    r = records.Report("t", {}, [0, 1])
    assert r.claim("a", "s", float("nan"), None, 0.0, "<").verdict == "untestable"
    assert r.mean("b", "s", [1.0, float("nan")], 0.0, "<").verdict == "untestable"
    assert records.decide("<", 0.0, float("nan"), 1.0) == "untestable"


def test_one_replicate_has_no_interval_and_all_equal_replicates_are_decided_as_an_identity():
    r = records.Report("t", {}, [0])
    one = r.mean("one", "s", [-5.0], 0.0, "<")
    assert one.interval is None and one.rule == "single" and one.verdict == "inconclusive" and one.n == 1
    eq = r.paired("eq", "s", [0.5] * 6, [0.6] * 6, 0.0, "<")
    assert eq.interval is None and eq.rule == "equal" and eq.verdict == "supported"
    assert eq.value == pytest.approx(-0.1) and records.format_interval(eq) == "— (all seeds equal)"
    assert r.paired("eq2", "s", [0.7] * 6, [0.6] * 6, 0.0, "<").verdict == "contradicted"
    few = r.paired("eq3", "s", [0.5] * 5, [0.6] * 5, 0.0, "<")  # five of one sign: sign-test p = 1/16, not enough
    assert few.rule == "equal" and few.verdict == "inconclusive"
    zero = r.paired("eq4", "s", [0.3] * 10, [0.3] * 10, 0.0, "<=")  # every difference 0: at the threshold, no sign
    assert zero.rule == "equal" and zero.verdict == "inconclusive"
    assert r.paired("eq5", "s", [0.3] * 10, [0.3] * 10, 0.0, ">").verdict == "inconclusive"
    assert r.identity("none", "s", [], 1e-9).verdict == "untestable" and records.combine([]) == "untestable"
    assert r.identity("id", "s", [1.0, 2e-10], 1e-10).verdict == "contradicted"  # an identity has no middle


def test_aggregate_and_joint_combine_three_states():
    assert records.combine(["supported", "supported"]) == "supported"
    assert records.combine(["supported", "inconclusive"]) == "inconclusive"
    assert records.combine(["supported", "contradicted", "inconclusive"]) == "contradicted"
    assert records.combine(["untestable", "untestable"]) == "untestable"
    assert records.combine(["supported", "untestable"]) == "inconclusive"
    r = records.Report("t", {}, [0])
    a = r.claim("m[a]", "s", 0.2, (0.1, 0.3), 0.5, "<")
    b = r.claim("m[b]", "s", 0.5, (0.4, 0.6), 0.5, "<")  # inconclusive, smaller margin than c? no: c is worse in state
    c = r.claim("m[c]", "s", 0.9, (0.8, 1.0), 0.5, "<")  # contradicted
    agg = r.aggregate("m", "every", [a, b, c])
    assert agg.verdict == "contradicted" and agg.worst == "m[c]"
    assert r.aggregate("m2", "every", [a, b]).verdict == "inconclusive"
    j = r.joint("J", "both", [{"name": "down", "treated": [0.0, 0.1, 0.2], "baseline": [1.0, 1.1, 1.3]},
                              {"name": "up", "treated": [0.0, 0.1, 0.2], "baseline": [1.0, 1.1, 1.3],
                               "comparator": ">"}])
    assert j.verdict == "contradicted" and j.worst == "up" and [p["verdict"] for p in j.parts] == ["supported",
                                                                                                    "contradicted"]


def test_a_record_is_exploratory_when_a_preregistered_value_is_overridden():
    base = records.Report("t", {"tol": 0.1, "steps": 5}, [1000, 1001], decisive={"tol": 0.1})
    assert not base.exploratory and base.confirmatory_seeds and not base.mean("a", "s", [1.0, 2.0], 0.0).exploratory
    moved = records.Report("t", {"tol": 0.2, "steps": 5}, [0, 1], decisive={"tol": 0.1})
    assert moved.exploratory and moved.overridden == ["tol"] and not moved.confirmatory_seeds
    c = moved.mean("a", "s", [1.0, 2.0], 0.0)
    assert c.exploratory and moved.to_dict()["manifest"]["decisive"] == {"tol": 0.2}
    steps_only = records.Report("t", {"tol": 0.1, "steps": 9}, [1000], decisive={"tol": 0.1})
    assert not steps_only.exploratory  # a parameter that decides no verdict does not make a run exploratory


def test_preregistered_mark_is_read_from_the_parameters_cell():
    from stabliab import params
    specs = params.parse_cell("tol = 0.1  # in (0, 1): a tolerance [pre-registered]\nsteps = 5  # in [1, 9]: steps\n")
    assert specs["tol"].decisive and not specs["steps"].decisive and specs["tol"].help == "a tolerance"


def test_a_record_written_before_three_verdicts_is_decided_again_from_its_interval():
    old = {"id": "x", "value": -0.09, "interval": [-0.158, -0.02], "threshold": 0.0, "comparator": ">", "holds": False}
    assert records.verdict_of(old) == "contradicted"  # wholly on the other side: not merely "not holding"
    assert records.verdict_of({**old, "interval": [-0.1, 0.1]}) == "inconclusive"
    assert records.verdict_of({"id": "y", "holds": True}) == "supported"  # nothing to decide from: holds

def test_record_kinds_and_the_findings_tally():
    from stabliab import book
    r = records.Report("nb", {}, [1000, 1001])
    a = r.claim("C2.x[a]", "s", 0.2, (0.1, 0.3), 0.5, "<")
    b = r.claim("C2.x[b]", "s", 0.9, (0.8, 1.0), 0.5, "<")
    r.aggregate("C2.x", "every", [a, b])  # contradicted; its members are not counted again
    r.mark(r.claim("C2.early[a]", "s", 1.5, (1.2, 1.8), 1.0, ">"), "boundary")
    r.mark(r.claim("C2.plateau", "s", 0.9, (0.85, 0.95), 0.8, ">="), "diagnostic")
    with pytest.raises(ValueError, match="kind"):
        r.mark(a, "opinion")
    doc = {**r.to_dict(), "profile": "default", "manifest": {**r.to_dict()["manifest"], "git_commit": "x"}}
    row = next(ln for ln in book.findings({"profile": "default", "notebooks": {"nb": doc}}).splitlines()
               if ln.startswith("| C2 "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2:6] == ["0", "0", "1", "0"]  # one claim record (the aggregate), contradicted
    assert "boundaries confirmed: 1 of 1" in cells[6] and "confirmatory seeds (1000–1001)" in cells[6]


def test_share_records_use_the_clopper_pearson_interval_and_no_case_is_untestable():
    r = records.Report("t", {}, [0])
    c = r.share("S", "cases hit", [True, True, False, True], 0.5, ">=")
    assert (c.value, c.n, c.rule) == (0.75, 4, "share") and c.statement.endswith("3 of 4")
    assert c.interval == stats.share_interval(3, 4) and c.verdict == "inconclusive"
    assert r.share("S0", "none", [], 0.5).verdict == "untestable"
    assert r.share("S1", "all", [True] * 40, 0.8).verdict == "supported"  # [0.91, 1] lies above 0.8
    assert r.share("S2", "few", [False] * 40, 0.8).verdict == "contradicted"


def test_an_interval_read_back_as_nan_strings_formats_as_untestable_not_a_crash():
    """A record with no runs in its verdict is written with NaN bounds, which the results file stores as
    "nan" (a claims page of such a notebook used to raise in format_interval)."""
    c = {"interval": ["nan", "nan"], "rule": "mean", "n": 0}
    assert records.format_interval(c) == "— (n = 0)"
    assert records.format_interval({**c, "n": 3}) == "—"
    assert records.format_interval({"interval": [0.5, "nan"], "rule": "mean", "n": 2}) == "[0.5, nan]"
    assert records.format_interval({"interval": [0.12345, 2], "rule": "mean", "n": 2}) == "[0.123, 2]"


def test_the_claims_page_says_when_notebooks_ran_side_by_side():
    from stabliab import book
    r = records.Report("nb", {}, [1000, 1001])
    r.claim("C2.x", "s", 0.2, (0.1, 0.3), 0.5, "<")
    doc = r.to_dict()
    man = {**doc["manifest"], "git_commit": "x", "decisive_commit": "y", "seconds": 12.0, "device": "cpu"}

    def page(m):
        return book.claims_page({"profile": "default", "notebooks": {"nb": {**doc, "profile": "default",
                                                                           "manifest": m}}}, ["nb"])
    assert "12 s (2 notebooks at once) on cpu" in page({**man, "jobs": 2})
    assert "12 s on cpu" in page({**man, "jobs": 1}) and "12 s on cpu" in page(man)  # older results: no jobs
    assert "the files that decide its verdicts last changed in `y`" in page(man)

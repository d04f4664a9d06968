"""The book: place one profile's executed notebooks, write the claims page and
claims.json, build the HTML strictly; and `diff`, which compares two sets of verdicts.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from . import io
from .verdicts import DECIDE, LABELS, RULES, VERDICTS, format_interval, format_threshold, verdict_of
from .seeds import CONFIRMATORY_SEED
from .params import load_profile
from .runner import RunResult, check_results, executed_path, read_results, results_path, run_notebooks


def toc_notebooks(root: Path) -> list[str]:
    """Names of the executed notebooks that _toc.yml lists (book/generated/NAME)."""
    text = (root / "_toc.yml").read_text()
    return re.findall(r"book/generated/([\w\-]+)", text)


def generated_path(root: Path, name: str) -> Path:
    return root / "book" / "generated" / f"{name}.ipynb"


# ---------------------------------------------------------------------- reader's view
def readers_view(nb):
    """Tags for the rendered page: papermill's injected-parameters cell is removed (the
    parameters cell, with its constraints, stays visible); every other code cell is
    collapsed behind "show code" so that a section reads prose -> figure -> number."""
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags:
            if "remove-cell" not in tags:
                tags.append("remove-cell")
        elif cell.cell_type == "code" and "parameters" not in tags and not {"hide-input", "remove-input",
                                                                            "remove-cell", "show-input"} & set(tags):
            tags.append("hide-input")
    return nb


def place_notebooks(root: Path, profile: str, names: list[str]) -> None:
    """Copy profile's executed notebooks to book/generated/ with the reader's view."""
    out = root / "book" / "generated"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in names:
        src = executed_path(root, profile, name)
        if src.is_file():
            nbformat.write(readers_view(nbformat.read(src, as_version=4)), generated_path(root, name))


# ---------------------------------------------------------------------- verdicts
def collect(root: Path, profile: str, names: list[str]) -> dict:
    """{"profile", "notebooks": {name: results dict}} for the notebooks that have results
    (each checked: a corrupt one is a CorruptFile naming it)."""
    out = {}
    for name in names:
        p = results_path(root, profile, name)
        if p.is_file():
            out[name] = read_results(p, name)
    return {"profile": profile, "rules": RULES, "notebooks": out}


CLAIMS = {  # each claim in one line (intro.md states them in full)
    "C1": "stable maximum-likelihood trajectories settle at the forward-KL minimiser to the empirical distribution",
    "C2": "stationary solutions reduce generative entropy, concentrating mass on a subset of empirical modes",
    "C3": "a feedback loop that stabilises generation statistics gives low-entropy, repetitive output",
    "C4": "optimisation stability does not predict generative quality",
    "C5": "the mechanisms, measured on a real pretrained language model",
}


def _claim_of(record_id: str) -> str:
    m = re.match(r"(C\d+)", record_id)
    return m.group(1) if m else "?"


def _scale(r: dict) -> str:
    """'default, 5 confirmatory seeds (1000-1004)' for one results dict."""
    s = r["manifest"]["seeds"]
    kind = "confirmatory" if r["manifest"].get("confirmatory_seeds") else "development"
    span = f"{s[0]}" if len(s) == 1 else f"{s[0]}–{s[-1]}"
    return f"`{r['profile']}`, {len(s)} {kind} seeds ({span})" + (
        ", exploratory (overridden: " + ", ".join(r["manifest"]["overridden"]) + ")"
        if r["manifest"].get("exploratory") else "")


def counts(claims: list[dict]) -> dict:
    """verdict -> number of records."""
    out = dict.fromkeys(VERDICTS, 0)
    for c in claims:
        out[verdict_of(c)] += 1
    return out


def findings(data: dict) -> str:
    """Markdown of the findings at a glance: per claim, its line, the counts of supported /
    inconclusive / contradicted / untestable records of kind "claim" (verdicts.KINDS; members
    of an aggregate are counted in it, not again), and one sentence of what was found at which
    scale, with the boundaries apart (written from the results, never by hand)."""
    by_claim: dict[str, list] = {}
    scale: dict[str, set] = {}
    for r in data["notebooks"].values():
        inside = {m for c in r["claims"] for m in (c.get("members") or [])}
        for c in r["claims"]:
            if c["id"] in inside:
                continue
            k = _claim_of(c["id"])
            by_claim.setdefault(k, []).append(c)
            scale.setdefault(k, set()).add(_scale(r))
    rows = ["| claim | in one line | ✓ | ? | ✗ | — | found |", "|---|---|:-:|:-:|:-:|:-:|---|"]
    for k, line in CLAIMS.items():
        every = by_claim.get(k)
        if not every:
            rows.append(f"| {k} | {line} | | | | | not measured in profile `{data['profile']}` |")
            continue
        cl = [c for c in every if c.get("kind", "claim") == "claim"]
        bounds = [c for c in every if c.get("kind") == "boundary"]
        n = counts(cl)
        against = sorted((c["id"] for c in cl if verdict_of(c) == "contradicted"),
                         key=lambda i: (":" in i, i))  # a claim's headline records before per-configuration ones
        said = (f"{n['supported']} of {len(cl)} records supported, {n['contradicted']} contradicted"
                + (f" ({', '.join(against[:3])}{', …' if len(against) > 3 else ''})" if against else "")
                + (f"; boundaries confirmed: {counts(bounds)['supported']} of {len(bounds)}" if bounds else "")
                + f"; at {'; '.join(sorted(scale[k]))}")
        rows.append(f"| {k} | {line} | {n['supported']} | {n['inconclusive']} | {n['contradicted']} | "
                    f"{n['untestable']} | {said.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def rules_table() -> str:
    """How each verdict is decided, per comparator (verdicts.DECIDE)."""
    rows = ["| comparator | supported when | contradicted when | otherwise |", "|---|---|---|---|"]
    for cmp, (yes, no) in DECIDE.items():
        shown = "in [a, b]" if cmp == "within" else {"<=": "≤", ">=": "≥"}.get(cmp, cmp) + " t"
        rows.append(f"| {shown} | {yes} | {no} | inconclusive |")
    return "\n".join(rows) + "\n"


def claims_page(data: dict, names: list[str]) -> str:
    """Markdown of every claim record in `data` (collect's result), one table per notebook."""
    profile = data["profile"]
    every = [c for r in data["notebooks"].values() for c in r["claims"]]
    n = counts(every)
    rules = "\n".join(f"| `{k}` | {v} |" for k, v in RULES.items())
    out = ["# Claims and verdicts\n",
           f"This page is written by `stabliab book --profile {profile}` from `results/{profile}/*.json`; "
           "do not edit it by hand. Every record, with its manifest (commit, device, seeds, versions, the "
           "pre-registered values that decided it), is in "
           '<a href="../claims.json">claims.json</a>, which `stabliab diff` compares with a rerun.\n',
           f"**{len(every)} records: {n['supported']} supported (✓), {n['inconclusive']} inconclusive (?), "
           f"{n['contradicted']} contradicted (✗), {n['untestable']} untestable (—).** A record is *supported* when "
           "the whole 95% interval of its value lies on the claimed side of its threshold (or inside the stated "
           "band), *contradicted* when the whole interval lies on the other side (outside the band), and "
           "*inconclusive* when it straddles the threshold; a record without data is *untestable*. Each verdict "
           "is a statement about its own record at the 95% level: no correction for the number of records is made, "
           "so among many ✓ or ✗ a few could be chance (see "
           "[how to read a verdict](intro.md#how-to-read-a-verdict)). A ✗ is a finding, not a failure of the "
           "book: at this scale the data speak against the claim.\n",
           rules_table(),
           f"**Pre-registration.** Seeds from {CONFIRMATORY_SEED} on are confirmatory: the `default` and `paper` "
           f"profiles start there, and no seed at or above {CONFIRMATORY_SEED} was looked at while the designs and "
           "thresholds were chosen. The values marked `[pre-registered]` in each notebook's parameters cell "
           "decide verdicts, with the module constants so marked in each claim's room (`experiments/cN.py`); "
           "the manifest stores them and the commit that last changed any file that decides a verdict (the "
           "notebook, the profile, the claim's room, the plateau test and the verdict rules), and a run that "
           "overrides one with `-p` is *exploratory*: each of its records is marked so below and in claims.json.\n",
           "The interval of each record follows its rule:\n",
           "| rule | interval |\n|---|---|\n" + rules + "\n"]
    for name in names:
        r = data["notebooks"].get(name)
        if r is None:
            out.append(f"## {name}\n\nNo results for profile `{profile}` yet.\n")
            continue
        m = r["manifest"]
        k = counts(r["claims"])
        out.append(f"## [{name}](generated/{name}.ipynb)\n\n"
                   f"Profile {_scale(r)}, commit `{m['git_commit']}` (the files that decide its verdicts last "
                   f"changed in `{m.get('decisive_commit', '?')}`), {m['seconds']:.0f} s{_shared(m)} on "
                   f"{m.get('device', '?')}"
                   f"{_calibration(m)}; "
                   f"{k['supported']} supported, {k['inconclusive']} inconclusive, {k['contradicted']} contradicted, "
                   f"{k['untestable']} untestable of {len(r['claims'])} records.\n\n"
                   "| claim | verdict | measured, 95% interval, rule (n) | threshold |\n"
                   "|---|:-:|---|---|")
        for c in r["claims"]:
            nn = f", n = {c['n']}" if c.get("n") else ""
            v = f"{c['value']:.3g}" if isinstance(c["value"], (int, float)) else "—"  # NaN is stored as a string
            flag = ("<br>*exploratory*" if c.get("exploratory") else "") + (
                f"<br>*{c['kind']}*" if c.get("kind", "claim") != "claim" else "")
            out.append(f"| **{c['id']}**<br>{c['statement'].replace('|', '/')} | {LABELS[verdict_of(c)]}{flag} | "
                       f"{v} {c.get('unit', '')}<br>{format_interval(c)}<br>*{c.get('rule', '?')}{nn}* | "
                       f"{format_threshold(c)} |")
        out.append("")
    return "\n".join(out) + "\n"


def write_verdicts(root: Path, profile: str, names: list[str]) -> None:
    """book/claims.md, book/findings.md (the intro's findings at a glance) and
    book/_extra/claims.json (copied to the root of the built site)."""
    data = collect(root, profile, names)
    io.write_atomic({root / "book" / "claims.md": claims_page(data, names).encode(),
                     root / "book" / "findings.md": findings(data).encode(),
                     root / "book" / "_extra" / "claims.json": io.json_bytes(data, checksum=True)})


# ---------------------------------------------------------------------- build
_WARN = re.compile(r"^(?P<path>[^\s:][^:]*):(?:\d+:)?\s*(?:WARNING|ERROR|CRITICAL)\b.*$")


def sphinx_warnings(log: str) -> list[str]:
    """The warning lines of a Sphinx log (path first, as Sphinx prints them)."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)  # colour codes
    return [ln.strip() for ln in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", ln)]


def build_html(root: Path, echo=print) -> Path:
    """jupyter-book build with warnings as errors (-W --keep-going); on failure the
    error names every offending page."""
    exe = Path(sys.executable).with_name("jupyter-book")
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--path-output",
                           str(root), "-W", "--keep-going"], cwd=root, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    warnings = sphinx_warnings(log)
    if proc.returncode != 0 or warnings:
        pages = sorted({(m.group("path") if (m := _WARN.match(w)) else "?") for w in warnings})
        raise RuntimeError("jupyter-book build failed (warnings are errors); pages: " + ", ".join(pages) + "\n"
                           + ("\n".join(warnings) if warnings else log[-3000:]))
    index = root / "_build" / "html" / "index.html"
    echo(f"book: built in {time.perf_counter() - t0:.1f} s -> {index}")
    return index


def _shared(manifest: dict) -> str:
    """' (N notebooks at once)' where the book ran its notebooks side by side (their seconds are then
    shared-machine seconds), else ''."""
    jobs = manifest.get("jobs") or 1
    return f" ({jobs} notebooks at once)" if jobs > 1 else ""


def _calibration(manifest: dict) -> str:
    """' (calibration: N GFLOP/s, R× the reference machine)' from a manifest, or '' (older results)."""
    c = manifest.get("calibration") or {}
    if "matmul_gflops" not in c:
        return ""
    return f" (calibration {c['matmul_gflops']:.0f} GFLOP/s, {c['speed_vs_reference']:.2f}× the reference machine)"


def build_book(root: Path, profile: str = "default", force: bool = False, echo=print,
               build: bool = True, jobs: int | None = None) -> list[RunResult]:
    """Run the stale notebooks of the toc (one line each; `jobs` at once, by default the profile's),
    place them, write the verdicts, build the HTML."""
    root = Path(root).resolve()
    names = toc_notebooks(root)
    out = run_notebooks(root, names, profile, force=force, jobs=jobs or load_profile(root, profile)["jobs"],
                        echo=echo)
    place_notebooks(root, profile, names)
    write_verdicts(root, profile, names)
    if build:
        build_html(root, echo)
    return out


# ---------------------------------------------------------------------- diff
def load_verdicts(path: Path) -> dict[str, dict[str, dict]]:
    """{notebook: {claim id: record}} from a results file, a results folder or a claims.json;
    io.CorruptFile naming the file that cannot be read as one (or a path that is none)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
        if not files:
            raise io.CorruptFile(path, "a folder without results files")
        docs = [read_results(p, manifest=False) for p in files]
    elif path.is_file():
        doc = io.read_json(path, checksum=None)
        if isinstance(doc, dict) and "notebooks" in doc:
            if not isinstance(doc["notebooks"], dict):
                raise io.CorruptFile(path, "its notebooks entry is not a mapping")
            docs = [check_results(d, path, manifest=False) for d in doc["notebooks"].values()]
        else:
            docs = [check_results(doc, path, manifest=False)]
    else:
        raise io.CorruptFile(path, "no such file or folder")
    return {d["notebook"]: {c["id"]: c for c in d["claims"]} for d in docs}


def _verdict(c: dict) -> str:
    """A record's state (verdicts.verdict_of): supported, inconclusive, contradicted or untestable."""
    return verdict_of(c)


def _value(v):
    """A finite value as a float; anything else (NaN, stored as "nan", inf, "untestable",
    None) as its state, a string, so that such values compare by state."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v) if math.isfinite(v) else str(float(v))
    return str(v)


def _show(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else v


def diff(old: Path, new: Path, rel: float = 0.1, abs_tol: float = 1e-9) -> tuple[list[str], bool]:
    """Lines for every record whose verdict flipped, whose value moved by more than
    abs_tol + rel * |old value| (or changed state: a number <-> nan), or that exists on one
    side only; and whether a verdict flipped."""
    a, b = load_verdicts(old), load_verdicts(new)
    lines, flipped = [], False
    for nb in sorted(set(a) | set(b)):
        ca, cb = a.get(nb, {}), b.get(nb, {})
        for cid in list(ca) + [k for k in cb if k not in ca]:
            if cid not in cb:
                lines.append(f"{nb} {cid}: only in OLD")
                continue
            if cid not in ca:
                lines.append(f"{nb} {cid}: only in NEW ({_verdict(cb[cid])})")
                continue
            (va, vb), (x, y) = (_verdict(ca[cid]), _verdict(cb[cid])), (_value(ca[cid].get("value")),
                                                                         _value(cb[cid].get("value")))
            if va != vb:
                flipped = True
                lines.append(f"{nb} {cid}: verdict flipped {va} -> {vb} (value {_show(x)} -> {_show(y)})")
            elif (isinstance(x, float) and isinstance(y, float) and abs(y - x) > abs_tol + rel * abs(x)) or (
                    isinstance(x, str) or isinstance(y, str)) and x != y:
                lines.append(f"{nb} {cid}: value moved {_show(x)} -> {_show(y)} (verdict {vb} in both)")
    return lines, flipped

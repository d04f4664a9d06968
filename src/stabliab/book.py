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
from .records import RULES, format_interval, format_threshold
from .runner import RunResult, check_results, executed_path, read_results, results_path, run_notebook


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


def claims_page(data: dict, names: list[str]) -> str:
    """Markdown of every claim record in `data` (collect's result), one table per notebook."""
    profile = data["profile"]
    n_rec = sum(len(r["claims"]) for r in data["notebooks"].values())
    n_hold = sum(c["holds"] for r in data["notebooks"].values() for c in r["claims"])
    rules = "\n".join(f"| `{k}` | {v} |" for k, v in RULES.items())
    out = ["# Claims and verdicts\n",
           f"This page is written by `stabliab book --profile {profile}` from `results/{profile}/*.json`; "
           "do not edit it by hand. Every record, with its manifest (commit, device, seeds, versions), is in "
           '<a href="../claims.json">claims.json</a>, which `stabliab diff` compares with a rerun.\n',
           f"**{n_rec} records, {n_hold} hold.** A record holds (✓) when the whole 95% interval of its value lies on "
           "the claimed side of its threshold (or inside the stated band); otherwise it is shown as ✗. Each verdict "
           "is a statement about its own record at the 95% level: no correction for the number of records is made, "
           "so among many ✓ a few could be chance (see "
           "[how to read a verdict](intro.md#how-to-read-a-verdict)). A ✗ is a measurement, not a failure of the "
           "book: it says where the claim is not supported at this scale. The interval of each record follows its "
           "rule:\n",
           "| rule | interval |\n|---|---|\n" + rules + "\n"]
    for name in names:
        r = data["notebooks"].get(name)
        if r is None:
            out.append(f"## {name}\n\nNo results for profile `{profile}` yet.\n")
            continue
        m = r["manifest"]
        held = sum(c["holds"] for c in r["claims"])
        out.append(f"## [{name}](generated/{name}.ipynb)\n\n"
                   f"Profile `{r['profile']}`, {len(m['seeds'])} seeds, commit `{m['git_commit']}`, "
                   f"{m['seconds']:.0f} s on {m.get('device', '?')}; {held} of {len(r['claims'])} records hold.\n\n"
                   "| claim | verdict | measured, 95% interval, rule (n) | threshold |\n"
                   "|---|:-:|---|---|")
        for c in r["claims"]:
            n = f", n = {c['n']}" if c.get("n") else ""
            v = f"{c['value']:.3g}" if isinstance(c["value"], (int, float)) else "—"  # NaN is stored as a string
            out.append(f"| **{c['id']}**<br>{c['statement'].replace('|', '/')} | {'✓' if c['holds'] else '✗'} | "
                       f"{v} {c.get('unit', '')}<br>{format_interval(c)}<br>*{c.get('rule', '?')}{n}* | "
                       f"{format_threshold(c)} |")
        out.append("")
    return "\n".join(out) + "\n"


def write_verdicts(root: Path, profile: str, names: list[str]) -> None:
    """book/claims.md and book/_extra/claims.json (copied to the root of the built site)."""
    data = collect(root, profile, names)
    io.write_atomic({root / "book" / "claims.md": claims_page(data, names).encode(),
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


def build_book(root: Path, profile: str = "default", force: bool = False, echo=print,
               build: bool = True) -> list[RunResult]:
    """Run the stale notebooks of the toc (one line each), place them, write the
    verdicts, build the HTML."""
    root = Path(root).resolve()
    names = toc_notebooks(root)
    out = []
    for name in names:
        r = run_notebook(root, name, profile, force=force, echo=echo)
        echo(f"{name}: {'cached' if r.status == 'cached' else f'ran in {r.seconds:.1f} s'}")
        out.append(r)
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
    """A record's state: ✓ or ✗ from `holds`, "untestable" for None; any other value as written."""
    h = c.get("holds")
    return "✓" if h is True else "✗" if h is False else "untestable" if h is None else str(h)


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

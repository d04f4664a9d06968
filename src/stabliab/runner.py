"""Profiles, parameter validation, cache keys and papermill execution.

The parameters cell of each notebook is its interface. Every assignment there
may carry a constraint in its comment:

    lr = 0.1              # in (0, 10]: learning rate
    optimizer = "sgd"     # one of {sgd, adamw}
    lr_fractions = [0.5]  # in (0, 100): fractions of the stability edge

Types come from the default value (an int parameter takes ints, a float takes
ints or floats, a list takes a list whose items obey the constraint).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .claims import write_json_atomic

PROFILES = ("smoke", "default", "paper")


class ParameterError(ValueError):
    """A bad parameter: the message names it and what is allowed."""


class NotebookFailed(RuntimeError):
    def __init__(self, name: str, cell: str, error: str, saved: Path | None):
        self.name, self.cell, self.error, self.saved = name, cell, error, saved
        where = f" (executed copy: {saved})" if saved else ""
        super().__init__(f"notebook {name} failed in {cell}: {error}{where}")


# ---------------------------------------------------------------------- locations
def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder above `start` with notebooks/ and _toc.yml."""
    env = os.environ.get("STABLIAB_ROOT")
    if env:
        return Path(env).resolve()
    p = Path(start or Path.cwd()).resolve()
    for q in [p, *p.parents]:
        if (q / "notebooks").is_dir() and (q / "_toc.yml").is_file():
            return q
    raise FileNotFoundError("not inside a stabliab repository (no notebooks/ and _toc.yml above here)")


def notebook_path(root: Path, name: str) -> Path:
    path = root / "notebooks" / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in (root / "notebooks").glob("[0-9]*.py"))
        raise ParameterError(f"unknown notebook {name!r}; allowed: {', '.join(known)}")
    return path


# ---------------------------------------------------------------------- parameters
@dataclass
class ParamSpec:
    name: str
    default: object
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple | None = None
    help: str = ""

    @property
    def kind(self) -> type:
        return type(self.default)

    def allowed(self) -> str:
        what = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                list: "a list"}.get(self.kind, self.kind.__name__)
        if self.kind is list and self.default:
            what = f"a list of {ParamSpec('x', self.default[0]).allowed().split(' in ')[0]}s"
        if self.choices is not None:
            return "one of {" + ", ".join(map(str, self.choices)) + "}"
        if self.lo is not None:
            lb = "(" if self.lo_open else "["
            rb = ")" if self.hi_open else "]"
            return f"{what} in {lb}{self.lo:g}, {self.hi:g}{rb}"
        return what

    def _check_scalar(self, v, kind):
        if kind is bool:
            ok = isinstance(v, bool)
        elif kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        else:
            ok = isinstance(v, kind)
        if not ok:
            raise ParameterError(f"parameter {self.name!r}: got {v!r}; allowed: {self.allowed()}")
        if self.choices is not None and v not in self.choices:
            raise ParameterError(f"parameter {self.name!r}: got {v!r}; allowed: {self.allowed()}")
        if self.lo is not None:
            below = v <= self.lo if self.lo_open else v < self.lo
            above = v >= self.hi if self.hi_open else v > self.hi
            if below or above:
                raise ParameterError(f"parameter {self.name!r}: {v!r} is out of range; allowed: {self.allowed()}")
        return v

    def check(self, v):
        """The validated value (ints widened to float where the default is a float)."""
        if self.kind is list:
            if not isinstance(v, list) or not v:
                raise ParameterError(f"parameter {self.name!r}: got {v!r}; allowed: {self.allowed()} (non-empty)")
            kind = type(self.default[0]) if self.default else type(v[0])
            return [self._check_scalar(x, kind) for x in v]
        return self._check_scalar(v, self.kind)


_RANGE = re.compile(r"in\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")
_CHOICES = re.compile(r"one of\s*\{([^}]*)\}")
_CELL = re.compile(r"^# %%(.*)$")


def parameters_cell(source: str) -> str:
    """The code of the cell tagged "parameters" in a jupytext percent source."""
    lines = source.splitlines()
    for i, line in enumerate(lines):
        m = _CELL.match(line)
        if m and "parameters" in m.group(1):
            body = []
            for nxt in lines[i + 1 :]:
                if _CELL.match(nxt):
                    break
                body.append(nxt)
            return "\n".join(body)
    raise ParameterError("the notebook has no cell tagged 'parameters'")


def parse_parameters(source: str) -> dict[str, ParamSpec]:
    """name -> ParamSpec from the parameters cell (defaults and comment constraints)."""
    code = parameters_cell(source)
    lines = code.splitlines()
    specs: dict[str, ParamSpec] = {}
    for node in ast.parse(code).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        default = ast.literal_eval(node.value)
        line = lines[node.end_lineno - 1]
        comment = line[node.end_col_offset:].split("#", 1)[1].strip() if "#" in line[node.end_col_offset:] else ""
        spec = ParamSpec(name, default)
        if m := _CHOICES.search(comment):
            spec.choices = tuple(ast.literal_eval(x.strip()) if re.match(r"^-?[\d.]", x.strip())
                                 else x.strip().strip("'\"") for x in m.group(1).split(","))
        elif m := _RANGE.search(comment):
            spec.lo_open, spec.hi_open = m.group(1) == "(", m.group(4) == ")"
            spec.lo, spec.hi = float(m.group(2)), float(m.group(3))
        spec.help = comment.split(":", 1)[1].strip() if ":" in comment else ""
        specs[name] = spec
    return specs


class _Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false, so that `off`, `on`, `yes`, `no` stay
    strings (feedback mode `off` is a word, not False)."""


_Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def parse_value(text: str):
    """A command-line value: YAML scalars and lists (3, 0.1, true, [1, 2], off, abc)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def load_profile(root: Path, profile: str) -> dict:
    if profile not in PROFILES and not (root / "profiles" / f"{profile}.yaml").is_file():
        raise ParameterError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    with open(root / "profiles" / f"{profile}.yaml") as f:
        data = yaml.load(f, Loader=_Loader) or {}
    data.setdefault("notebooks", {})
    return data


def resolve_parameters(root: Path, name: str, profile: str, overrides: dict | None = None) -> dict:
    """Defaults of the parameters cell, then the profile, then `overrides`; each checked."""
    specs = parse_parameters(notebook_path(root, name).read_text())
    prof = load_profile(root, profile)["notebooks"].get(name, {}) or {}
    params = {k: s.default for k, s in specs.items()}
    for origin, values in [(f"profile {profile}", prof), ("-p", overrides or {})]:
        for k, v in values.items():
            if k not in specs:
                raise ParameterError(f"unknown parameter {k!r} ({origin}) for {name}; allowed: {', '.join(specs)}")
            params[k] = specs[k].check(v)
    return params


# ---------------------------------------------------------------------- cache
def _torch_version() -> str:
    try:
        from importlib.metadata import version
        return version("torch")
    except Exception:  # pragma: no cover
        return "none"


def cache_key(root: Path, name: str, params: dict) -> str:
    """sha256 of notebook source, every file of src/stabliab, parameters, Python and torch versions."""
    h = hashlib.sha256()
    h.update(notebook_path(root, name).read_bytes())
    pkg = root / "src" / "stabliab"
    for f in sorted(p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update(platform.python_version().encode())
    h.update(_torch_version().encode())
    return h.hexdigest()


def results_path(root: Path, profile: str, name: str) -> Path:
    return root / "results" / profile / f"{name}.json"


def generated_path(root: Path, name: str) -> Path:
    return root / "book" / "generated" / f"{name}.ipynb"


def is_cached(root: Path, name: str, profile: str, key: str) -> bool:
    res, nb = results_path(root, profile, name), generated_path(root, name)
    if not (res.is_file() and nb.is_file()):
        return False
    try:
        r_key = json.loads(res.read_text())["manifest"].get("cache_key")
        n_key = json.loads(nb.read_text())["metadata"].get("stabliab", {}).get("cache_key")
    except (json.JSONDecodeError, KeyError):
        return False
    return r_key == key == n_key


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


# ---------------------------------------------------------------------- execution
@dataclass
class RunResult:
    name: str
    status: str  # "ran" or "cached"
    seconds: float
    results: Path
    notebook: Path
    claims: list = field(default_factory=list)


def to_notebook(py_path: Path):
    """jupytext percent source -> nbformat notebook with kernel python3."""
    import jupytext
    nb = jupytext.read(py_path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    return nb


def run_notebook(root: Path, name: str, profile: str = "default", overrides: dict | None = None,
                 force: bool = False, cell_timeout: int | None = None) -> RunResult:
    """Execute one notebook with papermill; write executed notebook and results atomically."""
    import nbformat
    import papermill as pm

    root = Path(root).resolve()
    params = resolve_parameters(root, name, profile, overrides)  # raises before any work
    key = cache_key(root, name, params)
    res_path, nb_path = results_path(root, profile, name), generated_path(root, name)
    if not force and is_cached(root, name, profile, key):
        return RunResult(name, "cached", 0.0, res_path, nb_path)

    prof = load_profile(root, profile)
    timeout = cell_timeout or prof.get("cell_timeout")
    nb_path.parent.mkdir(parents=True, exist_ok=True)
    res_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"stabliab-{name}-"))
    src_nb, out_nb, tmp_res = work / f"{name}.in.ipynb", work / f"{name}.ipynb", work / "results.json"
    nbformat.write(to_notebook(notebook_path(root, name)), src_nb)
    env_keep = {k: os.environ.get(k) for k in ("STABLIAB_RESULTS_FILE", "STABLIAB_PROGRESS")}
    os.environ.update(STABLIAB_RESULTS_FILE=str(tmp_res), STABLIAB_PROGRESS="0")
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src_nb), str(out_nb), parameters=params, kernel_name="python3",
                            cwd=str(root), progress_bar=sys.stderr.isatty(), log_output=False,
                            execution_timeout=timeout)
    except pm.PapermillExecutionError as e:
        failed = res_path.with_name(f"{name}.failed.ipynb")
        shutil.copy(out_nb, failed)
        first = (e.source or "").strip().splitlines()
        cell = f"cell [{e.exec_count}]" + (f" `{first[0][:60]}`" if first else "")
        raise NotebookFailed(name, cell, f"{e.ename}: {e.evalue}", failed) from None
    except Exception as e:  # timeouts, dead kernels
        raise NotebookFailed(name, "execution", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                             None) from None
    finally:
        for k, v in env_keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - t0
    if not tmp_res.is_file():
        raise NotebookFailed(name, "its end", "the notebook did not save its Report (report.save())", None)
    result = json.loads(tmp_res.read_text())
    result["profile"] = profile
    result["parameters"] = params
    result["manifest"].update(git_commit=_git_commit(root), source_hash=key, cache_key=key,
                              started=started.isoformat(timespec="seconds"), seconds=round(seconds, 2))
    nb = nbformat.read(out_nb, as_version=4)
    nb.metadata["stabliab"] = {"cache_key": key, "profile": profile, "parameters": params}
    nbformat.write(nb, out_nb)
    # atomic replacement: write next to the target, then rename
    tmp_nb = nb_path.with_name(f".{name}.ipynb.tmp")
    shutil.copy(out_nb, tmp_nb)
    os.replace(tmp_nb, nb_path)
    write_json_atomic(res_path, result)
    shutil.rmtree(work, ignore_errors=True)
    return RunResult(name, "ran", seconds, res_path, nb_path, result["claims"])


# ---------------------------------------------------------------------- book
def toc_notebooks(root: Path) -> list[str]:
    """Names of the executed notebooks that _toc.yml lists (book/generated/NAME)."""
    text = (root / "_toc.yml").read_text()
    return re.findall(r"book/generated/([\w\-]+)", text)


def claims_page(root: Path, profile: str, names: list[str]) -> str:
    """Markdown of every claim record of `profile`, one table per notebook."""
    out = ["# Claims and verdicts\n",
           f"This page is written by `stabliab book --profile {profile}` from `results/{profile}/*.json`; "
           "do not edit it by hand. A claim **holds** (✓) when the whole 95% bootstrap interval of the "
           "measured value lies on the claimed side of the threshold; otherwise it is shown as ✗ "
           "(see [how to read a verdict](intro.md#how-to-read-a-verdict)). A ✗ is a measurement, not a "
           "failure of the book: it says where the claim is not supported at this scale.\n"]
    for name in names:
        p = results_path(root, profile, name)
        if not p.is_file():
            out.append(f"## {name}\n\nNo results for profile `{profile}` yet.\n")
            continue
        r = json.loads(p.read_text())
        m = r["manifest"]
        held = sum(c["holds"] for c in r["claims"])
        out.append(f"## [{name}](generated/{name}.ipynb)\n\n"
                   f"Profile `{r['profile']}`, {len(m['seeds'])} seeds, commit `{m['git_commit']}`, "
                   f"{m['seconds']:.0f} s on {m['device']}; {held} of {len(r['claims'])} records hold.\n\n"
                   "| claim | verdict | measured [95% interval] | threshold | statement |\n"
                   "|---|:-:|---|---|---|")
        for c in r["claims"]:
            lo, hi = c["interval"]
            out.append(f"| {c['id']} | {'✓' if c['holds'] else '✗'} | {c['value']:.3g} [{lo:.3g}, {hi:.3g}] "
                       f"{c.get('unit', '')} | {c['comparator']} {c['threshold']:.3g} | {c['statement']} |")
        out.append("")
    return "\n".join(out) + "\n"


def build_book(root: Path, profile: str = "default", force: bool = False, echo=print,
               build: bool = True) -> list[RunResult]:
    """Run the stale notebooks of the toc, write book/claims.md, build the HTML."""
    root = Path(root).resolve()
    names = toc_notebooks(root)
    out = []
    for name in names:
        r = run_notebook(root, name, profile, force=force)
        echo(f"{name}: {'cached' if r.status == 'cached' else f'ran in {r.seconds:.1f} s'}")
        out.append(r)
    (root / "book" / "claims.md").write_text(claims_page(root, profile, names))
    if build:
        t0 = time.perf_counter()
        exe = Path(sys.executable).with_name("jupyter-book")
        proc = subprocess.run([str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--path-output", str(root)],
                              cwd=root, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("jupyter-book build failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
        echo(f"book: built in {time.perf_counter() - t0:.1f} s -> {root / '_build' / 'html' / 'index.html'}")
    return out

"""The parameters cell of each notebook is its interface; profiles fill it at one scale.

Every assignment in the cell tagged "parameters" may carry a constraint in its comment:

    lr = 0.1              # in (0, 10]: learning rate
    optimizer = "sgd"     # one of {sgd, adamw}
    lr_fractions = [0.5]  # in (0, 100): fractions of the stability edge
    gap_threshold = 1e-4  # in (0, 1]: nats; settled below this [pre-registered]

A value marked [pre-registered] decides a verdict (a threshold, tolerance, window or effect
floor): it is fixed before the confirmatory run, the manifest records it, and a run that
overrides it is exploratory (records.Report.exploratory).

Types come from the default value (an int parameter takes ints, a float takes
finite ints or floats, never NaN or infinity; a list takes a list whose items obey the
constraint). A parameter named `device` (auto, cpu, cuda, cuda:N) must name a device this
machine has. A bad value raises ParameterError, whose one-line message names the
parameter and what is allowed (in a notebook too: the kernel shows that line, not a
traceback).

A profile (profiles/NAME.yaml) is read strictly: its keys are `cell_timeout` (seconds per
cell, a positive integer) and `notebooks` (notebook name -> parameter -> value); an unknown
key, notebook or parameter, a value of the wrong type and a YAML syntax error are each one
line naming the file and the line.
"""
from __future__ import annotations

import ast
import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from . import hardware, io

PROFILES = ("smoke", "default", "paper", "gpu")
PROFILE_KEYS = ("cell_timeout", "jobs", "threads", "first", "requires", "notebooks")
REQUIRES = ("cuda",)  # what a profile may require of the machine
_NAME = re.compile(r"^[A-Za-z0-9][\w-]*$")


class ParameterError(ValueError):
    """A bad parameter or profile: the message (one line) names it and what is allowed."""

    def _render_traceback_(self):
        """What IPython shows for it in a notebook: the one line, not a traceback."""
        return [f"{type(self).__name__}: {self}"]


# ---------------------------------------------------------------------- locations
def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder above `start` with notebooks/ and _toc.yml."""
    env = io.env(io.ROOT)
    if env:
        return Path(env).resolve()
    p = Path(start or Path.cwd()).resolve()
    for q in [p, *p.parents]:
        if (q / "notebooks").is_dir() and (q / "_toc.yml").is_file():
            return q
    raise FileNotFoundError("not inside a stabliab repository (no notebooks/ and _toc.yml above here)")


def notebook_names(root: Path) -> list[str]:
    return sorted(p.stem for p in (Path(root) / "notebooks").glob("[0-9]*.py"))


def notebook_path(root: Path, name: str) -> Path:
    """notebooks/NAME.py; a name that is not one of them (a path, a typo) is refused."""
    path = Path(root) / "notebooks" / f"{name}.py"
    if not (isinstance(name, str) and _NAME.match(name) and path.is_file()):
        raise ParameterError(f"unknown notebook {name!r}; allowed: {', '.join(notebook_names(root))}")
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
    decisive: bool = False  # marked [pre-registered]: it decides a verdict (records.Report.exploratory)

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
            if ok and not math.isfinite(v):
                raise ParameterError(f"parameter {self.name!r}: {v!r} is not a finite number; allowed: {self.allowed()}")
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
        """The validated value (ints widened to float where the default is a float).
        A parameter named `device` must name a device this machine has."""
        if self.name == "device":
            try:
                hardware.check(v)
            except ValueError as e:
                raise ParameterError(f"parameter 'device': {e}") from None
            return v
        if self.kind is list:
            if not isinstance(v, list) or not v:
                raise ParameterError(f"parameter {self.name!r}: got {v!r}; allowed: {self.allowed()} (non-empty)")
            kind = type(self.default[0]) if self.default else type(v[0])
            return [self._check_scalar(x, kind) for x in v]
        return self._check_scalar(v, self.kind)


PREREGISTERED = "[pre-registered]"  # the comment mark of a decisive value (a threshold, window or floor)
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
    return parse_cell(parameters_cell(source))


def parse_cell(code: str) -> dict[str, ParamSpec]:
    """name -> ParamSpec of every `name = literal  # constraint: help` line of one cell."""
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
        spec.decisive = PREREGISTERED in comment
        spec.help = comment.replace(PREREGISTERED, "").split(":", 1)[1].strip() if ":" in comment else ""
        specs[name] = spec
    return specs


def notebook_specs(name: str, history=None) -> dict[str, ParamSpec]:
    """The ParamSpecs of notebook `name` as its own kernel finds them: from notebooks/NAME.py
    under find_root(); outside a repository (plain papermill on an executed notebook in
    another folder) from its parameters cell among the cells the kernel ran (IPython's `In`):
    the last one made of literal assignments with constraint comments, papermill's injected
    cell ("# Parameters") left out."""
    try:
        return parse_parameters(notebook_path(find_root(), name).read_text())
    except (FileNotFoundError, ParameterError):
        pass
    for code in reversed(list(history or [])):
        if not isinstance(code, str) or code.lstrip().startswith("# Parameters"):
            continue
        try:
            tree = ast.parse(code)
            specs = parse_cell(code)
        except (SyntaxError, ValueError):
            continue
        if tree.body and len(specs) == len(tree.body) and any(
                sp.lo is not None or sp.choices is not None for sp in specs.values()):
            return specs
    raise ParameterError(f"cannot find the parameters cell of {name}: no notebooks/{name}.py under a stabliab "
                         "repository here (set STABLIAB_ROOT) and none among the cells this kernel ran")


class _Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false, so that `off`, `on`, `yes`, `no` stay
    strings (the feedback design `off` is a word, not False)."""


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


def _lines(node, path=()) -> dict[tuple, int]:
    """(key, key, ...) -> line number of every mapping key in a composed YAML document."""
    out = {}
    if isinstance(node, yaml.MappingNode) and len(path) < 3:  # profile, notebooks, one notebook
        for k, v in node.value:
            key = path + (k.value if isinstance(k, yaml.ScalarNode) else str(k.value),)
            out[key] = k.start_mark.line + 1
            out.update(_lines(v, key))
    return out


def _read_profile(root: Path, profile: str) -> tuple[dict, dict, str]:
    """(content, line of every key, the file as shown in messages), validated in shape:
    known top-level keys and notebooks, a positive integer cell_timeout, mappings where
    mappings belong. Parameter values are checked by resolve_parameters."""
    path = Path(root) / "profiles" / f"{profile}.yaml"
    if not (isinstance(profile, str) and _NAME.match(profile) and path.is_file()):
        known = sorted(q.stem for q in (Path(root) / "profiles").glob("*.yaml")) or list(PROFILES)
        raise ParameterError(f"unknown profile {profile!r}; allowed: {', '.join(known)}")
    shown = f"profiles/{profile}.yaml"
    try:
        text = path.read_text()
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f":{mark.line + 1}" if mark else ""
        raise ParameterError(f"{shown}{where}: YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ParameterError(f"{shown}: YAML error: {str(e).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ParameterError(f"{shown}: cannot be read ({e})") from None
    lines = _lines(node)

    def fail(keys: tuple, what: str):
        line = lines.get(keys, node.start_mark.line + 1 if node is not None else 1)
        raise ParameterError(f"{shown}:{line}: {what}")

    data = {} if data is None else data
    if not isinstance(data, dict):
        fail((), f"got {data!r:.60}; allowed: a mapping with the keys {', '.join(PROFILE_KEYS)}")
    for k in data:
        if k not in PROFILE_KEYS:
            fail((k,), f"unknown key {k!r}; allowed: {', '.join(PROFILE_KEYS)}")
    t = data.get("cell_timeout")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t <= 0):
        fail(("cell_timeout",), f"cell_timeout: got {t!r}; allowed: a positive integer (seconds per cell)")
    j = data.get("jobs")
    if j is not None and (isinstance(j, bool) or not isinstance(j, int) or j <= 0):
        fail(("jobs",), f"jobs: got {j!r}; allowed: a positive integer (notebooks `stabliab book` runs at once)")
    n = data.get("threads")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        fail(("threads",), f"threads: got {n!r}; allowed: a positive integer (torch threads of each notebook's kernel)")
    known = notebook_names(root)
    first = data.get("first")
    if first is not None and not (isinstance(first, list) and all(f in known for f in first)):
        fail(("first",), f"first: got {first!r:.60}; allowed: a list of notebooks ({', '.join(known)})")
    r = data.get("requires")
    if r is not None and r not in REQUIRES:
        fail(("requires",), f"requires: got {r!r}; allowed: {', '.join(REQUIRES)}")
    nbs = data.get("notebooks") or {}
    if not isinstance(nbs, dict):
        fail(("notebooks",), f"notebooks: got {nbs!r:.60}; allowed: a mapping notebook -> parameters")
    for name, values in nbs.items():
        if name not in known:
            fail(("notebooks", name), f"unknown notebook {name!r}; allowed: {', '.join(known)}")
        if values is not None and not isinstance(values, dict):
            fail(("notebooks", name), f"{name}: got {values!r:.60}; allowed: a mapping parameter -> value")
    data["notebooks"] = {k: v or {} for k, v in nbs.items()}
    return data, lines, shown


def load_profile(root: Path, profile: str) -> dict:
    """{"cell_timeout": seconds or None, "jobs": notebooks at once (1 unless set), "threads": torch threads of
    each kernel (None: torch's default, one per core), "first": notebooks a book of jobs > 1 starts first
    where it has no last results to order them by (the longest: [] unless set), "requires": None or "cuda",
    "notebooks": {name: {parameter: value}}}, validated (_read_profile)."""
    data = _read_profile(root, profile)[0]
    data.setdefault("cell_timeout", None)
    data.setdefault("jobs", 1)
    data.setdefault("threads", None)
    data.setdefault("first", [])
    data.setdefault("requires", None)
    return data


def require_device(root: Path, profile: str) -> None:
    """ParameterError (exit 2) when the profile requires a CUDA device and this machine has none,
    naming what it has (hardware.available: without importing torch on a CPU build of it)."""
    if load_profile(root, profile)["requires"] == "cuda" and "cuda" not in (have := hardware.available()):
        raise ParameterError(f"profile {profile!r} requires a CUDA device; this machine has: {have}")


def resolve_parameters(root: Path, name: str, profile: str, overrides: dict | None = None) -> dict:
    """Defaults of the parameters cell, then the profile, then `overrides`; each checked
    (a profile's value with its file and line)."""
    specs = parse_parameters(notebook_path(root, name).read_text())
    data, lines, shown = _read_profile(root, profile)
    params = {k: s.default for k, s in specs.items()}
    for origin, values in [("profile", data["notebooks"].get(name, {})), ("-p", overrides or {})]:
        for k, v in values.items():
            where = f"{shown}:{lines.get(('notebooks', name, k), '?')}: " if origin == "profile" else ""
            if k not in specs:
                raise ParameterError(f"{where}unknown parameter {k!r} ({origin}) for {name}; allowed: {', '.join(specs)}")
            try:
                params[k] = specs[k].check(v)
            except ParameterError as e:
                raise ParameterError(f"{where}{e}") from None
    return params


def check_profile(root: Path, profile: str, names: list[str]) -> dict[str, dict]:
    """name -> resolved parameters for `names` and every notebook the profile lists: all
    that `run` would refuse, refused without running anything."""
    data = load_profile(root, profile)
    return {n: resolve_parameters(root, n, profile) for n in dict.fromkeys([*names, *data["notebooks"]])}


def task_context(task: Callable, parameters: dict, **extra) -> dict:
    """The keyword-only arguments of `task`, taken by name from a notebook's parameters
    (Report.parameters) or from `extra` (values the notebook derives, such as the resolved
    device): parameter names are written once, in the parameters cell. A keyword that
    neither provides is an error naming it."""
    names = [p.name for p in inspect.signature(task).parameters.values() if p.kind is p.KEYWORD_ONLY]
    missing = [n for n in names if n not in extra and n not in parameters]
    if missing:
        raise TypeError(f"{task.__name__} needs {', '.join(missing)}: neither a notebook parameter nor given")
    return {n: extra[n] if n in extra else parameters[n] for n in names}

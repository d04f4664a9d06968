"""The parameters cell of each notebook is its interface; profiles fill it at one scale.

Every assignment in the cell tagged "parameters" may carry a constraint in its comment:

    lr = 0.1              # in (0, 10]: learning rate
    optimizer = "sgd"     # one of {sgd, adamw}
    lr_fractions = [0.5]  # in (0, 100): fractions of the stability edge

Types come from the default value (an int parameter takes ints, a float takes
ints or floats, a list takes a list whose items obey the constraint). A parameter
named `device` (auto, cpu, cuda, cuda:N) must name a device this machine has. A bad
value raises ParameterError, whose one-line message names the parameter and what
is allowed.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import io
from .device import resolve

PROFILES = ("smoke", "default", "paper")


class ParameterError(ValueError):
    """A bad parameter: the message names it and what is allowed."""


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
        """The validated value (ints widened to float where the default is a float).
        A parameter named `device` must name a device this machine has."""
        if self.name == "device":
            try:
                resolve(v)
            except ValueError as e:
                raise ParameterError(f"parameter 'device': {e}") from None
            return v
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

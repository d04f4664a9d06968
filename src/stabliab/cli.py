"""The `stabliab` command: run, book, check.

    stabliab run NAME [--profile smoke|default|paper] [-p NAME VALUE]... [--force]
    stabliab book [--profile P] [--force] [--no-build]
    stabliab check [--profile P]      validate every profile entry without running
"""
from __future__ import annotations

import argparse
import sys

from . import runner


def _overrides(pairs) -> dict:
    return {k: runner.parse_value(v) for k, v in (pairs or [])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="stabliab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="repository root (default: found above the current folder)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute one notebook (skipped when its cache key is unchanged)")
    r.add_argument("name", help="notebook name, e.g. 01_forward_kl_stationarity")
    r.add_argument("--profile", default="default")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="override one parameter")
    r.add_argument("--force", action="store_true", help="run even when cached")
    r.add_argument("--cell-timeout", type=int, help="seconds per cell (default: the profile's)")
    b = sub.add_parser("book", help="run stale notebooks, write book/claims.md, build _build/html")
    b.add_argument("--profile", default="default")
    b.add_argument("--force", action="store_true")
    b.add_argument("--no-build", action="store_true", help="run and write claims.md only")
    c = sub.add_parser("check", help="validate the parameters of every notebook in a profile")
    c.add_argument("--profile", default="default")
    a = ap.parse_args(argv)
    try:
        root = runner.find_root(a.root)
        if a.cmd == "run":
            res = runner.run_notebook(root, a.name, a.profile, _overrides(a.p), force=a.force,
                                      cell_timeout=a.cell_timeout)
            if res.status == "cached":
                print(f"{a.name}: cached (unchanged), skipped -> {res.results.relative_to(root)}")
            else:
                verdicts = ", ".join(f"{c['id']} {'✓' if c['holds'] else '✗'}" for c in res.claims)
                print(f"{a.name}: ran in {res.seconds:.1f} s [{verdicts}] -> {res.results.relative_to(root)}")
        elif a.cmd == "book":
            runner.build_book(root, a.profile, force=a.force, build=not a.no_build)
        elif a.cmd == "check":
            for name in runner.toc_notebooks(root):
                runner.resolve_parameters(root, name, a.profile)
                print(f"{name}: parameters of profile {a.profile} are valid")
    except runner.ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except runner.NotebookFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `stabliab` command: run, book, check, diff.

    stabliab run NAME [--profile smoke|default|paper] [-p NAME VALUE]... [--force] [--no-wait]
    stabliab book [--profile P] [--force] [--no-build]
    stabliab check [--profile P]      validate every profile entry without running
    stabliab diff OLD NEW [--rel R]   compare two results files or folders (or claims.json);
                                      exit 1 when a verdict flipped
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import book, params, runner


def _overrides(pairs) -> dict:
    return {k: params.parse_value(v) for k, v in (pairs or [])}


def _err(msg) -> None:
    print(f"error: {msg}", file=sys.stderr)


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
    r.add_argument("--no-wait", action="store_true", help="exit 3 instead of waiting when the notebook is running")
    b = sub.add_parser("book", help="run stale notebooks, place them, write the claims page, build _build/html")
    b.add_argument("--profile", default="default")
    b.add_argument("--force", action="store_true")
    b.add_argument("--no-build", action="store_true", help="run and write the claims page only")
    c = sub.add_parser("check", help="validate the parameters of every notebook in a profile")
    c.add_argument("--profile", default="default")
    d = sub.add_parser("diff", help="records whose verdict flipped or whose value moved (exit 1 on a flip)")
    d.add_argument("old", help="results file, results folder (results/PROFILE) or a built claims.json")
    d.add_argument("new")
    d.add_argument("--rel", type=float, default=0.1, help="relative move of a value that is reported (default 0.1)")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "diff":
            lines, flipped = book.diff(a.old, a.new, rel=a.rel)
            print("\n".join(lines) if lines else "no verdict flipped, no value moved beyond the tolerance")
            return 1 if flipped else 0
        root = params.find_root(a.root)
        if a.cmd == "run":
            res = runner.run_notebook(root, a.name, a.profile, _overrides(a.p), force=a.force,
                                      cell_timeout=a.cell_timeout, wait=not a.no_wait, echo=print)
            if res.status == "cached":
                print(f"{a.name}: cached (unchanged), skipped -> {res.results.relative_to(root)}")
            else:
                verdicts = ", ".join(f"{c['id']} {'✓' if c['holds'] else '✗'}" for c in res.claims)
                print(f"{a.name}: ran in {res.seconds:.1f} s [{verdicts}] -> {res.results.relative_to(root)}")
        elif a.cmd == "book":
            book.build_book(root, a.profile, force=a.force, build=not a.no_build)
        elif a.cmd == "check":
            for name in book.toc_notebooks(root):
                params.resolve_parameters(root, name, a.profile)
                print(f"{name}: parameters of profile {a.profile} are valid")
    except params.ParameterError as e:
        _err(e)
        return 2
    except runner.Busy as e:
        _err(e)
        return 3
    except (runner.NotebookFailed, RuntimeError, FileNotFoundError) as e:
        _err(e)
        return 1
    except KeyboardInterrupt:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the dead kernel's pending reply task
        _err("interrupted; the last good results and notebooks are untouched")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

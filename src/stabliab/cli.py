"""The `stabliab` command: run, book, check, diff.

    stabliab run NAME [--profile smoke|default|paper] [-p NAME VALUE]... [--force] [--no-wait]
    stabliab book [--profile P] [--force] [--no-build] [--jobs N]
    stabliab check [--profile P]      validate the profile and every notebook's parameters without running
    stabliab diff OLD NEW [--rel R]   compare two results files or folders (or claims.json)

Every failure ends in one line on stderr, `error: ...`, and an exit code:
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from . import book, io, params, runner, verdicts

EXIT_CODES = """exit codes:
  0    done (diff: no verdict flipped)
  1    diff: a verdict flipped; run, book: a notebook failed (its cell and error named) or the build failed
  2    a bad parameter, profile or command line (the parameter, or the profile's file and line, named)
  3    run --no-wait: another run of the same notebook and profile holds the lock
  4    a file that cannot be read as what it should be (diff's inputs, a corrupt results file), named
  5    a file-system fault: a read-only folder, a dangling symbolic link, a full disk, no permission
       (the path and the fault named; the last good results are untouched, no partial file is left)
  130  interrupted (Ctrl-C), 143 terminated (SIGTERM): the last good results are untouched
"""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the runner is, so that it cleans up as after Ctrl-C."""


def _terminate(signum, frame):
    raise _Terminated()


def _overrides(pairs) -> dict:
    return {k: params.parse_value(v) for k, v in (pairs or [])}


def _say(msg) -> None:
    print(msg, flush=True)  # seen at once through a pipe too (e.g. "waiting for another run")


def _err(msg) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="stabliab", description=__doc__, epilog=EXIT_CODES, formatter_class=fmt)
    ap.add_argument("--root", help="repository root (default: found above the current folder)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute one notebook (skipped when its cache key is unchanged)",
                       epilog=EXIT_CODES, formatter_class=fmt)
    r.add_argument("name", help="notebook name, e.g. 01_forward_kl_stationarity")
    r.add_argument("--profile", default="default")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="override one parameter")
    r.add_argument("--force", action="store_true", help="run even when cached (stale or corrupt sweep files are "
                                                        "recomputed in any case, valid ones reused)")
    r.add_argument("--cell-timeout", type=int, help="seconds per cell (default: the profile's)")
    r.add_argument("--no-wait", action="store_true", help="exit 3 instead of waiting when the notebook is running")
    b = sub.add_parser("book", help="run stale notebooks, place them, write the claims page, build _build/html",
                       epilog=EXIT_CODES, formatter_class=fmt)
    b.add_argument("--profile", default="default")
    b.add_argument("--force", action="store_true")
    b.add_argument("--no-build", action="store_true", help="run and write the claims page only")
    b.add_argument("--jobs", type=int, help="notebooks run at once (default: the profile's jobs, else 1)")
    c = sub.add_parser("check", help="validate a profile and the parameters of every notebook in it",
                       epilog=EXIT_CODES, formatter_class=fmt)
    c.add_argument("--profile", default="default")
    d = sub.add_parser("diff", help="records whose verdict flipped or whose value moved (exit 1 on a flip)",
                       description="Records whose verdict flipped, whose value moved beyond the tolerance (NaN and "
                                   "other non-numbers compare by state), or that exist on one side only.",
                       epilog=EXIT_CODES, formatter_class=fmt)
    d.add_argument("old", help="results file, results folder (results/PROFILE) or a built claims.json")
    d.add_argument("new")
    d.add_argument("--rel", type=float, default=0.1, help="relative move of a value that is reported (default 0.1)")
    return ap


def _command(a) -> int:
    if a.cmd == "diff":
        lines, flipped = book.diff(a.old, a.new, rel=a.rel)
        print("\n".join(lines) if lines else "no verdict flipped, no value moved beyond the tolerance")
        return 1 if flipped else 0
    root = params.find_root(a.root)
    if a.cmd == "run":
        if a.cell_timeout is not None and a.cell_timeout <= 0:
            raise params.ParameterError(f"--cell-timeout: got {a.cell_timeout}; allowed: a positive integer")
        res = runner.run_notebook(root, a.name, a.profile, _overrides(a.p), force=a.force,
                                  cell_timeout=a.cell_timeout, wait=not a.no_wait, echo=_say)
        if res.status == "cached":
            print(f"{a.name}: cached (unchanged), skipped -> {res.results.relative_to(root)}")
        else:
            said = ", ".join(f"{c['id']} {verdicts.SYMBOLS[verdicts.verdict_of(c)]}" for c in res.claims)
            print(f"{a.name}: ran in {res.seconds:.1f} s [{said}] -> {res.results.relative_to(root)}")
    elif a.cmd == "book":
        if a.jobs is not None and a.jobs <= 0:
            raise params.ParameterError(f"--jobs: got {a.jobs}; allowed: a positive integer")
        book.build_book(root, a.profile, force=a.force, build=not a.no_build, jobs=a.jobs)
    elif a.cmd == "check":
        for name in params.check_profile(root, a.profile, book.toc_notebooks(root)):
            print(f"{name}: parameters of profile {a.profile} are valid")
    return 0


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _command(a)
    except params.ParameterError as e:
        _err(e)
        return 2
    except runner.Busy as e:
        _err(e)
        return 3
    except io.CorruptFile as e:
        _err(f"cannot read {e}")
        return 4
    except runner.NotebookFailed as e:
        _err(e)
        return {"ParameterError": 2, "FileFault": 5}.get(e.ename, 1)
    except io.FileFault as e:
        _err(e)
        return 5
    except OSError as e:  # not inside a repository (1); a fault that did not pass through io (5)
        _err(f"{e.filename}: {e.strerror}" if e.filename else e)
        return 1 if isinstance(e, FileNotFoundError) and e.filename is None else 5
    except RuntimeError as e:  # a failed build, a sweep's failed configurations
        _err(e)
        return 1
    except KeyboardInterrupt as e:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the dead kernel's pending reply task
        _err(f"{'terminated' if isinstance(e, _Terminated) else 'interrupted'}; the last good results and "
             "notebooks are untouched")
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, before)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m jarvis_trio.bench``: answer the standard questions on this machine.

Options: ``--quick`` (shorter runs), ``--only NAME`` (modules whose name contains NAME;
repeatable), ``--list``, ``--json FILE`` (keep the results with the machine's description),
``--compare OLD.json`` (print new/old ratios), ``--plot FILE.png`` (matplotlib, the ``[plot]``
extra), ``--load FILE`` (use a results file instead of running: compare or plot old runs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from .plot import PlotUnavailable, plot_results, require_matplotlib
from .questions import standard
from .report import ResultsFileError, Run, compare, format_comparison, load_run, save_run
from .results import format_table
from .runner import QuestionModule, merge, run_modules

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m jarvis_trio.bench") -> argparse.ArgumentParser:
    """The argument parser (shared with the ``jarvis-trio bench`` subcommand)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Example:\n"
            f"  {prog} --quick --json before.json\n"
            f"  {prog} --quick --compare before.json --plot runs.png"
        ),
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark options to ``parser``."""
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 2 minutes)")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="module name filter"
    )
    parser.add_argument("--list", action="store_true", help="list the question modules and exit")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    parser.add_argument("--compare", type=Path, metavar="OLD.json", help="print new/old ratios")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the results")
    parser.add_argument(
        "--load", type=Path, metavar="FILE", help="use this results file instead of running"
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    extra: Sequence[QuestionModule] = (),
    prog: str = "python -m jarvis_trio.bench",
) -> int:
    """Run the benchmarks as the command line says; returns the exit status.

    ``extra`` question modules run with the standard ones (one of the same name replaces it).
    """
    args = build_parser(prog).parse_args(argv)
    return execute(args, extra=extra)


def execute(args: argparse.Namespace, *, extra: Sequence[QuestionModule] = ()) -> int:
    """Carry out parsed arguments (also the body of ``jarvis-trio bench``)."""
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    modules = merge(standard(), extra)
    if args.only:
        modules = [m for m in modules if any(f in m.name for f in args.only)]
    if args.list:
        for module in modules:
            out.print(f"{module.name}  ({module.origin})")
        return 0
    try:
        if args.plot is not None:
            require_matplotlib()  # before a long run, not after it
        old = load_run(args.compare) if args.compare is not None else None
        if args.load is not None:
            run = load_run(args.load)
        else:
            if not modules:
                err.print(f"no question module matches {args.only}")
                return 2
            run = run_modules(modules, quick=args.quick, console=err)
    except (PlotUnavailable, ResultsFileError) as exc:
        err.print(f"error: {exc}")
        return 2
    _print_run(out, run)
    if args.json is not None:
        save_run(run, args.json)
        out.print(f"results written to {args.json}")
    if old is not None:
        out.print()
        out.print(format_comparison(compare(old.results, run.results), old))
    if args.plot is not None:
        panels = plot_results(run.results, args.plot)
        out.print(f"plot written to {args.plot} ({panels} panels)")
    return 0


def _print_run(out: Console, run: Run) -> None:
    machine = run.machine
    out.print(
        f"machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"Python {machine.get('python')}, {machine.get('system')}; "
        f"load {machine.get('load_average')}"
    )
    out.print(f"mode: {run.mode}; {run.duration_s:.1f} s in all")
    out.print(format_table(run.results), markup=False)


if __name__ == "__main__":
    sys.exit(main())

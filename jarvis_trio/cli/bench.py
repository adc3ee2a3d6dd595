"""``jarvis-trio bench``: the installed benchmarks (the same as ``python -m jarvis_trio.bench``).

The options are the benchmark runner's own (argparse, :mod:`jarvis_trio.bench.cli`); this
command hands them over unchanged, ``--help`` included.
"""

from __future__ import annotations

import click

__all__ = ["bench"]


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> int:
    """Answer the standard benchmark questions on this machine (--help for the options).

    \b
    Example:
      jarvis-trio bench --quick --json before.json
      jarvis-trio bench --quick --compare before.json --plot runs.png
    """
    from ..bench.cli import main

    return main(list(args), prog="jarvis-trio bench")

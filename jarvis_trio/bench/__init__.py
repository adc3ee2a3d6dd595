"""Benchmarks users run: ``python -m jarvis_trio.bench`` (or ``jarvis-trio bench``).

The standard questions live in :mod:`jarvis_trio.bench.questions`, one module per concern;
each answers fixed questions with medians of several runs and says whether its target was met.
The runner shows progress while it works, keeps results as JSON with the machine's
description, compares two runs and draws them. A question module of your own is a module
named ``bench_*`` with ``run(quick: bool) -> list[Result]``.
"""

from .report import Comparison, Run, compare, load_run, save_run
from .results import Result, Series, median, percentile, step
from .runner import QuestionModule, discover, run_modules

__all__ = [
    "Comparison",
    "QuestionModule",
    "Result",
    "Run",
    "Series",
    "compare",
    "discover",
    "load_run",
    "median",
    "percentile",
    "run_modules",
    "save_run",
    "step",
]

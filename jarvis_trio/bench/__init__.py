"""Benchmarks users run: ``python -m jarvis_trio.bench`` (or ``jarvis-trio bench``).

The standard questions live in :mod:`jarvis_trio.bench.questions`, one module per concern;
each answers fixed questions with medians of several runs and says whether its target was met.
The runner shows progress while it works, keeps results as JSON with the machine's
description, compares two runs and draws them. A question module of your own is a module
with ``run(quick: bool) -> list[Result]``, passed to :func:`jarvis_trio.bench.cli.main` as a
:class:`QuestionModule`.
"""

from .report import Comparison, Run, compare, load_run, save_run
from .results import Result, Series, median, percentile, step
from .runner import QuestionModule, Questions, merge, run_modules

__all__ = [
    "Comparison",
    "QuestionModule",
    "Questions",
    "Result",
    "Run",
    "Series",
    "compare",
    "load_run",
    "median",
    "merge",
    "percentile",
    "run_modules",
    "save_run",
    "step",
]

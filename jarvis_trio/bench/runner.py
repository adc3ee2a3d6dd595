"""Run question modules with a live progress display and collect a :class:`Run`.

A question module answers fixed questions with ``run(quick: bool) -> list[Result]``; the
standard ones are listed by :func:`jarvis_trio.bench.questions.standard`, and a program may
add its own (``python -m benchmarks`` adds the repository's). Modules run one after the other
in this process, so that one module's load never disturbs another's figures.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from .report import Run
from .results import Result, machine_info, reset_step_sink, set_step_sink

__all__ = ["QuestionModule", "Questions", "merge", "run_modules"]

Questions = Callable[[bool], list[Result]]
"""A module's ``run``: quick or not, the answered questions."""


@dataclass(frozen=True, slots=True)
class QuestionModule:
    """A module of questions: its short name (``bench_core``), where it comes from (a dotted
    path, for listings) and how to load its ``run`` (imported only when it runs)."""

    name: str
    origin: str
    load: Callable[[], Questions]


def merge(*groups: Sequence[QuestionModule]) -> list[QuestionModule]:
    """Modules of every group, sorted by name; a later group's module of the same name
    replaces an earlier one's (so a checkout can override an installed module)."""
    found: dict[str, QuestionModule] = {}
    for group in groups:
        for module in group:
            found[module.name] = module
    return [found[name] for name in sorted(found)]


def _version() -> str:
    try:
        return version("jarvis_trio")
    except PackageNotFoundError:
        return "unknown"


def run_modules(modules: Sequence[QuestionModule], *, quick: bool, console: Console) -> Run:
    """Run ``modules`` in order, showing which one runs, what it is doing and for how long.

    On a terminal the display is live (a bar, the current step, elapsed time); elsewhere (a
    log file, CI) every step and every finished module is printed as a line, so progress is
    visible either way.
    """
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    results: list[Result] = []
    live = console.is_terminal
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[module]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[step]}"),
        console=console,
        disable=not live,
    ) as progress:
        task = progress.add_task("bench", total=len(modules), module="", step="")
        current = ""

        def on_step(text: str) -> None:
            progress.update(task, step=text)
            if not live:
                console.print(f"  {current}: {text}", highlight=False)

        token = set_step_sink(on_step)
        try:
            for module in modules:
                current = module.name
                progress.update(task, module=module.name, step="starting")
                if not live:
                    console.print(f"running {module.name} ...", highlight=False)
                m0 = time.perf_counter()
                answered = module.load()(quick)
                results.extend(answered)
                progress.advance(task)
                console.print(
                    f"[green]✓[/] {module.name}: {len(answered)} answers in "
                    f"{time.perf_counter() - m0:.1f} s",
                    highlight=False,
                )
        finally:
            reset_step_sink(token)
    return Run(
        results=tuple(results),
        machine=machine_info(),
        mode="quick" if quick else "full",
        started=started.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - t0,
        version=_version(),
    )

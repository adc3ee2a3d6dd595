"""Find the question modules, run them with a live progress display, collect a :class:`Run`.

A question module is any module named ``bench_*`` in a question package (the standard ones
are in :mod:`jarvis_trio.bench.questions`) with a ``run(quick: bool) -> list[Result]``.
Modules run one after the other in this process, so that one module's load never disturbs
another's figures.
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import cast

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

__all__ = ["STANDARD_PACKAGE", "QuestionModule", "discover", "run_modules"]

STANDARD_PACKAGE = "jarvis_trio.bench.questions"


@dataclass(frozen=True, slots=True)
class QuestionModule:
    """A module of questions: its short name (``bench_core``) and dotted import path."""

    name: str
    dotted: str

    def load(self) -> Callable[[bool], list[Result]]:
        module: ModuleType = importlib.import_module(self.dotted)
        return cast(Callable[[bool], list[Result]], module.run)


def discover(packages: Sequence[str] = (STANDARD_PACKAGE,)) -> list[QuestionModule]:
    """Every ``bench_*`` module of ``packages``, sorted by name; a later package's module of
    the same name replaces an earlier one's (so a checkout can override an installed one)."""
    found: dict[str, QuestionModule] = {}
    for package in packages:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("bench_"):
                found[info.name] = QuestionModule(info.name, f"{package}.{info.name}")
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

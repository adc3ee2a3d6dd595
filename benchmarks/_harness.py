"""Shared shape of benchmark results and the statistics every benchmark reports.

A benchmark module exposes ``run(quick: bool) -> list[Result]``. Figures are medians of
several runs; the machine is shared and noisy, so a module that compares two things measures
both in the same run and reports the ratio.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Result:
    """One answered question: the figure, its unit, the target and whether it was met."""

    question: str
    figure: float
    unit: str
    target: str
    ok: bool
    note: str = ""


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank, of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[rank])


def machine() -> str:
    """A one-line description of where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def format_table(results: Sequence[Result]) -> str:
    """Render results as a fixed-width table."""
    rows = [("question", "figure", "target", "ok", "note")]
    for r in results:
        figure = (
            f"{r.figure:,.3g} {r.unit}" if abs(r.figure) < 1000 else f"{r.figure:,.0f} {r.unit}"
        )
        rows.append((r.question, figure, r.target, "yes" if r.ok else "NO", r.note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + ("  " + row[4] if row[4] else ""))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

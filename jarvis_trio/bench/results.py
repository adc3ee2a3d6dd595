"""What a benchmark question answers, and the statistics every question reports.

A question module exposes ``run(quick: bool) -> list[Result]``. Figures are medians of
several runs; the machine may be shared and noisy, so a module that compares two things
measures both in the same run and reports the ratio. A module may call :func:`step` while it
works so that the runner's progress display says what it is doing.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Result",
    "Series",
    "format_table",
    "machine",
    "machine_info",
    "median",
    "percentile",
    "step",
]

#: Largest number of latency samples a result keeps (evenly thinned beyond it), so that a
#: JSON results file stays small however many requests a question timed.
MAX_SAMPLES = 2000


@dataclass(frozen=True, slots=True)
class Series:
    """A figure measured at several settings, e.g. throughput against concurrency."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    xlabel: str
    ylabel: str


@dataclass(frozen=True, slots=True)
class Result:
    """One answered question: the figure, its unit, the target and whether it was met.

    ``samples`` (optional) is a latency distribution in ``sample_unit``; ``series`` (optional)
    a curve. Both are kept in ``--json`` files and drawn by ``--plot``.
    """

    question: str
    figure: float
    unit: str
    target: str
    ok: bool
    note: str = ""
    samples: tuple[float, ...] = field(default=(), repr=False)
    sample_unit: str = ""
    series: Series | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict (the shape of one entry of a results file)."""
        out: dict[str, Any] = {
            "question": self.question,
            "figure": self.figure,
            "unit": self.unit,
            "target": self.target,
            "ok": self.ok,
            "note": self.note,
        }
        if self.samples:
            out["samples"] = list(thin(self.samples, MAX_SAMPLES))
            out["sample_unit"] = self.sample_unit
        if self.series is not None:
            out["series"] = {
                "x": list(self.series.x),
                "y": list(self.series.y),
                "xlabel": self.series.xlabel,
                "ylabel": self.series.ylabel,
            }
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """The inverse of :meth:`to_json`; a missing optional part is simply absent."""
        series = data.get("series")
        return cls(
            question=str(data["question"]),
            figure=float(data["figure"]),
            unit=str(data["unit"]),
            target=str(data.get("target", "")),
            ok=bool(data.get("ok", True)),
            note=str(data.get("note", "")),
            samples=tuple(float(v) for v in data.get("samples", ())),
            sample_unit=str(data.get("sample_unit", "")),
            series=None
            if series is None
            else Series(
                tuple(float(v) for v in series["x"]),
                tuple(float(v) for v in series["y"]),
                str(series.get("xlabel", "")),
                str(series.get("ylabel", "")),
            ),
        )


def thin(values: Sequence[float], limit: int) -> Sequence[float]:
    """At most ``limit`` values, keeping the distribution's shape (sorted, evenly spaced)."""
    if len(values) <= limit:
        return values
    ordered = sorted(values)
    last = len(ordered) - 1
    return [ordered[round(i * last / (limit - 1))] for i in range(limit)]


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank, of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[rank])


def _cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """Where the figures were measured, as kept in a results file."""
    try:
        load: list[float] | None = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.system(),
        "release": platform.release(),
        "arch": platform.machine(),
        "hostname": socket.gethostname(),
        "load_average": load,
    }


def machine() -> str:
    """A one-line description of where the figures were measured."""
    info = machine_info()
    return f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['system']}"


def format_figure(figure: float, unit: str) -> str:
    """``1,234 req/s`` or ``0.123 s``: three significant digits below 1000."""
    if abs(figure) < 1000:
        return f"{figure:,.3g} {unit}".rstrip()
    return f"{figure:,.0f} {unit}".rstrip()


def format_table(results: Sequence[Result]) -> str:
    """Render results as a fixed-width table."""
    rows = [("question", "figure", "target", "ok", "note")]
    for r in results:
        rows.append(
            (r.question, format_figure(r.figure, r.unit), r.target, "yes" if r.ok else "NO", r.note)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + ("  " + row[4] if row[4] else ""))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


StepSink = Callable[[str], None]
_step_sink: ContextVar[StepSink | None] = ContextVar("jarvis_trio_bench_step", default=None)


def step(text: str) -> None:
    """Tell the runner's progress display what the current question is doing now.

    Outside a runner (a module run on its own) it does nothing. Safe to call from any thread
    that inherited the runner's context; the display itself is thread-safe.
    """
    sink = _step_sink.get()
    if sink is not None:
        sink(text)


def set_step_sink(sink: StepSink | None) -> Token[StepSink | None]:
    """Install ``sink`` for :func:`step` in this context; returns a token for
    :func:`reset_step_sink`."""
    return _step_sink.set(sink)


def reset_step_sink(token: Token[StepSink | None]) -> None:
    """Restore the sink that was installed before :func:`set_step_sink` returned ``token``."""
    _step_sink.reset(token)

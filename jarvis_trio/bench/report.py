"""Results files (``--json``) and the comparison of two runs (``--compare``).

A results file is one JSON object: ``format`` (1), ``jarvis_trio`` (the package version),
``mode`` (``quick``/``full``), ``started`` (ISO-8601 UTC), ``duration_s``, ``machine``
(:func:`~jarvis_trio.bench.results.machine_info`) and ``results`` (one object per answered
question, :meth:`~jarvis_trio.bench.results.Result.to_json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import Result, format_figure

__all__ = ["Comparison", "Run", "compare", "format_comparison", "load_run", "save_run"]

FORMAT = 1


@dataclass(frozen=True, slots=True)
class Run:
    """One benchmark run: what was measured, where, when and how long it took."""

    results: tuple[Result, ...]
    machine: dict[str, Any]
    mode: str
    started: str
    duration_s: float
    version: str

    def to_json(self) -> dict[str, Any]:
        """The results file's content."""
        return {
            "format": FORMAT,
            "jarvis_trio": self.version,
            "mode": self.mode,
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "machine": self.machine,
            "results": [r.to_json() for r in self.results],
        }


class ResultsFileError(ValueError):
    """A results file that cannot be read; the message names the file and what is wrong."""


def save_run(run: Run, path: Path) -> None:
    """Write ``run`` to ``path`` (atomically: a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(run.to_json(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_run(path: Path) -> Run:
    """Read a results file written by :func:`save_run`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot read a results file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResultsFileError(f"{path}: not a jarvis_trio results file of format {FORMAT}")
    try:
        results = tuple(Result.from_json(r) for r in data["results"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsFileError(f"{path}: malformed result entry ({exc!r})") from exc
    return Run(
        results=results,
        machine=dict(data.get("machine") or {}),
        mode=str(data.get("mode", "")),
        started=str(data.get("started", "")),
        duration_s=float(data.get("duration_s", 0.0)),
        version=str(data.get("jarvis_trio", "")),
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """One question in both runs (``old`` or ``new`` is ``None`` when it is in one only)."""

    question: str
    old: Result | None
    new: Result | None

    @property
    def ratio(self) -> float | None:
        """new figure / old figure; ``None`` when either is missing or the old one is 0."""
        if self.old is None or self.new is None or self.old.figure == 0:
            return None
        return self.new.figure / self.old.figure


def compare(old: Sequence[Result], new: Sequence[Result]) -> list[Comparison]:
    """Pair results by question, in the new run's order, then questions only the old had."""
    olds = {r.question: r for r in old}
    news = {r.question: r for r in new}
    out = [Comparison(q, olds.get(q), r) for q, r in news.items()]
    out.extend(Comparison(q, r, None) for q, r in olds.items() if q not in news)
    return out


def format_comparison(rows: Sequence[Comparison], old_run: Run | None = None) -> str:
    """A fixed-width table: question, old figure, new figure, new/old."""
    table = [("question", "old", "new", "new/old")]
    for row in rows:
        old = format_figure(row.old.figure, row.old.unit) if row.old else "—"
        new = format_figure(row.new.figure, row.new.unit) if row.new else "—"
        ratio = row.ratio
        if ratio is None:
            shown = "only new" if row.old is None else "only old" if row.new is None else "n/a"
        elif math.isfinite(ratio):
            shown = f"{ratio:.3g}x"
        else:
            shown = "n/a"
        table.append((row.question, old, new, shown))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = ["  ".join(line[i].ljust(widths[i]) for i in range(4)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if old_run is not None:
        lines.insert(0, f"old run: {old_run.started}, {old_run.mode}, {old_run.machine.get('cpu')}")
    return "\n".join(lines)

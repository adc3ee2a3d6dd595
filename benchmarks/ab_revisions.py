"""Two revisions measured alternately on one machine: is the newer one worse anywhere?

``python -m benchmarks.ab_revisions run BASE HEAD --out DIR [--reps 3] [--quick] [--only NAME]``
checks both revisions out as detached worktrees under ``DIR``, runs ``python -m benchmarks``
in each (with ``PYTHONPATH`` set to that checkout, so each side imports its own code, and the
same interpreter) alternately -- base, head, base, head, ... -- writes every results file to
``DIR`` and prints, per question, the median figure of each side and the ratio head/base
oriented so that a ratio above 1 is better. ``python -m benchmarks.ab_revisions table --base
FILES --head FILES`` prints the same table from results files already written.

Why alternate instead of running one side then the other: on a shared machine the load
drifts over minutes, and a figure measured in a quiet quarter of an hour against one measured
in a busy one says more about the machine than about the code. Alternating spreads the drift
over both sides; the median of several runs per side drops the odd disturbed run.

Which way is better is read from the question's own target (``>= 50,000`` wants a higher
figure, ``<= 60 us`` a lower one); a question without a directional target falls back on its
unit (rates higher, times and memory lower) and is otherwise shown without a ratio.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jarvis_trio.bench.report import load_run
from jarvis_trio.bench.results import Result, format_figure

__all__ = [
    "HIGHER",
    "LOWER",
    "Row",
    "format_rows",
    "orientation",
    "oriented_ratio",
    "rows",
]

HIGHER = 1
LOWER = -1
#: Ratios below this are flagged: the issue's "none worse than 0.9x".
FLAG_BELOW = 0.9

_TIME_UNITS = frozenset({"ns", "µs", "us", "ms", "s"})
_MEMORY_UNITS = frozenset({"B", "KB", "MB", "MiB", "GB", "GiB"})


def orientation(target: str, unit: str) -> int:
    """:data:`HIGHER` or :data:`LOWER` when one direction is better, else 0.

    The target decides first (it is the question's own statement of what "good" is); a
    target of ``0`` (crashes, losses) wants fewer. Without one, rates want more and times,
    memory and timer slots want less.
    """
    t = target.strip()
    if t.startswith(("≥", ">=")):
        return HIGHER
    if t.startswith(("≤", "<=")):
        return LOWER
    if t.split(",")[0].strip() == "0":
        return LOWER
    u = unit.strip()
    if u.endswith("/s"):
        return HIGHER
    if u in _TIME_UNITS or u in _MEMORY_UNITS or u == "slots":
        return LOWER
    return 0


def oriented_ratio(base: float, head: float, direction: int) -> float | None:
    """head/base when higher is better, base/head when lower is: above 1 means head is better.

    Two zeros are equal (1.0); a zero base against a worse non-zero head is 0.0 (flagged);
    ``None`` when the question has no direction, a figure is not finite or one is negative
    (a difference such as a cost per message that came out below zero: no ratio says more
    than the two figures).
    """
    if direction == 0 or not (math.isfinite(base) and math.isfinite(head)):
        return None
    if base < 0 or head < 0:
        return None
    better, worse = (head, base) if direction == HIGHER else (base, head)
    if worse == 0:
        return 1.0 if better == 0 else math.inf
    return better / worse


@dataclass(frozen=True, slots=True)
class Row:
    """One question across both sides: the medians, how many runs each, the oriented ratio."""

    question: str
    unit: str
    base: float | None
    head: float | None
    base_runs: int
    head_runs: int
    ratio: float | None

    @property
    def flagged(self) -> bool:
        """True when head is worse than :data:`FLAG_BELOW` times base."""
        return self.ratio is not None and self.ratio < FLAG_BELOW


def _by_question(runs: Iterable[Sequence[Result]]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for run in runs:
        for result in run:
            out.setdefault(result.question, []).append(result)
    return out


def _median(results: Sequence[Result]) -> float | None:
    finite = [r.figure for r in results if math.isfinite(r.figure)]
    return statistics.median(finite) if finite else None


def rows(base: Iterable[Sequence[Result]], head: Iterable[Sequence[Result]]) -> list[Row]:
    """Pair the questions of both sides (head's order, then base-only ones), median per side.

    A question may appear in any number of runs per side (results files of several question
    groups are simply pooled); its median is over the runs that answered it.
    """
    b, h = _by_question(base), _by_question(head)
    out: list[Row] = []
    for question in [*h, *(q for q in b if q not in h)]:
        bs, hs = b.get(question, []), h.get(question, [])
        first = (hs or bs)[0]
        bm, hm = _median(bs), _median(hs)
        direction = orientation(first.target, first.unit)
        ratio = None if bm is None or hm is None else oriented_ratio(bm, hm, direction)
        out.append(Row(question, first.unit, bm, hm, len(bs), len(hs), ratio))
    return out


def format_rows(table: Sequence[Row]) -> str:
    """A fixed-width table; ``<< 0.9`` marks a flagged ratio, ``only base/head`` a new or gone
    question, ``-`` a question without a direction."""
    lines = [("question", "base median", "head median", "head vs base", "runs b/h")]
    for row in table:
        base = "—" if row.base is None else format_figure(row.base, row.unit)
        head = "—" if row.head is None else format_figure(row.head, row.unit)
        if row.base_runs == 0 or row.head_runs == 0:
            shown = "only head" if row.base_runs == 0 else "only base"
        elif row.ratio is None:
            shown = "-"
        else:
            shown = f"{row.ratio:.3g}x" + ("  << 0.9" if row.flagged else "")
        lines.append((row.question, base, head, shown, f"{row.base_runs}/{row.head_runs}"))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    text = ["  ".join(line[i].ljust(widths[i]) for i in range(5)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def _load(paths: Sequence[str]) -> list[tuple[Result, ...]]:
    return [load_run(Path(p)).results for p in paths]


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    return done.stdout.decode().strip()


def _run(args: argparse.Namespace) -> int:
    repo = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sides = {"base": args.base, "head": args.head}
    trees = {side: out / side for side in sides}
    for side, rev in sides.items():
        commit = _git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
        _git(repo, "worktree", "add", "--detach", str(trees[side]), commit)
        print(f"{side}: {rev} = {commit}", flush=True)
    files: dict[str, list[str]] = {"base": [], "head": []}
    command = [sys.executable, "-m", "benchmarks", *(["--quick"] if args.quick else [])]
    for name in args.only:
        command += ["--only", name]
    try:
        for i in range(1, args.reps + 1):
            for side in sides:
                path = out / f"{side}_{i}.json"
                load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                env = {**os.environ, "PYTHONPATH": str(trees[side])}
                started = time.monotonic()
                with (out / f"{side}_{i}.log").open("w") as log:
                    rc = subprocess.call(
                        ["nice", "-n", str(args.nice), *command, "--json", str(path)],
                        cwd=trees[side],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                took = time.monotonic() - started
                print(f"{side} run {i}: rc={rc}, {took:.0f} s, load before {load}", flush=True)
                if path.exists():
                    files[side].append(str(path))
    finally:
        if not args.keep:
            for tree in trees.values():
                _git(repo, "worktree", "remove", "--force", str(tree))
                shutil.rmtree(tree, ignore_errors=True)
    print(format_rows(rows(_load(files["base"]), _load(files["head"]))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line; ``run`` measures, ``table`` only reads results files."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab_revisions")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="check out both revisions and measure them alternately")
    run.add_argument("base")
    run.add_argument("head")
    run.add_argument("--out", required=True, help="worktrees, results files and logs go here")
    run.add_argument("--reps", type=int, default=3, help="runs per side (default 3)")
    run.add_argument("--quick", action="store_true")
    run.add_argument("--only", action="append", default=[], metavar="NAME")
    run.add_argument("--nice", type=int, default=10)
    run.add_argument("--keep", action="store_true", help="leave the worktrees in place")
    table = sub.add_parser("table", help="the ratio table of results files already written")
    table.add_argument("--base", nargs="+", required=True, metavar="FILE")
    table.add_argument("--head", nargs="+", required=True, metavar="FILE")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        return _run(args)
    print(format_rows(rows(_load(args.base), _load(args.head))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

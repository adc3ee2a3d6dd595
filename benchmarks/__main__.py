"""``python -m benchmarks``: the installed benchmarks plus the repository's own questions.

Same options as ``python -m jarvis_trio.bench`` (``--quick``, ``--only NAME``, ``--json``,
``--compare``, ``--plot``, ``--list``); every ``bench_*.py`` module in this folder is a
question module like the standard ones in ``jarvis_trio/bench/questions/`` (one of the same
name replaces the standard one).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from jarvis_trio.bench.cli import main
from jarvis_trio.bench.runner import QuestionModule, Questions


def _question(name: str) -> QuestionModule:
    dotted = f"benchmarks.{name}"

    def load() -> Questions:
        run: Questions = importlib.import_module(dotted).run
        return run

    return QuestionModule(name, dotted, load)


def local_questions() -> list[QuestionModule]:
    """The ``bench_*`` modules of this folder, imported only when they run."""
    folder = Path(__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_")]
    return [_question(name) for name in names]


if __name__ == "__main__":
    sys.exit(main(extra=local_questions(), prog="python -m benchmarks"))

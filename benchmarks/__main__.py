"""``python -m benchmarks``: the installed benchmarks plus the repository's own questions.

Same options as ``python -m jarvis_trio.bench`` (``--quick``, ``--only NAME``, ``--json``,
``--compare``, ``--plot``, ``--list``); a ``bench_*.py`` module in this folder is a question
module like the standard ones in ``jarvis_trio/bench/questions/``.
"""

from __future__ import annotations

import sys

from jarvis_trio.bench.cli import main
from jarvis_trio.bench.runner import STANDARD_PACKAGE

if __name__ == "__main__":
    sys.exit(main(packages=(STANDARD_PACKAGE, "benchmarks"), prog="python -m benchmarks"))

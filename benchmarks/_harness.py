"""The result shape and statistics of :mod:`jarvis_trio.bench`, under their historical name.

Question modules in this folder (``bench_*.py``) are the repository's own: they need a
checkout (the examples, say). ``python -m benchmarks`` runs the installed standard questions
of :mod:`jarvis_trio.bench.questions` and these together.
"""

from jarvis_trio.bench.results import (
    Result,
    Series,
    format_table,
    machine,
    median,
    percentile,
    step,
)

__all__ = ["Result", "Series", "format_table", "machine", "median", "percentile", "step"]

"""Run every benchmark module and print one table.

``python -m benchmarks`` runs the full measurements; ``--quick`` a shorter version of each;
``--only NAME`` (repeatable) restricts to modules whose name contains NAME.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import time
from pathlib import Path

from benchmarks._harness import Result, format_table, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke check")
    parser.add_argument("--only", action="append", default=[], help="module name filter")
    args = parser.parse_args()
    folder = Path(__file__).parent
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_")
    )
    if args.only:
        names = [n for n in names if any(f in n for f in args.only)]
    results: list[Result] = []
    started = time.perf_counter()
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running {name} ...", flush=True)
        results.extend(module.run(args.quick))
    print()
    print(f"machine: {machine()}")
    print(
        f"mode: {'quick' if args.quick else 'full'}; {time.perf_counter() - started:.1f} s in all"
    )
    print(format_table(results))


if __name__ == "__main__":
    main()

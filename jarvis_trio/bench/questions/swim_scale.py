"""Scale run of the SWIM simulator in its own process, so that peak memory is its own.

``python -m jarvis_trio.bench.questions.swim_scale N PERIODS`` prints one JSON line: wall
seconds (building the cluster included), peak RSS in MiB, datagrams delivered, and whether
the view converged.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from jarvis_trio.swim.sim import Simulator


def peak_mib() -> float:
    """Peak resident memory of this process, in MiB.

    ``VmHWM`` belongs to the process's own address space; ``ru_maxrss`` is not used when
    ``/proc`` is available because Linux carries it over from the parent across ``exec``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    n, periods = int(sys.argv[1]), int(sys.argv[2])
    started = time.perf_counter()
    sim = Simulator(n, seed=1, record_trace=False)
    built = time.perf_counter()
    sim.run_until(float(periods))
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": done - started,
                "build_seconds": built - started,
                "peak_mib": peak_mib(),
                "delivered": sim.delivered,
                "converged": sim.converged(),
            }
        )
    )


if __name__ == "__main__":
    main()

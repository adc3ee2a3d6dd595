"""``--plot FILE.png``: latency distributions and throughput against concurrency.

matplotlib is an optional extra (``pip install 'jarvis_trio[plot]'``); without it the runner
says how to get it instead of failing after a long run (it checks before running).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .results import Result

__all__ = ["PlotUnavailable", "plot_results", "require_matplotlib"]


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlotUnavailable` naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'jarvis_trio[plot]'") from None


def plot_results(results: Sequence[Result], path: Path) -> int:
    """Draw every latency distribution (as a CDF) and every series into one PNG.

    Returns how many panels were drawn (0 draws a single panel saying there was nothing).
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window or need a display
    import matplotlib.pyplot as plt

    latencies = [r for r in results if r.samples]
    curves = [r for r in results if r.series is not None]
    panels = (1 if latencies else 0) + len(curves)
    fig, axes = plt.subplots(max(1, panels), 1, figsize=(9, 3.6 * max(1, panels)), squeeze=False)
    index = 0
    if latencies:
        ax = axes[index][0]
        index += 1
        for r in latencies:
            ordered = sorted(r.samples)
            last = max(1, len(ordered) - 1)
            ax.plot(ordered, [i / last for i in range(len(ordered))], label=r.question)
        ax.set_xscale("log")
        ax.set_xlabel(f"latency ({latencies[0].sample_unit})")
        ax.set_ylabel("fraction of requests")
        ax.set_title("latency distributions (CDF)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    for r in curves:
        assert r.series is not None
        ax = axes[index][0]
        index += 1
        ax.plot(r.series.x, r.series.y, marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(r.series.xlabel)
        ax.set_ylabel(r.series.ylabel)
        ax.set_title(r.question)
        ax.grid(True, which="both", alpha=0.3)
    if panels == 0:
        axes[0][0].text(0.5, 0.5, "no distribution or series in these results", ha="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return panels

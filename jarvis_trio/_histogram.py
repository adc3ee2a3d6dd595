"""A histogram of plain numbers, cheap to feed on a hot path and read at scrape time.

Feeding it is one list append: samples are folded into the bucket counts in batches of
:data:`FOLD_EVERY` (sorting a batch and bisecting it once per bound costs less per sample
than a bisect per sample), and whenever someone reads it. So the memory a histogram holds is
bounded by the batch, and what ``/stats`` and ``/metrics`` read is always complete.

Buckets are *upper-inclusive*, Prometheus' convention: a value lands in the first bucket whose
bound is at least the value, or in the last (``+Inf``) one. A negative value -- a wall clock
stepped back between two stamps -- counts as zero.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

__all__ = ["FOLD_EVERY", "SECONDS", "Histogram"]

FOLD_EVERY = 1024  # samples held before they are folded into the counts
SECONDS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Upper bounds (seconds) of the runtime's duration histograms, from a loopback round trip
to a slow handler; one more bucket is ``+Inf``."""


class Histogram:
    """Counts of observed values per bucket, their number and their sum."""

    __slots__ = ("_count", "_counts", "_sum", "bounds", "pending")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bounds must be distinct and increasing, got {bounds!r}")
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._count = 0
        self._sum = 0.0
        self.pending: list[float] = []
        """Values observed and not folded yet. A hot path may append to it directly (one C
        call instead of :meth:`observe`) provided it calls :meth:`fold` once it holds
        :data:`FOLD_EVERY` values."""

    def observe(self, value: float) -> None:
        """Count one value (seconds, for the runtime's histograms)."""
        pending = self.pending
        pending.append(value)
        if len(pending) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Move the values observed since the last fold into the counts."""
        pending = self.pending
        if not pending:
            return
        pending.sort()
        counts = self._counts
        below = 0
        for index, bound in enumerate(self.bounds):
            upto = bisect_right(pending, bound, below)
            counts[index] += upto - below
            below = upto
        counts[-1] += len(pending) - below
        total = sum(pending)
        if pending[0] < 0.0:
            total -= sum(value for value in pending if value < 0.0)
        self._count += len(pending)
        self._sum += total
        pending.clear()

    @property
    def count(self) -> int:
        """How many values were observed."""
        return self._count + len(self.pending)

    @property
    def sum(self) -> float:
        """The sum of the observed values (negative ones as zero)."""
        self.fold()
        return self._sum

    @property
    def buckets(self) -> list[int]:
        """The count of each bucket (not cumulative), the ``+Inf`` one last."""
        self.fold()
        return list(self._counts)

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``bounds``, non-cumulative ``buckets`` (``+Inf`` last), ``count``,
        ``sum``."""
        self.fold()
        return {
            "bounds": list(self.bounds),
            "buckets": list(self._counts),
            "count": self._count,
            "sum": self._sum,
        }

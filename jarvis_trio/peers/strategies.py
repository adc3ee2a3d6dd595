"""Selection strategies of ``discover()``: the per-client state behind round robin and
least-recently-used ordering.

State belongs to one PeerClient (the documented scope: "within the calling agent's
process"); both tables are bounded so that long-lived agents facing churning peers do not
grow without limit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["STRATEGIES", "SelectionState"]

STRATEGIES = ("first", "random", "round_robin", "least_recent")
_MAX_CURSORS = 256
_MAX_USAGE = 4096

T = TypeVar("T")


class SelectionState:
    """Round-robin cursors (one per filter) and last-use times (monotonic clock)."""

    __slots__ = ("_clock", "_cursors", "_rng", "_seq", "_usage")

    def __init__(self, rng: random.Random, clock: Callable[[], float] = time.monotonic) -> None:
        self._rng = rng
        self._clock = clock
        self._cursors: dict[object, int] = {}
        self._usage: dict[str, tuple[float, int]] = {}
        self._seq = 0

    def order(
        self, items: Sequence[T], strategy: str, key: object, ident: Callable[[T], str]
    ) -> list[T]:
        """``items`` in the order ``strategy`` asks for; ``key`` names the filter."""
        if strategy == "first":
            return list(items)
        if strategy == "random":
            shuffled = list(items)
            self._rng.shuffle(shuffled)
            return shuffled
        if strategy == "round_robin":
            if not items:
                return []
            if key not in self._cursors and len(self._cursors) >= _MAX_CURSORS:
                self._cursors.pop(next(iter(self._cursors)))
            cursor = self._cursors.get(key, 0) % len(items)
            self._cursors[key] = cursor + 1
            return [*items[cursor:], *items[:cursor]]
        if strategy == "least_recent":
            never = (float("-inf"), 0)
            return sorted(items, key=lambda item: self._usage.get(ident(item), never))
        raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")

    def record(self, peer_id: str) -> None:
        """Mark ``peer_id`` as used now (feeds ``least_recent``)."""
        if peer_id not in self._usage and len(self._usage) >= _MAX_USAGE:
            oldest = min(self._usage, key=self._usage.__getitem__)
            del self._usage[oldest]
        self._seq += 1
        self._usage[peer_id] = (self._clock(), self._seq)

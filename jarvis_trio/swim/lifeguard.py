"""Lifeguard (Dadgar et al., 2018): local health and dynamic suspicion timeouts.

A node that is itself slow (CPU starved, paused, losing packets) should not accuse others at
full speed. Lifeguard measures *local health* as a small integer score and stretches the
node's own probe interval and probe timeout by ``score + 1``. The score rises when the node
misses evidence it should have seen (an ack from a probe, a nack from a ping-req helper) or
has to refute a suspicion about itself, and falls with every successful probe.

Suspicion timeouts start long and shrink as other members independently confirm the
suspicion: with ``C`` confirmations out of ``K`` expected, the timeout is
``max - (max - min) · log(C + 1) / log(K + 1)``, never below ``min``. ``min`` is
``suspicion_mult · max(1, log10 n) · period`` and ``max`` is ``suspicion_max_mult · min``.
"""

from __future__ import annotations

from math import log, log10

__all__ = ["Health", "expected_confirmations", "suspicion_bounds", "suspicion_timeout"]


class Health:
    """The local health multiplier: a score clamped to ``0..max_score`` (8 by default)."""

    __slots__ = ("max_score", "score")

    def __init__(self, max_score: int = 8) -> None:
        self.max_score = max_score
        self.score = 0

    def apply(self, delta: int) -> None:
        """Move the score by ``delta``, clamped."""
        self.score = min(self.max_score, max(0, self.score + delta))

    def scale(self, base: float) -> float:
        """``base`` stretched by the current health: ``base · (score + 1)``."""
        return base * (self.score + 1)


def suspicion_bounds(mult: float, max_mult: float, n: int, period: float) -> tuple[float, float]:
    """``(min, max)`` suspicion timeouts for a view of ``n`` members."""
    low = mult * max(1.0, log10(max(n, 1))) * period
    return low, low * max_mult


def expected_confirmations(mult: int, n: int) -> int:
    """How many independent confirmations bring a suspicion down to its minimum timeout.

    ``mult - 2``, or 0 when the cluster is too small to provide that many other accusers.
    """
    k = mult - 2
    return 0 if n - 2 < k else max(0, k)


def suspicion_timeout(low: float, high: float, confirmations: int, expected: int) -> float:
    """Timeout of a suspicion after ``confirmations`` independent confirmations."""
    if expected <= 0:
        return low
    frac = log(confirmations + 1) / log(expected + 1)
    return max(low, high - (high - low) * frac)

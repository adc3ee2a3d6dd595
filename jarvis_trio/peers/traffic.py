"""Per-role message accounting: requests sent / answered / failed / timed out with a latency
histogram, notifications and broadcasts — what ``/stats`` and ``/metrics`` report.

Labels are *roles*, never agent ids or message ids, so what an operator scrapes stays small
however many agents and messages pass: at most :data:`MAX_ROLES` roles get their own
entry, later ones share :data:`OTHER_ROLE`.

The counting sits on the request hot path, so it is a few attribute increments and one
``bisect`` on a short tuple, and it reads no clock of its own: a same-node request is timed
from the wall-clock stamps its request and its reply carry anyway (the reply is stamped when
the handler answers), a cross-node one from its pending entry's deadline
(``deadline - timeout``) to the moment the caller wakes. ``enabled = False`` turns
the per-role accounting off (the benchmark's *metrics off*).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

__all__ = ["LATENCY_BUCKETS", "MAX_ROLES", "OTHER_ROLE", "RoleTraffic", "Traffic"]

LATENCY_BUCKETS: tuple[float, ...] = (
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
"""Upper bounds (seconds) of the request latency histogram; one more bucket is +Inf."""
MAX_ROLES = 64
OTHER_ROLE = "_other"


class RoleTraffic:
    """The counters of one target role."""

    __slots__ = (
        "answered",
        "buckets",
        "failed",
        "latency_sum",
        "notified",
        "notify_failed",
        "sent",
        "timed_out",
    )

    def __init__(self) -> None:
        self.sent = 0
        self.answered = 0
        self.failed = 0
        self.timed_out = 0
        self.notified = 0
        self.notify_failed = 0
        self.latency_sum = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)

    def observe(self, seconds: float) -> None:
        """One answered request that took ``seconds`` (a negative span -- the wall clock
        stepped back between the two stamps -- counts as zero)."""
        if seconds < 0.0:
            seconds = 0.0
        self.answered += 1
        self.latency_sum += seconds
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON form: counters plus the (non-cumulative) bucket counts."""
        return {
            "sent": self.sent,
            "answered": self.answered,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "notified": self.notified,
            "notify_failed": self.notify_failed,
            "latency_sum": self.latency_sum,
            "latency_buckets": list(self.buckets),
        }


class Traffic:
    """Every role's :class:`RoleTraffic`, plus broadcast counts, for one node."""

    __slots__ = ("broadcast_deliveries", "broadcasts", "by_role", "enabled")

    def __init__(self) -> None:
        self.enabled = True
        self.by_role: dict[str, RoleTraffic] = {}
        self.broadcasts = 0
        self.broadcast_deliveries = 0

    def role(self, role: str) -> RoleTraffic:
        """The counters of ``role`` (of :data:`OTHER_ROLE` past :data:`MAX_ROLES` roles)."""
        found = self.by_role.get(role)
        if found is None:
            if len(self.by_role) >= MAX_ROLES:
                role = OTHER_ROLE
                found = self.by_role.get(role)
            if found is None:
                found = self.by_role[role] = RoleTraffic()
        return found

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``/stats`` ``requests``)."""
        return {
            "by_role": {role: t.as_dict() for role, t in self.by_role.items()},
            "broadcasts": self.broadcasts,
            "broadcast_deliveries": self.broadcast_deliveries,
            "latency_bounds": list(LATENCY_BUCKETS),
        }

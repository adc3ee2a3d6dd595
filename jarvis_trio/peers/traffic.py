"""Per-role message accounting: requests sent / answered / failed / timed out with a latency
histogram, notifications and broadcasts — what ``/stats`` and ``/metrics`` report.

Labels are *roles*, never agent ids or message ids, so what an operator scrapes stays small
however many agents and messages pass: at most :data:`MAX_ROLES` roles get their own
entry, later ones share :data:`OTHER_ROLE`.

The counting sits on the request hot path, so it is a few attribute increments and one list
append (:class:`~jarvis_trio._histogram.Histogram` folds the latencies in batches), and it
reads no clock of its own: a same-node request is timed from the wall-clock stamps its
request and its reply carry anyway (the reply is stamped when the handler answers), a
cross-node one from its pending entry's deadline (``deadline - timeout``) to the moment the
caller wakes. ``enabled = False`` turns the per-role accounting off (the benchmark's
*metrics off*).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._histogram import SECONDS, Histogram

__all__ = ["LATENCY_BUCKETS", "MAX_ROLES", "OTHER_ROLE", "RoleTraffic", "RolesTraffic", "Traffic"]

LATENCY_BUCKETS = SECONDS
"""Upper bounds (seconds) of the request latency histogram; one more bucket is +Inf."""
MAX_ROLES = 64
OTHER_ROLE = "_other"


class RoleTraffic:
    """The counters of one target role."""

    __slots__ = (
        "failed",
        "latency",
        "notified",
        "notify_failed",
        "observe",
        "sent",
        "timed_out",
    )

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.timed_out = 0
        self.notified = 0
        self.notify_failed = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.observe: Callable[[float], None] = self.latency.observe
        """One answered request that took so many seconds (counted as ``answered``)."""

    @property
    def answered(self) -> int:
        """Requests answered (each one timed in :attr:`latency`)."""
        return self.latency.count

    def as_dict(self) -> dict[str, Any]:
        """JSON form: counters plus the (non-cumulative) bucket counts."""
        latency = self.latency.as_dict()
        return {
            "sent": self.sent,
            "answered": latency["count"],
            "failed": self.failed,
            "timed_out": self.timed_out,
            "notified": self.notified,
            "notify_failed": self.notify_failed,
            "latency_sum": latency["sum"],
            "latency_buckets": latency["buckets"],
        }


class RolesTraffic(dict[str, RoleTraffic]):
    """Role -> :class:`RoleTraffic`, made on first use: ``by_role[role]`` is one C-level
    look-up on the hot path. Past :data:`MAX_ROLES` roles, a new role reads (and counts
    into) :data:`OTHER_ROLE`'s entry without being added."""

    def __missing__(self, role: str) -> RoleTraffic:
        if len(self) >= MAX_ROLES:
            role = OTHER_ROLE
            found = self.get(role)
            if found is not None:
                return found
        found = self[role] = RoleTraffic()
        return found


class Traffic:
    """Every role's :class:`RoleTraffic`, plus broadcast counts, for one node."""

    __slots__ = ("broadcast_deliveries", "broadcasts", "by_role", "enabled")

    def __init__(self) -> None:
        self.enabled = True
        self.by_role = RolesTraffic()
        self.broadcasts = 0
        self.broadcast_deliveries = 0

    def role(self, role: str) -> RoleTraffic:
        """The counters of ``role`` (of :data:`OTHER_ROLE` past :data:`MAX_ROLES` roles)."""
        return self.by_role[role]

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``/stats`` ``requests``)."""
        return {
            "by_role": {role: t.as_dict() for role, t in self.by_role.items()},
            "broadcasts": self.broadcasts,
            "broadcast_deliveries": self.broadcast_deliveries,
            "latency_bounds": list(LATENCY_BUCKETS),
        }

"""Prometheus metrics of a node, rendered from :func:`jarvis_trio.ops.stats.snapshot`.

There is one set of numbers: nothing here counts. Each scrape builds the metric families from
the counters the runtime keeps (a custom collector over a registry of its own, so that
several nodes in one process never share metrics, and nothing global is registered).

Labels are bounded: ``role`` (at most :data:`~jarvis_trio.peers.traffic.MAX_ROLES` roles),
member ``state``, and ``counter`` -- the fixed names of the transport's and SWIM's counters.
Never agent ids or message ids. Needs ``prometheus-client`` (``pip install
'jarvis_trio[metrics]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .stats import OperatedNode, snapshot

__all__ = ["NodeCollector", "render"]

_NODE_COUNTERS = {
    "backpressure_waits": "Sends that waited for space in a full inbox",
    "notify_failed": "Notifications that could not be delivered",
    "request_failed": "Requests that could not be sent or were not answered",
    "inbound_dropped": "Messages from other nodes dropped (no such agent, full inbox)",
}


class NodeCollector(Collector):
    """Reads one node's counters at every scrape."""

    def __init__(self, mesh: OperatedNode, mailbox_lag: dict[str, int] | None = None) -> None:
        self.mesh = mesh
        self.mailbox_lag = mailbox_lag

    def collect(self) -> Iterator[Metric]:
        stats = snapshot(self.mesh, self.mailbox_lag)
        yield from _requests(stats["requests"])
        for name, help_text in _NODE_COUNTERS.items():
            metric = CounterMetricFamily(f"jarvis_{name}", help_text)
            metric.add_metric([], stats["messages"][name])
            yield metric
        late = CounterMetricFamily(
            "jarvis_late_replies", "Replies dropped because their request was gone"
        )
        late.add_metric([], stats["pending"]["late_replies"])
        yield late
        pending = GaugeMetricFamily("jarvis_pending_requests", "Requests waiting for a reply")
        pending.add_metric([], stats["pending"]["open"])
        yield pending
        yield from _inboxes(stats["inboxes"])
        members = GaugeMetricFamily(
            "jarvis_members",
            "Members of the cluster by state, as this node sees them",
            labels=["state"],
        )
        for state, count in stats["members"].items():
            members.add_metric([state], count)
        yield members
        events = stats["events"]
        lost = CounterMetricFamily(
            "jarvis_membership_events_lost",
            "Events dropped by membership_events() consumers that fell behind",
        )
        lost.add_metric([], events["lost"])
        yield lost
        mailbox = stats.get("mailbox")
        if mailbox is not None:
            yield from _mailbox(mailbox)
        nexus = stats.get("nexus")
        if nexus is not None:
            calls = CounterMetricFamily(
                "jarvis_nexus_calls",
                "Calls to the Nexus gateway by endpoint and outcome",
                labels=["endpoint", "outcome"],
            )
            for endpoint, outcomes in sorted(nexus.items()):
                for outcome, count in sorted(outcomes.items()):
                    calls.add_metric([endpoint, outcome], count)
            yield calls
        cluster = stats.get("cluster")
        if cluster is not None:
            yield from _cluster(cluster, stats["swim"])
            yield _histogram(
                "jarvis_swim_probe_rtt_seconds",
                "Round trip of this node's SWIM probes, ping to ack (direct or relayed)",
                stats["swim_probe_rtt"],
            )


def _requests(traffic: dict[str, Any]) -> Iterator[Metric]:
    by_role: dict[str, dict[str, Any]] = traffic["by_role"]
    families = {
        "sent": CounterMetricFamily(
            "jarvis_requests_sent", "Requests sent, by target role", labels=["role"]
        ),
        "answered": CounterMetricFamily(
            "jarvis_requests_answered", "Requests answered, by target role", labels=["role"]
        ),
        "failed": CounterMetricFamily(
            "jarvis_requests_failed",
            "Requests that could not be delivered or whose target vanished, by target role",
            labels=["role"],
        ),
        "timed_out": CounterMetricFamily(
            "jarvis_requests_timed_out",
            "Requests not answered in time, by target role",
            labels=["role"],
        ),
        "notified": CounterMetricFamily(
            "jarvis_notifies", "Notifications delivered, by target role", labels=["role"]
        ),
        "notify_failed": CounterMetricFamily(
            "jarvis_notifies_failed", "Notifications not delivered, by target role", labels=["role"]
        ),
    }
    bounds: list[float] = traffic["latency_bounds"]
    latency = HistogramMetricFamily(
        "jarvis_request_duration_seconds",
        "Time from sending a request to its reply, by target role",
        labels=["role"],
    )
    for role, counts in sorted(by_role.items()):
        for key, family in families.items():
            family.add_metric([role], counts[key])
        latency.add_metric(
            [role], _cumulative(bounds, counts["latency_buckets"]), counts["latency_sum"]
        )
    yield from families.values()
    yield latency
    broadcasts = CounterMetricFamily("jarvis_broadcasts", "broadcast() calls")
    broadcasts.add_metric([], traffic["broadcasts"])
    yield broadcasts
    fanout = CounterMetricFamily(
        "jarvis_broadcast_deliveries", "Notifications delivered by broadcast() (the fan-out)"
    )
    fanout.add_metric([], traffic["broadcast_deliveries"])
    yield fanout


_MAILBOX_COUNTERS = (
    "sent",
    "acked",
    "redelivered",
    "retried",
    "dead_lettered",
    "dead_letters_dropped",
    "written",
    "dropped",
)
_MAILBOX_BACKLOG = ("waiting", "pending_writes")


def _cumulative(bounds: list[float], counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus' cumulative ``(le, count)`` pairs from non-cumulative bucket counts."""
    total = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip([*map(str, bounds), "+Inf"], counts, strict=True):
        total += count
        buckets.append((bound, total))
    return buckets


def _histogram(name: str, help_text: str, histogram: dict[str, Any]) -> Metric:
    metric = HistogramMetricFamily(name, help_text)
    metric.add_metric([], _cumulative(histogram["bounds"], histogram["buckets"]), histogram["sum"])
    return metric


def _mailbox(mailbox: dict[str, Any]) -> Iterator[Metric]:
    messages = CounterMetricFamily(
        "jarvis_mailbox_messages",
        "Mailbox messages sent, acknowledged, given back, retried after a failure, moved to "
        "the dead letters (and dead letters dropped beyond dead_letter_size), written to / "
        "dropped by Redis",
        labels=["counter"],
    )
    backlog = GaugeMetricFamily(
        "jarvis_mailbox_backlog",
        "Messages not yet consumed: waiting in in-process mailboxes, or in the Redis outbox "
        "(pending_writes)",
        labels=["where"],
    )
    for name in _MAILBOX_COUNTERS:
        if name in mailbox:
            messages.add_metric([name], mailbox[name])
    for name in _MAILBOX_BACKLOG:
        if name in mailbox:
            backlog.add_metric([name], mailbox[name])
    yield messages
    yield backlog
    lag = mailbox.get("consumer_lag")
    if lag is not None:
        consumer_lag = GaugeMetricFamily(
            "jarvis_mailbox_consumer_lag",
            "Messages in the mailboxes of local agents not yet acknowledged (waiting, or "
            "delivered and not acknowledged), by role",
            labels=["role"],
        )
        for role, count in sorted(lag.items()):
            consumer_lag.add_metric([role], count)
        yield consumer_lag


def _inboxes(inboxes: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    depth: dict[str, int] = {}
    capacity: dict[str, int] = {}
    for entry in inboxes.values():
        role = entry["role"]
        depth[role] = depth.get(role, 0) + entry["depth"]
        capacity[role] = capacity.get(role, 0) + entry["capacity"]
    depth_family = GaugeMetricFamily(
        "jarvis_inbox_depth",
        "Messages waiting in the inboxes of local agents, by role",
        labels=["role"],
    )
    capacity_family = GaugeMetricFamily(
        "jarvis_inbox_capacity", "Inbox capacity of local agents, by role", labels=["role"]
    )
    for role in sorted(depth):
        depth_family.add_metric([role], depth[role])
        capacity_family.add_metric([role], capacity[role])
    yield depth_family
    yield capacity_family


def _cluster(cluster: dict[str, int], swim: dict[str, int]) -> Iterator[Metric]:
    transport = CounterMetricFamily(
        "jarvis_transport",
        "ZeroMQ data channel counters (frames, bytes, drops)",
        labels=["counter"],
    )
    for key, value in sorted(cluster.items()):
        if key.startswith("bridge_"):  # a fixed set of names: frames, bytes, drops by reason
            transport.add_metric([key.removeprefix("bridge_")], value)
    yield transport
    membership = CounterMetricFamily(
        "jarvis_membership_changes", "Membership changes seen, by kind", labels=["kind"]
    )
    for key, value in cluster.items():
        if key.startswith("membership_"):
            membership.add_metric([key.removeprefix("membership_")], value)
    yield membership
    suspicions = CounterMetricFamily(
        "jarvis_swim_suspicions", "Members this node saw become suspect"
    )
    suspicions.add_metric([], cluster.get("membership_suspect", 0))
    yield suspicions
    refutations = CounterMetricFamily(
        "jarvis_swim_refutations", "Suspicions of this node it refuted"
    )
    refutations.add_metric([], swim.get("refutations", 0))
    yield refutations
    counters = CounterMetricFamily(
        "jarvis_swim",
        "SWIM protocol counters (datagrams, probes, drops by reason)",
        labels=["counter"],
    )
    health = GaugeMetricFamily(
        "jarvis_swim_health", "Lifeguard local health multiplier (0 = healthy)"
    )
    for name, value in sorted(swim.items()):
        if name == "health":
            health.add_metric([], value)
        elif name != "refutations":
            counters.add_metric([name], value)
    yield counters
    yield health


def render(mesh: OperatedNode, mailbox_lag: dict[str, int] | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``mesh`` and its content type; ``mailbox_lag`` is
    what :func:`~jarvis_trio.ops.stats.mailbox_lag` read (awaited by the caller)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(mesh, mailbox_lag))
    return generate_latest(registry), CONTENT_TYPE_LATEST

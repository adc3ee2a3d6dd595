"""Tunables of the SWIM protocol, defaulting to hashicorp/memberlist's LAN profile.

Every bound of the protocol's tables lives here, with its reason, so that a reviewer can see
at a glance how much memory a node may use whatever its peers send it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import ceil, log2
from typing import Any

from ..config import MeshConfig

__all__ = ["SwimConfig", "pushpull_scale"]


def pushpull_scale(interval: float, n: int) -> float:
    """memberlist's scaling of the push/pull interval: x1 up to 32 members, then +1 per
    doubling, so that anti-entropy traffic per node grows like ``log n``, not ``n``."""
    if n <= 32:
        return interval
    return interval * (ceil(log2(n) - log2(32)) + 1)


@dataclass(frozen=True, slots=True)
class SwimConfig:
    """Protocol parameters. Times are in seconds; ``None`` switches a periodic task off."""

    period: float = 1.0  # protocol period T: one probe per period
    probe_timeout: float = 0.5  # wait this long for a direct ack before the ping-reqs
    indirect_probes: int = 3  # k: ping-req helpers per failed direct probe
    retransmit_mult: int = 4  # λ: each update is sent λ·⌈log10(n+1)⌉ times
    suspicion_mult: int = 4  # suspicion min = mult · max(1, log10 n) · T
    suspicion_max_mult: float = 6.0  # suspicion max = max_mult · min (Lifeguard)
    gossip_interval: float | None = 0.2  # extra gossip rounds (memberlist); None = piggyback only
    gossip_nodes: int = 3  # members each gossip round goes to
    gossip_to_dead: float = 30.0  # dead members still get gossip this long (to refute)
    pushpull_interval: float | None = 30.0  # anti-entropy; scaled by pushpull_scale(n)
    pushpull_replies_per_period: int = 16  # bound on full-state replies (amplification)
    max_datagram: int = 1400  # UDP payload limit, tag included
    lifeguard: bool = True  # health multiplier, dynamic suspicion, buddy system, nacks
    check_claims: bool = True  # a third party's dead/left about a live member is checked
    max_health: int = 8  # local health score is clamped to 0..max_health
    nack_fraction: float = 0.8  # a ping-req helper nacks after this share of probe_timeout
    dead_retention: float = 60.0  # dead/left records are reaped after this long
    rejoin_interval: float | None = 10.0  # push/pull to a lost seed or a dead member
    rejoin_window: float = 600.0  # dead members are rejoin candidates this long
    max_rejoin_candidates: int = 64  # bound on remembered dead addresses
    join_retry: float = 1.0  # resend the join push/pull until a seed answers
    max_broadcasts: int = 4096  # bound on the piggyback queue
    max_relays: int = 1024  # bound on ping-reqs this node relays at once
    max_members: int = 65536  # bound on the member table; unknown members beyond are ignored
    max_tombstones: int = 4096  # reaped dead/left members remembered against replays
    # SO_RCVBUF asked for the SWIM socket, in bytes (memberlist's 2 MiB); None keeps the
    # kernel's default (net.core.rmem_default, often 208 KiB). Linux caps the request at
    # net.core.rmem_max and books twice what it grants; the granted size is in
    # SwimNode.stats()["recv_buffer"]. What arrives while the buffer is full is dropped by
    # the kernel, unseen: under a flood, genuine pings and acks among the junk.
    recv_buffer: int | None = 2 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 0 < self.probe_timeout < self.period:
            raise ValueError("probe_timeout must be positive and shorter than period")
        if self.max_datagram < 512:
            raise ValueError("max_datagram must be at least 512 bytes")
        if self.indirect_probes < 0 or self.gossip_nodes < 1 or self.retransmit_mult < 1:
            raise ValueError("indirect_probes >= 0, gossip_nodes >= 1, retransmit_mult >= 1")
        if self.recv_buffer is not None and not 0 < self.recv_buffer <= 2**30:
            raise ValueError("recv_buffer must be None or 1 byte .. 1 GiB")

    @classmethod
    def from_mesh(cls, config: MeshConfig, **overrides: Any) -> SwimConfig:
        """The one translation of a :class:`~jarvis_trio.config.MeshConfig` into SWIM
        settings, used by a mesh with ``p2p_enabled`` and by ``SwimNode.from_mesh`` alike.

        The LAN profile scaled to ``swim_period`` (a short period makes the whole protocol
        faster -- suspicion, gossip, push/pull, retention, rejoin -- not just the probe rate),
        then the configured probe timeout, indirect probes and datagram size, then
        ``overrides``.
        """
        return (
            cls()
            .with_period(config.swim_period)
            .scaled(
                probe_timeout=config.resolved_swim_probe_timeout,
                indirect_probes=config.swim_indirect_probes,
                max_datagram=config.swim_max_datagram,
                **overrides,
            )
        )

    def scaled(self, **overrides: Any) -> SwimConfig:
        """A copy with ``overrides`` applied (validated by ``__post_init__``)."""
        return dataclasses.replace(self, **overrides)

    def with_period(self, period: float) -> SwimConfig:
        """Every time constant scaled by ``period / self.period``: the same protocol, faster.

        Real-socket tests use this to run the LAN profile at 50-100 ms periods.
        """
        f = period / self.period
        return dataclasses.replace(
            self,
            period=period,
            probe_timeout=self.probe_timeout * f,
            gossip_interval=None if self.gossip_interval is None else self.gossip_interval * f,
            gossip_to_dead=self.gossip_to_dead * f,
            pushpull_interval=None
            if self.pushpull_interval is None
            else self.pushpull_interval * f,
            dead_retention=self.dead_retention * f,
            rejoin_interval=None if self.rejoin_interval is None else self.rejoin_interval * f,
            rejoin_window=self.rejoin_window * f,
            join_retry=self.join_retry * f,
        )

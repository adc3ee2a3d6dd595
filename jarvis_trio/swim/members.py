"""Member records, their public snapshots, and the rules that merge gossip into them.

A member is identified by its node name. Everything a node says about itself (address, data
port, public key, agent-directory version) travels in :class:`NodeMeta` inside an *alive*
record together with a *version*: the pair (epoch, incarnation) as one integer,
``epoch << 32 | incarnation`` (:func:`version`). The epoch names one life of the node
(:func:`boot_epoch`, a new one at every start), the incarnation counts refutations within
that life; the newest version wins, so any record of a later life beats every record of an
earlier one. The merge rules are the SWIM ones over versions, written as small pure
functions so that they can be table-tested:

========================  =============================================================
incoming                  overrides the local record when
========================  =============================================================
alive(ver)                the member is unknown (and not buried at ``>= ver``, see the
                          protocol's tombstones), or ``ver >`` the local version
suspect(ver)              the member is alive or suspect and ``ver >=`` local version
                          (an equal version on a suspect is a *confirmation*)
dead(ver) / left(ver)     the member is alive or suspect and ``ver >=`` local version
========================  =============================================================

Anything said about the local node that would override it is *refuted*: the node moves its
version past the claim (``claim + 1``: the next incarnation, or at the last incarnation the
first one of the next epoch) and gossips a fresh alive record instead.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

__all__ = [
    "MAX_EPOCH",
    "MAX_INC",
    "MAX_VERSION",
    "EventKind",
    "Member",
    "MemberState",
    "MembershipEvent",
    "NodeMeta",
    "Verdict",
    "boot_epoch",
    "epoch_horizon",
    "epoch_of",
    "incarnation_of",
    "judge_alive",
    "judge_dead",
    "judge_suspect",
    "version",
]


MAX_INC = 0xFFFF_FFFF
# Epochs are 63-bit so that a refutation of any acceptable claim still fits in 64 bits on the
# wire: the decoder refuses larger ones.
MAX_EPOCH = (1 << 63) - 1
MAX_VERSION = (MAX_EPOCH << 32) | MAX_INC


def version(epoch: int, incarnation: int) -> int:
    """The ordering key of a record: ``epoch << 32 | incarnation``."""
    if not 0 <= epoch <= MAX_EPOCH or not 0 <= incarnation <= MAX_INC:
        raise ValueError(f"epoch/incarnation out of range: {epoch}/{incarnation}")
    return (epoch << 32) | incarnation


def epoch_of(ver: int) -> int:
    """The epoch half of a record version."""
    return ver >> 32


def incarnation_of(ver: int) -> int:
    """The incarnation half of a record version."""
    return ver & MAX_INC


def boot_epoch(unix_ms: int, random16: int) -> int:
    """The epoch of a node life started at ``unix_ms`` (wall clock, milliseconds).

    Time in the high bits orders the lives of one node (a restart gets a larger epoch than
    any earlier life, as long as the clock did not step back across the restart -- and if it
    did, the node refutes its earlier life's records by jumping past them); 16 random bits
    keep two lives started in the same millisecond apart. The caller reads the clock (the
    protocol core never does).
    """
    return ((max(unix_ms, 0) << 16) | (random16 & 0xFFFF)) & MAX_EPOCH


EPOCH_SLACK_MS = 86_400_000  # a day of clock skew between nodes is tolerated


def epoch_horizon(unix_ms: int) -> int:
    """The highest version a record may claim when the wall clock reads ``unix_ms``: any
    epoch of a life started up to :data:`EPOCH_SLACK_MS` from now, at any incarnation.

    Epochs are boot times, so a record beyond is forged; refusing it keeps the versions a
    forger can push a node to far below :data:`MAX_VERSION`, where a refutation always fits.
    """
    return (boot_epoch(unix_ms + EPOCH_SLACK_MS, 0xFFFF) << 32) | MAX_INC


class MemberState(enum.IntEnum):
    """Where a member stands in the local view. Values are the wire encoding."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class EventKind(enum.Enum):
    """What changed about a member, as published to subscribers of the membership."""

    JOIN = "join"
    SUSPECT = "suspect"
    ALIVE = "alive"
    DEAD = "dead"
    LEFT = "left"
    METADATA = "metadata"
    # another live node uses this node's name; ``member`` is its record (where it is)
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class NodeMeta:
    """What a node advertises about itself; disseminated whenever it changes.

    ``host`` is an IPv4 or IPv6 literal (the driver resolves names before building it, so that
    the record packs into 4 or 16 bytes); ``port`` is the SWIM UDP port; ``data_port`` the data
    channel's port; ``public_key`` the node's data-channel key (may be empty);
    ``directory_version`` the version of the node's agent directory, bumped by the runtime so
    that peers know to fetch it again.
    """

    host: str
    port: int
    data_port: int = 0
    public_key: bytes = b""
    directory_version: int = 0

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.host)  # raises ValueError for a name or garbage
        if not 0 <= self.port <= 0xFFFF or not 0 <= self.data_port <= 0xFFFF:
            raise ValueError(f"ports must be 0..65535, got {self.port}/{self.data_port}")
        if len(self.public_key) > 255:
            raise ValueError("public_key is limited to 255 bytes")
        if not 0 <= self.directory_version < 1 << 64:
            raise ValueError("directory_version must fit in 64 bits")

    @property
    def address(self) -> tuple[str, int]:
        """The SWIM address: where to send datagrams for this member."""
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class Member:
    """Immutable snapshot of one member record, as handed to the runtime.

    ``epoch`` names the member's life (see :func:`boot_epoch`); ``incarnation`` counts its
    refutations within that life.
    """

    name: str
    incarnation: int
    state: MemberState
    meta: NodeMeta
    epoch: int = 0

    @property
    def address(self) -> tuple[str, int]:
        """The member's SWIM address."""
        return self.meta.address


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """One change of the local view. ``member`` is the record right after the change.

    ``kind`` is ``None`` only for the *resync* marker a lagging subscriber receives (see
    :mod:`jarvis_trio.swim.driver`), whose ``member`` is then the local node.
    """

    kind: EventKind | None
    member: Member


class Verdict(enum.Enum):
    """What a merge rule decided about an incoming record."""

    IGNORE = 0  # stale or redundant: drop it, do not re-gossip
    APPLY = 1  # newer: update the record and re-gossip it
    CONFIRM = 2  # same suspicion from possibly another accuser: count it, re-gossip if new
    REFUTE = 3  # a claim about ourselves that we must contradict with a higher version


def judge_alive(
    known: MemberState | None, known_inc: int, inc: int, *, is_self: bool, same_meta: bool
) -> Verdict:
    """Decide an incoming *alive* record. ``known`` is ``None`` for an unknown member."""
    if is_self:
        if inc < known_inc or (inc == known_inc and same_meta):
            return Verdict.IGNORE
        return Verdict.REFUTE
    if known is None or inc > known_inc:
        return Verdict.APPLY
    return Verdict.IGNORE


def judge_suspect(known: MemberState | None, known_inc: int, inc: int, *, is_self: bool) -> Verdict:
    """Decide an incoming *suspect* record."""
    if known is None or inc < known_inc:
        return Verdict.IGNORE
    if is_self:
        return Verdict.REFUTE
    if known is MemberState.SUSPECT and inc == known_inc:
        return Verdict.CONFIRM
    if known in (MemberState.ALIVE, MemberState.SUSPECT):
        return Verdict.APPLY
    return Verdict.IGNORE


def judge_dead(
    known: MemberState | None, known_inc: int, inc: int, *, is_self: bool, leaving: bool
) -> Verdict:
    """Decide an incoming *dead* or *left* record (the same rule for both)."""
    if known is None or inc < known_inc:
        return Verdict.IGNORE
    if is_self:
        return Verdict.IGNORE if leaving else Verdict.REFUTE
    if known in (MemberState.ALIVE, MemberState.SUSPECT):
        return Verdict.APPLY
    return Verdict.IGNORE

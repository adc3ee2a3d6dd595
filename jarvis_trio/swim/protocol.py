"""The SWIM state machine: datagrams, timer expiries and commands in; effects out.

No I/O, no clock, no global randomness: ``now`` is an argument of every input and the caller's
``random.Random`` is the only source of chance, so a simulator can run a thousand instances in
virtual time and get the same trace from the same seed, and the Trio driver is a thin loop.

Each input returns an :class:`Effects`: datagrams to send, timers to arm (a token and an
absolute deadline) and membership events. Timers are never cancelled; a token whose work is
no longer wanted is recognised as stale when it fires and ignored, which keeps drivers trivial.

One protocol period (SWIM §3, with Lifeguard):

1. pick the next member in a round-robin walk over a shuffled list (reshuffled every pass,
   newcomers inserted at random positions) and ping it;
2. no ack after ``probe_timeout · (health + 1)``: ask ``k`` random members to ping it for us
   (ping-req); each helper answers with the ack it relays or, Lifeguard, a nack;
3. at the end of the period (``period · (health + 1)``), still no ack: suspect the member,
   gossip the suspicion and tell the suspect directly so that it can refute at once.

A suspicion becomes a death when its timer expires; the timer starts at ``max`` and shrinks
toward ``min`` with every independent accuser (Lifeguard). Updates ride on every datagram
(piggyback) and on extra gossip rounds; push/pull anti-entropy and re-join attempts to seeds
and recently dead members repair what gossip lost and heal partitions.

Freshness: every record carries its member's *version*, (epoch, incarnation) as one integer
(see :mod:`.members`). Records of an earlier life of a node lose against every record of a
later one, so a replayed *left* or *dead* of a previous life cannot evict a restarted node. A
member that died or left is remembered after it is reaped, as a *tombstone* (name and last
version, ``max_tombstones`` of them, oldest forgotten first): a replayed *alive* record of
that life is refused instead of bringing the member back.

Totality: every input returns effects; nothing a datagram says can make the core raise.
Numbers are range-checked by the codec, versions never overflow (a refutation of a claim at
the last incarnation moves to the next epoch; a claim that cannot be outranked at all is
refused and counted), and bad input is counted under ``drop_<reason>``.

A record that gives this node's name to *another address* is not refuted blindly: the node
asks that address first (see ``_claimed``), so that two live nodes started with one name are
reported as a conflict instead of out-bidding each other's incarnation forever.

A *dead* or *left* record heard second-hand about a member held alive or suspect is checked
before it is believed (see ``_on_dead_claim``): SWIM's blind belief let one forged record take
a live member out of every view it reached. A record that moves a member to another address
within its epoch is refused (``drop_moved``): a node keeps its address for its life. One of a
new epoch (a restart elsewhere, or a forgery) that moves a live member is checked at the
member's current address first (see ``_check_move``).

Bounds: member table ``max_members``; piggyback queue ``max_broadcasts``; relayed ping-reqs,
claim checks and move checks ``max_relays`` each; push/pull replies
``pushpull_replies_per_period``; rejoin candidates ``max_rejoin_candidates``; tombstones
``max_tombstones``; name checks ``MAX_NAME_CHECKS``, remembered conflicts
``MAX_NAME_CONFLICTS``; the dead list is bounded by the member table.
See :class:`~jarvis_trio.swim.config.SwimConfig`.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence

from .._histogram import SECONDS, Histogram
from . import codec
from .broadcasts import BroadcastQueue, retransmit_limit
from .codec import DecodeError, Packet, Update
from .config import SwimConfig, pushpull_scale
from .keyring import TAG_SIZE, Keyring
from .lifeguard import Health, expected_confirmations, suspicion_bounds, suspicion_timeout
from .members import (
    MAX_INC,
    MAX_VERSION,
    EventKind,
    Member,
    MembershipEvent,
    MemberState,
    NodeMeta,
    Verdict,
    judge_alive,
    judge_dead,
    judge_suspect,
    version,
)

__all__ = ["PROBE_RTT_BUCKETS", "Address", "Effects", "SwimProtocol", "TimerToken"]

PROBE_RTT_BUCKETS = SECONDS
"""Upper bounds (seconds) of the probe round-trip histogram: the runtime's duration buckets."""

Address = tuple[str, int]
# (kind, member name or "", number): hashable, cheap, compared by value.
TimerToken = tuple[int, str, int]

(
    T_PROBE,
    T_PROBE_TIMEOUT,
    T_RELAY,
    T_SUSPECT,
    T_GOSSIP,
    T_PUSHPULL,
    T_REJOIN,
    T_JOIN,
    T_FINAL,
    T_NAME,
    T_CLAIM,
    T_MOVE,
) = range(12)
# name checks in flight and confirmed name conflicts remembered (see SwimProtocol._claimed)
MAX_NAME_CHECKS = 4
MAX_NAME_CONFLICTS = 16

_ALIVE = MemberState.ALIVE
_SUSPECT = MemberState.SUSPECT
_DEAD = MemberState.DEAD
_LEFT = MemberState.LEFT


class Effects:
    """What one input asks the outside world to do."""

    __slots__ = ("datagrams", "events", "timers")

    def __init__(self) -> None:
        self.datagrams: list[tuple[Address, bytes]] = []
        self.timers: list[tuple[TimerToken, float]] = []
        self.events: list[MembershipEvent] = []


class _Suspicion:
    __slots__ = ("accusers", "deadline", "expected", "high", "low", "start")

    def __init__(self, start: float, low: float, high: float, expected: int, accuser: str):
        self.start = start
        self.low = low
        self.high = high
        self.expected = expected
        self.accusers = {accuser}
        self.deadline = start + suspicion_timeout(low, high, 0, expected)

    def confirm(self, accuser: str) -> bool:
        """Count a new independent accuser; True if the deadline moved."""
        if accuser in self.accusers or not accuser:
            return False
        self.accusers.add(accuser)
        timeout = suspicion_timeout(self.low, self.high, len(self.accusers) - 1, self.expected)
        deadline = self.start + timeout
        if deadline < self.deadline:
            self.deadline = deadline
            return True
        return False


class _Record:
    """Mutable member record; :meth:`snapshot` gives the frozen public view.

    ``inc`` holds the record's whole *version* (``epoch << 32 | incarnation``): every rule
    compares versions, and the public snapshot splits them again.
    """

    __slots__ = (
        "changed_at",
        "in_order",
        "inc",
        "live_pos",
        "meta",
        "meta8",
        "name",
        "name8",
        "state",
        "suspicion",
    )

    def __init__(
        self,
        name: str,
        inc: int,
        meta: NodeMeta,
        now: float,
        encoded: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.name = name
        self.name8, self.meta8 = encoded or (codec.encode_name(name), codec.encode_meta(meta))
        self.inc = inc
        self.meta = meta
        self.state = _ALIVE
        self.changed_at = now
        self.suspicion: _Suspicion | None = None
        self.live_pos = -1  # index in the live list, -1 when not live
        self.in_order = False  # already somewhere in the current probe walk

    def snapshot(self) -> Member:
        ver = self.inc  # the version: epoch << 32 | incarnation
        return Member(self.name, ver & MAX_INC, self.state, self.meta, ver >> 32)


class SwimProtocol:
    """One node's SWIM state. Feed it with the ``handle_*`` methods and commands."""

    def __init__(
        self,
        name: str,
        meta: NodeMeta,
        config: SwimConfig,
        rng: random.Random,
        *,
        incarnation: int = 0,
        epoch: int = 0,
        key: bytes | None = None,
        keyring: Keyring | None = None,
        cluster_name: str = "jarvis",
    ) -> None:
        self.name = name
        self.config = config
        self.rng = rng
        self.health = Health(config.max_health)
        self.stats: Counter[str] = Counter()  # rare events; see counters() for all
        self.rx_datagrams = 0  # hot counters are plain attributes (cheaper than a Counter)
        self.rx_bytes = 0
        self.tx_datagrams = 0
        self.tx_bytes = 0
        self.probes = 0
        self.probe_rtt = Histogram(PROBE_RTT_BUCKETS)
        """Seconds from each probe's ping to its ack (direct, or relayed by a ping-req
        helper): the round trips this node measures anyway, read by ``/metrics``."""
        self.leaving = False
        self.started = False
        if keyring is None and key:
            keyring = Keyring([key], cluster_name)
        self.keyring = keyring  # shared with whoever rotates it; read on every datagram
        self._auth = keyring
        self._payload_max = config.max_datagram - (TAG_SIZE if keyring is not None else 0)
        self._self = _Record(name, version(epoch, incarnation), meta, 0.0)
        self._members: dict[str, _Record] = {name: self._self}
        self._members8: dict[bytes, _Record] = {self._self.name8: self._self}  # by encoded name
        self._live: list[_Record] = []  # alive + suspect, self excluded; O(1) random choice
        self._order: list[_Record] = []  # the probe walk; stale entries are skipped
        self._order_idx = 0
        self._queue = BroadcastQueue(config.max_broadcasts)
        self._limit_n = -1
        self._limit = retransmit_limit(config.retransmit_mult, 1)
        self._meta_cache: dict[bytes, NodeMeta] = {}
        self._seq = 0
        self._tick_gen = 0
        self._probe_seq = 0
        self._probe_target: _Record | None = None
        self._probe_inc = 0
        self._probe_acked = True
        self._probe_sent = 0.0
        self._probe_expected_nacks = 0
        self._probe_nacks = 0
        self._relays: dict[int, tuple[Address, int]] = {}
        self._final_checks: dict[int, tuple[str, int]] = {}  # seq -> (suspect, incarnation)
        # dead/left claims about live members, being checked: seq -> (name, version, left,
        # accuser), and name -> seq (one check per member; later claims join it)
        # (and the silent rounds still needed to confirm it)
        self._claim_checks: dict[int, tuple[str, int, bool, str, int]] = {}
        self._checking: dict[str, int] = {}
        # records moving a live member to another address, being checked at its current one:
        # seq -> (name, version, meta, silent rounds still needed), and name -> seq
        self._move_checks: dict[int, tuple[str, int, NodeMeta, int]] = {}
        self._moving: dict[str, int] = {}
        self._dead_fifo: deque[tuple[float, str, int]] = deque()
        # reaped member -> (last version, it left): refuses replays of a life that ended
        self._graves: OrderedDict[str, tuple[int, bool]] = OrderedDict()
        # address -> record of members held dead or left (until reaped or back): one that
        # still pings us is told so on the ack, and refutes at once if it is alive
        self._down: dict[Address, _Record] = {}
        self._rejoin: dict[str, tuple[Address, float]] = {}
        self._seeds: list[Address] = []
        self._joined = False
        self._name_checks: dict[Address, tuple[int, int]] = {}  # address -> (seq, incarnation)
        self._conflicts: dict[Address, None] = {}  # confirmed holders of our name, oldest first
        self.name_conflict: Address | None = None
        self._announced = False
        self._gossip_armed = False
        self._pp_budget = config.pushpull_replies_per_period
        self._now = 0.0
        self._fx = Effects()
        self.on_probe: list[tuple[float, str]] | None = None  # optional probe log (benchmarks)
        # Records of an epoch beyond this are refused (``drop_future``): epochs are boot times,
        # so one far ahead of the wall clock is forged. The driver moves it along (it reads
        # the clock, the core does not); it keeps every refutation representable.
        self.version_horizon = MAX_VERSION
        self.rejected = 0  # bad input refused so far (each also counted under drop_<reason>)
        self.last_rejected: tuple[str, Address] | None = None  # (reason, source) of the latest
        self._from: Address = ("", 0)  # source of the datagram being handled

    # ------------------------------------------------------------------ public views

    @property
    def incarnation(self) -> int:
        """The local node's current incarnation (within its current epoch)."""
        return self._self.inc & MAX_INC

    @property
    def epoch(self) -> int:
        """The local node's current epoch: its life, or a later one it moved to."""
        return self._self.inc >> 32

    @property
    def version(self) -> int:
        """The local node's record version, ``epoch << 32 | incarnation``."""
        return self._self.inc

    @property
    def meta(self) -> NodeMeta:
        """The local node's current metadata."""
        return self._self.meta

    @property
    def local_member(self) -> Member:
        """Snapshot of the local node's own record."""
        return self._self.snapshot()

    @property
    def checking_name(self) -> bool:
        """True while a record of this node's name at another address is being checked."""
        return bool(self._name_checks)

    def members(self) -> list[Member]:
        """Snapshot of every record, the local node included, dead ones until reaped."""
        return [rec.snapshot() for rec in self._members.values()]

    def member(self, name: str) -> Member | None:
        """Snapshot of one record, or ``None``."""
        rec = self._members.get(name)
        return None if rec is None else rec.snapshot()

    def state_of(self, name: str) -> MemberState | None:
        """The state of ``name`` in the local view (cheap; no snapshot)."""
        rec = self._members.get(name)
        return None if rec is None else rec.state

    def live_names(self) -> list[str]:
        """Names of alive and suspect members, the local node excluded."""
        return [rec.name for rec in self._live]

    def num_live(self) -> int:
        """How many members (the local node included) are alive or suspect."""
        return len(self._live) + 1

    def counters(self) -> dict[str, int]:
        """Every counter: datagrams and bytes in and out, drops by reason (``drop_*``),
        refutations, failed probes, deaths declared, members reaped, health."""
        merged = dict(self.stats)
        merged.update(
            rx_datagrams=self.rx_datagrams,
            rx_bytes=self.rx_bytes,
            tx_datagrams=self.tx_datagrams,
            tx_bytes=self.tx_bytes,
            probes=self.probes,
            health=self.health.score,
        )
        return merged

    def pending_broadcasts(self) -> int:
        """Updates still waiting in the piggyback queue."""
        return len(self._queue)

    # ------------------------------------------------------------------ inputs

    def start(self, now: float, *, phase: float | None = None) -> Effects:
        """Arm the periodic timers. ``phase`` (0..1 of a period) fixes the first probe tick;
        by default it is random so that nodes started together do not probe in lockstep."""
        fx = self._begin(now)
        if self.started:
            return fx
        self.started = True
        cfg = self.config
        first = cfg.period * (self.rng.random() if phase is None else phase)
        self._tick_gen += 1
        fx.timers.append(((T_PROBE, "", self._tick_gen), now + first))
        if cfg.pushpull_interval is not None:
            first_pp = pushpull_scale(cfg.pushpull_interval, len(self._live) + 1)
            fx.timers.append(((T_PUSHPULL, "", 0), now + first_pp * self.rng.random()))
        if cfg.rejoin_interval is not None:
            fx.timers.append(((T_REJOIN, "", 0), now + cfg.rejoin_interval * self.rng.random()))
        if len(self._queue):
            self._arm_gossip()
        return fx

    def bootstrap(
        self, members: Iterable[tuple[str, NodeMeta, bytes, bytes]], now: float = 0.0
    ) -> None:
        """Pre-populate the view with alive members, silently (no events, no gossip).

        Entries are ``(name, meta, encoded name, encoded meta)`` so that a simulator can
        share the immutable encodings between its nodes. For simulations that start from a
        converged cluster, as the SWIM analysis assumes.
        """
        for name, meta, name8, meta8 in members:
            if name != self.name and name not in self._members:
                rec = _Record(name, 0, meta, now, (name8, meta8))
                self._members[name] = rec
                self._members8[rec.name8] = rec
                self._live_add(rec)
                rec.in_order = True
                self._order.append(rec)
        self.rng.shuffle(self._order)

    def join(self, seeds: Sequence[Address], now: float) -> Effects:
        """Contact ``seeds`` with a push/pull; retried every ``join_retry`` until one answers."""
        fx = self._begin(now)
        own = self._self.meta.address
        self._seeds = [(host, port) for host, port in seeds if (host, port) != own]
        self._joined = not self._seeds
        for seed in self._seeds:
            self._send_state(seed, codec.FLAG_FIRST)
        if self._seeds:
            self.stats["join_requests"] += 1
            fx.timers.append(((T_JOIN, "", 0), now + self.config.join_retry))
        return fx

    def set_seeds(self, seeds: Sequence[Address], now: float) -> Effects:
        """Replace the seed addresses (their names were resolved again).

        A node that has not joined yet, or is alone, contacts the new addresses at once; join
        retries and rejoin attempts use the new list from now on.
        """
        fx = self._begin(now)
        own = self._self.meta.address
        fresh = [(host, port) for host, port in seeds if (host, port) != own]
        added = [seed for seed in fresh if seed not in self._seeds]
        self._seeds = fresh
        if not self.leaving and (not self._joined or not self._live):
            for seed in added:
                self._send_state(seed, codec.FLAG_FIRST)
        return fx

    @property
    def joined(self) -> bool:
        """True once a seed answered (or there was none to join through)."""
        return self._joined

    @property
    def seeds(self) -> list[Address]:
        """The seed addresses currently joined / rejoined through."""
        return list(self._seeds)

    def leave(self, now: float) -> Effects:
        """Say goodbye: gossip a *left* record at once and stop probing.

        The node keeps answering pings (which carry the record further) until its driver
        closes it; see :meth:`leave_done`.
        """
        fx = self._begin(now)
        if self.leaving:
            return fx
        self.leaving = True
        me = self._self
        me.state = _LEFT
        self._broadcast(me.name, codec.encode_left(me.name8, me.inc))
        for rec in self._sample(max(4, self.config.gossip_nodes + 1), None, alive_only=False):
            self._send(rec.meta.address, codec.HEADER_GOSSIP)
        return fx

    def leave_done(self) -> bool:
        """True once the *left* record has been sent as often as the protocol wants, or at
        once when no other member is alive or suspect: nobody is left to tell."""
        if self.name not in self._queue:
            return True
        return not any(
            rec.state in (_ALIVE, _SUSPECT)
            for name, rec in self._members.items()
            if name != self.name
        )

    def update_metadata(self, meta: NodeMeta, now: float) -> Effects:
        """Advertise new metadata: bump the incarnation and gossip the new alive record."""
        fx = self._begin(now)
        me = self._self
        if meta == me.meta:
            return fx
        if me.inc >= MAX_VERSION:
            self.stats["refute_impossible"] += 1  # only a forged claim gets us here
            return fx
        me.meta = meta
        me.meta8 = codec.encode_meta(meta)
        self._bump(me.inc + 1)
        self._broadcast_alive(me)
        return fx

    def handle_datagram(self, data: bytes, addr: Address, now: float) -> Effects:
        """Process one received datagram. Bad input is dropped and counted, never raised."""
        fx = self._begin(now)
        self.rx_datagrams += 1
        self.rx_bytes += len(data)
        if len(data) > self.config.max_datagram:
            self._reject("oversized", addr)
            return fx
        auth = self._auth
        if auth is not None:
            opened = auth.open(data)
            if opened is None:
                self._reject("auth", addr)
                return fx
            data = opened
        try:
            packet = codec.decode(data, self._meta_cache)
        except DecodeError as error:
            self._reject(error.reason, addr)
            return fx
        self._from = addr
        self._dispatch(packet, addr, now)
        return fx

    def handle_timer(self, token: TimerToken, now: float) -> Effects:
        """Process the expiry of a timer this protocol asked for (stale tokens are ignored)."""
        fx = self._begin(now)
        kind = token[0]
        if kind == T_PROBE:
            if token[2] == self._tick_gen and not self.leaving:
                self._probe_tick(now)
        elif kind == T_PROBE_TIMEOUT:
            self._probe_timeout(token[2])
        elif kind == T_RELAY:
            relay = self._relays.pop(token[2], None)
            if relay is not None and self.config.lifeguard:
                self._send(relay[0], codec.header_seq(codec.NACK, relay[1]))
        elif kind == T_SUSPECT:
            self._suspicion_expired(token[1], token[2], now)
        elif kind == T_GOSSIP:
            self._gossip_armed = False
            self._gossip_tick(now)
        elif kind == T_PUSHPULL:
            self._pushpull_tick(now)
        elif kind == T_REJOIN:
            self._rejoin_tick(now)
        elif kind == T_FINAL:
            self._final_check_expired(token[2], now)
        elif kind == T_NAME:
            self._name_check_expired(token[2])
        elif kind == T_CLAIM:
            self._claim_check_expired(token[2], now)
        elif kind == T_MOVE:
            self._move_check_expired(token[2], now)
        elif kind == T_JOIN and not self._joined and not self.leaving:
            self.stats["join_requests"] += 1
            for seed in self._seeds:
                self._send_state(seed, codec.FLAG_FIRST)
            fx.timers.append(((T_JOIN, "", 0), now + self.config.join_retry))
        return fx

    # ------------------------------------------------------------------ plumbing

    def _reject(self, reason: str, addr: Address) -> None:
        """Count bad input (``drop_<reason>``) and remember where the latest came from, so
        that the driver can report it without logging every datagram."""
        self.stats["drop_" + reason] += 1
        self.rejected += 1
        self.last_rejected = (reason, addr)

    def _begin(self, now: float) -> Effects:
        self._now = now
        fx = self._fx = Effects()
        return fx

    def _retransmits(self) -> int:
        n = len(self._live) + 1
        if n != self._limit_n:
            self._limit_n = n
            self._limit = retransmit_limit(self.config.retransmit_mult, n)
        return self._limit

    def _send(self, addr: Address, header: bytes, first: bytes | None = None) -> None:
        """Send ``header`` plus as much piggyback as fits (``first`` goes in front)."""
        parts: list[bytes] = []
        budget = self._payload_max - len(header) - 1
        if first is not None:
            parts.append(first)
            budget -= len(first)
        self._queue.fill(budget, self._retransmits(), parts, 255 - len(parts))
        data = header + bytes((len(parts),)) + b"".join(parts)
        if self._auth is not None:
            data = self._auth.seal(data)
        self.tx_datagrams += 1
        self.tx_bytes += len(data)
        self._fx.datagrams.append((addr, data))

    def _broadcast(self, key: str, data: bytes) -> None:
        self._queue.push(key, data)
        if not self._gossip_armed and self.started:
            self._arm_gossip()

    def _arm_gossip(self) -> None:
        interval = self.config.gossip_interval
        if interval is not None:
            self._gossip_armed = True
            self._fx.timers.append(((T_GOSSIP, "", 0), self._now + interval))

    def _broadcast_alive(self, rec: _Record) -> None:
        self._broadcast(rec.name, codec.encode_alive(rec.name8, rec.inc, rec.meta8))

    def _event(self, kind: EventKind, rec: _Record) -> None:
        self._fx.events.append(MembershipEvent(kind, rec.snapshot()))

    def _live_add(self, rec: _Record) -> None:
        if rec.live_pos < 0:
            rec.live_pos = len(self._live)
            self._live.append(rec)

    def _live_remove(self, rec: _Record) -> None:
        pos = rec.live_pos
        if pos < 0:
            return
        rec.live_pos = -1
        last = self._live.pop()
        if last is not rec:
            self._live[pos] = last
            last.live_pos = pos

    def _order_insert(self, rec: _Record) -> None:
        if not rec.in_order:
            rec.in_order = True
            self._order.insert(self.rng.randint(0, len(self._order)), rec)

    def _sample(self, count: int, exclude: _Record | None, *, alive_only: bool) -> list[_Record]:
        """Up to ``count`` distinct random live members, never ``exclude``."""
        live = self._live
        small = len(live) <= count + 4
        pool = list(live) if small else self.rng.sample(live, count + 4)
        chosen = [
            rec for rec in pool if rec is not exclude and (not alive_only or rec.state is _ALIVE)
        ]
        if len(chosen) > count:
            if small:
                chosen = self.rng.sample(chosen, count)
            else:
                del chosen[count:]
        return chosen

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, packet: Packet, addr: Address, now: float) -> None:
        kind = packet.type
        if packet.updates:
            self._merge_updates(packet.updates, now)
        elif kind == codec.PUSHPULL:
            try:
                self._merge_state(packet.raw, packet.offset, packet.count, packet.target, now)
            except DecodeError as error:
                self._reject(error.reason, addr)
                return
        if kind == codec.PING:
            if packet.target != self.name:
                self.stats["drop_misdirected"] += 1
                return
            notice = None
            if self.leaving:  # every ack says so first-hand: see _on_dead_claim
                notice = codec.encode_left(self._self.name8, self._self.inc)
            elif self._down:
                down = self._down.get(addr)
                if down is not None:  # it pings us, so it lives: tell it what we believe
                    notice = self._verdict_of(down)
            self._send(addr, codec.header_seq(codec.ACK, packet.seq), notice)
        elif kind == codec.ACK:
            seq = packet.seq
            if seq == self._probe_seq and not self._probe_acked:
                self._probe_acked = True
                self.probe_rtt.observe(now - self._probe_sent)
                if self.config.lifeguard:
                    self.health.apply(-1)
            else:
                relay = self._relays.pop(seq, None)
                if relay is not None:
                    self._send(relay[0], codec.header_seq(codec.ACK, relay[1]))
                elif seq in self._final_checks:
                    self._final_check_answered(seq, now)
                elif seq in self._claim_checks:
                    self._claim_disproved(seq)
                elif seq in self._move_checks:
                    self._move_disproved(seq)
                else:
                    self.stats["late_acks"] += 1
        elif kind == codec.NACK:
            if packet.seq == self._probe_seq:
                self._probe_nacks += 1
        elif kind == codec.PING_REQ:
            assert packet.target_addr is not None
            if len(self._relays) >= self.config.max_relays:
                self.stats["drop_relay_full"] += 1
                return
            seq = self._next_seq()
            self._relays[seq] = (addr, packet.seq)
            target8 = codec.encode_name(packet.target)
            self._send(packet.target_addr, codec.header_ping(seq, target8))
            deadline = now + self.config.probe_timeout * self.config.nack_fraction
            self._fx.timers.append(((T_RELAY, "", seq), deadline))
        elif kind == codec.PUSHPULL:
            if packet.flags & codec.FLAG_REPLY:
                self._joined = True
                self._announce()
            elif packet.flags & codec.FLAG_FIRST:
                if self._pp_budget > 0:
                    self._pp_budget -= 1
                    self._send_state(addr, codec.FLAG_REPLY)
                else:
                    self.stats["drop_pushpull_budget"] += 1

    def _verdict_of(self, rec: _Record) -> bytes:
        """The dead or left record we hold about ``rec``, as an update."""
        self.stats["told_down"] += 1
        if rec.state is _LEFT:
            return codec.encode_left(rec.name8, rec.inc)
        return codec.encode_dead(rec.name8, rec.inc, self._self.name8)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _merge_updates(self, updates: list[Update], now: float) -> None:
        horizon = self.version_horizon
        for kind, name, inc, meta, accuser in updates:
            if inc > horizon:
                self._reject("future", self._from)
            elif kind == codec.ALIVE:
                assert meta is not None
                self._on_alive(name, inc, meta, now)
            elif kind == codec.SUSPECT:
                self._on_suspect(name, inc, accuser, now)
            elif kind == codec.DEAD:
                self._on_dead_claim(name, inc, accuser, now, left=False)
            else:
                self._on_dead_claim(name, inc, name, now, left=True)

    def _merge_state(self, raw: bytes, pos: int, count: int, sender: str, now: float) -> None:
        """Merge a push/pull chunk, record by record (each record stands on its own).

        A remote *dead* is taken as a suspicion (the member may well be alive and merely cut
        off from the sender); a member hearing it about itself refutes. Records that cannot
        change anything (the common case: same incarnation and state) are skipped after
        reading their name, incarnation and state, without decoding the rest. A malformed
        record ends the chunk (raised as :class:`DecodeError`, counted by the caller).
        """
        members8 = self._members8
        me = self._self
        size = len(raw)
        for _ in range(count):
            if pos + 3 > size:
                raise DecodeError("truncated")
            state = raw[pos + 1]
            name_end = pos + 3 + raw[pos + 2]
            meta_start = name_end + codec.VER_SIZE
            if raw[pos] != codec.FULL or state > 3 or name_end == pos + 3:
                raise DecodeError("malformed")
            if meta_start + 1 > size:
                raise DecodeError("truncated")
            family = raw[meta_start]
            if family == 4:
                key_at = meta_start + 17  # family, 4 address bytes, ports, version
            elif family == 6:
                key_at = meta_start + 29
            else:
                raise DecodeError("malformed")
            if key_at >= size:
                raise DecodeError("truncated")
            meta_end = key_at + 1 + raw[key_at]
            if meta_end > size:
                raise DecodeError("truncated")
            inc = codec.read_ver(raw, name_end)
            rec = members8.get(raw[pos + 2 : name_end])
            name_start = pos + 3
            pos = meta_end
            if inc > self.version_horizon:
                self._reject("future", self._from)
                continue
            if rec is not None and rec is not me:
                if inc < rec.inc:
                    continue
                known = rec.state
                if inc == rec.inc and (state == known or known is not _ALIVE):
                    continue
                if state == _LEFT and (known is _DEAD or known is _LEFT):
                    continue
            try:
                name = raw[name_start:name_end].decode()
            except UnicodeDecodeError:
                raise DecodeError("malformed") from None
            if rec is me:
                meta = codec.decode_meta(raw, meta_start, meta_end, self._meta_cache)
                if meta.address != me.meta.address:
                    # whatever it says (a dead record elsewhere, too, is ours to outrank once
                    # nobody answers there), a record of our name elsewhere is checked first
                    speaks = sender == self.name and state in (_ALIVE, _SUSPECT)
                    self._claimed(meta, inc, confirmed=speaks)
                    continue
            if state in (_ALIVE, _SUSPECT):
                meta = codec.decode_meta(raw, meta_start, meta_end, self._meta_cache)
                self._on_alive(name, inc, meta, now)
                if state == _SUSPECT:
                    self._on_suspect(name, inc, sender, now)
            elif state == _DEAD:
                self._on_suspect(name, inc, sender, now)
            else:
                self._on_dead_claim(name, inc, name, now, left=True)
        if pos != size:
            raise DecodeError("malformed")

    # ------------------------------------------------------------------ merge rules

    def _bump(self, ver: int) -> None:
        """Move the local record to version ``ver``, counting a move to another epoch."""
        me = self._self
        if ver >> 32 != me.inc >> 32:
            self.stats["epoch_moves"] += 1
        me.inc = ver

    def _refute(self, claimed: int, *, next_epoch: bool = False) -> None:
        """Outrank ``claimed``: its next incarnation, or at the last incarnation of an epoch
        (or with ``next_epoch``) the first of the next epoch. A claim at the very last version
        cannot be outranked; it is refused (only a key holder can forge one, see the README's
        security notes).

        A claim of an epoch later than ours is always outranked by a move to the epoch after
        it. This node never wrote a record of that epoch, so whoever holds one may hold it at
        another address (a forged *alive* of a new epoch may come from anywhere, see
        ``_on_alive``), and a refutation within that epoch would be refused there as a move
        (``drop_moved``): the holder would keep probing the forged address and declare this
        live node dead, with nobody to tell it (seen under ``bench_swim_fuzz``)."""
        me = self._self
        top = max(me.inc, claimed)
        if claimed >> 32 > me.inc >> 32:
            next_epoch = True
        target = ((top >> 32) + 1) << 32 if next_epoch else top + 1
        if target > MAX_VERSION:
            self._reject("unrefutable", self._from)
            return
        self._bump(target)
        self.stats["refutations"] += 1
        if self.config.lifeguard:
            self.health.apply(1)
        self._broadcast_alive(me)

    def _claimed(self, meta: NodeMeta, inc: int, *, confirmed: bool) -> None:
        """A record gives this node's name to another address.

        Refuting it at once, as SWIM would, starts an incarnation war when a second live node
        was started with the same name: each would out-bid the other forever. So the claim
        is checked first, by a push/pull to that address (it carries our record and our
        name as its sender). A node that answers with a push/pull in our own name is a live
        holder of the name: a *conflict* (``confirmed``), reported once per address as a
        ``CONFLICT`` event and kept in :attr:`name_conflict`, never refuted (a holder that had
        not seen our record yet is shown it, so that both sides report). Silence for
        ``2 · probe_timeout`` means the record is a stale one (this node's earlier life at
        another port, say), which is then refuted and so taken over.
        """
        addr = meta.address
        if confirmed:
            checked = self._name_checks.pop(addr, None) is not None
            if addr in self._conflicts:
                return
            if len(self._conflicts) >= MAX_NAME_CONFLICTS:
                del self._conflicts[next(iter(self._conflicts))]
            self._conflicts[addr] = None
            self.stats["name_conflicts"] += 1
            if self.name_conflict is None:
                self.name_conflict = addr
            claimant = Member(self.name, inc, _ALIVE, meta)
            self._fx.events.append(MembershipEvent(EventKind.CONFLICT, claimant))
            if not checked:  # it has not seen our record yet: show it, so that it knows too
                self._send_state(addr, 0, with_self=True)
            return
        if addr in self._conflicts or addr in self._name_checks:
            return
        if len(self._name_checks) >= MAX_NAME_CHECKS:
            # Under a flood of forged claims the slots never empty, and dropping the newcomer
            # can leave a claim of a new epoch unrefuted: the others move us to a forged
            # address, probe it and declare us dead (seen in a bench_swim_fuzz trace; this
            # rule alone did not end those deaths). The highest claim is the one to check:
            # its takeover refutes above it, so above every lower claim too.
            lowest = min(self._name_checks, key=lambda a: self._name_checks[a][1])
            if inc <= self._name_checks[lowest][1]:
                self.stats["drop_name_check_full"] += 1
                return
            del self._name_checks[lowest]
            self.stats["name_checks_displaced"] += 1
        seq = self._next_seq()
        self._name_checks[addr] = (seq, inc)
        self.stats["name_checks"] += 1
        self._send_state(addr, codec.FLAG_FIRST, with_self=True)  # the claimant sees our name
        self._fx.timers.append(((T_NAME, "", seq), self._now + 2 * self.config.probe_timeout))

    def _name_check_expired(self, seq: int) -> None:
        found = [addr for addr, (s, _) in self._name_checks.items() if s == seq]
        if not found:
            return  # answered: a conflict
        _, inc = self._name_checks.pop(found[0])
        self.stats["name_takeovers"] += 1
        if inc >= self._self.inc and not self.leaving:
            # the name moves to this address: in a new epoch, as observers refuse a move
            # within one (see _on_alive)
            self._refute(inc, next_epoch=True)
        self._announce()

    def _withheld(self) -> bool:
        """True while a joining node does not yet know its name is its own: before a seed
        answered, while a record of the name elsewhere is checked, and after a conflict.

        Its record then stays out of its push/pulls (name checks aside): with epochs a new
        life outranks every record of an older one, so a second node started under a name
        in use would otherwise move the name to its own address at every member it told.
        """
        return bool(self._seeds) and (
            not self._joined or bool(self._name_checks) or self.name_conflict is not None
        )

    def _announce(self) -> None:
        """Once the name is known to be ours, tell the seeds who we are (a push/pull that
        asks for no answer); they gossip it on as for any new member."""
        if self._announced or not self._seeds or self._withheld() or self.leaving:
            return
        self._announced = True
        for seed in self._seeds:  # at once, for the seeds that answered
            self._send_state(seed, 0)
        self._broadcast_alive(self._self)  # and by gossip, in case a datagram is lost

    def _restate(self) -> None:
        """Someone still holds an accusation we already refuted: gossip our current alive
        record again (it goes first on the very next datagram, e.g. the ack to their ping)."""
        if self.name not in self._queue:
            self.stats["restated"] += 1
            self._broadcast_alive(self._self)

    def _on_alive(
        self, name: str, inc: int, meta: NodeMeta, now: float, *, checked: bool = False
    ) -> None:
        rec = self._members.get(name)
        if rec is self._self:
            if meta.address != rec.meta.address:
                self._claimed(meta, inc, confirmed=False)
                return
            verdict = judge_alive(_ALIVE, rec.inc, inc, is_self=True, same_meta=meta == rec.meta)
            if verdict is Verdict.REFUTE and not self.leaving:
                self._refute(inc)
            return
        if rec is None:
            grave = self._graves.get(name)
            if grave is not None:
                if inc <= grave[0]:  # a record of a life that already ended here
                    self._buried(name, grave, inc, meta)
                    return
                del self._graves[name]
            if len(self._members) >= self.config.max_members:
                self.stats["drop_table_full"] += 1
                return
            rec = _Record(name, inc, meta, now)
            self._members[name] = rec
            self._members8[rec.name8] = rec
            self._live_add(rec)
            self._order_insert(rec)
            self._event(EventKind.JOIN, rec)
            self._broadcast_alive(rec)
            return
        if inc <= rec.inc:
            return
        if meta.address != rec.meta.address and inc >> 32 == rec.inc >> 32:
            # a node keeps its address for its whole life (epoch): a record that moves it
            # within one is forged, and believing it would send every probe of a live member
            # elsewhere, where nobody answers (a false death with no refutation)
            self._reject("moved", self._from)
            return
        if (
            meta.address != rec.meta.address
            and not checked
            and self.config.check_claims
            and (rec.state is _ALIVE or rec.state is _SUSPECT)
        ):
            self._check_move(rec, inc, meta, now)
            return
        old = rec.state
        if (old is _DEAD or old is _LEFT) and self._down.get(rec.meta.address) is rec:
            del self._down[rec.meta.address]
        meta_changed = meta != rec.meta
        if meta_changed:
            rec.meta = meta
            rec.meta8 = codec.encode_meta(meta)
        rec.inc = inc
        rec.state = _ALIVE
        rec.suspicion = None
        if old is not _ALIVE:
            rec.changed_at = now
        if old is _DEAD or old is _LEFT:
            self._live_add(rec)
            self._order_insert(rec)
            self._rejoin.pop(name, None)
            self._event(EventKind.JOIN, rec)
        else:
            if old is _SUSPECT:
                self._event(EventKind.ALIVE, rec)
            if meta_changed:
                self._event(EventKind.METADATA, rec)
        self._broadcast_alive(rec)

    def _check_move(self, rec: _Record, inc: int, meta: NodeMeta, now: float) -> None:
        """A record of a new life moves a live member to another address: checked where the
        member is now before it is believed.

        A new epoch may come from anywhere (a restart at another address), so the record
        cannot be refused as a forgery outright; but believing a forged one sends every probe
        of a live member to an address where nobody answers, and the member, never probed
        there, does not hear of the suspicion that follows until it is declared dead (traced
        under ``bench_swim_fuzz``). So the member's current address is asked first, as for a
        claim of its death: any ack (direct or relayed) means it still lives there and the
        record is refused (``moves_refused``); silence for two rounds of ``2 · probe_timeout``
        means it is gone, and the record is applied. A genuine restart at a new address is
        thus taken up to ``4 · probe_timeout`` later than SWIM would.
        """
        seq = self._moving.get(rec.name)
        if seq is not None:  # a check is under way: the newest record waits for its verdict
            name, known, _, rounds = self._move_checks[seq]
            if inc > known:
                self._move_checks[seq] = (name, inc, meta, rounds)
            self.stats["moves_joined"] += 1
            return
        if len(self._move_checks) >= self.config.max_relays:
            self.stats["drop_move_checks_full"] += 1
            return
        self.stats["moves_checked"] += 1
        # two rounds even for a member held suspect: a forger can have it suspected first
        self._check_move_round(rec, inc, meta, 2, now)

    def _check_move_round(
        self, rec: _Record, inc: int, meta: NodeMeta, rounds: int, now: float
    ) -> None:
        """One round of a move check: a ping at the current address, and ping-reqs."""
        seq = self._next_seq()
        self._move_checks[seq] = (rec.name, inc, meta, rounds)
        self._moving[rec.name] = seq
        self._send(rec.meta.address, codec.header_ping(seq, rec.name8))
        header = codec.header_ping_req(seq, codec.encode_address(*rec.meta.address), rec.name8)
        for helper in self._sample(self.config.indirect_probes, rec, alive_only=True):
            self._send(helper.meta.address, header)
        self._fx.timers.append(((T_MOVE, "", seq), now + 2 * self.config.probe_timeout))

    def _move_disproved(self, seq: int) -> None:
        """The member answered where it is: the record that moved it is refused."""
        name = self._move_checks.pop(seq)[0]
        del self._moving[name]
        self.stats["moves_refused"] += 1

    def _move_check_expired(self, seq: int, now: float) -> None:
        check = self._move_checks.pop(seq, None)
        if check is None:
            return  # answered
        name, inc, meta, rounds = check
        del self._moving[name]
        rec = self._members.get(name)
        if rec is None or inc <= rec.inc:
            return  # a newer record of the member came meanwhile
        if rounds > 1 and (rec.state is _ALIVE or rec.state is _SUSPECT):
            self._check_move_round(rec, inc, meta, rounds - 1, now)
            return
        self.stats["moves_confirmed"] += 1
        self._on_alive(name, inc, meta, now, checked=True)

    def _on_suspect(self, name: str, inc: int, accuser: str, now: float) -> None:
        rec = self._members.get(name)
        if rec is None:
            return
        is_self = rec is self._self
        if is_self and self.leaving:
            return
        if is_self and inc < rec.inc:
            self._restate()
            return
        verdict = judge_suspect(rec.state, rec.inc, inc, is_self=is_self)
        if verdict is Verdict.REFUTE:
            self._refute(inc)
        elif verdict is Verdict.CONFIRM:
            susp = rec.suspicion
            if susp is not None and accuser not in susp.accusers:
                if susp.confirm(accuser):
                    self._fx.timers.append(((T_SUSPECT, name, rec.inc), susp.deadline))
                accuser8 = codec.encode_name(accuser) if accuser else rec.name8
                self._broadcast(name, codec.encode_suspect(rec.name8, rec.inc, accuser8))
        elif verdict is Verdict.APPLY:
            rec.inc = inc
            rec.state = _SUSPECT
            rec.changed_at = now
            cfg = self.config
            n = len(self._live) + 1
            low, high = suspicion_bounds(cfg.suspicion_mult, cfg.suspicion_max_mult, n, cfg.period)
            if cfg.lifeguard:
                expected = expected_confirmations(cfg.suspicion_mult, n)
            else:
                high, expected = low, 0
            susp = rec.suspicion = _Suspicion(now, low, high, expected, accuser or self.name)
            self._fx.timers.append(((T_SUSPECT, name, inc), susp.deadline))
            self._event(EventKind.SUSPECT, rec)
            accuser8 = codec.encode_name(accuser) if accuser else self._self.name8
            self._broadcast(name, codec.encode_suspect(rec.name8, inc, accuser8))

    def _on_dead_claim(self, name: str, inc: int, accuser: str, now: float, *, left: bool) -> None:
        """A *dead* or *left* record heard from someone else: checked before it is believed.

        SWIM believes such a record from anyone, so one forged record (from anybody without
        a key, from any key holder with one) takes a live member out of every view it
        reaches, until the member hears of it and refutes. Here a claim about a member this
        node holds alive or suspect is acted on only once the member fails a check: a ping
        carrying the claim (so a live member refutes at once, as in Lifeguard's buddy
        system) and ``indirect_probes`` ping-reqs. Any ack disproves the claim; silence for
        ``2 · probe_timeout`` confirms it about a member this node suspects too, and a second
        silent round confirms it about one it held alive (so that one lost ping under load is
        not a death). A *left* heard first-hand, from the member's own
        address, is believed at once (a leaving node puts its *left* record on every ack,
        so a relayed *left* is confirmed within a round trip while the node is still up).

        The price is that a member declared dead by another node is taken out here up to
        ``2 · probe_timeout`` later than SWIM would, twice that if this node never suspected it
        (``swim claim check`` in the SWIM benchmarks); the node's own verdicts (its suspicion
        timeouts) are unchanged.
        ``SwimConfig.check_claims=False`` restores SWIM's rule.
        """
        rec = self._members.get(name)
        if (
            rec is None
            or not self.config.check_claims
            or rec is self._self
            or (rec.state is not _ALIVE and rec.state is not _SUSPECT)
            or inc < rec.inc
            or (left and self._from == rec.meta.address)
        ):
            self._on_dead(name, inc, accuser, now, left=left)
            return
        seq = self._checking.get(name)
        if seq is not None:  # a check is under way: the claim joins it
            _, known, _, _, rounds = self._claim_checks[seq]
            if inc > known:
                self._claim_checks[seq] = (name, inc, left, accuser, rounds)
            self.stats["claims_joined"] += 1
            return
        if len(self._claim_checks) >= self.config.max_relays:
            self.stats["drop_claims_full"] += 1
            return
        self.stats["claims_checked"] += 1
        # a member we also suspect has failed our own probe already: one silent round is a
        # second, independent signal; one we hold alive needs two (a lost ping is not enough)
        self._check_claim(rec, inc, left, accuser, 1 if rec.state is _SUSPECT else 2, now)

    def _check_claim(
        self, rec: _Record, inc: int, left: bool, accuser: str, rounds: int, now: float
    ) -> None:
        """One round of a claim check: a ping carrying the claim, and ping-reqs."""
        seq = self._next_seq()
        self._claim_checks[seq] = (rec.name, inc, left, accuser, rounds)
        self._checking[rec.name] = seq
        if left:
            notice = codec.encode_left(rec.name8, inc)
        else:
            accuser8 = codec.encode_name(accuser) if accuser else rec.name8
            notice = codec.encode_dead(rec.name8, inc, accuser8)
        self._send(rec.meta.address, codec.header_ping(seq, rec.name8), notice)
        header = codec.header_ping_req(seq, codec.encode_address(*rec.meta.address), rec.name8)
        for helper in self._sample(self.config.indirect_probes, rec, alive_only=True):
            self._send(helper.meta.address, header)
        self._fx.timers.append(((T_CLAIM, "", seq), now + 2 * self.config.probe_timeout))

    def _claim_disproved(self, seq: int) -> None:
        """The member answered: the claim is dropped (it refutes it, having heard of it)."""
        name = self._claim_checks.pop(seq)[0]
        del self._checking[name]
        self.stats["claims_disproved"] += 1

    def _claim_check_expired(self, seq: int, now: float) -> None:
        check = self._claim_checks.pop(seq, None)
        if check is None:
            return  # answered
        name, inc, left, accuser, rounds = check
        del self._checking[name]
        rec = self._members.get(name)
        if rec is not None and (rec.state is _ALIVE or rec.state is _SUSPECT) and inc >= rec.inc:
            if rounds > 1:
                self.stats["claims_rechecked"] += 1
                self._check_claim(rec, inc, left, accuser, rounds - 1, now)
                return
            self.stats["claims_confirmed"] += 1
        self._on_dead(name, inc, accuser, now, left=left)

    def _on_dead(self, name: str, inc: int, accuser: str, now: float, *, left: bool) -> None:
        rec = self._members.get(name)
        if rec is None:
            return
        is_self = rec is self._self
        if is_self and inc < rec.inc and not self.leaving:
            self._restate()
            return
        verdict = judge_dead(rec.state, rec.inc, inc, is_self=is_self, leaving=self.leaving)
        if verdict is Verdict.REFUTE:
            self._refute(inc)
            return
        if verdict is not Verdict.APPLY:
            return
        rec.inc = inc
        rec.state = _LEFT if left else _DEAD
        rec.changed_at = now
        rec.suspicion = None
        self._live_remove(rec)
        if len(self._down) < self.config.max_members:
            self._down[rec.meta.address] = rec
        self._dead_fifo.append((now, name, inc))
        if left:
            self._event(EventKind.LEFT, rec)
            self._broadcast(name, codec.encode_left(rec.name8, inc))
        else:
            if len(self._rejoin) >= self.config.max_rejoin_candidates:
                del self._rejoin[next(iter(self._rejoin))]
            self._rejoin[name] = (rec.meta.address, now)
            self._event(EventKind.DEAD, rec)
            accuser8 = codec.encode_name(accuser) if accuser else self._self.name8
            self._broadcast(name, codec.encode_dead(rec.name8, inc, accuser8))

    def _suspicion_expired(self, name: str, inc: int, now: float) -> None:
        """The suspicion timer ran out: one last direct and indirect probe before the verdict.

        This *final check* is our addition to SWIM/Lifeguard. Measured at 10 % loss, a member
        that refuted a suspicion could still be declared dead by the rare node that missed
        every copy of the refutation and whose (long, unconfirmed) timer then expired. The
        final ping carries the suspicion (buddy system); the suspect answers an outdated
        accusation by gossiping its current alive record, which rides on its ack and clears
        the suspicion here. A crashed member answers nothing and is declared dead
        ``2 · probe_timeout`` later.
        """
        rec = self._members.get(name)
        if rec is None or rec.state is not _SUSPECT or rec.inc != inc:
            return
        susp = rec.suspicion
        if susp is None or now < susp.deadline - 1e-9:
            return
        seq = self._next_seq()
        if len(self._final_checks) >= self.config.max_relays:
            self._final_checks.pop(next(iter(self._final_checks)))
        self._final_checks[seq] = (name, inc)
        notice = codec.encode_suspect(rec.name8, inc, self._self.name8)
        self._send(rec.meta.address, codec.header_ping(seq, rec.name8), notice)
        header = codec.header_ping_req(seq, codec.encode_address(*rec.meta.address), rec.name8)
        for helper in self._sample(self.config.indirect_probes, rec, alive_only=True):
            self._send(helper.meta.address, header)
        self._fx.timers.append(((T_FINAL, "", seq), now + 2 * self.config.probe_timeout))

    def _final_check_answered(self, seq: int, now: float) -> None:
        """The suspect is alive after all. If its ack did not bring a newer incarnation, keep
        suspecting it but wait another minimum timeout (it will refute by gossip)."""
        name, inc = self._final_checks.pop(seq)
        rec = self._members.get(name)
        if rec is None or rec.state is not _SUSPECT or rec.inc != inc or rec.suspicion is None:
            return
        self.stats["final_checks_answered"] += 1
        rec.suspicion.deadline = now + rec.suspicion.low
        self._fx.timers.append(((T_SUSPECT, name, inc), rec.suspicion.deadline))

    def _final_check_expired(self, seq: int, now: float) -> None:
        check = self._final_checks.pop(seq, None)
        if check is None:
            return
        name, inc = check
        rec = self._members.get(name)
        if rec is None or rec.state is not _SUSPECT or rec.inc != inc:
            return
        self.stats["declared_dead"] += 1
        self._on_dead(name, inc, self.name, now, left=False)

    # ------------------------------------------------------------------ periodic work

    def _probe_tick(self, now: float) -> None:
        cfg = self.config
        self._finish_probe(now)
        self._pp_budget = cfg.pushpull_replies_per_period
        self._reap(now)
        scale = self.health.score + 1 if cfg.lifeguard else 1
        target = self._next_target()
        if target is not None:
            self.probes += 1
            seq = self._probe_seq = self._next_seq()
            self._probe_target = target
            self._probe_inc = target.inc
            self._probe_acked = False
            self._probe_sent = now
            self._probe_expected_nacks = 0
            self._probe_nacks = 0
            if self.on_probe is not None:
                self.on_probe.append((now, target.name))
            first = None
            if target.state is _SUSPECT and cfg.lifeguard:  # buddy system
                first = codec.encode_suspect(target.name8, target.inc, self._self.name8)
            self._send(target.meta.address, codec.header_ping(seq, target.name8), first)
            self._fx.timers.append(((T_PROBE_TIMEOUT, "", seq), now + cfg.probe_timeout * scale))
        self._tick_gen += 1
        self._fx.timers.append(((T_PROBE, "", self._tick_gen), now + cfg.period * scale))

    def _next_target(self) -> _Record | None:
        order = self._order
        members = self._members
        while True:
            if self._order_idx >= len(order):
                for rec in order:
                    rec.in_order = False
                order = self._order = list(self._live)
                for rec in order:
                    rec.in_order = True
                self.rng.shuffle(order)
                self._order_idx = 0
                if not order:
                    return None
            rec = order[self._order_idx]
            self._order_idx += 1
            if (rec.state is _ALIVE or rec.state is _SUSPECT) and members.get(rec.name) is rec:
                return rec

    def _probe_timeout(self, seq: int) -> None:
        target = self._probe_target
        if seq != self._probe_seq or self._probe_acked or target is None:
            return
        helpers = self._sample(self.config.indirect_probes, target, alive_only=True)
        header = codec.header_ping_req(
            seq, codec.encode_address(*target.meta.address), target.name8
        )
        for rec in helpers:
            self._send(rec.meta.address, header)
        self._probe_expected_nacks = len(helpers) if self.config.lifeguard else 0

    def _finish_probe(self, now: float) -> None:
        target = self._probe_target
        if target is None:
            return
        self._probe_target = None
        if self._probe_acked:
            return
        self.stats["probes_failed"] += 1
        if self.config.lifeguard:
            expected = self._probe_expected_nacks
            missed = expected - self._probe_nacks if expected else 1
            if missed > 0:
                self.health.apply(missed)
        if self._members.get(target.name) is not target or target.inc != self._probe_inc:
            return
        if target.state is _ALIVE or target.state is _SUSPECT:
            self._on_suspect(target.name, target.inc, self.name, now)
            if self.config.lifeguard and target.state is _SUSPECT:
                notice = codec.encode_suspect(target.name8, target.inc, self._self.name8)
                self._send(target.meta.address, codec.HEADER_GOSSIP, notice)

    def _reap(self, now: float) -> None:
        fifo = self._dead_fifo
        horizon = now - self.config.dead_retention
        while fifo and fifo[0][0] <= horizon:
            when, name, inc = fifo.popleft()
            rec = self._members.get(name)
            if (
                rec is not None
                and rec is not self._self
                and (rec.state is _DEAD or rec.state is _LEFT)
                and rec.inc == inc
                and rec.changed_at == when
            ):
                del self._members[name]
                del self._members8[rec.name8]
                if self._down.get(rec.meta.address) is rec:
                    del self._down[rec.meta.address]
                self._queue.drop(name)
                self._bury(name, inc, rec.state is _LEFT)
                self.stats["reaped"] += 1

    def _bury(self, name: str, ver: int, left: bool) -> None:
        """Remember that ``name`` ended at ``ver`` (bounded: the oldest grave goes first)."""
        graves = self._graves
        graves.pop(name, None)
        graves[name] = (ver, left)
        if len(graves) > self.config.max_tombstones:
            graves.popitem(last=False)

    def _buried(self, name: str, grave: tuple[int, bool], ver: int, meta: NodeMeta) -> None:
        """An alive record of a member reaped at ``grave``: refused. A replay, or a member
        that was declared dead while cut off and never heard of it (a healing partition):
        that one is told so directly, at the address in the record, and it refutes with a
        newer version, which is then accepted. A member that *left* ended its life; there
        is nobody to tell."""
        self._reject("buried", self._from)
        dead_at, left = grave
        if left or ver != dead_at:
            return
        name8 = codec.encode_name(name)
        notice = codec.encode_dead(name8, dead_at, self._self.name8)
        self.stats["told_buried"] += 1
        self._send(meta.address, codec.HEADER_GOSSIP, notice)

    def _gossip_tick(self, now: float) -> None:
        if not len(self._queue):
            return
        cfg = self.config
        targets = [
            rec.meta.address for rec in self._sample(cfg.gossip_nodes, None, alive_only=False)
        ]
        if self._rejoin and self.rng.random() < len(self._rejoin) / (
            len(self._live) + len(self._rejoin)
        ):
            addr, died = self._rejoin[self.rng.choice(list(self._rejoin))]
            if now - died <= cfg.gossip_to_dead:
                targets[-1:] = [addr]
        for addr in targets:
            if not len(self._queue):
                break
            self._send(addr, codec.HEADER_GOSSIP)
        if len(self._queue):
            self._arm_gossip()

    def _pushpull_tick(self, now: float) -> None:
        interval = self.config.pushpull_interval
        assert interval is not None
        peers = self._sample(1, None, alive_only=True)
        if peers and not self.leaving:
            self._send_state(peers[0].meta.address, codec.FLAG_FIRST)
        delay = pushpull_scale(interval, len(self._live) + 1)
        self._fx.timers.append(((T_PUSHPULL, "", 0), now + delay))

    def _rejoin_tick(self, now: float) -> None:
        cfg = self.config
        assert cfg.rejoin_interval is not None
        self._fx.timers.append(((T_REJOIN, "", 0), now + cfg.rejoin_interval))
        if self.leaving:
            return
        live_addrs = {rec.meta.address for rec in self._live} if self._seeds else set()
        lost = [seed for seed in self._seeds if seed not in live_addrs]
        if lost:
            self._send_state(self.rng.choice(lost), codec.FLAG_FIRST)
        horizon = now - cfg.rejoin_window
        for name in [n for n, (_, died) in self._rejoin.items() if died < horizon]:
            del self._rejoin[name]
        if self._rejoin:
            addr, _ = self._rejoin[self.rng.choice(list(self._rejoin))]
            self._send_state(addr, codec.FLAG_FIRST)

    def _send_state(self, addr: Address, flags: int, *, with_self: bool = False) -> None:
        """Send the whole member table to ``addr`` as FULL records, chunked to fit datagrams.

        Only the first chunk of a request carries ``FLAG_FIRST``, so the peer answers once.
        Our own record is left out while the name is not known to be ours (see
        :meth:`_withheld`) unless ``with_self``.
        """
        budget = self._payload_max - 5 - len(self._self.name8)
        chunk: list[bytes] = []
        used = 0
        skip = None if with_self or not self._withheld() else self._self
        for rec in self._members.values():
            if rec is skip:
                continue
            state = rec.state
            if rec is self._self and self.leaving:
                state = _LEFT
            record = codec.encode_full(state, rec.name8, rec.inc, rec.meta8)
            if used + len(record) > budget or len(chunk) == 0xFFFF:
                self._send_chunk(addr, flags, chunk)
                flags &= ~codec.FLAG_FIRST
                chunk, used = [], 0
            chunk.append(record)
            used += len(record)
        self._send_chunk(addr, flags, chunk)

    def _send_chunk(self, addr: Address, flags: int, chunk: list[bytes]) -> None:
        data = codec.header_pushpull(flags, self._self.name8, len(chunk)) + b"".join(chunk)
        if self._auth is not None:
            data = self._auth.seal(data)
        self.tx_datagrams += 1
        self.tx_bytes += len(data)
        self.stats["tx_pushpull"] += 1
        self._fx.datagrams.append((addr, data))

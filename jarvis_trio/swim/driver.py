"""The Trio driver: one UDP socket, two tasks, and the protocol core in between.

Usage, from the runtime::

    async with open_swim_node(name="a", bind=("127.0.0.1", 0), seeds=[("127.0.0.1", 7946)],
                              config=SwimConfig.from_mesh(mesh_config)) as node:
        events = node.subscribe()
        await node.update_metadata(directory_version=3)
        async for event in events: ...
        await node.leave()          # graceful, bounded by ``leave_timeout``

or ``node = await nursery.start(SwimNode(...).run)`` inside a nursery the caller owns.

Tasks (in the node's own nursery): the *receiver* awaits datagrams and feeds them to the
core; the *timer* task sleeps until the earliest armed deadline (``trio.current_time()``, so
``MockClock`` drives it) or until an earlier timer is armed. Nothing polls.

Bounds: the timer heap holds at most what the core arms (one probe tick, one probe timeout,
one relay timer per relayed ping-req, one suspicion timer per suspect, a few periodic ones);
stale tokens are dropped when they fire. Each subscriber has a bounded buffer
(``maxlen``, 256 by default). A subscriber that falls behind **loses** the events that do not
fit (counted in ``stats()["events_lost"]``) and, once it has drained what is buffered,
receives one *resync* event (``kind is None``): its picture is stale and it must re-read
:meth:`SwimNode.members`. Received datagrams are never buffered beyond the kernel's socket
buffer; garbage is dropped and counted by the core, and send errors are counted here.

Totality: the core refuses bad input itself (counted under ``drop_<reason>``); the driver
reports those refusals in one WARNING per ``log_interval`` at most (how many, by reason, the
latest source), so a flood of garbage costs counters, not a log line per datagram. Should an
input ever make the core raise all the same, the driver is the last line: the input is
counted under ``handler_errors``, logged (with its traceback, once per interval) and dropped,
and the node carries on.

Each start is a new *life* of the node: its records carry a fresh epoch
(:func:`~jarvis_trio.swim.members.boot_epoch`, from the wall clock and 16 random bits), so
nothing captured from an earlier life can evict it; records claiming an epoch more than a day
ahead of the wall clock are refused as forged (``drop_future``,
:func:`~jarvis_trio.swim.members.epoch_horizon`), which keeps every refutation representable.
With a cluster key, :attr:`SwimNode.keyring` rotates the key at run time (see
:mod:`~jarvis_trio.swim.keyring`).
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import random
import socket as _stdsocket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._histogram import Histogram
from ..config import MeshConfig
from ..errors import ConfigError
from .config import SwimConfig
from .keyring import Keyring
from .members import (
    Member,
    MembershipEvent,
    MemberState,
    NodeMeta,
    boot_epoch,
    epoch_horizon,
)
from .protocol import Address, Effects, SwimProtocol, TimerToken

__all__ = ["Subscription", "SwimNode", "open_swim_node"]

_log = logging.getLogger(__name__)
_RECV_SIZE = 65_536  # read whole datagrams so that oversized ones are seen and counted
_CATCH_UP_LIMIT = 10_000  # datagrams handled before a timer's turn, at most (see _catch_up)


class Subscription:
    """A bounded stream of membership events; iterate it with ``async for``.

    See the module docstring for what happens when it falls behind. ``close()`` (or leaving
    an ``async with``) unsubscribes.
    """

    def __init__(self, node: SwimNode, maxlen: int) -> None:
        self._node = node
        self._send, self._receive = trio.open_memory_channel[MembershipEvent](maxlen)
        self.lost = 0
        self._resync = False

    def _offer(self, event: MembershipEvent) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.lost += 1
            self._resync = True
            self._node._counters["events_lost"] += 1
        except trio.ClosedResourceError:
            pass

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> MembershipEvent:
        try:
            return self._receive.receive_nowait()
        except trio.WouldBlock:
            pass
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        if self._resync:
            self._resync = False
            return MembershipEvent(None, self._node.local_member)
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def receive(self) -> MembershipEvent:
        """The next event (or resync marker)."""
        return await self.__anext__()

    def close(self) -> None:
        """Stop receiving; pending events are discarded."""
        self._node._subscribers.discard(self)
        self._send.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class SwimNode:
    """One SWIM member on a real UDP socket. Start it with :meth:`run` or
    :func:`open_swim_node`."""

    def __init__(
        self,
        *,
        name: str,
        bind: tuple[str, int] = ("127.0.0.1", 7946),
        seeds: Sequence[tuple[str, int]] = (),
        config: SwimConfig | None = None,
        advertise_host: str | None = None,
        data_port: int = 0,
        public_key: bytes = b"",
        directory_version: int = 0,
        cluster_key: bytes | None = None,
        cluster_name: str = "jarvis",
        rng: random.Random | None = None,
        leave_timeout: float | None = None,
        keyring: Keyring | None = None,
        epoch: int | None = None,
        log_interval: float = 10.0,
        resolver: Resolver | None = None,
    ) -> None:
        self.name = name
        self.config = config or SwimConfig()
        self._bind = bind
        self._seeds = list(seeds)
        self._resolver = resolver or resolve_all
        self._advertise_host = advertise_host
        self._data_port = data_port
        self._public_key = public_key
        self._directory_version = directory_version
        if keyring is None and cluster_key:
            keyring = Keyring([cluster_key], cluster_name)
        self.keyring = keyring
        self._rng = rng or random.Random()
        self._epoch = epoch
        self.log_interval = log_interval
        self._reported_at = -float("inf")
        self._reported: dict[str, int] = {}
        self._error_logged_at = -float("inf")
        self.leave_timeout = leave_timeout if leave_timeout is not None else 3 * self.config.period
        self._proto: SwimProtocol | None = None
        self._sock: trio.socket.SocketType | None = None
        self._raw: _stdsocket.socket | None = None  # the same socket, for reads that never wait
        self._timers: list[tuple[float, int, TimerToken]] = []
        self._timer_seq = 0
        self._timer_wakeup = trio.Event()
        self._subscribers: set[Subscription] = set()
        self._counters: Counter[str] = Counter()
        self._cancel: trio.CancelScope | None = None
        self._left = trio.Event()
        self._activity = trio.lowlevel.ParkingLot()
        self.address: Address = bind
        self.last_send_error: str | None = None  # the latest failed send, for diagnostics

    @classmethod
    def from_mesh(
        cls,
        config: MeshConfig,
        *,
        public_key: bytes = b"",
        directory_version: int = 0,
        swim: SwimConfig | None = None,
        rng: random.Random | None = None,
    ) -> SwimNode:
        """A node configured from the mesh configuration (LAN profile unless ``swim``)."""
        return cls(
            name=config.node_name or "node",
            bind=(config.bind_host, config.bind_port),
            seeds=[(seed.host, seed.port) for seed in config.seed_nodes],
            config=swim or SwimConfig.from_mesh(config),
            advertise_host=config.advertise_host,
            data_port=config.resolved_data_port,
            public_key=public_key,
            directory_version=directory_version,
            cluster_key=config.cluster_key.encode() if config.cluster_key else None,
            cluster_name=config.cluster_name,
            rng=rng,
        )

    # ------------------------------------------------------------------ views

    @property
    def protocol(self) -> SwimProtocol:
        """The core (for inspection in tests); only valid once started."""
        if self._proto is None:
            raise RuntimeError("the SWIM node is not started")
        return self._proto

    @property
    def local_member(self) -> Member:
        """This node's own record."""
        return self.protocol.local_member

    def members(self) -> list[Member]:
        """Snapshot of the view (this node included; dead members until reaped)."""
        return self.protocol.members()

    def alive_members(self) -> list[Member]:
        """Snapshot of the members currently believed alive (suspects included)."""
        live = (MemberState.ALIVE, MemberState.SUSPECT)
        return [m for m in self.protocol.members() if m.state in live]

    @property
    def probe_rtt(self) -> Histogram:
        """Round trips of this node's probes, ping to ack (seconds), as SWIM measures them."""
        return self.protocol.probe_rtt

    def stats(self) -> dict[str, int]:
        """Counters: datagrams and bytes in and out, drops by reason (``drop_*``), refutations,
        failed probes, send errors, events lost by lagging subscribers, ..."""
        merged = self.protocol.counters()
        merged.update(self._counters)
        return merged

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-checking after every datagram or timer this
        node processes (no polling). Bound it with ``trio.fail_after``."""
        while not predicate():
            await self._activity.park()

    def subscribe(self, maxlen: int = 256) -> Subscription:
        """A new bounded event stream (see :class:`Subscription`)."""
        sub = Subscription(self, maxlen)
        self._subscribers.add(sub)
        return sub

    # ------------------------------------------------------------------ commands

    async def update_metadata(
        self,
        *,
        data_port: int | None = None,
        public_key: bytes | None = None,
        directory_version: int | None = None,
    ) -> None:
        """Change what this node advertises; peers learn it by gossip (incarnation bump)."""
        old = self.protocol.meta
        meta = NodeMeta(
            old.host,
            old.port,
            old.data_port if data_port is None else data_port,
            old.public_key if public_key is None else public_key,
            old.directory_version if directory_version is None else directory_version,
        )
        await self._apply(self.protocol.update_metadata(meta, trio.current_time()))

    async def leave(self) -> None:
        """Leave gracefully: gossip the *left* record, wait until it has been sent enough
        (at most ``leave_timeout`` seconds), then stop the node."""
        proto = self.protocol
        await self._apply(proto.leave(trio.current_time()))
        with trio.move_on_after(self.leave_timeout):
            if not proto.leave_done():
                await self._left.wait()
        self.close()

    def close(self) -> None:
        """Stop abruptly (no goodbye): peers will detect the failure."""
        if self._cancel is not None:
            self._cancel.cancel()

    # ------------------------------------------------------------------ running

    async def run(
        self, *, task_status: trio.TaskStatus[SwimNode] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, join the seeds, serve until cancelled, :meth:`leave` or :meth:`close`."""
        host, port = self._bind
        family = _stdsocket.AF_INET6 if ":" in host else _stdsocket.AF_INET
        raw = _stdsocket.socket(family, _stdsocket.SOCK_DGRAM)
        raw.setblocking(False)
        sock = trio.socket.from_stdlib_socket(raw)  # owns it: closing one closes both
        try:
            self._size_recv_buffer(sock)
            await sock.bind((host, port))
            self.address = sock.getsockname()[:2]
            advertised = await self._resolver(self._advertise_host or host, family)
            if not advertised:
                raise ConfigError("advertise_host", self._advertise_host, "a name that resolves")
            advertise = advertised[0]
            if ipaddress.ip_address(advertise).is_unspecified:
                raise ConfigError(
                    "advertise_host", self._advertise_host, f"an address peers reach (bound {host})"
                )
            if self.keyring is None and not ipaddress.ip_address(advertise).is_loopback:
                _log.warning(
                    "SWIM node %s listens on %s without a cluster key: anyone who reaches the "
                    "port can forge membership; set cluster_key",
                    self.name,
                    advertise,
                )
            meta = NodeMeta(
                advertise,
                self.address[1],
                self._data_port,
                self._public_key,
                self._directory_version,
            )
            self._sock = sock
            self._raw = raw
            epoch = self._epoch
            if epoch is None:
                epoch = boot_epoch(time.time_ns() // 1_000_000, self._rng.getrandbits(16))
            self._proto = SwimProtocol(
                self.name, meta, self.config, self._rng, epoch=epoch, keyring=self.keyring
            )
            self._proto.version_horizon = epoch_horizon(time.time_ns() // 1_000_000)
            seeds = await self._resolve_seeds(family)
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._seed_loop, family, seeds)
                now = trio.current_time()
                await self._apply(self._proto.start(now))
                await self._apply(self._proto.join(seeds, now))
                task_status.started(self)
        finally:
            sock.close()
            for sub in list(self._subscribers):
                sub.close()

    async def _resolve_seeds(self, family: int) -> list[Address]:
        """Every address of every seed, in order, duplicates dropped. A name that does not
        resolve right now is skipped (and counted): a seed's pods may not exist yet."""
        found: list[Address] = []
        for host, port in self._seeds:
            try:
                addresses = await self._resolver(host, family)
            except OSError as error:
                self._counters["seed_resolve_errors"] += 1
                _log.debug("SWIM node %s: seed %s does not resolve (%s)", self.name, host, error)
                continue
            found += [(address, port) for address in addresses]
        return list(dict.fromkeys(found))

    async def _seed_loop(self, family: int, current: list[Address]) -> None:
        """Resolve seed names again whenever this node is alone, has not joined yet, or has
        lost a seed: a seed behind a name (a Kubernetes headless service) may come back at
        another address. Every ``join_retry`` seconds while alone, else every
        ``rejoin_interval``; IP-literal seeds never change, so then there is nothing to do."""
        proto = self._proto
        assert proto is not None
        if all(_is_literal(host) for host, _ in self._seeds):
            return
        while True:
            alone = not proto.joined or proto.num_live() == 1
            quiet = self.config.rejoin_interval or 10 * self.config.join_retry
            await trio.sleep(self.config.join_retry if alone else quiet)
            if proto.leaving:
                return
            live = {
                member.meta.address
                for member in proto.members()
                if member.state in (MemberState.ALIVE, MemberState.SUSPECT)
            }
            lost = any(seed not in live for seed in current)
            if not (proto.joined and proto.num_live() > 1) or lost:
                fresh = await self._resolve_seeds(family)
                if fresh != current:
                    self._counters["seed_changes"] += 1
                    _log.info(
                        "SWIM node %s: seeds now resolve to %s",
                        self.name,
                        ", ".join(f"{host}:{port}" for host, port in fresh) or "nothing",
                    )
                    current = fresh
                    await self._apply(proto.set_seeds(fresh, trio.current_time()))

    def _size_recv_buffer(self, sock: trio.socket.SocketType) -> None:
        """Ask for ``config.recv_buffer`` and record what the kernel granted.

        A datagram that arrives while the socket's buffer is full is dropped by the kernel,
        and no counter of ours sees it. With the default buffer (about 208 KiB, some 170
        small datagrams), a flood of junk at 1,700 datagrams/s per node filled it whenever
        the process was off the CPU for 0.1 s, and genuine pings and acks went with the junk
        (bench_swim_fuzz: about 5 % of the flood; none with 4 MiB granted). The grant is
        capped by ``net.core.rmem_max``; a smaller grant than asked is logged (INFO).
        """
        wanted = self.config.recv_buffer
        if wanted is not None:
            try:
                sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF, wanted)
            except OSError:
                self._counters["recv_buffer_errors"] += 1
        granted = int(sock.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF))
        self._counters["recv_buffer"] = granted
        # Linux books twice the request (for its overhead); less than that is a capped grant
        if wanted is not None and granted < wanted:
            _log.info(
                "SWIM node %s: asked for a %d-byte receive buffer, got %d "
                "(raise net.core.rmem_max, or lower SwimConfig.recv_buffer)",
                self.name,
                wanted,
                granted,
            )

    async def _receive_loop(self) -> None:
        sock = self._sock
        proto = self._proto
        assert sock is not None and proto is not None
        # One buffer for every datagram, each copied out at its own size. ``recvfrom(64 KiB)``
        # mallocs 64 KiB per datagram and shrinks it; under a flood the heap fragments around
        # the long-lived records allocated in between: 3 nodes grew RSS by 9.3 MB over 10**6
        # fuzzed datagrams that way (tracemalloc: under 1 MB of it live objects), by about
        # 3 MB with this buffer (bench_swim_fuzz).
        buffer = bytearray(_RECV_SIZE)
        view = memoryview(buffer)
        while True:
            try:
                size, addr = await sock.recvfrom_into(buffer)
            except OSError:
                self._counters["recv_errors"] += 1
                continue
            await self._handle(bytes(view[:size]), addr)

    async def _handle(self, data: bytes, addr: Any) -> None:
        """One datagram through the protocol core, its effects applied."""
        proto = self._proto
        assert proto is not None
        now = trio.current_time()
        rejected = proto.rejected
        try:
            fx = proto.handle_datagram(data, (addr[0], addr[1]), now)
        except Exception:  # the last line: one datagram never stops the node
            self._handler_error("datagram", addr, now)
            return
        if proto.rejected != rejected and now - self._reported_at >= self.log_interval:
            self._report_rejections(now)
        await self._apply(fx)

    async def _catch_up(self, buffer: bytearray) -> None:
        """Handle the datagrams already waiting in the socket, before a timer's verdict.

        After the process was off the CPU (a loaded machine, a long pause), a timer whose
        deadline passed and the socket's backlog become ready together, and the timer may run
        first: a probe, a final check or a claim check would then be judged unanswered while
        the ack that answers it waits, unread, in the receive buffer -- a false suspicion or
        death made by the stall of this very node. So every due timer first waits for what
        is already queued (bounded by ``_CATCH_UP_LIMIT``, so that a flood cannot hold the
        timers back for long); reads here never wait, and an empty socket costs one call.
        """
        raw = self._raw
        assert raw is not None
        view = memoryview(buffer)
        for _ in range(_CATCH_UP_LIMIT):
            try:
                size, addr = raw.recvfrom_into(buffer)
            except BlockingIOError:
                return
            except OSError:
                self._counters["recv_errors"] += 1
                continue
            self._counters["caught_up"] += 1
            await self._handle(bytes(view[:size]), addr)

    def _handler_error(self, what: str, source: object, now: float) -> None:
        """Count (and at most once per interval log) an exception the core let out."""
        self._counters["handler_errors"] += 1
        if now - self._error_logged_at >= self.log_interval:
            self._error_logged_at = now
            _log.error(
                "SWIM node %s: a %s from %s raised; dropped it (%d so far)",
                self.name,
                what,
                source,
                self._counters["handler_errors"],
                exc_info=True,
            )

    def _report_rejections(self, now: float) -> None:
        """One WARNING for every refusal since the last one: counts by reason, latest source."""
        proto = self.protocol
        drops = {k: v for k, v in proto.stats.items() if k.startswith("drop_")}
        fresh = {k[5:]: v - self._reported.get(k, 0) for k, v in drops.items()}
        fresh = {k: v for k, v in sorted(fresh.items()) if v > 0}
        self._reported = drops
        self._reported_at = now
        reason, source = proto.last_rejected or ("?", ("?", 0))
        _log.warning(
            "SWIM node %s refused %d inputs (%s); the latest: %s from %s:%s",
            self.name,
            sum(fresh.values()),
            ", ".join(f"{k}={v}" for k, v in fresh.items()),
            reason,
            source[0],
            source[1],
        )

    async def _timer_loop(self) -> None:
        proto = self._proto
        assert proto is not None
        timers = self._timers
        buffer = bytearray(_RECV_SIZE)  # not the receive loop's: it may hold an unread datagram
        while True:
            now = trio.current_time()
            # at least once a protocol period: the probe tick is always armed
            proto.version_horizon = epoch_horizon(time.time_ns() // 1_000_000)
            if timers and timers[0][0] <= now:
                await self._catch_up(buffer)
            while timers and timers[0][0] <= now:
                _, _, token = heapq.heappop(timers)
                try:
                    fx = proto.handle_timer(token, now)
                except Exception:  # the last line, as for datagrams
                    self._handler_error("timer", token, now)
                    continue
                await self._apply(fx)
            deadline = timers[0][0] if timers else float("inf")
            self._timer_wakeup = trio.Event()
            with trio.move_on_at(deadline):
                await self._timer_wakeup.wait()

    async def _apply(self, fx: Effects) -> None:
        timers = self._timers
        for token, deadline in fx.timers:
            self._timer_seq += 1
            if not timers or deadline < timers[0][0]:
                self._timer_wakeup.set()
            heapq.heappush(timers, (deadline, self._timer_seq, token))
        for event in fx.events:
            for sub in list(self._subscribers):
                sub._offer(event)
        proto = self._proto
        if proto is not None and proto.leaving and proto.leave_done():
            self._left.set()
        if self._activity:
            self._activity.unpark_all()
        sock = self._sock
        if sock is None:
            return
        for addr, data in fx.datagrams:
            try:
                await sock.sendto(data, addr)
            except OSError as exc:
                self._counters["send_errors"] += 1
                self.last_send_error = f"{exc} (to {addr[0]}:{addr[1]})"


Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, family) -> IP literals``: every address of a name, in the resolver's order."""


async def resolve_all(host: str, family: int) -> list[str]:
    """Every address of ``host`` in ``family`` (an IP literal is its own only address);
    ``OSError`` (``gaierror``) when the name does not resolve."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    infos = await trio.socket.getaddrinfo(host, None, family, _stdsocket.SOCK_DGRAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@asynccontextmanager
async def open_swim_node(**kwargs: Any) -> AsyncIterator[SwimNode]:
    """Run a :class:`SwimNode` (same keyword arguments) for the duration of the block.

    Leaving the block without :meth:`SwimNode.leave` stops the node abruptly.
    """
    node = SwimNode(**kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            yield node
        finally:
            node.close()

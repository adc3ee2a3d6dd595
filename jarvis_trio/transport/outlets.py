"""The outbound half of the data channel: one DEALER per peer, owned by the Trio thread.

Why here and not on the I/O thread: a frame leaves through ZeroMQ from the thread that made
it, without waking another thread first -- on each side of a round trip one cross-thread
wake-up (a context switch and a GIL hand-over) less. ZeroMQ sockets are not thread-safe, so
every DEALER is created, used and closed on the Trio thread and nowhere else; the I/O thread
keeps the inbound ROUTER and the ZAP handler (:mod:`.iothread`). Both share one ZeroMQ
context (contexts are thread-safe), whose ``MAX_SOCKETS`` is sized from the cap below.

Batching: frames are queued per peer and shipped when the scheduling batch that queued them
ends (:class:`FlushBeforeWait`, Trio's ``before_io_wait``), packed into as few ZeroMQ
messages as ``pack_limit`` allows (:func:`~.framing.pack_frames`); a peer whose queue
reaches the pack limit is shipped at once. So a sequential request leaves as its task parks,
and the 64 requests that 64 tasks made in one batch leave in two ZeroMQ messages: the
batch's first ``lead_frames`` frames for a peer leave as soon as they are queued, the rest
when the batch ends. The lead lets the peer work on its part while this node makes the rest
(and answer while this node reads the first replies): with everything in one message, the
two processes took turns, each idle while the other worked (64 requesters: 20-25 % more
requests per second with the lead, ``benchmarks/README.md``). A one-way stream still leaves
in messages of ``pack_limit`` bytes after its lead.

Connections: :meth:`Outlets.connect` only records where a peer is. The DEALER is opened when
the first frame for it is shipped, closed after ``peer_idle_ms`` without traffic, and when
``max_peers`` are open the least recently used one (preferring one with nothing waiting) is
closed to make room, so membership of any size never exhausts ZeroMQ's socket table. A
connect that fails anyway (a bad key, a system limit) fails that one peer: its frames are
dropped and counted, nobody else notices. ZeroMQ reconnects a DEALER by itself when the peer
restarts on the same address; a handshake the peer refused is final in libzmq, so the owner
replaces the socket (``connect(..., fresh=True)``), keeping what waits for it.

Flow control: each peer has ``credits`` frames that may be queued or waiting for ZeroMQ at
once; a frame's credit returns when ZeroMQ accepted it or it was dropped. A DEALER that
refuses a message (its high-water mark; or, with ``IMMEDIATE``, no finished handshake yet)
keeps it and everything after it in the peer's backlog, and a writer task waits on the
socket's ``ZMQ_FD`` -- readable whenever the socket's events may have changed -- and drains
the backlog when ZeroMQ reports ``POLLOUT``. Nothing polls in a loop.

The ``before_io_wait`` hook runs inside Trio's scheduler, after it chose how long to sleep:
anything that would wake a task from there (a credit returned to a waiting sender, a writer
to start, a socket to close under its writer) is handed to ``TrioToken.run_sync_soon``,
which also ends that sleep at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import trio
import zmq

from .._throttle import ThrottledLog
from .framing import Packed, pack_frames
from .security import decode_public_key

if TYPE_CHECKING:
    import logging

    from .iothread import IOSettings

__all__ = ["FlushBeforeWait", "Outlets", "socket_budget"]


def socket_budget(max_peers: int) -> int:
    """ZeroMQ's socket table, sized from the cap on open DEALERs: a closed socket keeps its
    slot until libzmq's reaper thread has finished it (asynchronously, after its linger), so
    under churn up to about twice the cap are in the table; plus the ROUTER, the ZAP handler
    and headroom."""
    return max(1024, 2 * max_peers + 256)


class _Outlet:
    """One open DEALER and the messages ZeroMQ has not taken yet."""

    __slots__ = ("backlog", "endpoint", "fd", "last_used", "name", "server_key", "socket")

    def __init__(
        self, name: str, socket: zmq.Socket[bytes], endpoint: str, server_key: bytes | None
    ) -> None:
        self.name = name
        self.socket = socket
        self.endpoint = endpoint
        self.server_key = server_key
        self.backlog: deque[Packed] = deque()
        self.last_used = 0.0
        self.fd = -1  # ZMQ_FD once a writer waits on it


class Outlets:
    """Every outbound DEALER of one node (Trio thread only; see the module docstring).

    ``nursery`` runs the writer tasks and the idle sweeper; ``counters`` is shared with the
    bridge's statistics.
    """

    def __init__(
        self,
        settings: IOSettings,
        ctx: zmq.Context[zmq.Socket[bytes]],
        credits: int,
        nursery: trio.Nursery,
        log: logging.Logger,
    ) -> None:
        self.settings = settings
        self.limit = credits
        self.counters: dict[str, int] = {
            "frames_out": 0,
            "messages_out": 0,  # ZeroMQ messages: frames_out / messages_out is the packing
            "bytes_out": 0,
            "connects": 0,
            "peer_sockets_open": 0,
            "peer_sockets_peak": 0,
            "peers_evicted": 0,
            "peers_idle_closed": 0,
            "connect_failures": 0,
        }
        self._ctx = ctx
        self._nursery = nursery
        self._token = trio.lowlevel.current_trio_token()
        self._throttled = ThrottledLog(log)
        # where each known peer is (endpoint, server key): bounded by membership, no sockets
        self._known: dict[str, tuple[str, bytes | None]] = {}
        self._reached: set[str] = set()  # known peers that accepted a frame once
        # open DEALERs, least recently used first; at most ``max_peers``
        self._open: OrderedDict[str, _Outlet] = OrderedDict()
        self._queued: dict[str, list[bytes]] = {}  # this batch's frames, per peer
        self._queued_bytes: dict[str, int] = {}
        self._led: set[str] = set()  # peers whose lead left in this batch
        self._in_flight: dict[str, int] = {}  # queued + backlog, per peer
        self._lots: dict[str, trio.lowlevel.ParkingLot] = {}
        self._in_hook = False
        self._deferred: list[Callable[[], object]] = []
        self._sweeper = trio.lowlevel.ParkingLot()  # the idle sweeper waits here while none open
        self._closed = False
        nursery.start_soon(self._sweep)

    # -- peers ------------------------------------------------------------------------------
    def connect(self, peer: str, endpoint: str, server_key: bytes | None, fresh: bool) -> None:
        """Record where ``peer`` is; re-point its DEALER if one is open and the address or
        key changed (or ``fresh`` asks for a new handshake). Frames already queued for it go
        out first; its backlog follows it to the new socket."""
        where = (endpoint, server_key)
        self._known[peer] = where
        old = self._open.get(peer)
        if old is None or (not fresh and (old.endpoint, old.server_key) == where):
            return
        self._ship_queued(peer)
        try:
            outlet = self._new_outlet(peer, endpoint, server_key)
        except (zmq.ZMQError, OSError, ValueError) as exc:
            self._connect_failed(peer, exc)
            self._close(peer, "connect_failed")
            return
        outlet.backlog = old.backlog
        outlet.last_used = old.last_used
        old.backlog = deque()
        self._close_socket(old, self.settings.linger_ms)  # flushes what the old one took
        self._adopt(outlet)

    def disconnect(self, peer: str) -> None:
        """Forget ``peer``: its DEALER closes and what waits for it is dropped (``peer_gone``);
        its waiting senders are woken (the bridge then tells them it is gone)."""
        self._known.pop(peer, None)
        self._reached.discard(peer)
        self._close(peer, "peer_gone", linger_ms=0)
        self._wake(peer)
        if not self._in_flight.get(peer):
            self._in_flight.pop(peer, None)

    # -- sending ----------------------------------------------------------------------------
    def try_put(self, peer: str, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer`` if it has a credit; False when it has none."""
        in_flight = self._in_flight.get(peer, 0)
        if in_flight >= self.limit:
            return False
        self._in_flight[peer] = in_flight + 1
        queue = self._queued.get(peer)
        if queue is None:
            queue = self._queued[peer] = [frame]
            size = len(frame)
        else:
            queue.append(frame)
            size = self._queued_bytes[peer] + len(frame)
        self._queued_bytes[peer] = size
        if size >= self.settings.pack_limit:
            self._ship_queued(peer)
        elif len(queue) >= self.settings.lead_frames and peer not in self._led:
            # the batch's lead leaves now: the peer works on it while we make the rest
            self._led.add(peer)
            self._ship_queued(peer)
        return True

    async def wait_credit(self, peer: str) -> None:
        """Wait until ``peer`` may have a credit again: what is queued for it is shipped
        first, then, if ZeroMQ still holds ``credits`` frames back, until a writer drains
        some (or the peer is dropped)."""
        self._ship_queued(peer)
        if self._in_flight.get(peer, 0) < self.limit or self._closed:
            await trio.lowlevel.checkpoint()
            return
        lot = self._lots.get(peer)
        if lot is None:
            lot = self._lots[peer] = trio.lowlevel.ParkingLot()
        await lot.park()

    def in_flight(self, peer: str) -> int:
        """Frames for ``peer`` queued or waiting for ZeroMQ."""
        return self._in_flight.get(peer, 0)

    def flush(self) -> None:
        """Ship every peer's queued frames (the end of a scheduling batch). Never raises."""
        if self._led:
            self._led.clear()
        if not self._queued:
            return
        self._in_hook = True
        try:
            while self._queued:
                peer = next(iter(self._queued))
                self._ship_queued(peer)
        except Exception as exc:  # never raise from the scheduler's hook
            self._throttled("flush", "node %s: shipping frames failed: %r", self.name, exc)
            for peer, frames in list(self._queued.items()):
                self._drop_frames(peer, "send_failed", len(frames))
            self._queued.clear()
            self._queued_bytes.clear()
        finally:
            self._in_hook = False
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            self._token.run_sync_soon(_run_all, deferred)

    def _ship_queued(self, peer: str) -> None:
        frames = self._queued.pop(peer, None)
        if frames is None:
            return
        del self._queued_bytes[peer]
        outlet = self._open.get(peer)
        if outlet is None:
            outlet = self._open_known(peer)
            if outlet is None:
                known = peer in self._known
                self._drop_frames(peer, "connect_failed" if known else "unknown_peer", len(frames))
                return
        else:
            self._open.move_to_end(peer)
        outlet.last_used = time.monotonic()
        backlog = outlet.backlog
        for packed in pack_frames(frames, self.settings.pack_limit):
            if backlog:
                backlog.append(packed)
            elif not self._try_send(outlet, packed):
                backlog.append(packed)
                self._soon(self._start_writer, outlet)

    def _try_send(self, outlet: _Outlet, packed: Packed) -> bool:
        """Hand one message to ZeroMQ; False when it must wait (it did not take it). A
        send that fails for good drops the message (counted, ``send_failed``)."""
        try:
            outlet.socket.send(packed[0], zmq.NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            self._throttled("send", "node %s: a send to %s failed: %s", self.name, outlet.name, exc)
            self._drop_frames(outlet.name, "send_failed", packed[1])
            return True
        counters = self.counters
        counters["frames_out"] += packed[1]
        counters["messages_out"] += 1
        counters["bytes_out"] += len(packed[0])
        if outlet.name not in self._reached:
            self._reached.add(outlet.name)
        self._settle(outlet.name, packed[1])
        return True

    def _settle(self, peer: str, count: int) -> None:
        left = self._in_flight.get(peer, 0) - count
        if left > 0:
            self._in_flight[peer] = left
        else:
            self._in_flight.pop(peer, None)
        if peer in self._lots:
            self._soon(self._wake, peer)

    def _drop_frames(self, peer: str, reason: str, count: int) -> None:
        key = f"dropped_{reason}"
        self.counters[key] = self.counters.get(key, 0) + count
        self._settle(peer, count)

    def _wake(self, peer: str) -> None:
        lot = self._lots.pop(peer, None)
        if lot is not None:
            lot.unpark_all()

    def _soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` now, or -- inside the scheduler's hook, where waking a task
        would not end the sleep Trio already chose -- right after the hook."""
        if self._in_hook:
            self._deferred.append(lambda: fn(*args))
        else:
            fn(*args)

    # -- writers ----------------------------------------------------------------------------
    def _start_writer(self, outlet: _Outlet) -> None:
        if self._open.get(outlet.name) is outlet and outlet.backlog and outlet.fd < 0:
            outlet.fd = cast(int, outlet.socket.getsockopt(zmq.FD))
            self._nursery.start_soon(self._write, outlet)

    async def _write(self, outlet: _Outlet) -> None:
        """Drain ``outlet``'s backlog as ZeroMQ takes it; ends when it is empty or closed."""
        sock = outlet.socket
        backlog = outlet.backlog
        try:
            while backlog and not sock.closed:
                # ZMQ_FD signals changes only: ask for the events before every wait
                if cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLOUT:
                    while backlog and self._try_send(outlet, backlog[0]):
                        backlog.popleft()
                    continue
                await trio.lowlevel.wait_readable(outlet.fd)
        except (trio.ClosedResourceError, zmq.ZMQError):
            return  # closed under us: whoever closed it accounted for the backlog
        finally:
            outlet.fd = -1
        if self._open.get(outlet.name) is outlet:
            outlet.last_used = time.monotonic()

    # -- opening and closing ----------------------------------------------------------------
    def _open_known(self, name: str) -> _Outlet | None:
        """Open the DEALER of a known peer on demand, making room under ``max_peers``;
        ``None`` for an unknown peer or a failed connect (counted)."""
        where = self._known.get(name)
        if where is None:
            return None
        while len(self._open) >= self.settings.max_peers:
            self._evict()
        try:
            outlet = self._new_outlet(name, *where)
        except (zmq.ZMQError, OSError, ValueError) as exc:
            self._connect_failed(name, exc)
            return None
        self._adopt(outlet)
        return outlet

    def _connect_failed(self, name: str, exc: BaseException) -> None:
        self.counters["connect_failures"] += 1
        self._throttled("connect", "node %s: cannot connect to %s: %s", self.name, name, exc)

    def _new_outlet(self, name: str, endpoint: str, server_key: bytes | None) -> _Outlet:
        s = self.settings
        if s.keypair is not None and server_key is None:
            raise ValueError(f"peer {name!r} has no public key; CURVE needs one")
        sock = self._ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, s.linger_ms)
            sock.setsockopt(zmq.IPV6, 1)
            sock.setsockopt(zmq.SNDHWM, s.sndhwm)
            # Queue nothing inside ZeroMQ before the handshake succeeded: frames wait in our
            # backlog instead, so a refused handshake (which ends the connection for good) or
            # a peer that is not up yet loses nothing.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.RECONNECT_IVL, s.reconnect_ivl_ms)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, s.reconnect_ivl_max_ms)
            if s.keypair is not None:
                assert server_key is not None
                sock.setsockopt(zmq.CURVE_SERVERKEY, _z85(server_key))
                sock.setsockopt(zmq.CURVE_PUBLICKEY, s.keypair.public)
                sock.setsockopt(zmq.CURVE_SECRETKEY, s.keypair.secret)
            else:
                sock.setsockopt(zmq.ROUTING_ID, s.node_name.encode())
            sock.connect(endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        outlet = _Outlet(name, sock, endpoint, server_key)
        outlet.last_used = time.monotonic()
        return outlet

    def _adopt(self, outlet: _Outlet) -> None:
        opened = self._open
        opened[outlet.name] = outlet
        opened.move_to_end(outlet.name)
        counters = self.counters
        counters["connects"] += 1
        counters["peer_sockets_open"] = len(opened)
        counters["peer_sockets_peak"] = max(counters["peer_sockets_peak"], len(opened))
        if outlet.backlog:
            self._soon(self._start_writer, outlet)
        if len(opened) == 1:
            self._soon(self._sweeper.unpark_all)

    def _evict(self) -> None:
        """Close one DEALER to make room, least recently used first among: those with
        nothing waiting; then those towards peers that never accepted a frame (unreachable
        ones: with many members down, they must not push out the peers that work); then
        any. A backlog closed with its socket is dropped and counted (``evicted``); frames
        queued in this batch stay queued and reopen the socket when shipped."""
        outlets = self._open.values()
        queued = self._queued
        victim = next((o for o in outlets if not o.backlog and o.name not in queued), None)
        if victim is None:
            victim = next((o for o in outlets if o.name not in self._reached), None)
        if victim is None:
            victim = next(iter(outlets))
        self.counters["peers_evicted"] += 1
        self._close(victim.name, "evicted", keep_queued=True)

    def _close(
        self, name: str, reason: str, linger_ms: int | None = None, keep_queued: bool = False
    ) -> None:
        """Close ``name``'s DEALER if open (the peer stays known unless forgotten: the next
        frame reopens it); its backlog -- and, unless ``keep_queued``, the frames queued
        for it in this batch -- is dropped as ``reason``."""
        if not keep_queued:
            queued = self._queued.pop(name, None)
            if queued is not None:
                del self._queued_bytes[name]
                self._drop_frames(name, reason, len(queued))
        outlet = self._open.pop(name, None)
        if outlet is None:
            return
        self.counters["peer_sockets_open"] = len(self._open)
        if outlet.backlog:
            self._drop_frames(name, reason, sum(count for _, count in outlet.backlog))
            outlet.backlog.clear()
        self._close_socket(outlet, self.settings.linger_ms if linger_ms is None else linger_ms)

    def _close_socket(self, outlet: _Outlet, linger_ms: int) -> None:
        if outlet.fd >= 0:  # its writer waits on the descriptor: wake it before it goes
            self._soon(_close_watched, outlet.socket, outlet.fd, linger_ms)
        else:
            outlet.socket.close(linger=linger_ms)

    async def _sweep(self) -> None:
        """Close DEALERs unused for ``peer_idle_ms`` with nothing waiting; sleeps while none
        is open."""
        idle = self.settings.peer_idle_ms / 1000
        while True:
            if not self._open:
                await self._sweeper.park()
                continue
            await trio.sleep(max(0.01, idle / 4))
            horizon = time.monotonic() - idle
            for outlet in list(self._open.values()):
                if outlet.last_used > horizon:
                    break
                if not outlet.backlog and outlet.name not in self._queued:
                    self.counters["peers_idle_closed"] += 1
                    self._close(outlet.name, "idle")

    def close(self) -> None:
        """Close every DEALER (bounded linger); later sends are refused by the bridge."""
        self._closed = True
        for name in list(self._open):
            self._close(name, "closed")
        for peer in list(self._lots):
            self._wake(peer)

    @property
    def name(self) -> str:
        return self.settings.node_name


def _run_all(calls: list[Callable[[], object]]) -> None:
    for call in calls:
        call()


def _close_watched(sock: zmq.Socket[bytes], fd: int, linger_ms: int) -> None:
    trio.lowlevel.notify_closing(fd)
    sock.close(linger=linger_ms)


class FlushBeforeWait(trio.abc.Instrument):
    """Ships what a scheduling batch queued, each time Trio is about to wait for I/O: Trio
    calls ``before_io_wait`` once per batch. Never raises (Trio would disable it)."""

    def __init__(self, outlets: Outlets) -> None:
        self._flush = outlets.flush

    def before_io_wait(self, timeout: float) -> None:
        """Ship what the batch queued."""
        self._flush()


def _z85(key: bytes) -> bytes:
    from zmq.utils import z85

    return z85.encode(decode_public_key(key))

"""The bridge's I/O thread: the only code that ever touches a ZeroMQ object.

Sockets, all created, used and closed on this thread, in a context of its own (several nodes
in one process never share one, nor its ZAP endpoint):

* one ROUTER bound on the data port receives every inbound frame; with CURVE it is the server
  side and ZeroMQ asks our ZAP socket about each connecting key;
* one DEALER per peer *we talk to*, connected to that peer's data port, carries our outbound
  frames (ZeroMQ reconnects it by itself when the peer restarts on the same address; a
  handshake the peer refused is final in libzmq, so the owner replaces the socket with a fresh
  ``Connect``). ``Connect`` only records where a peer is: the DEALER is opened when the first
  frame for it is shipped, closed after ``peer_idle_ms`` without traffic, and when
  ``max_peers`` are open the least recently used one (preferring one with nothing queued) is
  closed to make room. The context's ``MAX_SOCKETS`` is sized from that cap, so membership of
  any size never exhausts ZeroMQ's socket table; a connect that fails anyway (a bad key, a
  system limit) fails that one peer -- its frames are dropped and counted -- never the thread;
* with CURVE, a REP socket bound on ``inproc://zeromq.zap.01`` answers ZAP requests through
  :class:`~.security.ZapAuthorizer`.

The loop blocks in one ``zmq.Poller.poll()`` over those sockets and the Trio doorbell; each
turn it takes every queued command, moves frames, and posts one batch back to Trio. The order
within a turn follows the GIL: every system call and pyzmq call hands it to a waiting Trio
thread, which keeps it until it next blocks, so outbound frames are sent before the doorbell
is cleared, and inbound ones posted (which wakes Trio) last, right before the next poll. The
frames of one turn for one peer are packed, length-prefixed, into as few ZeroMQ messages as
``pack_limit`` allows (:func:`pack_frames`): every pyzmq call releases the GIL, and while the
Trio thread is busy each release can cost the I/O thread a wait of up to the interpreter's
switch interval, so fewer calls per frame is what keeps throughput up under load. Messages
for a peer whose DEALER is at its high-water mark wait in that peer's backlog (bounded by the
credits Trio grants per peer) until the socket reports POLLOUT again. When the Trio inbox is
full the ROUTER is taken out of the poll set, so ZeroMQ's own high-water marks push back on
the senders. Nothing raised while handling a frame leaves the loop: bad frames are counted
and dropped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import trio
import zmq

from .._throttle import ThrottledLog
from .handoff import Credits, Doorbell, Inbox, Outbox
from .security import ZAP_ENDPOINT, KeyPair, ZapAuthorizer, decode_public_key

__all__ = [
    "Connect",
    "Disconnect",
    "IOSettings",
    "IOThread",
    "SetMembers",
    "Stop",
    "format_endpoint",
    "pack_frames",
    "unpack_frames",
]

# Routing ids the ROUTER hands out are unique for the socket's life, so the authenticated
# node behind each is learnt once; the table is bounded (a forgotten id is learnt again).
_PEER_CACHE_SIZE = 4096

# Outbox takes in one turn before the thread polls (and reads inbound) again.
_TAKES_PER_TURN = 4


# ZeroMQ's socket table, sized from the cap on open DEALERs: a closed socket keeps its slot
# until libzmq's reaper thread has finished it (asynchronously, after its linger), so under
# churn up to about twice the cap are in the table; plus the ROUTER, the ZAP handler and
# headroom.
def _socket_budget(max_peers: int) -> int:
    return max(1024, 2 * max_peers + 256)


log = logging.getLogger("jarvis_trio.transport")


def format_endpoint(host: str, port: int) -> str:
    """``tcp://host:port``, with IPv6 literals bracketed."""
    bare = host.removeprefix("[").removesuffix("]")
    return f"tcp://[{bare}]:{port}" if ":" in bare else f"tcp://{bare}:{port}"


@dataclass(frozen=True, slots=True)
class IOSettings:
    """What the I/O thread needs; built by the bridge from the node's configuration."""

    node_name: str
    bind_host: str
    port: int
    keypair: KeyPair | None
    zap_domain: bytes
    max_frame: int
    pack_limit: int
    hard_frame_limit: int
    batch: int
    linger_ms: int
    sndhwm: int
    rcvhwm: int
    reconnect_ivl_ms: int
    reconnect_ivl_max_ms: int
    max_peers: int = 512
    peer_idle_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class Connect:
    """Open (or re-point) the DEALER towards ``peer``; ``fresh`` replaces it even when the
    address and key are unchanged (a connection the peer refused is never retried by
    ZeroMQ itself)."""

    peer: str
    endpoint: str
    server_key: bytes | None
    fresh: bool = False


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the DEALER towards ``peer``; its queued frames are dropped (``peer_gone``)."""

    peer: str


@dataclass(frozen=True, slots=True)
class SetMembers:
    """Replace the public keys admitted by ZAP (raw or Z85 key -> node name)."""

    members: dict[bytes, str]


@dataclass(frozen=True, slots=True)
class Stop:
    """Close every socket (bounded linger) and end the thread."""


Command = tuple[str, bytes] | Connect | Disconnect | SetMembers | Stop
Received = tuple[str, bytes]


_Packed = tuple[bytes, int]  # one ZeroMQ message and how many frames it carries
_LENGTH = struct.Struct("!I")


def pack_frames(frames: list[bytes], limit: int) -> list[_Packed]:
    """Length-prefix ``frames`` into messages of at most ``limit`` bytes (a frame larger
    than that travels alone). Fewer, larger ZeroMQ messages mean fewer pyzmq calls -- each
    one a point where the I/O thread gives up the GIL -- and fewer wake-ups downstream."""
    packed: list[_Packed] = []
    parts: list[bytes] = []
    size = 0
    prefix = _LENGTH.pack
    for frame in frames:
        need = 4 + len(frame)
        if parts and size + need > limit:
            packed.append((b"".join(parts), len(parts) // 2))
            parts, size = [], 0
        parts.append(prefix(len(frame)))
        parts.append(frame)
        size += need
    if parts:
        packed.append((b"".join(parts), len(parts) // 2))
    return packed


def unpack_frames(message: bytes, limit: int) -> tuple[list[bytes], int, bool]:
    """``(frames, oversize, malformed)`` of a packed message: frames over ``limit`` are
    skipped and counted; a truncated length or frame ends the message (``malformed``)."""
    frames: list[bytes] = []
    oversize = 0
    offset = 0
    total = len(message)
    unpack = _LENGTH.unpack_from
    while offset < total:
        if offset + 4 > total:
            return frames, oversize, True
        (size,) = unpack(message, offset)
        offset += 4
        if offset + size > total:
            return frames, oversize, True
        if size > limit:
            oversize += 1
        else:
            frames.append(message[offset : offset + size])
        offset += size
    return frames, oversize, False


@dataclass
class _Peer:
    name: str
    socket: zmq.Socket[bytes]
    endpoint: str
    server_key: bytes | None
    backlog: deque[_Packed] = field(default_factory=deque)
    last_used: float = 0.0


class IOThread:
    """Runs the loop described in the module docstring on a daemon thread.

    ``on_ready(port)`` / ``on_failed(exc)`` / ``on_stopped()`` are run on the Trio thread
    through ``token``; ``counters`` is written only by this thread (Trio reads snapshots).
    """

    def __init__(
        self,
        settings: IOSettings,
        token: trio.lowlevel.TrioToken,
        outbox: Outbox[Command],
        doorbell: Doorbell,
        inbox: Inbox[Received],
        credits: Credits,
        on_ready: Callable[[int], None],
        on_failed: Callable[[BaseException], None],
        on_stopped: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.counters: dict[str, int] = {
            "frames_in": 0,
            "frames_out": 0,
            "bytes_in": 0,
            "bytes_out": 0,
            "connects": 0,
            "zap_admitted": 0,
            "zap_refused": 0,
            "peer_sockets_open": 0,
            "peer_sockets_peak": 0,
            "peers_evicted": 0,
            "peers_idle_closed": 0,
            "connect_failures": 0,
            "inbound_errors": 0,
        }
        self._token = token
        self._outbox = outbox
        self._doorbell = doorbell
        self._inbox = inbox
        self._ledger = credits
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._on_stopped = on_stopped
        self._thread = threading.Thread(
            target=self._main, name=f"jarvis-zmq-{settings.node_name}", daemon=True
        )
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._zap: zmq.Socket[bytes] | None = None
        self._zap_auth = ZapAuthorizer(settings.zap_domain) if settings.keypair else None
        self._poller = zmq.Poller()
        # where each known peer is (endpoint, server key): bounded by membership, no sockets
        self._known: dict[str, tuple[str, bytes | None]] = {}
        self._reached: set[str] = set()  # known peers that accepted a frame once
        # open DEALERs, least recently used first; at most ``max_peers``
        self._peers: OrderedDict[str, _Peer] = OrderedDict()
        self._now = time.monotonic()
        self._next_sweep = self._now
        self._throttled = ThrottledLog(log)
        self._by_socket: dict[zmq.Socket[bytes], _Peer] = {}
        self._names: dict[bytes, str] = OrderedDict()
        self._reading = False
        self._stopping = False
        self._credits: dict[str, int] = {}
        self._received: list[Received] = []
        self._outgoing: dict[str, list[bytes]] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread; it reports through ``on_ready`` or ``on_failed``."""
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _main(self) -> None:
        try:
            port = self._open()
        except BaseException as exc:  # report every start failure to Trio, then end
            self._close()
            self._run_soon(functools.partial(self._on_failed, exc))
            self._run_soon(self._on_stopped)
            return
        self._run_soon(functools.partial(self._on_ready, port))
        try:
            while not self._stopping:
                self._turn()
        except BaseException as exc:  # a bug in the loop: Trio must learn of it, not hang
            self._run_soon(functools.partial(self._on_failed, exc))
        finally:
            self._close()
            self._run_soon(self._on_stopped)

    def _run_soon(self, fn: Callable[[], object]) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the run ended under us
            self._token.run_sync_soon(fn)

    def _open(self) -> int:
        s = self.settings
        self._ctx = zmq.Context(io_threads=1)
        wanted = _socket_budget(s.max_peers)
        self._ctx.set(zmq.MAX_SOCKETS, wanted)
        if self._ctx.get(zmq.MAX_SOCKETS) < wanted:
            raise OSError(
                f"ZeroMQ allows {self._ctx.get(zmq.MAX_SOCKETS)} sockets, fewer than the "
                f"{wanted} that max_peer_connections={s.max_peers} needs"
            )
        if s.keypair is not None:
            zap = self._zap = self._ctx.socket(zmq.REP)
            zap.setsockopt(zmq.LINGER, 0)
            zap.bind(ZAP_ENDPOINT)
            self._poller.register(zap, zmq.POLLIN)
        # owned at once, so that a failure below still closes it (an unclosed socket would
        # block the context's termination, and the start would hang instead of failing)
        router = self._router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.IPV6, 1)
        router.setsockopt(zmq.RCVHWM, s.rcvhwm)
        router.setsockopt(zmq.MAXMSGSIZE, s.hard_frame_limit)
        if s.keypair is not None:
            router.setsockopt(zmq.CURVE_SERVER, 1)
            router.setsockopt(zmq.CURVE_SECRETKEY, s.keypair.secret)
            router.setsockopt(zmq.CURVE_PUBLICKEY, s.keypair.public)
            router.setsockopt(zmq.ZAP_DOMAIN, s.zap_domain)
        else:
            # A restarted peer reconnects under its node name while the old connection may
            # still be open: the new one takes the name over instead of being refused.
            router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        host = "*" if s.bind_host in ("0.0.0.0", "::", "") else s.bind_host
        endpoint = format_endpoint(host, s.port)
        if not s.port:  # ZeroMQ's spelling of "any free port"
            endpoint = endpoint.removesuffix(":0") + ":*"
        router.bind(endpoint)
        last = router.getsockopt(zmq.LAST_ENDPOINT)
        assert isinstance(last, bytes)
        self._poller.register(self._doorbell.fileno(), zmq.POLLIN)
        self._set_reading(True)
        return int(last.decode().rsplit(":", 1)[1])

    def _close(self) -> None:
        for peer in self._peers.values():
            peer.socket.close(linger=self.settings.linger_ms)
        self._peers.clear()
        self._by_socket.clear()
        self.counters["peer_sockets_open"] = 0
        for sock in (self._router, self._zap):
            if sock is not None:
                sock.close(linger=0)
        self._router = self._zap = None
        if self._ctx is not None:
            self._ctx.term()  # returns once the (bounded) linger has run out
            self._ctx = None

    # -- the loop ---------------------------------------------------------------------------
    def _turn(self) -> None:
        # Without open peers nothing can go idle: block until something happens. With some,
        # wake by the next idle sweep at the latest.
        timeout = None
        if self._peers:
            timeout = max(0, round((self._next_sweep - time.monotonic()) * 1000))
        ready = dict(self._poller.poll(timeout))
        self._now = time.monotonic()
        if self._peers and self._now >= self._next_sweep:
            self._close_idle()
        if self._doorbell.fileno() in ready:
            outbox = self._outbox
            for _ in range(_TAKES_PER_TURN):  # send first: clearing releases the GIL to Trio
                for command in outbox.take_unrung():
                    self._command_safely(command)
                self._ship()
                if self._stopping or outbox.clear_if_idle():
                    break
            else:  # Trio keeps queueing: read inbound too, and come back at once
                self._doorbell.ring()
            if not self._reading:
                self._set_reading(True)
        for sock, event in ready.items():
            if event & zmq.POLLOUT and sock in self._by_socket:
                self._flush(self._by_socket[sock])
        if self._zap is not None and self._zap in ready:
            self._serve_zap()
        if self._reading and self._router in ready:
            try:
                self._read()
            except zmq.ZMQError as exc:  # total: a receive that fails drops, never stops
                self.counters["inbound_errors"] += 1
                self._throttled("read", "node %s: an inbound read failed: %s", self.name, exc)
        credits, self._credits = self._credits, {}
        self._ledger.settle(credits)
        # Posting rings Trio, whose thread then wants the GIL: done last, so that this thread
        # reaches its poll -- which releases the GIL -- with as little work left as possible.
        received, self._received = self._received, []
        if received and self._inbox.post(received) <= 0:
            self._set_reading(False)

    def _set_reading(self, on: bool) -> None:
        if on and self._inbox.room() <= 0:
            on = False
        if on != self._reading:
            self._poller.register(self._router, zmq.POLLIN if on else 0)
            self._reading = on

    def _credit(self, peer: str, count: int = 1) -> None:
        self._credits[peer] = self._credits.get(peer, 0) + count

    def _drop(self, reason: str, count: int = 1) -> None:
        key = f"dropped_{reason}"
        self.counters[key] = self.counters.get(key, 0) + count

    @property
    def name(self) -> str:
        return self.settings.node_name

    # -- commands ---------------------------------------------------------------------------
    def _command_safely(self, command: Command) -> None:
        try:
            self._command(command)
        except (zmq.ZMQError, OSError, ValueError) as exc:
            # one peer's trouble (a bad key, a system limit) is that peer's alone
            peer = getattr(command, "peer", "?")
            self.counters["connect_failures"] += 1
            self._throttled(
                "command", "node %s: %s for peer %s failed: %s", self.name, command, peer, exc
            )

    def _command(self, command: Command) -> None:
        if type(command) is tuple:
            name, frame = command
            waiting = self._outgoing.get(name)
            if waiting is None:
                self._outgoing[name] = [frame]
            else:
                waiting.append(frame)
            return
        self._ship()  # frames queued before a command go out before it takes effect
        if isinstance(command, Connect):
            self._connect(command)
        elif isinstance(command, Disconnect):
            self._disconnect(command.peer)
        elif isinstance(command, SetMembers):
            if self._zap_auth is not None:
                self._zap_auth.set_members(command.members)
                self._names.clear()  # re-learn who is behind each connection
        elif isinstance(command, Stop):
            self._stopping = True

    def _ship(self) -> None:
        """Pack this turn's frames per peer into as few ZeroMQ messages as the pack limit
        allows, and send them (or queue them behind the peer's backlog)."""
        if not self._outgoing:
            return
        outgoing, self._outgoing = self._outgoing, {}
        for name, frames in outgoing.items():
            peer = self._peers.get(name)
            if peer is None:
                peer = self._open_known(name)
                if peer is None:
                    known = name in self._known
                    self._drop("connect_failed" if known else "unknown_peer", len(frames))
                    self._credit(name, len(frames))
                    continue
            else:
                self._peers.move_to_end(name)
            peer.last_used = self._now
            for packed in pack_frames(frames, self.settings.pack_limit):
                if peer.backlog or not self._try_send(peer, packed):
                    self._wait_writable(peer, packed)

    def _try_send(self, peer: _Peer, packed: _Packed) -> bool:
        try:
            peer.socket.send(packed[0], zmq.NOBLOCK)
        except zmq.Again:
            return False
        self.counters["frames_out"] += packed[1]
        self.counters["bytes_out"] += len(packed[0])
        self._reached.add(peer.name)
        self._credit(peer.name, packed[1])
        return True

    def _wait_writable(self, peer: _Peer, packed: _Packed) -> None:
        if not peer.backlog:
            self._poller.register(peer.socket, zmq.POLLOUT)
        peer.backlog.append(packed)

    def _flush(self, peer: _Peer) -> None:
        backlog = peer.backlog
        while backlog:
            if not self._try_send(peer, backlog[0]):
                return
            backlog.popleft()
        self._poller.unregister(peer.socket)

    def _connect(self, command: Connect) -> None:
        """Record where ``command.peer`` is; re-point its DEALER if one is open and the
        address or key changed (or ``fresh`` asks for a new handshake)."""
        where = (command.endpoint, command.server_key)
        self._known[command.peer] = where
        old = self._peers.get(command.peer)
        if old is None or (not command.fresh and (old.endpoint, old.server_key) == where):
            return
        peer = self._new_peer(command.peer, *where)
        peer.backlog = old.backlog  # frames still waiting follow the peer to its new address
        peer.last_used = old.last_used
        # flush what the old one accepted
        self._close_peer(old, linger_ms=self.settings.linger_ms)
        self._adopt(peer)

    def _open_known(self, name: str) -> _Peer | None:
        """Open the DEALER of a known peer on demand, making room under ``max_peers``;
        ``None`` (frames dropped and counted) for an unknown peer or a failed connect."""
        where = self._known.get(name)
        if where is None:
            return None
        while len(self._peers) >= self.settings.max_peers:
            self._evict()
        try:
            peer = self._new_peer(name, *where)
        except (zmq.ZMQError, OSError, ValueError) as exc:
            self.counters["connect_failures"] += 1
            self._throttled("connect", "node %s: cannot connect to %s: %s", self.name, name, exc)
            return None
        self._adopt(peer)
        return peer

    def _new_peer(self, name: str, endpoint: str, server_key: bytes | None) -> _Peer:
        s = self.settings
        assert self._ctx is not None
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
        return _Peer(name, sock, endpoint, server_key, last_used=self._now)

    def _adopt(self, peer: _Peer) -> None:
        self._peers[peer.name] = peer
        self._peers.move_to_end(peer.name)
        self._by_socket[peer.socket] = peer
        counters = self.counters
        counters["connects"] += 1
        counters["peer_sockets_open"] = len(self._peers)
        counters["peer_sockets_peak"] = max(counters["peer_sockets_peak"], len(self._peers))
        if peer.backlog:
            self._poller.register(peer.socket, zmq.POLLOUT)

    def _evict(self) -> None:
        """Close one DEALER to make room, least recently used first among: those with
        nothing waiting; then those towards peers that never accepted a frame (unreachable
        ones: with many members down, they must not push out the peers that work); then
        any. A backlog closed with its socket is dropped and counted (``evicted``)."""
        peers = self._peers.values()
        victim = next((p for p in peers if not p.backlog), None)
        if victim is None:
            victim = next((p for p in peers if p.name not in self._reached), None)
        if victim is None:
            victim = next(iter(peers))
        self.counters["peers_evicted"] += 1
        self._shut(victim, "evicted")

    def _close_idle(self) -> None:
        """Close DEALERs unused for ``peer_idle_ms`` with nothing waiting (oldest first)."""
        idle = self.settings.peer_idle_ms / 1000
        horizon = self._now - idle
        for peer in list(self._peers.values()):
            if peer.last_used > horizon:
                break
            if not peer.backlog:
                self.counters["peers_idle_closed"] += 1
                self._shut(peer, "idle")
        self._next_sweep = self._now + max(0.01, idle / 4)

    def _shut(self, peer: _Peer, reason: str) -> None:
        """Close an open DEALER (the peer stays known; the next frame reopens it)."""
        del self._peers[peer.name]
        self.counters["peer_sockets_open"] = len(self._peers)
        self._close_peer(peer, linger_ms=self.settings.linger_ms)
        if peer.backlog:
            lost = sum(count for _, count in peer.backlog)
            self._drop(reason, lost)
            self._credit(peer.name, lost)
            peer.backlog.clear()

    def _disconnect(self, name: str) -> None:
        self._known.pop(name, None)
        self._reached.discard(name)
        peer = self._peers.pop(name, None)
        if peer is None:
            return
        self.counters["peer_sockets_open"] = len(self._peers)
        self._close_peer(peer)
        if peer.backlog:
            lost = sum(count for _, count in peer.backlog)
            self._drop("peer_gone", lost)
            self._credit(name, lost)
            peer.backlog.clear()

    def _close_peer(self, peer: _Peer, linger_ms: int = 0) -> None:
        self._by_socket.pop(peer.socket, None)
        if peer.backlog:
            self._poller.unregister(peer.socket)
        peer.socket.close(linger=linger_ms)

    # -- inbound ----------------------------------------------------------------------------
    def _read(self) -> None:
        router = self._router
        assert router is not None
        room = min(self._inbox.room(), self.settings.batch)
        if room <= 0:
            self._set_reading(False)
            return
        curve = self._zap_auth is not None
        limit = self.settings.max_frame
        counters = self.counters
        received = self._received
        wanted = len(received) + room  # frames; the last message may carry a few more
        for index in range(self.settings.batch):  # messages: bounds a turn whatever they carry
            if len(received) >= wanted:
                return
            # Asking ZeroMQ whether more is queued costs under half of a receive that fails
            # with ``zmq.Again`` (an exception built in Python), and the last receive of every
            # turn would fail: inbound frames reach Trio that much sooner.
            if index and not cast(int, router.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                return
            try:
                rid = router.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            name = self._names.get(rid) if curve else None
            if curve and name is None:
                part = router.recv(copy=False)
                name = self._learn(rid, part)
                message = part.bytes
            else:
                message = router.recv()
            if router.getsockopt(zmq.RCVMORE):
                self._discard_rest(router)
                self._drop("malformed")
                continue
            counters["bytes_in"] += len(message)
            if curve:
                if name is None:
                    self._drop("not_member")
                    continue
            else:
                try:
                    name = rid.decode()
                except UnicodeDecodeError:
                    self._drop("malformed")
                    continue
            frames, oversize, malformed = unpack_frames(message, limit)
            counters["frames_in"] += len(frames) + oversize
            if oversize:
                self._drop("oversize", oversize)
            if malformed:
                self._drop("malformed")
            received.extend((name, frame) for frame in frames)

    def _learn(self, rid: bytes, part: zmq.Frame) -> str | None:
        assert self._zap_auth is not None
        try:
            user = part.get("User-Id")
        except zmq.ZMQError:
            user = None
        if not isinstance(user, str) or user not in self._zap_auth.member_names:
            return None
        self._names[rid] = user
        if len(self._names) > _PEER_CACHE_SIZE:
            oldest = next(iter(self._names))
            del self._names[oldest]
        return user

    @staticmethod
    def _discard_rest(sock: zmq.Socket[bytes]) -> None:
        while sock.getsockopt(zmq.RCVMORE):
            sock.recv()

    def _serve_zap(self) -> None:
        zap = self._zap
        assert zap is not None and self._zap_auth is not None
        while True:
            try:
                request = zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            decision = self._zap_auth.decide(request)
            self.counters["zap_admitted" if decision.admitted else "zap_refused"] += 1
            zap.send_multipart(decision.reply or [b"1.0", b"", b"500", b"", b"", b""])


def _z85(key: bytes) -> bytes:
    from zmq.utils import z85

    return z85.encode(decode_public_key(key))

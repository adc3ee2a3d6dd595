"""The bridge's I/O thread: the one that polls the inbound ZeroMQ sockets.

Sockets, created, used and closed on this thread, in the bridge's context (several nodes in
one process never share one, nor its ZAP endpoint):

* one ROUTER bound on the data port receives every inbound frame; with CURVE it is the server
  side and ZeroMQ asks our ZAP socket about each connecting key;
* with CURVE, a REP socket bound on ``inproc://zeromq.zap.01`` answers ZAP requests through
  :class:`~.security.ZapAuthorizer`, whose member keys follow membership (``SetMembers``).

Outbound DEALERs belong to the Trio thread (:mod:`.outlets`): a frame leaves from the thread
that made it, without a wake-up of this one.

The loop blocks in one ``zmq.Poller.poll()`` over those sockets and the Trio doorbell; each
turn it takes the queued commands, answers ZAP, reads what the ROUTER holds (up to ``batch``
messages, each unpacked into its frames: :func:`~.framing.unpack_frames`) and posts it to
Trio in one batch -- which rings Trio's doorbell once, last, right before the next poll.
When the Trio inbox is full the ROUTER is taken out of the poll set, so ZeroMQ's own
high-water marks push back on the senders. Nothing raised while handling a frame leaves the
loop: bad frames are counted and dropped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import trio
import zmq

from .._signals import leave_signals_to_the_main_thread
from .._throttle import ThrottledLog
from .framing import pack_frames, unpack_frames
from .handoff import Doorbell, Inbox, Outbox
from .security import ZAP_ENDPOINT, KeyPair, ZapAuthorizer

__all__ = [
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


log = logging.getLogger("jarvis_trio.transport")


def format_endpoint(host: str, port: int) -> str:
    """``tcp://host:port``, with IPv6 literals bracketed."""
    bare = host.removeprefix("[").removesuffix("]")
    return f"tcp://[{bare}]:{port}" if ":" in bare else f"tcp://{bare}:{port}"


@dataclass(frozen=True, slots=True)
class IOSettings:
    """What the I/O thread and the outbound DEALERs need; built by the bridge from the
    node's configuration."""

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
    lead_frames: int = 32


@dataclass(frozen=True, slots=True)
class SetMembers:
    """Replace the public keys admitted by ZAP (raw or Z85 key -> node name)."""

    members: dict[bytes, str]


@dataclass(frozen=True, slots=True)
class Stop:
    """Close the thread's sockets and end the thread."""


Command = SetMembers | Stop
Received = tuple[str, bytes]


class IOThread:
    """Runs the loop described in the module docstring on a daemon thread.

    ``on_ready(port)`` / ``on_failed(exc)`` / ``on_stopped()`` are run on the Trio thread
    through ``token``; ``counters`` is written only by this thread (Trio reads snapshots).
    """

    def __init__(
        self,
        settings: IOSettings,
        ctx: zmq.Context[zmq.Socket[bytes]],
        token: trio.lowlevel.TrioToken,
        outbox: Outbox[Command],
        doorbell: Doorbell,
        inbox: Inbox[Received],
        on_ready: Callable[[int], None],
        on_failed: Callable[[BaseException], None],
        on_stopped: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.counters: dict[str, int] = {
            "frames_in": 0,
            "bytes_in": 0,
            "zap_admitted": 0,
            "zap_refused": 0,
            "inbound_errors": 0,
        }
        self._ctx = ctx
        self._token = token
        self._outbox = outbox
        self._doorbell = doorbell
        self._inbox = inbox
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._on_stopped = on_stopped
        self._thread = threading.Thread(
            target=self._main, name=f"jarvis-zmq-{settings.node_name}", daemon=True
        )
        self._router: zmq.Socket[bytes] | None = None
        self._zap: zmq.Socket[bytes] | None = None
        self._zap_auth = ZapAuthorizer(settings.zap_domain) if settings.keypair else None
        self._poller = zmq.Poller()
        self._throttled = ThrottledLog(log)
        self._names: dict[bytes, str] = OrderedDict()
        self._reading = False
        self._stopping = False
        self._received: list[Received] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread; it reports through ``on_ready`` or ``on_failed``."""
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _main(self) -> None:
        leave_signals_to_the_main_thread()
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
        for sock in (self._router, self._zap):
            if sock is not None:
                sock.close(linger=0)
        self._router = self._zap = None

    # -- the loop -------------------------------------------------------------------------------
    def _turn(self) -> None:
        ready = dict(self._poller.poll())
        if self._doorbell.fileno() in ready:
            for command in self._outbox.take():
                self._command(command)
            if not self._reading:
                self._set_reading(True)
        if self._zap is not None and self._zap in ready:
            self._serve_zap()
        if self._reading and self._router in ready:
            try:
                self._read()
            except zmq.ZMQError as exc:  # total: a receive that fails drops, never stops
                self.counters["inbound_errors"] += 1
                self._throttled("read", "node %s: an inbound read failed: %s", self.name, exc)
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

    def _drop(self, reason: str, count: int = 1) -> None:
        key = f"dropped_{reason}"
        self.counters[key] = self.counters.get(key, 0) + count

    @property
    def name(self) -> str:
        return self.settings.node_name

    def _command(self, command: Command) -> None:
        if isinstance(command, SetMembers):
            if self._zap_auth is not None:
                self._zap_auth.set_members(command.members)
                self._names.clear()  # re-learn who is behind each connection
        elif isinstance(command, Stop):
            self._stopping = True
        else:  # only the bridge queues commands: anything else is a bug, reported to Trio
            raise TypeError(f"unknown I/O thread command {command!r}")

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

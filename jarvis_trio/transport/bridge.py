"""The Trio face of the ZeroMQ transport.

:func:`open_bridge` starts the I/O thread (:mod:`.iothread`), waits until its data port is
bound, and on exit stops it: the thread closes every socket with a bounded linger and is
joined with a deadline through ``trio.to_thread``, so leaving the block never hangs.

Outbound frames leave on DEALERs the Trio thread owns (:mod:`.outlets`); the I/O thread
polls the inbound ROUTER (and answers ZAP). While the bridge is open it keeps a Trio
instrument in the run (:class:`~.outlets.FlushBeforeWait`): the frames a scheduling batch
queued leave, packed per peer, when the batch ends and the Trio thread is about to sleep.

Flow control is by credit. Each connected peer gets ``peer_credits`` frames that may be
queued or waiting for ZeroMQ; a credit returns when ZeroMQ accepted the frame or it was
dropped. A sender out of credit waits (its caller's timeout bounds the wait), so a slow or
unreachable peer pushes back on the tasks sending to it and on nobody else. Inbound frames
wait in a bounded inbox; when it is full the thread stops reading and ZeroMQ's high-water
marks push back on the remote senders.

The node a frame came from is what the transport authenticated: the ZAP ``User-Id`` of the
CURVE connection with a cluster key, the connection's routing id (the peer's node name,
unauthenticated) without one. Payload fields never decide it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
import zmq

from .._throttle import ThrottledLog
from ..config import MeshConfig
from ..errors import FrameError, PayloadTooLarge, PeerUnavailable, TransportError
from .envelope import Envelope, decode_frame, encode_envelope
from .handoff import Doorbell, Inbox, Outbox
from .iothread import (
    Command,
    IOSettings,
    IOThread,
    Received,
    SetMembers,
    Stop,
    format_endpoint,
)
from .outlets import FlushBeforeWait, Outlets, socket_budget
from .security import KeyPair, decode_public_key

__all__ = ["Bridge", "BridgeSettings", "open_bridge"]

log = logging.getLogger(__name__)

# Room the hard per-frame limit given to ZeroMQ leaves above the configured one, so that a
# frame slightly over the limit is still received -- and counted as ``oversize`` -- while a
# peer sending far more is disconnected by ZeroMQ before it can use our memory.
_HARD_LIMIT_SLACK = 64 * 1024
# A frame carries the payload (data + context, limited by max_message_size) plus the
# envelope's own fields: two agent ids of at most 256 characters (6 bytes each once JSON-
# escaped, at worst), a request id, a timestamp and the array's punctuation.
ENVELOPE_ALLOWANCE = 4096


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """Tunables of one node's bridge. :meth:`from_config` derives them from ``MeshConfig``.

    ``peer_credits`` bounds frames per peer between Trio and ZeroMQ; ``pack_limit`` the size
    of the ZeroMQ messages the frames of one scheduling batch are packed into, and
    ``lead_frames`` how many of a batch's first frames for a peer leave at once, ahead of
    the rest, so that the peer starts on them while this node is still making the others;
    ``inbox_capacity`` the received frames Trio has not taken yet (exceeded by at most one
    packed message);
    ``sndhwm``/``rcvhwm`` ZeroMQ's own per-connection queues (in messages); ``max_peers`` the
    outbound connections open at once (opened on demand, least recently used closed beyond
    it) and ``peer_idle`` the seconds after which an unused one is closed; ``linger`` how
    long closing waits to flush; ``stop_timeout`` how long stopping waits for the thread
    before giving up on it (it is a daemon thread).
    """

    node_name: str
    bind_host: str = "127.0.0.1"
    port: int = 0
    keypair: KeyPair | None = None
    zap_domain: str = "jarvis"
    max_frame: int = 1 << 20
    pack_limit: int = 64 * 1024
    lead_frames: int = 32
    peer_credits: int = 4096
    inbox_capacity: int = 8192
    batch: int = 1024
    linger: float = 0.2
    stop_timeout: float = 5.0
    start_timeout: float = 10.0
    sndhwm: int = 10_000
    rcvhwm: int = 10_000
    reconnect_ivl: float = 0.02
    reconnect_ivl_max: float = 1.0
    max_peers: int = 512
    peer_idle: float = 300.0

    def __post_init__(self) -> None:
        raw = self.node_name.encode()
        if not raw or len(raw) > 255 or raw[0] == 0:
            raise ValueError(
                f"node_name {self.node_name!r}: expected 1 to 255 UTF-8 bytes, not starting "
                "with NUL"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port}: expected 0 to 65535")
        for name in (
            "max_frame",
            "pack_limit",
            "lead_frames",
            "peer_credits",
            "inbox_capacity",
            "batch",
            "sndhwm",
            "rcvhwm",
            "max_peers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: expected a positive number")
        if len(self.zap_domain.encode()) > 255:
            raise ValueError(
                f"zap_domain (the cluster name) {self.zap_domain[:32]!r}...: expected at most "
                "255 UTF-8 bytes"
            )
        for name in ("linger", "stop_timeout", "start_timeout", "reconnect_ivl", "peer_idle"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} {getattr(self, name)}: expected seconds >= 0")

    @classmethod
    def from_config(cls, config: MeshConfig, keypair: KeyPair | None = None) -> BridgeSettings:
        """Settings for a node: data port, size limit, cluster name as ZAP domain."""
        assert config.node_name is not None
        return cls(
            node_name=config.node_name,
            bind_host=config.bind_host,
            port=config.resolved_data_port,
            keypair=keypair,
            zap_domain=config.cluster_name,
            max_frame=config.max_message_size + ENVELOPE_ALLOWANCE,
            max_peers=config.max_peer_connections,
            peer_idle=config.peer_idle_timeout,
        )

    def io_settings(self) -> IOSettings:
        """The thread's view of these settings."""
        return IOSettings(
            node_name=self.node_name,
            bind_host=self.bind_host,
            port=self.port,
            keypair=self.keypair,
            zap_domain=self.zap_domain.encode(),
            max_frame=self.max_frame,
            pack_limit=self.pack_limit,
            lead_frames=self.lead_frames,
            hard_frame_limit=max(self.max_frame + 4, self.pack_limit) + _HARD_LIMIT_SLACK,
            batch=self.batch,
            linger_ms=round(self.linger * 1000),
            sndhwm=self.sndhwm,
            rcvhwm=self.rcvhwm,
            reconnect_ivl_ms=max(1, round(self.reconnect_ivl * 1000)),
            reconnect_ivl_max_ms=max(1, round(self.reconnect_ivl_max * 1000)),
            max_peers=self.max_peers,
            peer_idle_ms=max(1, round(self.peer_idle * 1000)),
        )


class Bridge:
    """One node's data channel. Create it with :func:`open_bridge`.

    Single consumer: one task calls :meth:`receive` / :meth:`receive_envelopes`. Any number
    of tasks may send.
    """

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.port = 0
        self._doorbell = Doorbell()
        self._outbox: Outbox[Command] = Outbox(self._doorbell)
        self._inbox: Inbox[Received] = Inbox(settings.inbox_capacity, self._doorbell.ring)
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._outlets: Outlets | None = None
        self._flush_before_wait: FlushBeforeWait | None = None
        self._thread: IOThread | None = None
        self._peers: dict[str, tuple[str, bytes | None]] = {}
        self._failure: BaseException | None = None
        self._closed = False
        self._ready = trio.Event()
        self._stopped = trio.Event()
        self._throttled = ThrottledLog(log)  # bad frames: counted always, logged sparingly
        self._counters: dict[str, int] = {
            "dropped_undecodable": 0,
            "refused_too_large": 0,
            "resets": 0,
        }

    # -- identity ---------------------------------------------------------------------------
    @property
    def node_name(self) -> str:
        """This node's name (the routing id of its outbound connections without CURVE)."""
        return self.settings.node_name

    @property
    def public_key(self) -> bytes | None:
        """This node's CURVE public key (Z85), to publish in its membership record."""
        return None if self.settings.keypair is None else self.settings.keypair.public

    # -- peers ------------------------------------------------------------------------------
    def connect(self, peer: str, host: str, port: int, public_key: bytes | None = None) -> None:
        """Open (or re-point) the connection to ``peer``'s data port.

        Idempotent for an unchanged address and key. With CURVE, ``public_key`` (raw or Z85)
        is required: it is the server key the connection checks the peer against.
        """
        self._check_open()
        if not 1 <= port <= 65535:
            raise ValueError(f"data port {port} of {peer!r}: expected 1 to 65535")
        key = None if public_key is None else decode_public_key(public_key)
        if self.settings.keypair is not None and key is None:
            raise ValueError(f"peer {peer!r} has no public key, and this bridge uses CURVE")
        endpoint = format_endpoint(host, port)
        if self._peers.get(peer) == (endpoint, key):
            return
        self._peers[peer] = (endpoint, key)
        assert self._outlets is not None
        self._outlets.connect(peer, endpoint, key, fresh=False)

    def reset(self, peer: str) -> None:
        """Replace the connection to ``peer`` by a new one (same address and key), keeping
        the frames still waiting for it. For a peer that refused our handshake -- with CURVE,
        because it did not know our key yet -- since ZeroMQ never retries that by itself."""
        self._check_open()
        known = self._peers.get(peer)
        if known is None:
            raise PeerUnavailable(peer)
        self._counters["resets"] += 1
        assert self._outlets is not None
        self._outlets.connect(peer, known[0], known[1], fresh=True)

    def disconnect(self, peer: str) -> None:
        """Close the connection to ``peer``; its unsent frames are dropped (``peer_gone``)
        and every task waiting to send to it gets :class:`PeerUnavailable`."""
        if self._peers.pop(peer, None) is None or self._closed:
            return
        assert self._outlets is not None
        self._outlets.disconnect(peer)

    def set_members(self, members: Mapping[bytes, str]) -> None:
        """With CURVE: the public keys (raw or Z85) -> node names admitted to connect."""
        self._check_open()
        checked = {decode_public_key(key): name for key, name in members.items()}
        self._outbox.put(SetMembers(checked))

    def is_connected(self, peer: str) -> bool:
        """True while a connection to ``peer`` is open (not whether the peer is up)."""
        return peer in self._peers

    @property
    def peers(self) -> frozenset[str]:
        """Names of the peers with an open connection."""
        return frozenset(self._peers)

    # -- sending ----------------------------------------------------------------------------
    def send_nowait(self, peer: str, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer`` if it has credit; False when it has none.

        Raises :class:`PeerUnavailable` if ``peer`` is not connected and
        :class:`PayloadTooLarge` over the frame limit.
        """
        self._check_open()
        if len(frame) > self.settings.max_frame:
            self._counters["refused_too_large"] += 1
            raise PayloadTooLarge(len(frame), self.settings.max_frame)
        if peer not in self._peers:
            raise PeerUnavailable(peer)
        assert self._outlets is not None
        return self._outlets.try_put(peer, frame)

    async def send(self, peer: str, frame: bytes) -> None:
        """Queue ``frame`` for ``peer``, waiting for credit while the peer is backed up.

        Returns once the frame is handed to the I/O thread (not when the peer got it).
        Raises :class:`PeerUnavailable` if ``peer`` is not connected or is disconnected while
        waiting, :class:`PayloadTooLarge` over the frame limit.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self.send_nowait(peer, frame):
            assert self._outlets is not None
            self._counters["credit_waits"] = self._counters.get("credit_waits", 0) + 1
            await self._outlets.wait_credit(peer)

    async def send_envelope(self, peer: str, envelope: Envelope) -> None:
        """Encode and :meth:`send` ``envelope``; oversize raises :class:`PayloadTooLarge`."""
        try:
            frame = encode_envelope(envelope, self.settings.max_frame)
        except PayloadTooLarge:
            self._counters["refused_too_large"] += 1
            raise
        await self.send(peer, frame)

    # -- receiving --------------------------------------------------------------------------
    async def receive(self) -> list[tuple[str, bytes]]:
        """Wait for inbound frames and return all of them as ``(sender node, frame)``.

        Returns ``[]`` once the bridge is closed; raises :class:`TransportError` if the I/O
        thread failed.
        """
        batch = await self._inbox.take()
        if not batch and self._failure is not None:
            raise TransportError("the ZeroMQ I/O thread failed") from self._failure
        return batch

    async def receive_envelopes(self) -> list[tuple[str, Envelope]]:
        """Like :meth:`receive`, decoded; undecodable frames are dropped and counted
        (``dropped_undecodable``), never raised."""
        limit = self.settings.max_frame
        while True:
            batch = await self.receive()
            if not batch:
                return []
            decoded: list[tuple[str, Envelope]] = []
            for node, frame in batch:
                try:
                    decoded.append((node, decode_frame(frame, limit)))
                except FrameError as exc:
                    self._counters["dropped_undecodable"] += 1
                    self._throttled(
                        "undecodable", "dropped an undecodable frame from %s: %s", node, exc
                    )
            if decoded:
                return decoded

    async def receive_sized(self) -> list[tuple[str, Envelope, int]]:
        """Like :meth:`receive_envelopes`, each with the number of ``{`` and ``[`` bytes of
        its frame: a bound on how deeply its JSON nests (brackets inside strings count too,
        so it never under-counts), which spares the receiver a walk of every payload."""
        limit = self.settings.max_frame
        while True:
            batch = await self.receive()
            if not batch:
                return []
            decoded: list[tuple[str, Envelope, int]] = []
            for node, frame in batch:
                try:
                    envelope = decode_frame(frame, limit)
                except FrameError as exc:
                    self._counters["dropped_undecodable"] += 1
                    self._throttled(
                        "undecodable", "dropped an undecodable frame from %s: %s", node, exc
                    )
                    continue
                decoded.append((node, envelope, frame.count(b"{") + frame.count(b"[")))
            if decoded:
                return decoded

    # -- counters ---------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counters: frames and bytes in/out, connects, ZAP decisions, drops by reason."""
        merged = dict(self._counters)
        if self._outlets is not None:
            merged.update(self._outlets.counters)
        if self._thread is not None:
            merged.update(self._thread.counters.copy())
        return merged

    # -- lifecycle --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._failure is not None:
            raise TransportError("the ZeroMQ I/O thread failed") from self._failure
        if self._closed:
            raise TransportError("the bridge is closed")

    def _on_ready(self, port: int) -> None:
        self.port = port
        self._ready.set()

    def _on_failed(self, exc: BaseException) -> None:
        self._failure = exc
        if self._outlets is not None:
            self._outlets.close()  # wakes every waiting sender: they see the failure
        self._inbox.close()
        self._ready.set()

    def _on_stopped(self) -> None:
        self._stopped.set()
        self._ready.set()

    async def _start(self, nursery: trio.Nursery) -> None:
        token = trio.lowlevel.current_trio_token()
        settings = self.settings.io_settings()
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context(io_threads=1)
        self._ctx = ctx
        wanted = socket_budget(settings.max_peers)
        ctx.set(zmq.MAX_SOCKETS, wanted)
        if ctx.get(zmq.MAX_SOCKETS) < wanted:
            raise TransportError(
                f"ZeroMQ allows {ctx.get(zmq.MAX_SOCKETS)} sockets, fewer than the {wanted} "
                f"that max_peer_connections={settings.max_peers} needs"
            )
        self._outlets = Outlets(settings, ctx, self.settings.peer_credits, nursery, log)
        self._thread = IOThread(
            settings,
            ctx,
            token,
            self._outbox,
            self._doorbell,
            self._inbox,
            self._on_ready,
            self._on_failed,
            self._on_stopped,
        )
        self._flush_before_wait = FlushBeforeWait(self._outlets)
        trio.lowlevel.add_instrument(self._flush_before_wait)
        self._thread.start()
        with trio.move_on_after(self.settings.start_timeout) as scope:
            await self._ready.wait()
        if scope.cancelled_caught:
            raise TransportError("the ZeroMQ I/O thread did not start in time")
        if self._failure is not None:
            raise TransportError(
                f"cannot open the data channel on {self.settings.bind_host}:{self.settings.port}"
                f": {self._failure}"
            ) from self._failure

    async def _stop(self) -> None:
        self._closed = True
        outlets = self._outlets
        if outlets is not None:
            outlets.flush()  # what was accepted before the close still leaves (bounded linger)
            outlets.close()
        if self._flush_before_wait is not None:
            with contextlib.suppress(KeyError):  # removed already
                trio.lowlevel.remove_instrument(self._flush_before_wait)
        self._peers.clear()
        self._inbox.close()
        thread = self._thread
        if thread is None:
            self._inbox.release()
            self._doorbell.close()
            self._term()
            return
        self._outbox.put(Stop())
        with trio.move_on_after(self.settings.stop_timeout):
            await self._stopped.wait()
        joined = await trio.to_thread.run_sync(
            thread.join, 1.0 if self._stopped.is_set() else 0.0, abandon_on_cancel=True
        )
        if joined:
            self._inbox.release()
            self._doorbell.close()
            # every socket is closed: terminating waits only for the DEALERs' linger
            with trio.move_on_after(self.settings.stop_timeout):
                await trio.to_thread.run_sync(self._term, abandon_on_cancel=True)
        else:  # keep the descriptors: the thread may still use them
            log.warning("the ZeroMQ I/O thread of %s did not stop in time", self.node_name)

    def _term(self) -> None:
        if self._ctx is not None:
            self._ctx.term()


@asynccontextmanager
async def open_bridge(settings: BridgeSettings) -> AsyncIterator[Bridge]:
    """Start a bridge, yield it, and stop it (bounded) when the block is left.

    The bridge's own tasks (writers of backed-up peers, the idle sweeper) run in a nursery
    of this block; they never raise, so an exception leaving the block is the body's own,
    and it leaves as itself, not wrapped in a group.
    """
    bridge = Bridge(settings)
    try:
        async with trio.open_nursery() as nursery:
            try:
                await bridge._start(nursery)
                yield bridge
            finally:
                with trio.CancelScope(shield=True):
                    await bridge._stop()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            only = group.exceptions[0]
            raise only from only.__cause__
        raise

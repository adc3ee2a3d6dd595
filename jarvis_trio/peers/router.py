"""Message routing of one node: local inboxes, the remote route, the pending table.

Same-node delivery hands the checked message object to the target's memory channel (no
serialisation). When the inbox is full the sender waits — *backpressure* — within a budget:
the request's own timeout, or the node's ``notify_timeout`` for notifications; when the
budget runs out the outcome is ``None`` / ``False`` and the miss is counted. Remote delivery
goes through a :class:`RemoteRoute` supplied by the cross-node layer.
"""

from __future__ import annotations

import os
import random
import secrets
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import msgspec
import trio

from ..errors import PayloadTooLarge
from .directory import AgentDirectory, PeerInfo
from .messages import RESPONSE, IncomingMessage
from .pending import PendingTable
from .traffic import Traffic

if TYPE_CHECKING:
    from typing import Any

    from .inbox import AgentInbox

__all__ = ["NodeStats", "RemoteRoute", "Router"]


_ID_DIGITS = 12  # hex digits of a request id (``req-`` / ``async-`` + 12 hex)
_HEX_BATCH = 4096  # hex digits drawn from the OS CSPRNG at once: one getrandom() per 341 ids


class HexDigits:
    """Fresh hex digits from the OS CSPRNG (``secrets``), drawn in batches.

    A request id needs 12 hex digits; asking the OS for 6 bytes per request is a system call
    per request (about a tenth of an in-process round trip). Drawing 2 KiB at once and slicing
    it keeps every digit a CSPRNG digit used once, at a fraction of the cost; :attr:`ids`
    holds one batch cut into request-id digits, so a request pops one. A forked child
    discards what it inherited, so parent and child never hand out the same digits.
    """

    __slots__ = ("__weakref__", "_hex", "_pos", "ids")

    def __init__(self) -> None:
        self._hex = ""
        self._pos = 0
        self.ids: list[str] = []
        """Unused request-id digits (12 each), the next one last."""
        _SOURCES.add(self)

    def take(self, digits: int) -> str:
        """``digits`` hex digits never handed out before."""
        pos = self._pos
        end = pos + digits
        if end > len(self._hex):
            self._hex = secrets.token_hex(max(_HEX_BATCH, digits + 1) // 2)
            pos, end = 0, digits
        self._pos = end
        return self._hex[pos:end]

    def refill_ids(self) -> None:
        """Cut a fresh batch into :attr:`ids`."""
        batch = self.take(_HEX_BATCH - _HEX_BATCH % _ID_DIGITS)
        cut = [batch[at : at + _ID_DIGITS] for at in range(0, len(batch), _ID_DIGITS)]
        self.ids.extend(reversed(cut))

    def _forget(self) -> None:
        self._hex = ""
        self._pos = 0
        self.ids.clear()


_SOURCES: weakref.WeakSet[HexDigits] = weakref.WeakSet()


def _after_fork() -> None:
    for source in list(_SOURCES):
        source._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


@runtime_checkable
class RemoteRoute(Protocol):
    """What the cross-node layer provides to carry messages to other nodes."""

    def node_alive(self, node_id: str) -> bool:
        """False once membership declares ``node_id`` dead (requests then fail at once)."""
        ...

    async def send(self, node_id: str, message: IncomingMessage) -> bool:
        """Hand ``message`` to the transport for ``node_id``; ``False`` if it could not,
        at once when ``node_id`` is not alive (the router does not ask first)."""
        ...


@dataclass(slots=True)
class NodeStats:
    """Counters of outcomes that are not errors but must be visible."""

    backpressure_waits: int = 0
    notify_failed: int = 0
    request_failed: int = 0
    inbound_dropped: int = 0


class Router:
    """The per-node routing core shared by every PeerClient of the node."""

    def __init__(
        self,
        node_id: str,
        *,
        max_message_size: int,
        notify_timeout: float,
        max_pending: int,
        rng: random.Random,
    ) -> None:
        self.node_id = node_id
        self.directory: AgentDirectory[AgentInbox] = AgentDirectory(node_id)
        self.pending = PendingTable(max_pending)
        self.stats = NodeStats()
        self.traffic = Traffic()  # per-role requests, latency, notifications (ops/metrics)
        self.remote: RemoteRoute | None = None
        self.stopping = False
        self.accepting = False
        # the run's clock, read directly on the hot path (set when the node starts)
        self.now: Callable[[], float] = trio.current_time
        self.background: trio.Nursery | None = None
        self.notify_timeout = notify_timeout
        self.max_message_size = max_message_size
        self.rng = rng
        # the payload's size as the data channel carries it (envelopes hold JSON payloads)
        self.encode = msgspec.json.Encoder().encode
        self._digits = HexDigits()

    def random_hex(self, digits: int) -> str:
        """Fresh hex digits for identifiers, from the OS CSPRNG; never drawn from the
        injectable ``rng``, so two nodes seeded alike still name things differently."""
        return self._digits.take(digits)

    def new_id(self, prefix: str) -> str:
        """``prefix`` + 12 hex digits from the OS CSPRNG, unique among this node's pending
        entries: a request id cannot be guessed from the ones seen before it."""
        entries = self.pending._entries
        ids = self._digits.ids
        while True:
            if not ids:
                self._digits.refill_ids()
            candidate = prefix + ids.pop()
            if candidate not in entries:
                return candidate

    def check_size(self, data: dict[str, Any], context: dict[str, Any]) -> None:
        """Refuse what the wire would refuse, on every route: ``max_message_size`` bounds a
        message's payload (data + context) encoded as JSON; the data channel's frame limit
        adds a fixed allowance for the envelope's own fields, so a payload that passes here
        is never refused later by a remote send."""
        size = len(self.encode(data))
        if context:
            size += len(self.encode(context))
        if size > self.max_message_size:
            raise PayloadTooLarge(size, self.max_message_size)

    async def send(
        self, info: PeerInfo, inbox: AgentInbox | None, message: IncomingMessage, deadline: float
    ) -> bool:
        """Deliver ``message`` to ``info``'s agent, waiting for inbox space until ``deadline``."""
        if inbox is not None:
            if inbox.put_nowait(message):
                return True
            if inbox.closed:
                await trio.lowlevel.checkpoint()
                return False
            self.stats.backpressure_waits += 1
            return await inbox.put(message, deadline)
        remote = self.remote  # send_remote, inlined: one coroutine less per remote message
        if remote is None:
            await trio.lowlevel.checkpoint()
            return False
        return await remote.send(info.node_id, message)

    async def send_remote(self, node_id: str, message: IncomingMessage) -> bool:
        """Hand ``message`` to the remote route; ``False`` at once when there is none or
        membership says ``node_id`` is dead (the route's own check)."""
        remote = self.remote
        if remote is None:
            await trio.lowlevel.checkpoint()
            return False
        return await remote.send(node_id, message)

    def submit_background(
        self,
        info: PeerInfo,
        inbox: AgentInbox,
        message: IncomingMessage,
        deadline: float,
        request_id: str,
    ) -> None:
        """Deliver an ``ask_async`` request into a full inbox from the node's nursery, so the
        caller returns at once; failing to deliver by ``deadline`` ends the entry with ``None``.
        The number of such tasks is bounded by the pending table."""
        nursery = self.background
        if nursery is None:
            self.pending.fail_async(request_id)
            return

        async def deliver() -> None:
            if not await self.send(info, inbox, message, deadline):
                self.pending.fail_async(request_id)

        nursery.start_soon(deliver)

    async def send_response(self, response: IncomingMessage, node_id: str) -> bool:
        """Route a response by its return path; same node = straight to the pending table."""
        if node_id == self.node_id:
            return self.pending.resolve(response)
        return await self.send_remote(node_id, response)

    async def deliver_inbound_waiting(self, message: IncomingMessage, timeout: float) -> bool:
        """Like :meth:`deliver_inbound`, but waits up to ``timeout`` seconds for space in a
        full inbox (backpressure onto the transport) before dropping (counted)."""
        if message.type == RESPONSE:
            await trio.lowlevel.checkpoint()
            return self.pending.resolve(message)
        if self.deliver_inbound(message, count=False):
            await trio.lowlevel.checkpoint()
            return True
        inbox = self.directory.local_route(message.target)
        if inbox is None or inbox.closed or not self.accepting:
            self.stats.inbound_dropped += 1
            await trio.lowlevel.checkpoint()
            return False
        self.stats.backpressure_waits += 1
        if await inbox.put(message, trio.current_time() + timeout):
            return True
        self.stats.inbound_dropped += 1
        return False

    def deliver_inbound(self, message: IncomingMessage, *, count: bool = True) -> bool:
        """A message from another node: a response resolves a pending entry, anything else
        goes to its target's inbox without waiting (a full inbox drops it, counted)."""
        if message.type == RESPONSE:
            return self.pending.resolve(message)
        inbox = self.directory.local_route(message.target)
        if inbox is None or not self.accepting or not inbox.put_nowait(message):
            if count:
                self.stats.inbound_dropped += 1
            return False
        return True

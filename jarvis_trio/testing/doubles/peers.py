"""MockPeerClient: an agent's ``self.peers`` without a mesh, for unit tests of its handlers.

Its public calls are :class:`~jarvis_trio.peers.client.PeerClient`'s own, inherited from the
base both share (a test checks that it overrides none of them), so it cannot drift from the
real API; it implements the hooks beneath them. It checks payloads exactly as the real one
does (a payload that would be refused on a real route raises the same
:class:`~jarvis_trio.errors.PayloadError`), resolves targets against the peers you declare,
answers requests from scripted replies, and records every message the agent sends, with
assertions in JarvisCore's names (``assert_notified``, ``assert_requested``,
``assert_broadcast``) and ours (``assert_responded``, ``assert_no_traffic``).
"""

from __future__ import annotations

import inspect
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import trio

from ...payload import checked_context, checked_copy
from ...peers.client import ClientCore, Payload, _checked_timeout
from ...peers.directory import PeerInfo
from ...peers.messages import NOTIFY, REQUEST, RESPONSE, IncomingMessage
from ...peers.pending import Status
from ...peers.strategies import SelectionState

__all__ = ["MockPeerClient", "Reply", "SentMessage"]

Reply = (
    dict[str, Any]
    | None
    | Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]
    | Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any] | None]]
)
"""A scripted reply: a dict (or ``None``: no reply, as a timeout), or a function of
``(message, context)`` returning one, possibly ``async``."""

Kind = Literal["notify", "request", "ask_async", "broadcast", "respond"]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the agent sent, as recorded (payloads are the checked copies)."""

    kind: Kind
    target: str | None
    message: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)
    reply: dict[str, Any] | None = None
    correlation_id: str | None = None


def _matches(sent: dict[str, Any], expected: Mapping[str, Any] | None) -> bool:
    """``expected`` is a subset of ``sent`` (``None`` matches any payload)."""
    return expected is None or all(k in sent and sent[k] == v for k, v in expected.items())


class MockPeerClient(ClientCore):
    """A scripted, recording stand-in for ``self.peers``.

    What its calls do: ``notify`` records and returns whether the target names a declared
    peer; ``request``/``request_message`` record and return the scripted reply (``None`` for an
    unknown target or no script, as a timeout would); ``ask_async`` keeps it for
    ``check_inbox`` and raises ``ValueError`` for an unknown target, as the real one does;
    ``broadcast`` returns how many declared peers it would reach; ``receive`` returns what
    :meth:`deliver` gave it; ``wait_for_peers`` never waits (no one joins a double later).
    With tracing on, its calls open client spans as the real ones do; the hooks ignore the
    trace context they are handed (``_``).

    >>> peers = MockPeerClient("scout-1", "scout")
    >>> peers.add_peer("analyst")                       # discoverable by role and id
    >>> peers.set_response("analyst", {"ok": True})     # or a function of (message, context)
    """

    def __init__(
        self,
        agent_id: str = "agent-under-test",
        role: str = "test",
        *,
        node_id: str = "mock-node",
        seed: int = 0,
    ) -> None:
        self._agent_id = agent_id
        self._role = role
        self._node_id = node_id
        self._peers: dict[str, PeerInfo] = {}
        self._responses: dict[str, Reply] = {}
        self._select = SelectionState(random.Random(seed))
        self._inbox: deque[IncomingMessage] = deque()
        self._arrived = trio.Event()
        self._async: dict[str, dict[str, Any] | None] = {}
        self._replied = trio.Event()
        self.sent: list[SentMessage] = []
        """Every message the agent sent, in order."""

    # -- scripting ----------------------------------------------------------------------

    def add_peer(
        self,
        role: str,
        agent_id: str | None = None,
        *,
        capabilities: tuple[str, ...] | list[str] = (),
        description: str = "",
        node_id: str | None = None,
    ) -> PeerInfo:
        """Declare another agent of the mesh (``agent_id`` defaults to ``role-<8 hex>``)."""
        info = PeerInfo(
            agent_id=agent_id or f"{role}-{secrets.token_hex(4)}",
            role=role,
            capabilities=tuple(capabilities),
            description=description,
            node_id=node_id or self._node_id,
            location="local" if node_id in (None, self._node_id) else "remote",
        )
        if info.agent_id == self._agent_id:
            raise ValueError(f"{info.agent_id!r} is the agent under test itself")
        self._peers[info.agent_id] = info
        return info

    def set_response(self, target: str, reply: Reply) -> None:
        """Answer requests to ``target`` (a role or an agent id) with ``reply``; setting one
        for an unknown role declares a peer of that role."""
        if target not in self._peers and not any(p.role == target for p in self._peers.values()):
            self.add_peer(target)
        self._responses[target] = reply

    def deliver(
        self,
        data: dict[str, Any],
        *,
        sender: str = "peer-0",
        request: bool = False,
        context: dict[str, Any] | None = None,
    ) -> IncomingMessage:
        """Put a message in this agent's inbox (what :meth:`receive` returns next)."""
        message = IncomingMessage(
            sender=sender,
            sender_node=self._node_id,
            type=REQUEST if request else NOTIFY,
            data=checked_copy(data),
            correlation_id=f"req-{secrets.token_hex(6)}" if request else None,
            timestamp=time.time(),
            context=checked_context(context),
            target=self._agent_id,
        )
        self._inbox.append(message)
        self._arrived.set()
        return message

    # -- discovery ----------------------------------------------------------------------

    def _candidates(self, role: str | None, capability: str | None) -> list[PeerInfo]:
        return [
            p
            for p in self._peers.values()
            if (role is None or p.role == role)
            and (capability is None or capability in p.capabilities)
        ]

    def get_peer(self, role: str) -> PeerInfo | None:
        """The first declared peer of ``role``, never the caller."""
        found = self._candidates(role, None)
        return found[0] if found else None

    def _selection(self) -> SelectionState:
        return self._select

    def list_roles(self) -> list[str]:
        """Sorted roles of the declared peers, without the caller's own role."""
        return sorted({p.role for p in self._peers.values()} - {self._role})

    def list_peers(self) -> list[dict[str, Any]]:
        """Every declared peer as a dict."""
        return [p.as_dict() for p in self._peers.values()]

    async def _wait_for_peers(
        self, count: int, role: str | None, capability: str | None, wait: float | None
    ) -> bool:
        await trio.lowlevel.checkpoint()
        return len(self._candidates(role, capability)) >= count

    @property
    def registry(self) -> Mapping[str, PeerInfo]:
        """Read-only mapping agent_id → PeerInfo of the declared peers."""
        return MappingProxyType(dict(self._peers))

    # -- messaging ----------------------------------------------------------------------

    def _resolve(self, target: str) -> PeerInfo | None:
        info = self._peers.get(target)
        if info is not None:
            return info
        for peer in self._peers.values():
            if peer.role == target:
                return peer
        return None

    async def _answer(
        self, target: str, info: PeerInfo, data: dict[str, Any], ctx: dict[str, Any]
    ) -> dict[str, Any] | None:
        script = self._responses.get(target, self._responses.get(info.agent_id))
        if script is None and target != info.role:
            script = self._responses.get(info.role)
        reply = script(data, ctx) if callable(script) else script
        if inspect.isawaitable(reply):
            reply = await reply
        return None if reply is None else checked_copy(reply, what="scripted reply")

    async def _notify(
        self, target: str, message: Payload, context: Payload | None, _: str | None
    ) -> bool:
        await trio.lowlevel.checkpoint()
        data, ctx = checked_copy(message), checked_context(context)
        delivered = self._resolve(target) is not None
        self.sent.append(SentMessage("notify", target, data, ctx))
        return delivered

    async def _exchange(
        self, target: str, message: Payload, timeout: float, context: Payload | None, _: str | None
    ) -> IncomingMessage | None:
        reply = await self._record_request("request", target, message, timeout, context)
        if reply is None:
            return None
        info = self._resolve(target)
        assert info is not None
        return IncomingMessage(
            info.agent_id,
            info.node_id,
            RESPONSE,
            reply,
            self.sent[-1].correlation_id,
            time.time(),
            checked_context(context),
            self._agent_id,
        )

    async def _record_request(
        self, kind: Kind, target: str, message: Payload, timeout: float, context: Payload | None
    ) -> Payload | None:
        """Record a request (``kind``) and return its scripted reply."""
        _checked_timeout("timeout", timeout, allow_none=False)
        await trio.lowlevel.checkpoint()
        data, ctx = checked_copy(message), checked_context(context)
        info = self._resolve(target)
        reply = None if info is None else await self._answer(target, info, data, ctx)
        correlation = f"req-{secrets.token_hex(6)}"
        self.sent.append(SentMessage(kind, target, data, ctx, reply, correlation))
        return reply

    async def _respond(
        self, message: IncomingMessage, response: Payload, context: Payload | None
    ) -> bool:
        await trio.lowlevel.checkpoint()
        if not isinstance(message, IncomingMessage) or not message.is_request:
            raise ValueError("respond() needs a request message (one with is_request True)")
        data = checked_copy(response, what="response")
        ctx = checked_context(message.context if context is None else context)
        self.sent.append(
            SentMessage("respond", message.sender, data, ctx, None, message.correlation_id)
        )
        self._replied.set()
        self._replied = trio.Event()
        return True

    async def wait_response(self, request: IncomingMessage) -> SentMessage:
        """The agent's ``respond()`` to ``request``, once it is made (bound the wait with
        ``trio.fail_after``)."""
        while True:
            for sent in self.responses:
                if sent.correlation_id == request.correlation_id:
                    return sent
            await self._replied.wait()

    async def _broadcast(self, message: Payload, context: Payload | None, _: str | None) -> int:
        await trio.lowlevel.checkpoint()
        data, ctx = checked_copy(message), checked_context(context)
        self.sent.append(SentMessage("broadcast", None, data, ctx))
        return len(self._peers)

    async def _receive(self, wait: float | None) -> IncomingMessage | None:
        if not self._inbox and wait != 0:
            with trio.move_on_after(math.inf if wait is None else wait):
                while not self._inbox:
                    self._arrived = trio.Event()
                    await self._arrived.wait()
        await trio.lowlevel.checkpoint()
        return self._inbox.popleft() if self._inbox else None

    async def _ask_async(
        self, target: str, message: Payload, wait: float, context: Payload | None, _: str | None
    ) -> str:
        if self._resolve(target) is None:
            raise ValueError(f"ask_async: no agent matches {target!r}")
        reply = await self._record_request("ask_async", target, message, wait, context)
        request_id = f"async-{secrets.token_hex(6)}"
        self._async[request_id] = reply
        return request_id

    async def _check_inbox(self, request_id: str, wait: float, remove: bool) -> Payload | None:
        await trio.lowlevel.checkpoint()
        reply = self._async.get(request_id)
        if remove:
            self._async.pop(request_id, None)
        return reply

    def inbox_status(self, request_id: str) -> Status:
        """``"ready"`` for a known id with a reply, ``"pending"`` without one, else
        ``"unknown"``."""
        if request_id not in self._async:
            return "unknown"
        return "ready" if self._async[request_id] is not None else "pending"

    # -- recorded traffic ---------------------------------------------------------------

    def sent_of(self, kind: Kind, target: str | None = None) -> list[SentMessage]:
        """Recorded messages of ``kind`` (to ``target``, if given)."""
        return [m for m in self.sent if m.kind == kind and (target is None or m.target == target)]

    @property
    def notifications(self) -> list[SentMessage]:
        """Recorded notifies."""
        return self.sent_of("notify")

    @property
    def requests(self) -> list[SentMessage]:
        """Recorded requests (``request``, ``request_message`` and ``ask_async``)."""
        return [m for m in self.sent if m.kind in ("request", "ask_async")]

    @property
    def responses(self) -> list[SentMessage]:
        """Recorded ``respond()`` calls."""
        return self.sent_of("respond")

    def _assert_sent(
        self,
        kinds: tuple[Kind, ...],
        target: str | None,
        message: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
        what: str,
    ) -> SentMessage:
        for sent in self.sent:
            if (
                sent.kind in kinds
                and (target is None or sent.target == target)
                and _matches(sent.message, message)
                and _matches(sent.context, context)
            ):
                return sent
        seen = [f"{m.kind} {m.target}: {m.message}" for m in self.sent if m.kind in kinds]
        wanted = f" to {target!r}" if target is not None else ""
        raise AssertionError(
            f"no {what}{wanted} with message {dict(message or {})} "
            f"and context {dict(context or {})}; recorded: {seen or 'none'}"
        )

    def assert_notified(
        self,
        target: str | None = None,
        message: Mapping[str, Any] | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> SentMessage:
        """A notify to ``target`` whose message (and context) contain the given items."""
        return self._assert_sent(("notify",), target, message, context, "notify")

    def assert_requested(
        self,
        target: str | None = None,
        message: Mapping[str, Any] | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> SentMessage:
        """A request (or ask_async) to ``target`` containing the given items."""
        return self._assert_sent(("request", "ask_async"), target, message, context, "request")

    def assert_broadcast(
        self, message: Mapping[str, Any] | None = None, *, context: Mapping[str, Any] | None = None
    ) -> SentMessage:
        """A broadcast containing the given items."""
        return self._assert_sent(("broadcast",), None, message, context, "broadcast")

    def assert_responded(
        self, request: IncomingMessage, message: Mapping[str, Any] | None = None
    ) -> SentMessage:
        """A ``respond()`` to ``request`` (containing the given items)."""
        for sent in self.responses:
            if sent.correlation_id == request.correlation_id and _matches(sent.message, message):
                return sent
        raise AssertionError(
            f"no reply to request {request.correlation_id} from {request.sender}"
            + (f" containing {dict(message)}" if message else "")
        )

    def assert_not_notified(self, target: str) -> None:
        """No notify went to ``target``."""
        found = self.sent_of("notify", target)
        if found:
            raise AssertionError(f"unexpected notify to {target!r}: {found[0].message}")

    def assert_no_traffic(self) -> None:
        """The agent sent nothing at all."""
        if self.sent:
            raise AssertionError(f"unexpected traffic: {[(m.kind, m.target) for m in self.sent]}")

    def reset(self) -> None:
        """Forget the recorded traffic (scripts and peers stay)."""
        self.sent.clear()

    def __repr__(self) -> str:
        return f"<MockPeerClient {self._agent_id} peers={len(self._peers)} sent={len(self.sent)}>"

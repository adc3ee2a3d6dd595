"""PeerClient: the documented discovery and messaging API an agent sees as ``self.peers``.

Every sending call checks (and copies) its payload before anything else, so a refused payload
raises :class:`~jarvis_trio.errors.PayloadError` at the call site whatever the route. Roles
never resolve to the calling agent; an explicit agent_id may name it.

Request/response: the caller registers a pending entry, hands the message over and parks its
own task; the response is routed by the request's return path straight to the pending table
and wakes the caller. Cancellation at any point removes the entry (``finally``), so a reply
arriving afterwards is counted as late and dropped — it never reaches ``receive()``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import trio
from sniffio import thread_local as _sniffio_thread

from .. import _tracing
from .._histogram import FOLD_EVERY
from .._sides import HostSlot, crossing, trio_side
from ..payload import checked_context, checked_copy
from .messages import NOTIFY, REQUEST, RESPONSE, IncomingMessage
from .pending import PendingEntry, Status
from .strategies import SelectionState

if TYPE_CHECKING:
    from .._sides import Started
    from .directory import PeerInfo
    from .inbox import AgentInbox
    from .router import Router

__all__ = ["ClientCore", "PeerClient"]

_modules = sys.modules

T = TypeVar("T")
Payload = dict[str, Any]  # a message or context as the caller hands it over (checked later)
# a request up to its hand-over: its pending entry, the message, the target and its inbox
Opened = tuple[PendingEntry, IncomingMessage, "PeerInfo", "AgentInbox | None"]

_ROUTE_CACHE = 64  # resolved targets remembered per client until the directory changes


class _Ended:
    """What cancels a request that ended as it started: nothing."""

    __slots__ = ()

    def cancel(self) -> None:
        pass


_ENDED = _Ended()


class _Completion:
    """A request started by :meth:`PeerClient._start_request`, in flight: its pending entry
    calls it once resolved. One object per request, and no reference back to the entry:
    whatever a request keeps alive until its reply is what the garbage collector counts
    (objects alive at a young collection are promoted, and enough promotions cost a full
    collection; measured with 64 asyncio callers, see ``benchmarks/README.md``)."""

    __slots__ = ("client", "done", "info", "msg")

    def __init__(
        self,
        client: PeerClient,
        info: PeerInfo,
        msg: IncomingMessage,
        done: Callable[[dict[str, Any] | None], None],
    ) -> None:
        self.client = client
        self.info = info
        self.msg = msg  # not tracked by the collector (IncomingMessage has gc=False)
        self.done = done

    def __call__(self, entry: PendingEntry) -> None:
        """The entry is resolved: counted as :meth:`PeerClient._exchange` counts it."""
        reply = entry.reply
        self.client._close_exchange(self.info, reply, self.msg, entry)
        self.done(None if reply is None else reply.data)

    def cancel(self) -> None:
        """The caller gave up: the entry leaves the table, a reply is late."""
        key = self.msg.correlation_id
        if key is not None:
            self.client._router.pending.discard(key)


def _agent_id(info: PeerInfo) -> str:
    return info.agent_id


def _checked_timeout(name: str, value: object, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return float(value)


class ClientCore:
    """The public API of ``self.peers``, written once for :class:`PeerClient` and its test
    double (``jarvis_trio.testing.MockPeerClient``) so that the two cannot drift apart: the
    signatures, the docstrings, the checks that do not depend on the route, the tracing span
    and the asyncio seam (:func:`~jarvis_trio._sides.trio_side`) are here; each client supplies
    the hooks typed below (the candidates it knows, and how it sends) and its discovery reads.

    A hook that sends takes the caller's W3C ``traceparent`` last (``None`` with tracing off);
    a timeout the base has already checked reaches a hook as ``wait``.
    """

    __slots__ = ()
    _agent_id: str
    _role: str
    _node_id: str

    _candidates: Callable[[str | None, str | None], list[PeerInfo]]
    _selection: Callable[[], SelectionState]
    _wait_for_peers: Callable[[int, str | None, str | None, float | None], Awaitable[bool]]
    _notify: Callable[[str, Payload, Payload | None, str | None], Awaitable[bool]]
    _exchange: Callable[
        [str, Payload, float, Payload | None, str | None], Awaitable[IncomingMessage | None]
    ]
    # a client whose requests wait on a PendingTable entry sets _inline_exchange and gives
    # the steps around the wait, so that request() makes them in its own frame
    _inline_exchange: ClassVar[bool] = False
    _open_exchange: Callable[[str, Payload, float, Payload | None, str | None], Opened | None]
    _hand_over: Callable[
        [PeerInfo, AgentInbox | None, IncomingMessage, PendingEntry], Awaitable[bool]
    ]
    _close_exchange: Callable[
        [PeerInfo, IncomingMessage | None, IncomingMessage, PendingEntry], None
    ]
    _ask_async: Callable[[str, Payload, float, Payload | None, str | None], Awaitable[str]]
    _broadcast: Callable[[Payload, Payload | None, str | None], Awaitable[int]]
    _respond: Callable[[IncomingMessage, Payload, Payload | None], Awaitable[bool]]
    _receive: Callable[[float | None], Awaitable[IncomingMessage | None]]
    _check_inbox: Callable[[str, float, bool], Awaitable[Payload | None]]

    # -- identity -----------------------------------------------------------------------

    @property
    def my_id(self) -> str:
        """This agent's agent_id."""
        return self._agent_id

    @property
    def my_role(self) -> str:
        """This agent's role."""
        return self._role

    @property
    def node_id(self) -> str:
        """The node this agent runs on."""
        return self._node_id

    # -- discovery ----------------------------------------------------------------------

    def discover(
        self, role: str | None = None, capability: str | None = None, strategy: str = "first"
    ) -> list[PeerInfo]:
        """Agents matching ``role`` and ``capability``, never the caller, ordered by
        ``strategy`` (an unknown one is a ``ValueError``)."""
        found = self._candidates(role, capability)
        return self._selection().order(found, strategy, (role, capability), _agent_id)

    def discover_one(
        self, role: str | None = None, capability: str | None = None, strategy: str = "first"
    ) -> PeerInfo | None:
        """The first of :meth:`discover`, or ``None``."""
        found = self.discover(role=role, capability=capability, strategy=strategy)
        return found[0] if found else None

    def record_peer_usage(self, peer_id: str) -> None:
        """Note that ``peer_id`` was just used (feeds the ``least_recent`` strategy)."""
        self._selection().record(peer_id)

    @trio_side
    async def wait_for_peers(
        self,
        count: int = 1,
        *,
        role: str | None = None,
        capability: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Wait until at least ``count`` other agents match the filters (local or remote).

        Returns ``True`` when they do, ``False`` at ``timeout``. Event-driven: it wakes on
        directory changes, never polls. Useful at start-up, before the first request.
        """
        wait = _checked_timeout("timeout", timeout, allow_none=True)
        return await self._wait_for_peers(count, role, capability, wait)

    # -- messaging ----------------------------------------------------------------------

    async def _traced(
        self, operation: str, target: str, call: Callable[..., Awaitable[T]], args: tuple[Any, ...]
    ) -> T:
        """``call(*args, traceparent)``, inside a client span when tracing is on. The hot
        paths (:meth:`request`, :meth:`notify`) call their hook directly when it is off."""
        if not _tracing.active():
            return await call(*args, None)
        with _tracing.client_span(operation, target, self.node_id) as traceparent:
            return await call(*args, traceparent)

    async def notify(
        self, target: str, message: dict[str, Any], context: dict[str, Any] | None = None
    ) -> bool:
        """Fire and forget. ``True`` once handed to a live route, ``False`` if ``target``
        cannot be resolved or its inbox stays full for the node's ``notify_timeout``."""
        if _sniffio_thread.name != "trio":  # @trio_side, inlined (see request)
            host = crossing(self, "notify")
            if host is not None:
                return await host.call(ClientCore.notify, self, target, message, context)
        if _tracing.OTEL_TRACE in _modules and _tracing.active():  # as in request
            return await self._traced("notify", target, self._notify, (target, message, context))
        return await self._notify(target, message, context, None)

    async def request(
        self,
        target: str,
        message: dict[str, Any],
        timeout: float = 30.0,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Send a request and wait for the reply dict; ``None`` on an unresolved target, a
        send failure, a timeout, a dead target node or a stopping node."""
        # @trio_side, inlined: its wrapper is one more coroutine that every suspension and
        # resumption of the call passes through (measured at 5 % of an in-process request)
        if _sniffio_thread.name != "trio":
            host = crossing(self, "request")
            if host is not None:
                # started by the host's leader with no task of its own where it can be
                # (_start_request), else awaited in a worker task
                return await host.call_by_callback(
                    type(self)._start_request,
                    ClientCore.request,
                    self,
                    target,
                    message,
                    timeout,
                    context,
                )
        if _tracing.OTEL_TRACE in _modules and _tracing.active():  # active() is False
            # while the OpenTelemetry API is not imported: one look-up instead of a call
            args = (target, message, timeout, context)
            reply = await self._traced("request", target, self._exchange, args)
            return None if reply is None else reply.data
        if not self._inline_exchange:
            reply = await self._exchange(target, message, timeout, context, None)
            return None if reply is None else reply.data
        # PeerClient's _exchange, made in this frame: each coroutine layer is crossed again
        # when the caller parks and when it resumes. The steps before and after the wait
        # are the hooks _exchange itself uses, so the two cannot drift apart.
        await trio.lowlevel.checkpoint_if_cancelled()
        opened = self._open_exchange(target, message, timeout, context, None)
        if opened is None:
            return None
        entry, msg, info, inbox = opened
        try:
            if (inbox is None or not inbox.put_nowait(msg)) and not await self._hand_over(
                info, inbox, msg, entry
            ):
                return None
            if entry.done:  # answered while the message was being handed over
                await trio.lowlevel.checkpoint()
                reply = entry.reply
            else:
                # parked on the entry itself (PendingTable.wait, inlined)
                entry.task = trio.lowlevel.current_task()
                reply = await trio.lowlevel.wait_task_rescheduled(entry.abort)
        finally:
            if not entry.done:  # a resolved entry has left the table already
                entry.table.discard(entry.key)
        self._close_exchange(info, reply, msg, entry)
        return None if reply is None else reply.data

    def _start_request(
        self,
        target: str,
        message: dict[str, Any],
        timeout: float,
        context: dict[str, Any] | None,
        done: Callable[[dict[str, Any] | None], None],
    ) -> Started | None:
        """:meth:`request` started without a task of its own (see
        :meth:`PeerClient._start_request`); ``None``: it cannot be, await :meth:`request`."""
        return None

    @trio_side
    async def request_message(
        self,
        target: str,
        message: dict[str, Any],
        timeout: float = 30.0,
        context: dict[str, Any] | None = None,
    ) -> IncomingMessage | None:
        """Like :meth:`request` but returns the whole response message (sender, context)."""
        args = (target, message, timeout, context)
        return await self._traced("request", target, self._exchange, args)

    @trio_side
    async def respond(
        self,
        message: IncomingMessage,
        response: dict[str, Any],
        context: dict[str, Any] | None = None,
    ) -> bool:
        """Reply to a request along its return path (sender + sender_node). The context
        defaults to the request's. ``False`` when the requester is gone (late reply)."""
        return await self._respond(message, response, context)

    @trio_side
    async def broadcast(
        self, message: dict[str, Any], context: dict[str, Any] | None = None
    ) -> int:
        """Notify every other agent in the mesh (one message per agent, concurrently);
        returns how many were delivered."""
        return await self._traced("broadcast", "*", self._broadcast, (message, context))

    @trio_side
    async def receive(self, timeout: float | None = None) -> IncomingMessage | None:
        """The next message of this agent's inbox. ``timeout=0`` never blocks; ``None`` waits
        until a message arrives."""
        return await self._receive(_checked_timeout("timeout", timeout, allow_none=True))

    @trio_side
    async def ask_async(
        self,
        target: str,
        message: dict[str, Any],
        timeout: float = 120.0,
        context: dict[str, Any] | None = None,
    ) -> str:
        """Send a request without waiting; returns its id (``async-`` + 12 hex) for
        :meth:`check_inbox`. The entry expires ``timeout`` seconds from now. Raises
        ``ValueError`` when the target cannot be resolved or the message cannot be sent."""
        wait = _checked_timeout("timeout", timeout, allow_none=False)
        assert wait is not None
        args = (target, message, wait, context)
        return await self._traced("ask_async", target, self._ask_async, args)

    @trio_side
    async def check_inbox(
        self, request_id: str, timeout: float = 0.0, remove: bool = True
    ) -> dict[str, Any] | None:
        """The reply to an :meth:`ask_async` id, waiting up to ``timeout`` for it. Returns
        ``None`` at once for an expired or unknown id."""
        wait = _checked_timeout("timeout", timeout, allow_none=False)
        assert wait is not None
        return await self._check_inbox(request_id, wait, remove)


class PeerClient(ClientCore):
    """Discovery and messaging for one agent. Injected by the mesh; never built by users."""

    __slots__ = (
        "_agent_id",
        "_host_slot",
        "_inbox",
        "_node_id",
        "_reg_source",
        "_reg_view",
        "_role",
        "_router",
        "_routes",
        "_select",
    )

    def __init__(
        self,
        router: Router,
        agent_id: str,
        role: str,
        inbox: AgentInbox,
        *,
        host: HostSlot | None = None,
    ) -> None:
        self._host_slot = HostSlot() if host is None else host  # see jarvis_trio._sides
        self._router = router
        self._agent_id = agent_id
        self._role = role
        self._node_id = router.node_id
        self._inbox = inbox
        self._select: SelectionState | None = None
        self._routes: tuple[int, dict[str, tuple[PeerInfo, AgentInbox | None]]] | None = None
        self._reg_source: object = None
        self._reg_view: Mapping[str, PeerInfo] = MappingProxyType({})

    # -- discovery ----------------------------------------------------------------------

    def get_peer(self, role: str) -> PeerInfo | None:
        """The first agent of ``role`` (local before remote), never the caller."""
        me = self._agent_id
        for info in self._router.directory.matching(role, None):
            if info.agent_id != me:
                return info
        return None

    def _candidates(self, role: str | None, capability: str | None) -> list[PeerInfo]:
        me = self._agent_id
        return [i for i in self._router.directory.matching(role, capability) if i.agent_id != me]

    def list_roles(self) -> list[str]:
        """Sorted roles present in the mesh, without the caller's own role."""
        return sorted({i.role for i in self._router.directory.matching()} - {self._role})

    def list_peers(self) -> list[dict[str, Any]]:
        """Every other agent as a dict (role, agent_id, capabilities, description, status,
        location, node_id)."""
        me = self._agent_id
        return [i.as_dict() for i in self._router.directory.matching() if i.agent_id != me]

    async def _wait_for_peers(
        self, count: int, role: str | None, capability: str | None, wait: float | None
    ) -> bool:
        directory = self._router.directory
        me = self._agent_id

        def enough(_: int) -> bool:
            matching = directory.matching(role, capability)
            return sum(1 for info in matching if info.agent_id != me) >= count

        with trio.move_on_after(math.inf if wait is None else wait):
            await directory.changes.wait_value(enough)
            return True
        return False

    @property
    def registry(self) -> Mapping[str, PeerInfo]:
        """Read-only mapping agent_id → PeerInfo of every agent in the mesh but the caller."""
        source = self._router.directory.registry()
        if source is not self._reg_source:
            me = self._agent_id
            self._reg_view = MappingProxyType({k: v for k, v in source.items() if k != me})
            self._reg_source = source
        return self._reg_view

    def _selection(self) -> SelectionState:
        if self._select is None:
            self._select = SelectionState(self._router.rng)
        return self._select

    def _resolve(self, target: str) -> tuple[PeerInfo, AgentInbox | None] | None:
        directory = self._router.directory
        cache = self._routes
        if cache is not None and cache[0] == directory.epoch:
            found = cache[1].get(target)
            if found is not None:
                return found
        else:
            cache = self._routes = (directory.epoch, {})
        if not isinstance(target, str):
            kind = type(target).__name__
            raise TypeError(f"target must be a role or agent_id string, not {kind}")
        found = directory.get(target)
        if found is None:
            me = self._agent_id
            for info in directory.matching(target, None):
                if info.agent_id != me:
                    found = (info, directory.local_route(info.agent_id))
                    break
            else:
                return None
        if len(cache[1]) < _ROUTE_CACHE:
            cache[1][target] = found
        return found

    # -- messaging ----------------------------------------------------------------------

    async def _notify(
        self,
        target: str,
        message: dict[str, Any],
        context: dict[str, Any] | None,
        traceparent: str | None,
    ) -> bool:
        await trio.lowlevel.checkpoint_if_cancelled()
        router = self._router
        data, ctx = self._checked(message, context)
        found = self._resolve(target)
        if found is None or not router.accepting:
            router.stats.notify_failed += 1
            return False
        info, inbox = found
        msg = self._outgoing(NOTIFY, data, None, ctx, info.agent_id, traceparent)
        traffic = router.traffic
        if inbox is None:  # another node's agent: no inbox here to wait for
            delivered = await router.send_remote(info.node_id, msg)
        elif inbox.put_nowait(msg):
            if traffic.enabled:
                traffic.role(info.role).notified += 1
            return True
        else:
            deadline = trio.current_time() + router.notify_timeout
            delivered = await router.send(info, inbox, msg, deadline)
        if not delivered:
            router.stats.notify_failed += 1
        if traffic.enabled:
            counts = traffic.role(info.role)
            if delivered:
                counts.notified += 1
            else:
                counts.notify_failed += 1
        return delivered

    _inline_exchange = True  # request() makes _exchange's steps in its own frame

    async def _exchange(
        self,
        target: str,
        message: dict[str, Any],
        timeout: float,
        context: dict[str, Any] | None,
        traceparent: str | None,
    ) -> IncomingMessage | None:
        """Send a request and park until its response, its deadline or the node stopping;
        the pending entry is removed whichever way the call ends. (:meth:`request` makes the
        same steps in its own frame when it needs no span.)"""
        await trio.lowlevel.checkpoint_if_cancelled()
        opened = self._open_exchange(target, message, timeout, context, traceparent)
        if opened is None:
            return None
        entry, msg, info, inbox = opened
        reply: IncomingMessage | None
        try:
            if (inbox is None or not inbox.put_nowait(msg)) and not await self._hand_over(
                info, inbox, msg, entry
            ):
                return None
            reply = await self._router.pending.wait(entry.key, entry)
        finally:
            if not entry.done:  # a resolved entry has left the table already
                entry.table.discard(entry.key)
        self._close_exchange(info, reply, msg, entry)
        return reply

    def _open_exchange(
        self,
        target: str,
        message: dict[str, Any],
        timeout: float,
        context: dict[str, Any] | None,
        traceparent: str | None,
    ) -> Opened | None:
        """A request's first half, up to the hand-over: check the timeout and the payload,
        resolve the target, open the pending entry, build the message, count it sent.
        ``None`` (counted) when the target cannot be resolved, the node does not accept or
        the table is full. Nothing that can raise comes after the entry is opened: the
        caller's ``try`` that removes it starts right after this returns."""
        router = self._router
        if type(timeout) is not float or not 0 <= timeout < math.inf:
            timeout = _checked_timeout("timeout", timeout, allow_none=False)  # type: ignore[assignment]
        data = checked_copy(message)  # _checked, inlined
        ctx: dict[str, Any] = {} if context is None else checked_context(context)
        if ctx or len(router.encode(data)) > router.max_message_size:
            router.check_size(data, ctx)  # the full check only when it could fail
        found = self._resolve(target)
        if found is None or not router.accepting:
            router.stats.request_failed += 1
            return None
        info, inbox = found
        entry = router.pending.open_request(
            router.new_id("req-"), info.node_id, router.now() + timeout
        )
        if entry is None:
            router.stats.request_failed += 1
            return None
        traffic = router.traffic
        if traffic.enabled:
            traffic.by_role[info.role].sent += 1
        return (
            entry,
            IncomingMessage(
                self._agent_id,
                router.node_id,
                REQUEST,
                data,
                entry.key,
                time.time(),
                ctx,
                info.agent_id,
                traceparent,
            ),
            info,
            inbox,
        )

    async def _hand_over(
        self,
        info: PeerInfo,
        inbox: AgentInbox | None,
        msg: IncomingMessage,
        entry: PendingEntry,
    ) -> bool:
        """The request's hand-over when the target's inbox did not take it at once: a full
        inbox (wait for space) or another node. ``False`` (counted) when it failed."""
        router = self._router
        if await router.send(info, inbox, msg, entry.deadline):
            return True
        router.stats.request_failed += 1
        traffic = router.traffic
        if traffic.enabled:
            traffic.by_role[info.role].failed += 1
        return False

    def _close_exchange(
        self,
        info: PeerInfo,
        reply: IncomingMessage | None,
        msg: IncomingMessage,
        entry: PendingEntry,
    ) -> None:
        """A request's metrics once it ended: its latency, or why it got no reply."""
        router = self._router
        traffic = router.traffic
        if not traffic.enabled:
            return
        counts = traffic.by_role[info.role]
        if reply is not None:
            if reply.sender_node == msg.sender_node:
                # both ends stamped by this node's clock: no clock read to time it
                latencies = counts.latency.pending  # Histogram.observe, inlined
                latencies.append(reply.timestamp - msg.timestamp)
                if len(latencies) >= FOLD_EVERY:
                    counts.latency.fold()
            else:  # from the request's own stamp: no clock read at the start
                counts.observe(time.time() - msg.timestamp)
        elif router.now() >= entry.deadline:
            counts.timed_out += 1
        else:
            counts.failed += 1

    def _start_request(
        self,
        target: str,
        message: dict[str, Any],
        timeout: float,
        context: dict[str, Any] | None,
        done: Callable[[dict[str, Any] | None], None],
    ) -> Started | None:
        """:meth:`request` for a caller that is not a Trio task (the asyncio host, which would
        otherwise spend a worker task, two task steps, per request): started here, on the
        Trio thread, and completed by a callback on the pending entry instead of a parked
        task. ``done`` gets what :meth:`request` would return, once, from whatever resolves
        the entry (the reply, its deadline, a failed node, the node stopping), or at once
        when there is nothing to wait for. Returns what cancels the request (the entry
        leaves the table, as when a waiting caller is cancelled, and ``done`` is not called),
        or ``None``, with nothing sent, when the message cannot be handed over without
        waiting (a remote target, a full inbox, tracing on): the caller then awaits
        :meth:`request` instead. Raises what :meth:`request` raises for bad arguments.

        Its steps are :meth:`_exchange`'s own hooks (:meth:`_open_exchange` before the
        hand-over, :meth:`_close_exchange` once resolved), so the two count alike
        (``tests/unit/core/test_request_callback.py`` compares them).
        """
        if _tracing.OTEL_TRACE in _modules and _tracing.active():
            return None
        try:
            found = self._resolve(target)
        except TypeError:  # raised below, in request()'s order of checks
            found = None
        if found is not None and found[1] is None:
            return None  # on another node: the hand-over may wait
        opened = self._open_exchange(target, message, timeout, context, None)
        if opened is None:
            done(None)
            return _ENDED
        entry, msg, info, inbox = opened
        if inbox is None or not inbox.put_nowait(msg):
            # a full inbox (or a route changed meanwhile): nothing was sent, and request()
            # will count it when it sends it
            entry.table.discard(entry.key)
            traffic = self._router.traffic
            if traffic.enabled:
                traffic.by_role[info.role].sent -= 1
            return None
        completion = entry.on_done = _Completion(self, info, msg, done)
        return completion

    def _outgoing(
        self,
        kind: str,
        data: dict[str, Any],
        correlation_id: str | None,
        context: dict[str, Any],
        target: str,
        traceparent: str | None = None,
    ) -> IncomingMessage:
        """A message from this agent to ``target``, stamped now."""
        return IncomingMessage(
            self._agent_id,
            self._router.node_id,
            kind,
            data,
            correlation_id,
            time.time(),
            context,
            target,
            traceparent,
        )

    def _checked(
        self, message: dict[str, Any], context: dict[str, Any] | None, what: str = "message"
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Copies of a message and its context that every route (local or wire) accepts;
        raises :class:`~jarvis_trio.errors.PayloadError` otherwise."""
        data = checked_copy(message, what=what)
        ctx: dict[str, Any] = {} if context is None else checked_context(context)
        if ctx or len(self._router.encode(data)) > self._router.max_message_size:
            self._router.check_size(data, ctx)  # the full check only when it could fail
        return data, ctx

    async def _respond(
        self,
        message: IncomingMessage,
        response: dict[str, Any],
        context: dict[str, Any] | None = None,
    ) -> bool:
        reply = self._reply(message, response, context)
        router = self._router
        if message.sender_node == router.node_id:  # same node: never blocks
            return router.pending.resolve(reply)
        return await router.send_response(reply, message.sender_node)

    def _respond_here(self, message: IncomingMessage, response: dict[str, Any]) -> bool:
        """:meth:`respond` to a request sent from this node: nothing to wait for, so no
        coroutine (the agent's loop calls it for every same-node request it answers).
        :meth:`_reply` and :meth:`_checked`, inlined: this runs once per local request."""
        if type(message) is not IncomingMessage or message.type != REQUEST:
            return self._router.pending.resolve(self._reply(message, response))
        router = self._router
        data = checked_copy(response, what="response")
        context = message.context
        ctx: dict[str, Any] = checked_context(context) if context else {}
        if ctx or len(router.encode(data)) > router.max_message_size:
            router.check_size(data, ctx)  # the full check only when it could fail
        return router.pending.resolve(
            IncomingMessage(
                self._agent_id,
                router.node_id,
                RESPONSE,
                data,
                message.correlation_id,
                time.time(),
                ctx,
                message.sender,
            )
        )

    def _reply(
        self,
        message: IncomingMessage,
        response: dict[str, Any],
        context: dict[str, Any] | None = None,
    ) -> IncomingMessage:
        """The checked response to ``message`` (the context defaults to the request's)."""
        if not isinstance(message, IncomingMessage) or not message.is_request:
            raise ValueError("respond() needs a request message received from peers")
        router = self._router
        data, ctx = self._checked(
            response, message.context if context is None else context, "response"
        )
        return IncomingMessage(
            self._agent_id,
            router.node_id,
            RESPONSE,
            data,
            message.correlation_id,
            time.time(),
            ctx,
            message.sender,
        )

    async def _broadcast(
        self, message: dict[str, Any], context: dict[str, Any] | None, traceparent: str | None
    ) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        router = self._router
        data, ctx = self._checked(message, context)
        if not router.accepting:
            return 0
        me = self._agent_id
        directory = router.directory
        delivered = 0
        slow: list[tuple[PeerInfo, AgentInbox | None, IncomingMessage]] = []
        now = time.time()
        first = True
        for info in directory.matching():
            if info.agent_id == me:
                continue
            if first:
                payload, own_ctx, first = data, ctx, False
            else:
                payload, own_ctx = checked_copy(data), checked_context(ctx)
            msg = IncomingMessage(
                me, router.node_id, NOTIFY, payload, None, now, own_ctx, info.agent_id, traceparent
            )
            inbox = directory.local_route(info.agent_id)
            if inbox is not None:
                if inbox.put_nowait(msg):
                    delivered += 1
                    continue
                if inbox.closed:
                    continue
            slow.append((info, inbox, msg))
        if slow:
            deadline = trio.current_time() + router.notify_timeout
            results: list[bool] = []

            async def one(item: tuple[PeerInfo, AgentInbox | None, IncomingMessage]) -> None:
                results.append(await router.send(item[0], item[1], item[2], deadline))

            async with trio.open_nursery() as nursery:
                for item in slow:
                    nursery.start_soon(one, item)
            delivered += sum(results)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        traffic = router.traffic
        traffic.broadcasts += 1
        traffic.broadcast_deliveries += delivered
        return delivered

    async def _receive(self, wait: float | None) -> IncomingMessage | None:
        return await self._inbox.get(wait)

    async def _ask_async(
        self,
        target: str,
        message: dict[str, Any],
        wait: float,
        context: dict[str, Any] | None,
        traceparent: str | None,
    ) -> str:
        await trio.lowlevel.checkpoint_if_cancelled()
        router = self._router
        data, ctx = self._checked(message, context)
        found = self._resolve(target)
        if found is None:
            raise ValueError(f"ask_async: no agent matches {target!r}")
        if not router.accepting:
            raise ValueError("ask_async: the node is not running")
        info, inbox = found
        request_id = router.new_id("async-")
        deadline = trio.current_time() + wait
        entry = router.pending.open_async(request_id, info.node_id, deadline)
        if entry is None:
            raise ValueError(
                f"ask_async: {router.pending.limit} requests are already pending on this node"
            )
        msg = self._outgoing(REQUEST, data, request_id, ctx, info.agent_id, traceparent)
        if inbox is not None:
            if inbox.put_nowait(msg):
                return request_id
            if inbox.closed:
                router.pending.fail_async(request_id)
                raise ValueError(f"ask_async: agent {info.agent_id} has stopped")
            router.submit_background(info, inbox, msg, deadline, request_id)
            return request_id
        try:
            sent = await router.send(info, None, msg, deadline)
        except BaseException:
            router.pending.fail_async(request_id)
            raise
        if not sent:
            router.pending.fail_async(request_id)
            raise ValueError(f"ask_async: could not send to {info.agent_id} on {info.node_id}")
        return request_id

    async def _check_inbox(
        self, request_id: str, wait: float, remove: bool
    ) -> dict[str, Any] | None:
        reply = await self._router.pending.check(request_id, wait, remove)
        return None if reply is None else reply.data

    def inbox_status(self, request_id: str) -> Status:
        """``"pending"``, ``"ready"``, ``"expired"`` or ``"unknown"`` for an ask_async id."""
        return self._router.pending.status(request_id)

    def __repr__(self) -> str:
        return f"<PeerClient {self._agent_id} on {self._router.node_id}>"

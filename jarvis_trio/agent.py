"""Agents: the classes users subclass, their lifecycle hooks and message dispatch.

An agent declares ``name``, ``role`` (required), ``capabilities``, ``description``,
``requires_auth`` and ``max_concurrency`` as class attributes. The mesh injects ``peers``,
``mailbox``, ``_blob_storage``, ``_redis_store``, ``_auth_manager`` and ``_logger`` before
``setup()`` runs, then runs the agent's loop under supervision, and always runs ``teardown()``
at the end (stop, cancellation or crash).

Two shapes of ``run``:

* ``async def run(self)`` is the agent's long-running loop. The default one serves the
  inbox — ``on_peer_request`` (its return value is the reply) and ``on_peer_notify`` — and,
  when the class overrides ``on_mailbox_message``, the mailbox too.
* ``async def run(self, task, context)`` is a task entry point, called by
  :meth:`Agent.execute_task` (or ``Mesh.run_task``); meanwhile the default loop serves the
  inbox.

A handler that raises is logged and answered with an error reply
(``{"status": "failure", "error": ..., "error_type": ...}``) so no requester waits out its
timeout; the agent keeps serving. An ``on_peer_request`` that returns ``None`` sends no reply
(it answered, or will answer, with ``peers.respond()`` itself). Messages are handled one at a
time in arrival order unless ``max_concurrency`` is raised: then that many handlers run at
once, each taking the next message in arrival order.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import trio

from . import _tracing
from ._logcontext import CURRENT_CORRELATION
from ._sides import HostSlot, trio_side
from ._supervision import RestartPolicy, Supervised
from .errors import MeshError, PayloadError, PayloadTooLarge
from .peers.messages import NOTIFY, REQUEST, IncomingMessage, failure_reply

if TYPE_CHECKING:
    from .auth import AuthenticationManager
    from .peers.client import PeerClient
    from .peers.directory import PeerInfo
    from .peers.inbox import AgentInbox
    from .services import Mailbox, MailboxMessage, NodeServices
    from .storage.blob import BlobStorage
    from .storage.redis_store import RedisStore

__all__ = ["Agent", "AgentLogger", "CustomAgent"]

_BURST = 64  # messages handled back to back before yielding to other tasks
_SETTLE_TIMEOUT = 5.0  # bound on shielded ack/nack of a mailbox message


class AgentLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every record with the agent_id and carries it as ``record.agent_id``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{extra.get('agent_id')}] {msg}", kwargs


class Agent:
    """Base class of every agent. Subclass it (or :class:`CustomAgent`) and set ``role``."""

    name: ClassVar[str] = ""
    role: ClassVar[str] = ""
    capabilities: ClassVar[Sequence[str]] = ()
    description: ClassVar[str] = ""
    requires_auth: ClassVar[bool] = False
    max_concurrency: ClassVar[int] = 1
    restart_policy: ClassVar[RestartPolicy | None] = None

    agent_id: str
    _redis_store: RedisStore | None  # None when the node has no Redis
    _auth_manager: AuthenticationManager | None  # None unless requires_auth (and auth is on)
    _logger: logging.LoggerAdapter[logging.Logger]

    def __init__(self, agent_id: str | None = None) -> None:
        self.agent_id = agent_id or ""
        self._mailbox: Mailbox | None = None
        self._blob: BlobStorage | None = None
        self._redis_store = None
        self._auth_manager = None
        self._logger = AgentLogger(logging.getLogger("jarvis_trio.agents"), {"agent_id": agent_id})
        self._peers: PeerClient | None = None
        self._bound_inbox: AgentInbox | None = None
        self._started = False
        self._task_style = False
        self._host_slot = HostSlot()

    # -- injected state -----------------------------------------------------------------

    @property
    def peers(self) -> PeerClient:
        """This agent's :class:`~jarvis_trio.peers.client.PeerClient`."""
        peers = self._peers
        if peers is None:
            raise MeshError(f"{type(self).__name__}.peers exists once the agent is added to a mesh")
        return peers

    @property
    def mailbox(self) -> Mailbox:
        """This agent's :class:`~jarvis_trio.mailbox.contracts.Mailbox`, injected before
        ``setup()``."""
        mailbox = self._mailbox
        if mailbox is None:
            raise MeshError(f"{type(self).__name__}.mailbox is injected when its node starts it")
        return mailbox

    @mailbox.setter
    def mailbox(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    @property
    def _blob_storage(self) -> BlobStorage:
        """The node's :class:`~jarvis_trio.storage.blob.BlobStorage`, injected before
        ``setup()`` (documented under this name)."""
        blob = self._blob
        if blob is None:
            raise MeshError(
                f"{type(self).__name__}._blob_storage is injected when its node starts it"
            )
        return blob

    @_blob_storage.setter
    def _blob_storage(self, blob: BlobStorage) -> None:
        self._blob = blob

    @property
    def _inbox(self) -> AgentInbox:
        inbox = self._bound_inbox
        if inbox is None:
            raise MeshError(f"{type(self).__name__} is not added to a mesh")
        return inbox

    @property
    def is_started(self) -> bool:
        """True between the end of ``setup()`` and the start of ``teardown()``."""
        return self._started

    # -- hooks --------------------------------------------------------------------------

    async def setup(self) -> None:
        """Called once before the agent's loop starts; everything is injected already."""

    async def teardown(self) -> None:
        """Called once at the end, whatever the reason (stop, cancellation, crash)."""

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        """The agent's long-running loop; the default serves the inbox (and mailbox).

        Override it in either documented shape: ``async def run(self)`` replaces the loop;
        ``async def run(self, task, context)`` is a task entry point (see
        :meth:`execute_task`) while the default loop keeps serving the inbox. The base
        signature accepts both, so neither is an incompatible override for a type checker;
        the runtime calls the default with no arguments.
        """
        await self._serve()

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any] | None:
        """Handle a request; the returned dict is the reply. The default refuses."""
        raise NotImplementedError(f"{type(self).__name__} does not handle requests")

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        """Handle a notification. The default ignores it (logged at debug level)."""
        self._logger.debug("ignored a notification from %s", message.sender)

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        """Handle a mailbox message. Override it and the default loop serves the mailbox."""

    async def on_peer_joined(self, info: PeerInfo) -> None:
        """A remote agent appeared (its node joined, or it was added there). Called by the
        node's event task, one change at a time; the remote agents already known when
        ``setup()`` finished are announced first. The default does nothing."""

    async def on_peer_left(self, info: PeerInfo, reason: str) -> None:
        """A remote agent vanished; ``reason`` is ``left`` (its node left gracefully),
        ``failed`` (its node was declared dead) or ``removed`` (its node still runs)."""

    @trio_side
    async def execute_task(self, task: Any, context: dict[str, Any] | None = None) -> Any:
        """Run ``run(task, context)`` of a task-style agent and return its result."""
        if not self._task_style:
            raise MeshError(
                f"{type(self).__name__} has no task entry point: define "
                "`async def run(self, task, context)` to accept tasks"
            )
        if not self._started:
            raise MeshError(f"agent {self.agent_id} is not running")
        entry = cast(Callable[[Any, dict[str, Any]], Awaitable[Any]], self.run)
        return await entry(task, {} if context is None else context)

    # -- the runtime's side -------------------------------------------------------------

    def _bind(
        self,
        agent_id: str,
        inbox: AgentInbox,
        peers: PeerClient,
        logger: logging.LoggerAdapter[logging.Logger],
        *,
        task_style: bool,
        host: HostSlot,
    ) -> None:
        """Registration: the agent's identity, inbox and :class:`PeerClient` (the agent is
        discoverable from now on)."""
        self.agent_id = agent_id
        self._bound_inbox = inbox
        self._peers = peers
        self._logger = logger
        self._task_style = task_style
        self._host_slot = host

    def _inject(self, services: NodeServices) -> None:
        """Before ``setup()``: what the node's services give this agent. The one place the
        runtime writes the documented injected attributes."""
        self._mailbox = services.mailboxes.mailbox_for(self.agent_id)
        self._blob = services.blob_storage
        self._redis_store = services.redis_store
        self._auth_manager = services.auth_manager if type(self).requires_auth else None

    def _set_started(self, started: bool) -> None:
        self._started = started

    def _supervised(self) -> Supervised:
        """The main loop supervision keeps alive, and the inbox it serves."""
        return Supervised(
            self.agent_id, self.role, self._main_loop(), self._inbox, self._receiver_count()
        )

    def _uses_default_loop(self) -> bool:
        """True unless the class replaced ``run()`` by its own long-running loop (a task-style
        ``run(task, context)`` does not replace it)."""
        return self._task_style or type(self).run is Agent.run

    def _main_loop(self) -> Callable[[], Awaitable[None]]:
        if self._uses_default_loop():
            if self.max_concurrency == 1 and not self._serves_mailbox():
                return self._serve_inbox
            return self._serve
        return self.run

    def _serves_mailbox(self) -> bool:
        return (
            type(self).on_mailbox_message is not Agent.on_mailbox_message
            and self._mailbox is not None
        )

    def _receiver_count(self) -> int:
        if self._uses_default_loop():
            return self.max_concurrency + (1 if self._serves_mailbox() else 0)
        return 1

    async def _serve(self) -> None:
        workers = self.max_concurrency
        if workers == 1 and not self._serves_mailbox():
            await self._serve_inbox()
            return
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(self._serve_inbox)
            if self._serves_mailbox():
                nursery.start_soon(self._serve_mailbox)

    async def _serve_inbox(self) -> None:
        # the hot loop of every agent: the loop yields only when idle or every _BURST
        # messages; a same-node request is answered in this frame, anything else goes
        # through one helper coroutine (_dispatch)
        inbox = self._inbox
        peers = self.peers
        node = peers.node_id
        correlation = CURRENT_CORRELATION
        tracing = _tracing.active
        otel, modules = _tracing.OTEL_TRACE, sys.modules
        task = trio.lowlevel.current_task()
        abort = inbox.receiver_abort(task)
        burst = 0
        while True:
            message = inbox.get_nowait()
            if message is None:
                burst = 0
                message = await inbox.park(task, abort)
                if message is None:
                    return
            else:
                burst += 1
                if burst == _BURST:
                    burst = 0
                    await trio.lowlevel.checkpoint()
            correlation.set(message.correlation_id)  # log records name the message
            if otel in modules and tracing():  # tracing() is False without the API loaded
                operation = "request" if message.type == REQUEST else "notify"
                with _tracing.server_span(operation, message.traceparent, self.agent_id, node):
                    await self._dispatch(message, peers, node)
            elif message.type == REQUEST and message.sender_node == node:
                # _dispatch of a same-node request, inlined (the commonest local message):
                # no helper coroutine to create and cross
                try:
                    reply = await self.on_peer_request(message)
                except Exception as exc:
                    reply = self._failed_request(message, exc)
                if reply is not None:
                    try:
                        peers._respond_here(message, reply)
                    except (PayloadError, PayloadTooLarge) as exc:
                        self._logger.exception("reply to %s refused", message.correlation_id)
                        await peers._respond(message, failure_reply(exc))
            else:
                await self._dispatch(message, peers, node)

    async def _dispatch(self, message: IncomingMessage, peers: PeerClient, node: str) -> None:
        kind = message.type
        if kind == NOTIFY:
            try:
                await self.on_peer_notify(message)
            except Exception:
                self._logger.warning(
                    "on_peer_notify failed for a message from %s", message.sender, exc_info=True
                )
        elif kind == REQUEST:
            try:
                reply = await self.on_peer_request(message)
            except Exception as exc:
                reply = self._failed_request(message, exc)
            if reply is not None:
                try:
                    if message.sender_node == node:  # the requester is on this node
                        peers._respond_here(message, reply)
                    else:
                        await peers._respond(message, reply)
                except (PayloadError, PayloadTooLarge) as exc:
                    self._logger.exception("reply to %s refused", message.correlation_id)
                    await peers._respond(message, failure_reply(exc))

    def _failed_request(self, message: IncomingMessage, exc: Exception) -> dict[str, Any]:
        self._logger.warning(
            "on_peer_request failed for %s from %s; answered with an error reply",
            message.correlation_id,
            message.sender,
            exc_info=exc,
        )
        return failure_reply(exc)

    async def _serve_mailbox(self) -> None:
        mailbox = self.mailbox
        inbox = self._inbox
        while True:
            item = await inbox.idle(mailbox.receive)
            if item is None:
                await trio.lowlevel.checkpoint()
                continue
            try:
                if _tracing.active():
                    with _tracing.server_span(
                        "mailbox", item.traceparent, self.agent_id, self.peers.node_id
                    ):
                        await self.on_mailbox_message(item)
                else:
                    await self.on_mailbox_message(item)
            except Exception as exc:
                # never acknowledged: delivered again after a backoff, or dead-lettered
                # with this error once it failed mailbox_max_deliveries times
                self._logger.error(
                    "on_mailbox_message failed for %s (delivery %d)",
                    item.message_id,
                    item.delivery_count,
                    exc_info=True,
                )
                with trio.CancelScope(shield=True) as settle:
                    settle.deadline = trio.current_time() + _SETTLE_TIMEOUT
                    await mailbox.fail(item, exc)
                continue
            except BaseException:
                with trio.CancelScope(shield=True) as settle:
                    settle.deadline = trio.current_time() + _SETTLE_TIMEOUT
                    await mailbox.nack(item)
                raise
            with trio.CancelScope(shield=True) as settle:
                settle.deadline = trio.current_time() + _SETTLE_TIMEOUT
                await mailbox.ack(item)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.agent_id or '(not added)'} role={self.role!r}>"


class CustomAgent(Agent):
    """The documented base class for agents written against the PeerClient API."""


def has_task_entry(cls: type[Agent]) -> bool:
    """True when ``cls.run`` takes a task (``run(self, task, context)``)."""
    if cls.run is Agent.run:
        return False
    params = list(inspect.signature(cls.run).parameters.values())[1:]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional for p in params)

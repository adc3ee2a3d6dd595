"""Run one agent against the test doubles: setup, handlers, teardown, under Trio.

.. code-block:: python

    async def test_scout_notifies_the_analyst():            # pytest-trio, or trio.run
        async with agent_under_test(ScoutAgent) as scout:
            scout.peers.add_peer("analyst")
            result = await scout.run_task("sector-7", {"mission_id": "m1"})
            scout.peers.assert_notified("analyst", {"event": "data_ready"})

The harness injects a :class:`MockPeerClient` (``self.peers``), a :class:`MockMailbox`
(``self.mailbox``), a :class:`MockBlobStorage` (``self._blob_storage``), ``None`` for the Redis
store and the given auth manager, then runs ``setup()``. :meth:`AgentHarness.request` hands the
agent a request the way the mesh's default loop does and returns its reply; a handler that
neither returns a reply nor calls ``respond()`` fails the test with :class:`NoReplyError`
(a real requester would wait out its timeout). An agent with a loop of its own
(``async def run(self)``) has that loop running while the block runs; messages reach it
through ``self.peers.receive()``. Leaving the block runs ``teardown()``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar, cast

import trio

from ...agent import Agent, AgentLogger, has_task_entry
from ...auth import AuthenticationManager
from ...mailbox.contracts import MailboxMessage
from ...peers.messages import NOTIFY, REQUEST, IncomingMessage, failure_reply
from .peers import MockPeerClient
from .storage import MockBlobStorage, MockMailbox

__all__ = ["AgentHarness", "NoReplyError", "agent_under_test"]

A = TypeVar("A", bound=Agent)


class NoReplyError(AssertionError):
    """A request handler returned no reply and never called ``respond()``."""


class AgentHarness(Generic[A]):
    """One agent wired to the doubles (see the module doc)."""

    def __init__(
        self, agent: A, peers: MockPeerClient, mailbox: MockMailbox, blob_storage: MockBlobStorage
    ) -> None:
        self.agent = agent
        self.peers = peers
        self.mailbox = mailbox
        self.blob_storage = blob_storage
        self.own_loop = not agent._uses_default_loop()

    def _message(
        self, kind: str, data: dict[str, Any], sender: str, context: dict[str, Any] | None
    ) -> IncomingMessage:
        message = self.peers.deliver(data, sender=sender, request=kind == REQUEST, context=context)
        if not self.own_loop:  # the default loop does not read the inbox: the harness calls
            self.peers._inbox.remove(message)
        return message

    async def request(
        self,
        data: dict[str, Any],
        *,
        sender: str = "peer-0",
        context: dict[str, Any] | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """The agent's reply to a request carrying ``data``; :class:`NoReplyError` if it gives
        none (within ``timeout`` seconds, for an agent with its own loop)."""
        message = self._message(REQUEST, data, sender, context)
        name = type(self.agent).__name__
        if self.own_loop:
            with trio.move_on_after(timeout):
                return (await self.peers.wait_response(message)).message
            raise NoReplyError(
                f"{name} did not respond() to request {message.correlation_id} within "
                f"{timeout} s: its requester would wait out its timeout"
            )
        try:
            reply = await self.agent.on_peer_request(message)
        except Exception as exc:
            reply = failure_reply(exc)  # what the mesh answers for a handler that raises
        if reply is not None:
            await self.peers.respond(message, reply)
            return self.peers.responses[-1].message
        for sent in self.peers.responses:
            if sent.correlation_id == message.correlation_id:
                return sent.message
        raise NoReplyError(
            f"{name}.on_peer_request returned None and did not call respond() for "
            f"{message.correlation_id}: its requester would wait out its timeout"
        )

    async def notify(
        self, data: dict[str, Any], *, sender: str = "peer-0", context: dict[str, Any] | None = None
    ) -> None:
        """Hand the agent a notification (its ``on_peer_notify``, or its own loop's inbox)."""
        message = self._message(NOTIFY, data, sender, context)
        if not self.own_loop:
            await self.agent.on_peer_notify(message)

    async def mailbox_message(
        self, payload: dict[str, Any], *, sender: str | None = "peer-0"
    ) -> MailboxMessage:
        """Hand the agent a mailbox message through ``on_mailbox_message``; acknowledged
        after the handler returns, as the mesh does."""
        message = self.mailbox.deliver(payload, sender=sender)
        claimed = await self.mailbox.receive(timeout=0)
        assert claimed is not None
        await self.agent.on_mailbox_message(claimed)
        await self.mailbox.ack(claimed)
        return message

    async def run_task(self, task: Any, context: dict[str, Any] | None = None) -> Any:
        """``execute_task`` of a task-style agent (``run(self, task, context)``)."""
        return await self.agent.execute_task(task, context)


def _lone(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single exception inside (nested) one-member groups, else the group itself."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def agent_under_test(
    agent: type[A] | A,
    *,
    agent_id: str | None = None,
    peers: MockPeerClient | None = None,
    mailbox: MockMailbox | None = None,
    blob_storage: MockBlobStorage | None = None,
    auth_manager: AuthenticationManager | None = None,
) -> AsyncIterator[AgentHarness[A]]:
    """Build (or take) the agent, inject the doubles, run ``setup()``; on exit run
    ``teardown()`` (see the module doc)."""
    instance = agent() if isinstance(agent, type) else agent
    cls = type(instance)
    if not cls.role:
        raise ValueError(f"{cls.__name__} has no role: set the class attribute `role`")
    chosen = agent_id or instance.agent_id or f"{cls.role}-{secrets.token_hex(4)}"
    peers = peers if peers is not None else MockPeerClient(chosen, cls.role)
    if peers.my_id != chosen or peers.my_role != cls.role:
        raise ValueError(f"the MockPeerClient is for {peers.my_id}/{peers.my_role}")
    mailbox = mailbox if mailbox is not None else MockMailbox(chosen)
    blob = blob_storage if blob_storage is not None else MockBlobStorage()
    instance.agent_id = chosen
    instance._peers = cast(Any, peers)
    instance._mailbox = mailbox
    instance._blob = cast(Any, blob)
    instance._redis_store = None
    instance._auth_manager = auth_manager if cls.requires_auth else None
    instance._task_style = has_task_entry(cls)
    instance._logger = AgentLogger(
        logging.getLogger(f"jarvis_trio.agents.{cls.role}"), {"agent_id": chosen}
    )
    harness = AgentHarness(instance, peers, mailbox, blob)
    await instance.setup()
    instance._set_started(True)
    try:
        try:
            async with trio.open_nursery() as nursery:
                if harness.own_loop:
                    nursery.start_soon(instance.run)
                yield harness
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # what the test raised in the block (an assertion, a NoReplyError) leaves it as
            # itself, as from `async with Mesh`, not wrapped by the harness's nursery
            exc = _lone(group)
            if exc is group:
                raise
            raise exc from exc.__cause__
    finally:
        instance._set_started(False)
        with trio.CancelScope(shield=True):
            await instance.teardown()

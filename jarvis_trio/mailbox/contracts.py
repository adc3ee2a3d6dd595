"""What every mailbox backend promises: the message record and the two protocols.

They live with the mailboxes, below the node's services, so that a backend depends only on
its own contract; :mod:`jarvis_trio.services` and the agent import them from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["DeadLetter", "Mailbox", "MailboxHub", "MailboxMessage"]


@dataclass(frozen=True, slots=True)
class MailboxMessage:
    """One mailbox message as delivered to its reader.

    ``delivery_count`` is 1 on first delivery and grows each time an unacknowledged message is
    handed out again (at-least-once delivery).
    """

    message_id: str
    sender: str | None
    target: str
    payload: Mapping[str, Any]
    timestamp: float
    delivery_count: int = 1
    traceparent: str | None = None
    """The W3C trace context of the sending span (set only while tracing is on)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that failed ``deliveries`` times and was moved to its agent's dead-letter
    stream: what it was, and the last error (``error_type`` ``Undelivered`` when the
    process died while handling it, so no exception was ever seen).

    ``dead_id`` names it within the stream, for :meth:`Mailbox.dead_letter`, replay and purge.
    """

    dead_id: str
    message_id: str
    sender: str | None
    target: str
    payload: Mapping[str, Any]
    timestamp: float
    deliveries: int
    error: str
    error_type: str
    failed_at: float


@runtime_checkable
class Mailbox(Protocol):
    """An agent's durable mailbox (``self.mailbox``)."""

    agent_id: str

    def send(self, target_id: str, message: Mapping[str, Any]) -> str:
        """Queue ``message`` for ``target_id`` without blocking; return its message id.

        Raises ``PayloadError`` for a payload that is not JSON-compatible, ``PayloadTooLarge``
        over the size limit, ``MailboxFull`` when the bounded outbox is full.
        """
        ...

    async def receive(self, timeout: float | None = None) -> MailboxMessage | None:
        """Claim the next message, waiting up to ``timeout`` (``None``: forever, ``0``: no
        wait). A claimed message must be acknowledged with :meth:`ack`, or it is delivered
        again (after :meth:`nack`, or when the agent comes back after a crash)."""
        ...

    async def ack(self, message: MailboxMessage) -> None:
        """Acknowledge: the message is removed for good."""
        ...

    async def nack(self, message: MailboxMessage) -> None:
        """Give a claimed message back, to be delivered again."""
        ...

    async def fail(self, message: MailboxMessage, error: BaseException | str) -> bool:
        """The handler of a claimed message failed with ``error``: deliver it again after a
        backoff, or -- once it was delivered ``max_deliveries`` times -- move it to the
        dead-letter stream with the error (then ``True``). Never acknowledged otherwise."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """This agent's dead letters, oldest first."""
        ...

    async def read(self, limit: int = 100) -> list[MailboxMessage]:
        """Claim up to ``limit`` waiting messages without waiting for more."""
        ...

    async def peek(self) -> MailboxMessage | None:
        """The next waiting message, without claiming it."""
        ...


@runtime_checkable
class MailboxHub(Protocol):
    """Hands out the mailboxes of one node's agents."""

    kind: str  # "in-process" or "redis"

    def mailbox_for(self, agent_id: str) -> Mailbox: ...

    def stats(self) -> dict[str, Any]:
        """Counters: ``sent``, ``acked``, ``redelivered`` (given back, or claimed again from
        a reader that died), and what the backend adds (waiting messages, the Redis outbox
        as ``pending_writes``, ...)."""
        ...

    async def consumer_lag(self, agent_ids: Sequence[str]) -> dict[str, int]:
        """Per agent, the messages in its mailbox not yet acknowledged: waiting to be
        delivered, plus delivered and not acknowledged yet (being handled, given back, or
        waiting out a retry backoff). An agent whose figure cannot be read right now (Redis
        unreachable) is left out."""
        ...

    async def dead_letters(self, agent_id: str, limit: int = 100) -> list[DeadLetter]:
        """The dead letters of ``agent_id``, oldest first (at most ``limit``)."""
        ...

    async def dead_letter(self, agent_id: str, dead_id: str) -> DeadLetter | None:
        """One dead letter by its ``dead_id``, or ``None``."""
        ...

    async def replay_dead_letters(
        self, agent_id: str, dead_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Send dead letters (all, or those named) to the agent's mailbox again as new
        messages and remove them; returns the new message ids."""
        ...

    async def purge_dead_letters(self, agent_id: str, dead_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all, or those named); returns how many."""
        ...

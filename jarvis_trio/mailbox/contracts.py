"""What every mailbox backend promises: the message record and the two protocols.

They live with the mailboxes, below the node's services, so that a backend depends only on
its own contract; :mod:`jarvis_trio.services` and the agent import them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Mailbox", "MailboxHub", "MailboxMessage"]


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

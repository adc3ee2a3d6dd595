"""The services a node injects into its agents, and the contracts they follow.

``Mesh`` opens one :class:`NodeServices` per node with :func:`open_node_services` and injects
from it, before ``setup()``: ``self.mailbox`` (one :class:`Mailbox` per agent),
``self._blob_storage``, ``self._redis_store`` (``None`` without Redis) and
``self._auth_manager`` (agents with ``requires_auth``). Each service has an embedded default
that works with nothing installed, and a real backend chosen from the configuration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .config import MeshConfig


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


@dataclass(frozen=True, slots=True)
class NodeServices:
    """Everything a node injects into its agents besides ``peers``."""

    mailboxes: MailboxHub
    blob_storage: Any  # jarvis_trio.storage.blob.BlobStorage
    redis_store: Any | None  # jarvis_trio.storage.redis_store.RedisStore, None without Redis
    auth_manager: Any | None  # jarvis_trio.auth.AuthenticationManager


@asynccontextmanager
async def open_node_services(config: MeshConfig, node_name: str) -> AsyncIterator[NodeServices]:
    """Open the node's services for the lifetime of the block.

    Background work (outbox pumps, Redis reconnects, auth refresh) lives in nurseries owned by
    the services themselves and ends with the block.
    """
    from .auth import open_auth_manager
    from .mailbox import open_mailbox_hub
    from .storage.blob import BlobStorage
    from .storage.redis_store import open_redis_store

    async with (
        open_redis_store(config) as redis_store,
        open_mailbox_hub(config, node_name) as mailboxes,
        open_auth_manager(config) as auth_manager,
    ):
        yield NodeServices(
            mailboxes=mailboxes,
            blob_storage=BlobStorage(config.blob_storage_path),
            redis_store=redis_store,
            auth_manager=auth_manager,
        )

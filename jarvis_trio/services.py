"""The services a node injects into its agents: opened together, closed together.

``Mesh`` opens one :class:`NodeServices` per node with :func:`open_node_services` and injects
from it, before ``setup()``: ``self.mailbox`` (one :class:`Mailbox` per agent),
``self._blob_storage``, ``self._redis_store`` (``None`` without Redis) and
``self._auth_manager`` (agents with ``requires_auth``). Each service has an embedded default
that works with nothing installed, and a real backend chosen from the configuration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ._sides import HostSlot
from .auth import AuthenticationManager, open_auth_manager
from .config import MeshConfig
from .mailbox import open_mailbox_hub
from .mailbox.contracts import Mailbox, MailboxHub, MailboxMessage
from .storage.blob import BlobStorage, open_blob_storage
from .storage.redis_store import RedisStore, open_redis_store

__all__ = ["Mailbox", "MailboxHub", "MailboxMessage", "NodeServices", "open_node_services"]


@dataclass(frozen=True, slots=True)
class NodeServices:
    """Everything a node injects into its agents besides ``peers``."""

    mailboxes: MailboxHub
    blob_storage: BlobStorage
    redis_store: RedisStore | None  # None without Redis
    auth_manager: AuthenticationManager | None  # None when auth_mode is "disabled"


@asynccontextmanager
async def open_node_services(
    config: MeshConfig, node_name: str, *, host: HostSlot | None = None
) -> AsyncIterator[NodeServices]:
    """Open the node's services for the lifetime of the block; each is handed the node's
    ``host`` slot (see :mod:`jarvis_trio._sides`).

    Background work (outbox pumps, Redis reconnects, auth refresh) lives in nurseries owned by
    the services themselves and ends with the block.
    """
    async with (
        open_redis_store(config, host=host) as redis_store,
        open_mailbox_hub(config, node_name, host=host) as mailboxes,
        open_auth_manager(config, host=host) as auth_manager,
        open_blob_storage(config, host=host) as blob_storage,
    ):
        yield NodeServices(
            mailboxes=mailboxes,
            blob_storage=blob_storage,
            redis_store=redis_store,
            auth_manager=auth_manager,
        )

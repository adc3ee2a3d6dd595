"""Agent mailboxes (``self.mailbox``): in-process by default, Redis-backed when configured.

:func:`open_mailbox_hub` picks the backend from the configuration:

* no ``redis_url`` → the in-process hub (:mod:`.local`);
* ``redis_url`` reachable → the Redis hub (:mod:`.redis_backed`): any node's agent reaches
  any other's, at-least-once;
* ``redis_url`` unreachable at start → one WARNING naming the URL, then the in-process hub.

``hub.kind`` says which one runs. Both give the same API: synchronous ``send`` that never
blocks, async ``receive`` / ``read`` / ``peek`` / ``ack`` / ``nack``, and ``hub.release(agent_id)``
when an agent stops or crashes so that its unacknowledged messages are delivered again when it
comes back.

An agent serving its mailbox::

    while True:
        message = await self.mailbox.receive()
        try:
            await self.on_mailbox_message(message)
        except Exception:
            await self.mailbox.nack(message)
            raise
        await self.mailbox.ack(message)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._redis import open_redis_client
from .._sides import HostSlot
from ..config import MeshConfig
from ..errors import RedisUnavailable
from ._common import MailboxSettings
from .local import InProcessHub, LocalMailbox, open_in_process_hub
from .redis_backed import RedisHub, RedisMailbox, open_redis_hub

__all__ = [
    "InProcessHub",
    "LocalMailbox",
    "MailboxSettings",
    "RedisHub",
    "RedisMailbox",
    "open_mailbox_hub",
]

log = logging.getLogger("jarvis_trio.mailbox")


@asynccontextmanager
async def open_mailbox_hub(
    config: MeshConfig,
    node_name: str,
    *,
    settings: MailboxSettings | None = None,
    connect_timeout: float = 1.0,
    host: HostSlot | None = None,
) -> AsyncIterator[InProcessHub | RedisHub]:
    """The node's mailbox hub for the lifetime of the block (see the module docstring)."""
    chosen = settings or MailboxSettings()
    if config.redis_url is not None:
        try:
            client = await open_redis_client(
                config.redis_url, connect_timeout=connect_timeout, max_block=chosen.max_block
            )
        except RedisUnavailable as error:
            log.warning(
                "%s; node %s falls back to the in-process mailbox (messages stay in this process)",
                error,
                node_name,
            )
        else:
            try:
                async with open_redis_hub(client, config, node_name, chosen, host=host) as hub:
                    yield hub
            finally:
                client.close()
            return
    async with open_in_process_hub(config, node_name, chosen, host=host) as local_hub:
        yield local_hub

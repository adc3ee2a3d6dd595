"""Agent mailboxes (``self.mailbox``): in-process by default, Redis-backed when configured.

:func:`open_mailbox_hub` picks the backend from the configuration:

* no ``redis_url`` → the in-process hub (:mod:`.local`);
* ``redis_url`` reachable → the Redis hub (:mod:`.redis_backed`): any node's agent reaches
  any other's, at-least-once;
* ``redis_url`` unreachable at start → one WARNING naming the URL, then the in-process hub.

``hub.kind`` says which one runs. Both give the same API: synchronous ``send`` that never
blocks, async ``receive`` / ``read`` / ``peek`` / ``ack`` / ``nack`` / ``fail``, and
``hub.release(agent_id)`` when an agent stops or crashes so that its unacknowledged messages
are delivered again when it comes back.

Failures follow one rule on both backends: a handler that raises hands the message to
``fail(message, error)``, which delivers it again after a backoff (``retry_base`` doubling to
``retry_max``) until it was delivered ``max_deliveries`` times (``mailbox_max_deliveries``,
default 5), and then moves it to the agent's dead-letter stream with the error and the count.
A message that keeps killing the process is dead-lettered too once its count of deliveries
(kept by Redis) passes the limit. Nothing is acknowledged unless handled or dead-lettered.
Dead letters are listed, inspected, replayed and purged through the hub
(``dead_letters`` / ``dead_letter`` / ``replay_dead_letters`` / ``purge_dead_letters``) and
an agent's own through ``self.mailbox.dead_letters()``.

An agent serving its mailbox (what the default ``run()`` does)::

    while True:
        message = await self.mailbox.receive()
        try:
            await self.on_mailbox_message(message)
        except Exception as error:
            await self.mailbox.fail(message, error)
            continue
        except BaseException:
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
from .contracts import DeadLetter
from .local import InProcessHub, LocalMailbox, open_in_process_hub
from .redis_backed import RedisHub, RedisMailbox, open_redis_hub

__all__ = [
    "DeadLetter",
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
    chosen = settings or MailboxSettings(max_deliveries=config.mailbox_max_deliveries)
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

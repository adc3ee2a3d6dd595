"""The reading side of a Redis-backed mailbox: one agent's stream, claims and acks.

See :mod:`jarvis_trio.mailbox.redis_backed` for the delivery guarantees as a whole.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

import redis
import redis.exceptions
import trio

from .. import _tracing
from .._redis import Backoff, RedisClient, is_transient
from .._sides import HostSlot, trio_side
from ._codec import decode_payload, encode_payload
from ._common import Claims, MailboxSettings, Pacer, check_limit, check_target
from ._stream import GROUP, Held, entry_message, id_order, stream_key
from .contracts import MailboxMessage

__all__ = ["HubSide", "RedisMailbox"]


class HubSide(Protocol):
    """What a mailbox needs from its hub (:class:`~.redis_backed.RedisHub`): the shared
    client and settings, and the hub's writer, which batches sends and acks for every
    mailbox of the node."""

    host_slot: HostSlot
    node_name: str
    counters: dict[str, int]
    client: RedisClient
    settings: MailboxSettings
    max_message_size: int
    ttl_ms: int

    def enqueue(
        self, sender: str, target: str, data: bytes, traceparent: str | None = None
    ) -> str: ...

    def enqueue_ack(self, key: str, stream_id: bytes) -> None: ...

    def acks_pending_for(self, key: str) -> set[bytes]: ...


log = logging.getLogger("jarvis_trio.mailbox")


class RedisMailbox:
    """An agent's mailbox backed by its Redis stream (``self.mailbox``)."""

    def __init__(self, hub: HubSide, agent_id: str) -> None:
        self.agent_id = agent_id
        self._host_slot = hub.host_slot  # served where its hub's node is
        self.key = stream_key(agent_id)
        self._hub = hub
        self._ready: deque[Held] = deque()
        self._claims: Claims[Held] = Claims(agent_id, hub.settings.max_unacked)
        self._lock = trio.Lock()
        self._attached = False
        self._recover = True
        self._pacer = Pacer()

    def __repr__(self) -> str:
        ready, claimed = len(self._ready), len(self._claims)
        return f"<RedisMailbox {self.agent_id} ready={ready} claimed={claimed}>"

    # sending -----------------------------------------------------------------------------

    def send(self, target_id: str, message: Mapping[str, Any]) -> str:
        """Queue ``message`` for ``target_id`` (on any node) and return its id; never blocks.

        Raises ``PayloadError`` / ``PayloadTooLarge`` for a bad payload and ``MailboxFull``
        when the hub's outbox is full (Redis slow or unreachable).
        """
        target = check_target(target_id)
        data = encode_payload(message, self._hub.max_message_size)
        if _tracing.active():
            with _tracing.client_span("mailbox", target, self._hub.node_name) as traceparent:
                return self._hub.enqueue(self.agent_id, target, data, traceparent)
        return self._hub.enqueue(self.agent_id, target, data)

    # receiving ---------------------------------------------------------------------------

    @trio_side
    async def receive(self, timeout: float | None = None) -> MailboxMessage | None:
        """Claim the next message, waiting up to ``timeout`` seconds (``None``: forever,
        ``0``: no wait); ``None`` when nothing came in time. Waits through Redis outages."""
        self._claims.check_usable(1)
        if self._ready:
            # Fast path: a prefetched message is waiting. No lock is needed to take it (no
            # await between the check and the pop), and the pacer keeps this a cancellation
            # point without a full scheduler pass per message.
            await self._pacer.checkpoint()
            if self._ready:
                self._claims.check_usable(1)
                return self._claim(self._ready.popleft())
        deadline = math.inf if timeout is None else trio.current_time() + max(0.0, timeout)
        async with self._lock:
            if not self._ready:
                await self._refill(deadline, self._hub.settings.prefetch)
            if not self._ready:
                return None
            self._claims.check_usable(1)
            return self._claim(self._ready.popleft())

    @trio_side
    async def read(self, limit: int = 100) -> list[MailboxMessage]:
        """Claim up to ``limit`` waiting messages without waiting for more."""
        check_limit(limit)
        self._claims.check_usable(1)
        room = min(limit, self._claims.room)
        async with self._lock:
            if len(self._ready) < room:
                await self._refill(-math.inf, room - len(self._ready))
            taken: list[MailboxMessage] = []
            while self._ready and len(taken) < room:
                taken.append(self._claim(self._ready.popleft()))
            return taken

    @trio_side
    async def peek(self) -> MailboxMessage | None:
        """The next waiting message, without claiming it (``None`` if none, or if Redis is
        unreachable right now)."""
        async with self._lock:
            if not self._ready and self._recover:
                await self._refill(-math.inf, 0)
            if self._ready:
                return self._ready[0].message
            try:
                return await self._hub.client.run(self._peek_next)
            except Exception as error:
                if not is_transient(error):
                    raise
                return None

    def _peek_next(self, r: redis.Redis) -> MailboxMessage | None:
        try:
            groups: Any = r.xinfo_groups(self.key)
        except redis.exceptions.ResponseError:
            groups = []
        last = b"0-0"
        for group in groups:
            name = group.get("name")
            if name in (GROUP, GROUP.encode()):
                last = group.get("last-delivered-id") or last
        last_id = last.decode() if isinstance(last, bytes) else str(last)
        entries: Any = r.xrange(self.key, min=f"({last_id}", count=1)
        for stream_id, fields in entries:
            if fields is not None:
                item = entry_message(self.agent_id, stream_id, fields, 1)
                if item is not None:
                    return item.message
        return None

    @trio_side
    async def ack(self, message: MailboxMessage) -> None:
        """Acknowledge: the writer removes the message from Redis with its next pipeline."""
        await self._pacer.checkpoint()
        held = self._claims.pop(message)
        self._hub.counters["acked"] += 1
        self._hub.enqueue_ack(self.key, held.stream_id)

    @trio_side
    async def nack(self, message: MailboxMessage) -> None:
        """Give a claimed message back: it is delivered again before any other."""
        await self._pacer.checkpoint()
        held = self._claims.pop(message)
        self._hub.counters["redelivered"] += 1
        again = replace(  # a fresh copy of the payload, whatever the handler did to the last
            message, payload=decode_payload(held.data), delivery_count=message.delivery_count + 1
        )
        self._ready.appendleft(Held(held.stream_id, again, held.data))

    def release(self) -> None:
        """The agent left: drop local state. Its claimed, unacknowledged messages stay pending
        in Redis; the agent's next mailbox re-claims them."""
        self._claims.released = True
        self._ready.clear()
        self._claims.clear()

    # internals ---------------------------------------------------------------------------

    def _claim(self, held: Held) -> MailboxMessage:
        self._claims.add(held.message.message_id, held)
        return held.message

    async def _refill(self, deadline: float, count: int) -> None:
        """Fill ``_ready``: re-claim orphaned pending messages first, then read new ones,
        blocking until ``deadline``. Transient errors are retried with backoff until the
        deadline; a non-blocking refill (deadline in the past) tries once."""
        backoff = Backoff(cap=self._hub.client.retry_cap)
        while True:
            try:
                await self._refill_once(deadline, count)
            except trio.Cancelled:
                self._recover = True  # an abandoned read may have claimed messages
                raise
            except Exception as error:
                if not is_transient(error):
                    raise
                self._recover = True  # the reply to a read that Redis served may be lost
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    return
                log.debug("mailbox read of %s failed (%s); retrying", self.agent_id, error)
                await trio.sleep(min(backoff.next_delay(), remaining))
                continue
            if self._ready or count == 0 or deadline - trio.current_time() <= 0:
                return
            backoff.reset()

    async def _refill_once(self, deadline: float, count: int) -> None:
        client = self._hub.client
        if not self._attached:
            await client.run(self._attach)
            self._attached = True
        if self._recover:
            await self._recover_pending()
            if self._ready or count == 0:
                return
        remaining = deadline - trio.current_time()
        if remaining <= 0:
            reply = await client.run(lambda r: self._read_new(r, count, None))
        else:
            block = max(1, round(min(remaining, client.max_block) * 1000))
            reply = await client.blocking(lambda r: self._read_new(r, count, block), self.key)
            if not reply:
                # An idle round trip: look at the pending list once more before blocking
                # again, so a message claimed by a read that died in a race is picked up
                # within one max_block.
                self._recover = True
        self._ready.extend(reply)

    def _attach(self, r: redis.Redis) -> None:
        try:
            r.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        r.pexpire(self.key, self._hub.ttl_ms)

    def _read_new(self, r: redis.Redis, count: int, block: int | None) -> list[Held]:
        try:
            streams: dict[Any, Any] = {self.key: ">"}
            reply: Any = r.xreadgroup(GROUP, self.agent_id, streams, count=count, block=block)
        except redis.exceptions.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._attach(r)  # the stream expired or Redis lost it: join again
            return []
        items: list[Held] = []
        for _key, entries in reply or ():
            for stream_id, fields in entries:
                if fields is not None:
                    item = entry_message(self.agent_id, stream_id, fields, 1)
                    if item is not None:
                        items.append(item)
        return items

    async def _recover_pending(self) -> None:
        held = {h.stream_id for h in self._claims.values()} | {h.stream_id for h in self._ready}
        held |= self._hub.acks_pending_for(self.key)
        room = max(1, self._hub.settings.prefetch)
        items, more = await self._hub.client.run(lambda r: self._claim_orphans(r, held, room))
        self._ready.extend(items)
        self._recover = more

    def _claim_orphans(
        self, r: redis.Redis, held: set[bytes], room: int
    ) -> tuple[list[Held], bool]:
        """Re-claim up to ``room`` pending messages that no live claim holds, oldest first.
        Returns them and whether more may remain."""
        try:
            return self._claim_orphans_of_group(r, held, room)
        except redis.exceptions.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._attach(r)  # the stream expired or Redis lost it: nothing is pending
            return [], False

    def _claim_orphans_of_group(
        self, r: redis.Redis, held: set[bytes], room: int
    ) -> tuple[list[Held], bool]:
        start = "-"
        page = room + len(held)
        while True:
            pending: Any = r.xpending_range(self.key, GROUP, min=start, max="+", count=page)
            orphans = [p for p in pending if p["message_id"] not in held]
            if orphans or len(pending) < page:
                break
            start = "(" + pending[-1]["message_id"].decode()
        orphans = orphans[:room]
        if not orphans:
            return [], False
        counts = {p["message_id"]: int(p["times_delivered"]) for p in orphans}
        ids = [p["message_id"] for p in orphans]
        claimed: Any = r.xclaim(self.key, GROUP, self.agent_id, 0, ids)
        items: list[Held] = []
        for stream_id, fields in claimed:
            if stream_id is None or fields is None:
                continue  # trimmed by retention: Redis dropped it from the pending list
            item = entry_message(self.agent_id, stream_id, fields, counts.get(stream_id, 1) + 1)
            if item is not None:
                items.append(item)
        items.sort(key=lambda item: id_order(item.stream_id))
        self._hub.counters["redelivered"] += len(items)
        return items, len(orphans) == room

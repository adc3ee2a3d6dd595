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

from .._redis import Backoff, RedisClient, is_transient
from .._sides import HostSlot, trio_side
from ._codec import decode_payload
from ._common import (
    Claims,
    MailboxSettings,
    Pacer,
    Redeliveries,
    check_limit,
    error_fields,
    send_encoded,
)
from ._dead import bury
from ._stream import GROUP, Held, entry_message, id_order, stream_key
from .contracts import DeadLetter, MailboxMessage

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

    async def dead_letters(self, agent_id: str, limit: int = 100) -> list[DeadLetter]: ...


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
        self._retries: Redeliveries[Held] = Redeliveries()
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
        return send_encoded(self._hub, self._hub.enqueue, self.agent_id, target_id, message)

    # receiving ---------------------------------------------------------------------------

    @trio_side
    async def receive(self, timeout: float | None = None) -> MailboxMessage | None:
        """Claim the next message, waiting up to ``timeout`` seconds (``None``: forever,
        ``0``: no wait); ``None`` when nothing came in time. Waits through Redis outages.
        A failed message whose backoff has run out comes before new ones."""
        await self._pacer.checkpoint()
        deadline = math.inf if timeout is None else trio.current_time() + max(0.0, timeout)
        while True:
            retry = self._retries.due(trio.current_time())
            if retry is not None:
                return retry.message
            self._claims.check_usable(1)
            if self._ready:
                # Fast path: a prefetched message is waiting. No lock is needed to take it
                # (no await between the check and the pop).
                return self._claim(self._ready.popleft())
            async with self._lock:
                if not self._ready:
                    wake = min(deadline, self._retries.next_due())
                    await self._refill(wake, self._hub.settings.prefetch)
            if self._ready or self._retries.next_due() <= trio.current_time():
                continue
            if trio.current_time() >= deadline:
                return None

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

    @trio_side
    async def fail(self, message: MailboxMessage, error: BaseException | str) -> bool:
        """The handler of ``message`` failed: deliver it again after a backoff (the count is
        written to Redis, so a crash meanwhile does not reset it), or move it to the
        dead-letter stream once it was delivered ``max_deliveries`` times (``True``). While
        Redis is unreachable the message stays pending and is retried later."""
        held = self._claims.get(message)
        settings = self._hub.settings
        client = self._hub.client
        count = message.delivery_count
        if count >= settings.max_deliveries:
            text, kind = error_fields(error)
            try:
                await client.run(lambda r: self._bury(r, held, count, text, kind))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("cannot dead-letter %s yet (%s)", message.message_id, exc)
            else:
                self._claims.pop(message)
                self._hub.counters["dead_lettered"] += 1
                return True
        again = Held(
            held.stream_id,
            replace(message, payload=decode_payload(held.data), delivery_count=count + 1),
            held.data,
        )
        self._claims.add(message.message_id, again)
        self._retries.add(trio.current_time() + settings.retry_delay(count), again)
        self._hub.counters["retried"] += 1
        try:  # Redis' own count of deliveries, read back after a crash
            await client.run(lambda r: self._record_deliveries(r, held.stream_id, count))
        except Exception as exc:
            if not is_transient(exc):
                raise
        return False

    @trio_side
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """This agent's dead letters, oldest first."""
        return await self._hub.dead_letters(self.agent_id, limit)

    def _record_deliveries(self, r: redis.Redis, stream_id: bytes, count: int) -> None:
        r.xclaim(self.key, GROUP, self.agent_id, 0, [stream_id], retrycount=count, justid=True)

    def _bury(self, r: redis.Redis, held: Held, count: int, error: str, kind: str) -> None:
        message = held.message
        bury(
            r,
            agent_id=self.agent_id,
            stream=self.key,
            stream_id=held.stream_id,
            message_id=message.message_id,
            sender=message.sender,
            timestamp=message.timestamp,
            data=held.data,
            deliveries=count,
            error=error,
            error_type=kind,
            maxlen=self._hub.settings.dead_letter_size,
        )

    def release(self) -> None:
        """The agent left: drop local state. Its claimed, unacknowledged messages (those
        waiting out a retry backoff too) stay pending in Redis; the agent's next mailbox
        re-claims them."""
        self._claims.released = True
        self._ready.clear()
        self._retries.clear()
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
        limit = self._hub.settings.max_deliveries
        for stream_id, fields in claimed:
            if stream_id is None or fields is None:
                continue  # trimmed by retention: Redis dropped it from the pending list
            item = entry_message(self.agent_id, stream_id, fields, counts.get(stream_id, 1) + 1)
            if item is None:
                continue
            if item.message.delivery_count > limit:
                # handed out that often and never acknowledged: its handling keeps killing
                # the process (or the agent), so it is not handed out again
                delivered = item.message.delivery_count - 1
                self._bury(
                    r,
                    item,
                    delivered,
                    f"delivered {delivered} times without being acknowledged (the process "
                    "may have died while handling it)",
                    "Undelivered",
                )
                continue
            items.append(item)
        items.sort(key=lambda item: id_order(item.stream_id))
        self._hub.counters["redelivered"] += len(items)
        return items, len(orphans) == room

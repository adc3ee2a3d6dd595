"""The Redis-backed mailbox: any node's agent reaches any other's, at least once.

This module holds the hub and its writer; the reading side of each agent's mailbox is
:mod:`.redis_mailbox`, the key and entry format :mod:`._stream`.

Layout in Redis
    One stream per agent, ``jarvis:mbox:<agent_id>``, read through one consumer group
    (``mbox``) by one consumer named after the agent. Each entry has one field, ``m``: a
    msgpack array ``[message_id, sender, timestamp, payload JSON]`` — one field instead of
    four halves the reply parsing a reader does per message. A stream with a consumer group was
    chosen over ``BLMOVE`` into a processing list because Redis then keeps, per message, the
    pending state and the delivery count (the PEL), assigns ids in arrival order, trims by
    length, and lets a reader block on ``XREADGROUP ... BLOCK`` without polling.

Sending
    ``send`` is synchronous and never blocks: it checks the payload, appends the encoded
    message to the hub's bounded outbox (``outbox_size``; full → ``MailboxFull``) and wakes
    the hub's writer task. The writer takes up to ``batch_size`` messages and acknowledgements
    and writes them in one pipeline round trip (the messages through one small Lua script
    doing ``XADD`` + ``PEXPIRE`` per message, so Redis answers once per batch, not once per
    message); a message leaves the outbox only after Redis answered. While Redis is
    unreachable the writer backs off and retries, so nothing accepted is lost; a batch whose
    answer was lost with the connection is written again, so a message may then arrive twice
    (with the same ``message_id``) — at-least-once, never at-most-once. Messages from one
    sender to one target keep their order (one writer, batches written in order).

Receiving
    ``receive`` first re-claims the agent's pending messages that no live claim holds
    (``XPENDING`` + ``XCLAIM``; ``delivery_count`` = Redis' count + 1): after a crash, the
    agent's next mailbox gets what it had claimed and not acknowledged. It then reads new
    messages with ``XREADGROUP ... >`` in batches of ``prefetch``, blocking on the server
    (bounded by ``max_block`` per round trip, on a dedicated connection; see
    :mod:`jarvis_trio._redis`). Prefetched messages are already pending in Redis, so a crash
    never loses them. A cancelled read is abandoned and may have claimed messages Redis
    now counts as delivered; the next receive re-claims them, and every idle blocking
    round trip looks at the pending list again, so such a message waits at most
    ``max_block``. ``delivery_count`` may then be higher than the times the agent saw it.

    Taking a prefetched message needs no round trip and no lock, so a busy reader costs one
    Redis round trip per ``prefetch`` messages.

Acknowledging
    ``ack`` is local and immediate; the writer sends ``XACK`` + ``XDEL`` with its next
    pipeline (acknowledgements alone wait up to ``ack_delay`` to share a message's round
    trip), so the stream only holds messages not yet acknowledged. If the process dies
    between ``ack`` and that write, the message is delivered once more. ``nack`` puts the
    message back at the front of the local queue, ``delivery_count`` + 1.

Retention (trim policy)
    ``XADD ... MAXLEN queue_size`` (exact): an agent's stream holds at most ``queue_size``
    unacknowledged messages; beyond that the oldest are dropped, read or not. Every write to a
    stream resets its TTL to ``idle_ttl``: a stream nobody writes to for that long — an agent
    that left for good — disappears. Messages for an agent that has not joined yet wait in its
    stream within these bounds: the group is created at id ``0`` when the agent joins.

Redis lost mid-run
    Reads and writes back off (50 ms doubling to 2 s, to 0.5 s on a Cluster or Sentinel,
    jittered) and retry; one WARNING when
    Redis is lost and one when it is back. Closing the hub keeps writing for
    ``close_timeout`` seconds, then logs an ERROR with the number of messages it could not
    write.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from itertools import islice
from typing import Any

import redis
import trio

from .._redis import Backoff, RedisClient, ReplicationShortfall, is_transient
from .._sides import HostSlot, trio_side
from ..config import MeshConfig
from ..errors import MailboxError, MailboxFull
from ._codec import encode_payload
from ._common import HubBase, MailboxSettings, MessageIds, TrioCaller, check_limit, check_target
from ._dead import delete_dead, read_dead
from ._stream import APPEND_SCRIPT, GROUP, Outgoing, agent_of, stream_key
from .contracts import DeadLetter
from .redis_mailbox import RedisMailbox

__all__ = ["RedisHub", "RedisMailbox", "open_redis_hub", "stream_key"]

log = logging.getLogger("jarvis_trio.mailbox")


class _NodeOutcome:
    """What one node did with its share of a batch (indexes into the batch / the acks)."""

    __slots__ = ("acks_failed", "error", "refused", "retry")

    def __init__(self) -> None:
        self.retry: list[int] = []
        self.refused: list[tuple[int, Any]] = []
        self.acks_failed: list[int] = []
        self.error: Exception | None = None


WAIT_TIMEOUT_MS = 1000
"""How long ``WAIT`` gives replicas to acknowledge a batch when ``redis_min_replicas`` is set."""


class RedisHub(HubBase):
    """The mailboxes of one node, backed by Redis; owns the writer task."""

    kind = "redis"

    def __init__(
        self,
        client: RedisClient,
        config: MeshConfig,
        node_name: str,
        settings: MailboxSettings,
        *,
        host: HostSlot | None = None,
    ) -> None:
        super().__init__(config, node_name, settings, host)
        self.client = client
        self.ttl_ms = max(1, round(settings.idle_ttl * 1000))
        self._mailboxes: dict[str, RedisMailbox] = {}
        self._outbox: deque[Outgoing] = deque()
        # acknowledged stream ids not yet written; bounded because each was a claim, and
        # claims are bounded by ``max_unacked`` per mailbox and ``max_mailboxes`` per hub
        self._acks: deque[tuple[str, bytes]] = deque()
        self._acks_in_flight: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._caller = TrioCaller()
        self._ids = MessageIds()
        self.counters: dict[str, int] = {
            "sent": 0,
            "acked": 0,
            "redelivered": 0,
            "retried": 0,  # failed, delivered again after a backoff
            "dead_lettered": 0,  # by a failing handler (crash loops are logged)
        }
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._closed = False
        self._down = False
        self.min_replicas = config.redis_min_replicas
        self.wait_timeout_ms = WAIT_TIMEOUT_MS
        self.written = 0
        self.dropped = 0
        self.replication_shortfalls = 0
        self.asks_followed = 0

    def __repr__(self) -> str:
        return f"<RedisHub {self.node_name} {self.client.safe_url} outbox={len(self._outbox)}>"

    @property
    def pending_writes(self) -> int:
        """Messages accepted by ``send`` that Redis has not confirmed yet."""
        return len(self._outbox)

    def stats(self) -> dict[str, Any]:
        """Counters for operators: messages written and refused, batches a replica shortfall
        sent back (``redis_min_replicas``), ``ASK`` redirections followed, what waits; and
        the counters of every hub (see :meth:`MailboxHub.stats`)."""
        return {
            **self.counters,
            "backend": self.client.kind,
            "written": self.written,
            "dropped": self.dropped,
            "pending_writes": self.pending_writes,
            "replication_shortfalls": self.replication_shortfalls,
            "asks_followed": self.asks_followed,
            "redis_down": self._down,
        }

    @property
    def redis_down(self) -> bool:
        """True from the writer's first failed write until its next successful one."""
        return self._down

    async def progress(self) -> None:
        """Wait for the writer's next write attempt (successful or not) to finish."""
        await self._progress.wait()

    def mailbox_for(self, agent_id: str) -> RedisMailbox:
        """The mailbox of ``agent_id`` (the same object until :meth:`release`)."""
        check_target(agent_id)
        mailbox = self._mailboxes.get(agent_id)
        if mailbox is None:
            if len(self._mailboxes) >= self.settings.max_mailboxes:
                raise MailboxFull(
                    f"hub {self.node_name} already serves {self.settings.max_mailboxes} "
                    f"mailboxes (max_mailboxes); none for {agent_id}"
                )
            mailbox = self._mailboxes[agent_id] = RedisMailbox(self, agent_id)
        return mailbox

    def release(self, agent_id: str) -> None:
        """``agent_id`` stopped or crashed; its next mailbox re-claims what it left pending."""
        mailbox = self._mailboxes.pop(agent_id, None)
        if mailbox is not None:
            mailbox.release()

    def enqueue(self, sender: str, target: str, data: bytes, traceparent: str | None = None) -> str:
        """Accept a message for the writer; thread-safe, never blocks."""
        if self._closed:
            raise MailboxError(f"mailbox hub {self.node_name} is closed")
        message_id = self._ids.next()
        with self._lock:
            if len(self._outbox) >= self.settings.outbox_size:
                raise MailboxFull(
                    f"outbox of {self.node_name} holds {len(self._outbox)} messages not yet "
                    f"written to Redis (outbox_size={self.settings.outbox_size}); message refused"
                )
            self._outbox.append(Outgoing(stream_key(target), message_id, sender, data, traceparent))
            self.counters["sent"] += 1
        self._caller.call(self._wake.set)
        return message_id

    def acks_pending_for(self, key: str) -> set[bytes]:
        """Stream ids of ``key`` acknowledged locally and not yet written to Redis."""
        with self._lock:
            acks = [*self._acks, *self._acks_in_flight]
        return {stream_id for ack_key, stream_id in acks if ack_key == key}

    def enqueue_ack(self, key: str, stream_id: bytes) -> None:
        with self._lock:
            self._acks.append((key, stream_id))
            pending = len(self._acks)
        if pending == 1 or pending >= self.settings.batch_size:
            self._caller.call(self._wake.set)

    async def run_writer(self) -> None:
        """Write the outbox and acknowledgements to Redis until cancelled."""
        backoff = Backoff(cap=self.client.retry_cap)
        while True:
            self._wake = trio.Event()
            if not self._outbox:
                if not self._acks:
                    await self._wake.wait()
                    continue
                if len(self._acks) < self.settings.batch_size:
                    # Acknowledgements alone wait up to ack_delay for the next message, so
                    # both share one round trip and a reader acknowledging each message
                    # does not keep the writer busy when the next message arrives.
                    with trio.move_on_after(self.settings.ack_delay):
                        await self._wake.wait()
            try:
                await self._write_batch()
            except Exception as error:
                if not is_transient(error):
                    raise
                self._note_progress()
                if not self._down:
                    self._down = True
                    log.warning(
                        "Redis at %s lost (%s): %d messages wait in the outbox of %s; "
                        "reconnecting with backoff",
                        self.client.safe_url,
                        error,
                        len(self._outbox),
                        self.node_name,
                    )
                await backoff.sleep()
                continue
            self._note_progress()
            backoff.reset()
            if self._down:
                self._down = False
                log.warning(
                    "Redis at %s is back: the outbox of %s drains",
                    self.client.safe_url,
                    self.node_name,
                )

    def _note_progress(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def _write_batch(self) -> None:
        """Write one batch: one pipeline per node (one for a single server or Sentinel).

        Only what a node confirmed leaves the outbox (with ``min_replicas``: confirmed *and*
        acknowledged by that many replicas, ``WAIT``). Items of a node that failed, answered
        ``MOVED``/``TRYAGAIN``/``CLUSTERDOWN`` or fell short of replicas go back to the front
        of the outbox in their order; the first such error is raised after the bookkeeping,
        so the writer backs off (and the slot map is reloaded) before the next attempt.
        """
        size = self.settings.batch_size
        with self._lock:
            batch = list(islice(self._outbox, size))
            acks = [self._acks.popleft() for _ in range(min(len(self._acks), size))]
            self._acks_in_flight = acks
        keys = [item.key for item in batch] + [key for key, _ in acks]
        try:
            outcomes = await self.client.run_grouped(
                keys, lambda r, indexes: self._node_pipeline(r, batch, acks, indexes)
            )
        except BaseException:
            with self._lock:
                self._acks.extendleft(reversed(acks))
            raise
        finally:
            with self._lock:
                self._acks_in_flight = []
        kept: set[int] = set()
        acks_back: list[int] = []
        refused: list[tuple[int, Any]] = []
        problem: Exception | None = None
        for indexes, result in outcomes:
            if isinstance(result, Exception):
                kept.update(i for i in indexes if i < len(batch))
                acks_back.extend(i - len(batch) for i in indexes if i >= len(batch))
                problem = problem or result
                continue
            kept.update(result.retry)
            acks_back.extend(result.acks_failed)
            refused.extend(result.refused)
            problem = problem or result.error
        with self._lock:
            for _ in batch:
                self._outbox.popleft()
            self._outbox.extendleft(reversed([batch[i] for i in sorted(kept)]))
            self._acks.extendleft(reversed([acks[i] for i in sorted(acks_back)]))
        for index, reason in refused:
            item = batch[index]
            self.dropped += 1
            log.error(
                "mailbox message %s to %s refused by Redis (%s); dropped",
                item.message_id,
                agent_of(item.key),
                reason.decode(errors="replace") if isinstance(reason, bytes) else reason,
            )
        self.written += len(batch) - len(kept) - len(refused)
        if problem is not None:
            if isinstance(problem, ReplicationShortfall):
                self.replication_shortfalls += 1
            await trio.to_thread.run_sync(self.client.refresh_topology)
            raise problem

    def _node_pipeline(
        self,
        r: redis.Redis,
        batch: Sequence[Outgoing],
        acks: Sequence[tuple[str, bytes]],
        indexes: Sequence[int],
    ) -> _NodeOutcome:
        """One node's share of a batch, in one round trip (worker thread).

        Messages go through one ``EVAL`` per slot (one for a single server), acks through
        ``XACK`` + ``XDEL`` per stream, then ``WAIT`` when ``min_replicas`` is set.
        """
        outcome = _NodeOutcome()
        by_slot: dict[int, list[int]] = {}
        ack_ids: dict[str, list[int]] = {}
        for index in indexes:
            if index < len(batch):
                by_slot.setdefault(self.client.slot_of(batch[index].key), []).append(index)
            else:
                ack_ids.setdefault(acks[index - len(batch)][0], []).append(index - len(batch))
        pipe: Any = r.pipeline(transaction=False)
        groups = list(by_slot.values())
        for group in groups:
            pipe.execute_command(*self._append_command([batch[i] for i in group]))
        ack_groups = list(ack_ids.items())
        for key, positions in ack_groups:
            ids = [acks[p][1] for p in positions]
            pipe.execute_command("XACK", key, GROUP, *ids)
            pipe.execute_command("XDEL", key, *ids)
        if self.min_replicas:
            pipe.execute_command("WAIT", self.min_replicas, self.wait_timeout_ms)
        replies = list(pipe.execute(raise_on_error=False))
        written: list[int] = []
        asked: list[tuple[list[int], redis.exceptions.AskError]] = []
        for group, reply in zip(groups, replies, strict=False):
            if isinstance(reply, redis.exceptions.AskError) and not isinstance(
                reply, redis.exceptions.MovedError
            ):
                asked.append((group, reply))
            elif isinstance(reply, Exception):
                if not is_transient(reply):
                    raise reply  # the script itself failed: a misconfiguration, not one message
                outcome.retry.extend(group)
                outcome.error = outcome.error or reply
            else:
                written += _split_refused(group, reply, outcome)
        ack_replies = replies[len(groups) : len(groups) + 2 * len(ack_groups)]
        for position, (_key, positions) in enumerate(ack_groups):
            failed = [r for r in ack_replies[2 * position : 2 * position + 2] if _is_error(r)]
            if failed:
                outcome.acks_failed.extend(positions)
                outcome.error = outcome.error or failed[0]
        if self.min_replicas:
            self._check_replicas(replies[-1], written, outcome)
        for group, ask in asked:
            self._follow_ask(group, ask, batch, outcome)
        return outcome

    def _append_command(self, items: Sequence[Outgoing]) -> list[Any]:
        return [
            "EVAL", APPEND_SCRIPT, len(items),
            *(item.key for item in items),
            self.settings.queue_size, self.ttl_ms,
            *(item.envelope for item in items),
        ]  # fmt: skip

    def _check_replicas(self, reply: Any, written: list[int], outcome: _NodeOutcome) -> None:
        """Confirm ``written`` only if ``WAIT`` counted ``min_replicas`` replicas."""
        if isinstance(reply, Exception) or int(reply) < self.min_replicas:
            outcome.retry.extend(written)
            outcome.error = outcome.error or ReplicationShortfall(
                f"WAIT {self.min_replicas} answered {reply!r}: {len(written)} messages are "
                "written again"
            )

    def _follow_ask(
        self,
        group: list[int],
        ask: redis.exceptions.AskError,
        batch: Sequence[Outgoing],
        outcome: _NodeOutcome,
    ) -> None:
        """A slot being migrated: send the group to the importing node, after ``ASKING``."""
        try:
            target = self.client.node_at(ask.host, int(ask.port))
            pipe: Any = target.pipeline(transaction=False)
            pipe.execute_command("ASKING")
            pipe.execute_command(*self._append_command([batch[i] for i in group]))
            if self.min_replicas:
                pipe.execute_command("WAIT", self.min_replicas, self.wait_timeout_ms)
            replies = list(pipe.execute(raise_on_error=False))
        except Exception as error:
            if not is_transient(error):
                raise
            outcome.retry.extend(group)
            outcome.error = outcome.error or error
            return
        reply = replies[1]
        if isinstance(reply, Exception):
            outcome.retry.extend(group)
            outcome.error = outcome.error or reply
            return
        written = _split_refused(group, reply, outcome)
        if self.min_replicas:
            self._check_replicas(replies[-1], written, outcome)
        self.asks_followed += 1

    async def flush_remaining(self) -> None:
        """Write the outbox and the acknowledgements from the calling task (the writer task
        must have stopped), backing off while Redis is unreachable."""
        backoff = Backoff(cap=self.client.retry_cap)
        while self._outbox or self._acks:
            try:
                await self._write_batch()
            except Exception as error:
                if not is_transient(error):
                    raise
                await backoff.sleep()

    def refuse_sends(self) -> None:
        """From now on ``send`` raises ``MailboxError``: the hub is closing."""
        self._closed = True

    async def drain(self) -> None:
        """Wait until the writer task has written the outbox and the acknowledgements."""
        while self._outbox or self._acks:
            await self._progress.wait()

    # -- dead letters (see :mod:`._dead`) ---------------------------------------------------

    @trio_side
    async def dead_letters(self, agent_id: str, limit: int = 100) -> list[DeadLetter]:
        """The dead letters of ``agent_id``, oldest first (at most ``limit``)."""
        check_limit(limit)
        return await self.client.run(lambda r: read_dead(r, agent_id, limit))

    @trio_side
    async def consumer_lag(self, agent_ids: Sequence[str]) -> dict[str, int]:
        """Per agent: the length of its stream (``XLEN``, O(1); one pipeline per Redis node)
        less the acknowledgements still in this hub's outbox -- an acknowledged entry is
        deleted from the stream, so what remains is waiting or delivered and not acknowledged
        (see :meth:`MailboxHub.consumer_lag`). Agents on a node that cannot be reached right
        now are left out."""
        keys = [stream_key(agent_id) for agent_id in agent_ids]

        def lengths(r: redis.Redis, indexes: list[int]) -> list[int]:
            pipe: Any = r.pipeline(transaction=False)
            for index in indexes:
                pipe.xlen(keys[index])
            return [int(length) for length in pipe.execute()]

        lag: dict[str, int] = {}
        for indexes, found in await self.client.run_grouped(keys, lengths):
            if isinstance(found, Exception):
                if not is_transient(found):
                    raise found
                continue
            for index, length in zip(indexes, found, strict=True):
                unwritten = len(self.acks_pending_for(keys[index]))
                lag[agent_ids[index]] = max(0, length - unwritten)
        return lag

    @trio_side
    async def dead_letter(self, agent_id: str, dead_id: str) -> DeadLetter | None:
        """One dead letter of ``agent_id`` by its ``dead_id``, or ``None``."""
        found = await self.client.run(lambda r: read_dead(r, agent_id, 1, dead_id))
        return found[0] if found else None

    @trio_side
    async def replay_dead_letters(
        self, agent_id: str, dead_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Send dead letters of ``agent_id`` (all, or those named) to its mailbox again, as
        new messages from their original sender, and remove them from the dead-letter
        stream once the resend is accepted. Returns the new message ids."""
        if dead_ids is None:
            letters = await self.client.run(
                lambda r: read_dead(r, agent_id, self.settings.dead_letter_size)
            )
        else:
            wanted = list(dead_ids)

            def read_each(r: redis.Redis) -> list[DeadLetter]:
                return [found for d in wanted for found in read_dead(r, agent_id, 1, d)]

            letters = await self.client.run(read_each)
        sent = [
            self.enqueue(
                letter.sender or "",
                agent_id,
                encode_payload(letter.payload, self.max_message_size),
            )
            for letter in letters
        ]
        ids = [letter.dead_id for letter in letters]
        await self.client.run(lambda r: delete_dead(r, agent_id, ids))
        return sent

    @trio_side
    async def purge_dead_letters(self, agent_id: str, dead_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters of ``agent_id`` (all, or those named); returns how many."""
        chosen = None if dead_ids is None else list(dead_ids)
        return await self.client.run(lambda r: delete_dead(r, agent_id, chosen))

    def close(self) -> None:
        self._closed = True
        for mailbox in self._mailboxes.values():
            mailbox.release()
        self._mailboxes.clear()


def _is_error(reply: Any) -> bool:
    return isinstance(reply, Exception)


def _split_refused(group: list[int], reply: Any, outcome: _NodeOutcome) -> list[int]:
    """The append script's reply ``[position, error, ...]``: record the refused messages of
    ``group`` in ``outcome`` and return the indexes written."""
    refused = dict(zip(reply[::2], reply[1::2], strict=True))
    written = []
    for position, index in enumerate(group, start=1):
        if position in refused:
            outcome.refused.append((index, refused[position]))
        else:
            written.append(index)
    return written


@asynccontextmanager
async def open_redis_hub(
    client: RedisClient,
    config: MeshConfig,
    node_name: str,
    settings: MailboxSettings,
    *,
    host: HostSlot | None = None,
) -> AsyncIterator[RedisHub]:
    """A Redis hub whose writer runs for the lifetime of the block.

    Leaving the block — normally or by cancellation — refuses new sends, stops the writer
    task, then keeps writing what is left for up to ``close_timeout`` seconds, shielded from
    the cancellation; what is still unwritten is reported in an ERROR and lost.
    """
    hub = RedisHub(client, config, node_name, settings, host=host)
    writer_scope = trio.CancelScope()
    writer_done = trio.Event()

    async def writer() -> None:
        try:
            with writer_scope:
                await hub.run_writer()
        finally:
            writer_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        try:
            yield hub
        finally:
            hub.refuse_sends()
            writer_scope.cancel()
            with trio.CancelScope(shield=True):
                await writer_done.wait()
                with trio.move_on_after(settings.close_timeout):
                    await hub.flush_remaining()
            hub.close()
            if hub.pending_writes:
                log.error(
                    "mailbox hub %s closed with %d messages not written to Redis at %s: lost",
                    node_name,
                    hub.pending_writes,
                    client.safe_url,
                )

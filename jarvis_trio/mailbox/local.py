"""The in-process mailbox: the default when no Redis is configured or reachable.

Same API and delivery semantics as the Redis mailbox, within one process:

* per-agent FIFO; a message to an agent that has not joined yet waits in its queue;
* ``receive`` claims a message; it stays claimed until :meth:`LocalMailbox.ack`;
  :meth:`LocalMailbox.nack` puts it back at the front of the queue (``delivery_count`` + 1);
* when an agent leaves (it stopped or crashed; :meth:`InProcessHub.release`) its claimed,
  unacknowledged messages go back to the front of its queue, so the agent gets them again
  when it comes back — the in-process form of at-least-once delivery;
* a message whose handler fails (:meth:`LocalMailbox.fail`) is delivered again after a
  backoff, staying claimed meanwhile; after ``max_deliveries`` deliveries it moves to the
  agent's dead-letter list (bounded by ``dead_letter_size``) with the error and the count, so
  nothing is lost and nothing loops forever. A message given back after a crash more often
  than that is dead-lettered when it comes up, without being handed out again;
* bounds (:class:`~jarvis_trio.mailbox.MailboxSettings`): ``queue_size`` messages waiting per
  agent and ``max_mailboxes`` queues per hub — a send beyond either raises ``MailboxFull`` and
  the message is not queued; ``max_unacked`` claims per mailbox — a receive beyond it raises
  ``MailboxError``. Messages given back (nack, release) go in front even when the queue is
  full: they were already counted once, so a queue never holds more than
  ``queue_size + max_unacked``.

A waiting receive parks on a per-agent :class:`trio.lowlevel.ParkingLot`; a send unparks it,
from another thread through the Trio token. Nothing polls.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._sides import HostSlot, trio_side
from ..config import MeshConfig
from ..errors import MailboxError, MailboxFull
from ._codec import decode_payload, encode_payload
from ._common import (
    Claims,
    HubBase,
    MailboxSettings,
    MessageIds,
    Pacer,
    Redeliveries,
    TrioCaller,
    buried,
    check_limit,
    check_target,
    error_fields,
    send_encoded,
)
from .contracts import DeadLetter, MailboxMessage

__all__ = ["InProcessHub", "LocalMailbox", "open_in_process_hub"]

log = logging.getLogger("jarvis_trio.mailbox")


class _Entry:
    """A queued message, kept encoded so each delivery decodes a private copy."""

    __slots__ = (
        "data",
        "delivery_count",
        "message_id",
        "sender",
        "target",
        "timestamp",
        "traceparent",
    )

    def __init__(
        self,
        message_id: str,
        sender: str | None,
        target: str,
        data: bytes,
        timestamp: float,
        traceparent: str | None = None,
    ) -> None:
        self.traceparent = traceparent
        self.message_id = message_id
        self.sender = sender
        self.target = target
        self.data = data
        self.timestamp = timestamp
        self.delivery_count = 1

    def message(self) -> MailboxMessage:
        return MailboxMessage(
            message_id=self.message_id,
            sender=self.sender,
            target=self.target,
            payload=decode_payload(self.data),
            timestamp=self.timestamp,
            delivery_count=self.delivery_count,
            traceparent=self.traceparent,
        )


class _Queue:
    """One agent's waiting messages and the receivers parked on them."""

    __slots__ = ("lot", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[_Entry] = deque()
        self.lot = trio.lowlevel.ParkingLot()


class LocalMailbox:
    """An agent's mailbox on the in-process hub (``self.mailbox``)."""

    def __init__(self, hub: InProcessHub, agent_id: str) -> None:
        self.agent_id = agent_id
        self._host_slot = hub.host_slot  # served where its hub's node is
        self._hub = hub
        self._queue = hub.queue(agent_id)
        self._claims: Claims[_Entry] = Claims(agent_id, hub.settings.max_unacked)
        self._retries: Redeliveries[_Entry] = Redeliveries()
        self._pacer = Pacer()

    def __repr__(self) -> str:
        return f"<LocalMailbox {self.agent_id} claimed={len(self._claims)}>"

    def send(self, target_id: str, message: Mapping[str, Any]) -> str:
        """Queue ``message`` for ``target_id`` and return its id; never blocks.

        Raises ``PayloadError`` / ``PayloadTooLarge`` for a bad payload, ``MailboxFull`` when
        the target's queue (or the hub's table of queues) is full.
        """
        return send_encoded(self._hub, self._hub.deliver, self.agent_id, target_id, message)

    @trio_side
    async def receive(self, timeout: float | None = None) -> MailboxMessage | None:
        """Claim the next message, waiting up to ``timeout`` seconds (``None``: forever,
        ``0``: no wait); ``None`` when nothing came in time. A failed message whose backoff
        has run out comes before new ones."""
        await self._pacer.checkpoint()
        if not self._retries:
            self._claims.check_usable(1)
        deadline = math.inf if timeout is None else trio.current_time() + max(0.0, timeout)
        queue = self._queue
        while True:
            taken = self._take()
            if taken is not None:
                return taken
            wake = min(deadline, self._retries.next_due())
            if wake <= trio.current_time():
                if wake >= deadline:
                    return None
                continue
            with trio.move_on_at(wake):
                await queue.lot.park()  # a send, a retry scheduled, or time: plan again

    def _take(self) -> MailboxMessage | None:
        """A retry that is due, else the next waiting message (dead-lettering on the way any
        that was already delivered too often); ``None`` when neither is there."""
        entry = self._retries.due(trio.current_time())
        if entry is not None:
            return entry.message()
        waiting = self._queue.waiting
        while waiting:
            self._claims.check_usable(1)
            entry = waiting.popleft()
            if entry.delivery_count <= self._hub.settings.max_deliveries:
                return self._claim(entry)
            self._hub.bury(
                entry,
                f"delivered {entry.delivery_count - 1} times without being acknowledged",
                "Undelivered",
            )
        return None

    @trio_side
    async def read(self, limit: int = 100) -> list[MailboxMessage]:
        """Claim up to ``limit`` waiting messages without waiting for more."""
        check_limit(limit)
        await trio.lowlevel.checkpoint()
        self._claims.check_usable(1)
        queue = self._queue
        room = self._claims.room
        taken: list[MailboxMessage] = []
        while queue.waiting and len(taken) < min(limit, room):
            taken.append(self._claim(queue.waiting.popleft()))
        return taken

    @trio_side
    async def peek(self) -> MailboxMessage | None:
        """The next waiting message, without claiming it."""
        await trio.lowlevel.checkpoint()
        queue = self._queue
        return queue.waiting[0].message() if queue.waiting else None

    @trio_side
    async def ack(self, message: MailboxMessage) -> None:
        """Acknowledge a claimed message: it is gone for good."""
        await self._pacer.checkpoint()
        self._claims.pop(message)
        self._hub.counters["acked"] += 1

    @trio_side
    async def nack(self, message: MailboxMessage) -> None:
        """Give a claimed message back: it is delivered again before any other."""
        await self._pacer.checkpoint()
        entry = self._claims.pop(message)
        entry.delivery_count += 1
        self._hub.counters["redelivered"] += 1
        self._hub.give_back(self.agent_id, [entry])

    @trio_side
    async def fail(self, message: MailboxMessage, error: BaseException | str) -> bool:
        """The handler of ``message`` failed: deliver it again after a backoff, or move it
        to the dead-letter list once it was delivered ``max_deliveries`` times (``True``)."""
        await trio.lowlevel.checkpoint()
        entry = self._claims.get(message)
        settings = self._hub.settings
        if entry.delivery_count >= settings.max_deliveries:
            self._claims.pop(message)
            self._hub.bury(entry, *error_fields(error))
            return True
        when = trio.current_time() + settings.retry_delay(entry.delivery_count)
        entry.delivery_count += 1
        self._retries.add(when, entry)
        self._hub.counters["retried"] += 1
        self._queue.lot.unpark_all()  # a receive parked longer than this retry re-plans
        return False

    @trio_side
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """This agent's dead letters, oldest first."""
        return await self._hub.dead_letters(self.agent_id, limit)

    def release(self) -> None:
        """The agent left: give back every claimed message; this mailbox is no longer used."""
        if self._claims.released:
            return
        self._claims.released = True
        self._retries.clear()  # they are claims too: given back below
        entries = self._claims.values()
        self._claims.clear()
        for entry in entries:
            entry.delivery_count += 1
        self._hub.give_back(self.agent_id, entries)

    def _claim(self, entry: _Entry) -> MailboxMessage:
        self._claims.add(entry.message_id, entry)
        return entry.message()


class InProcessHub(HubBase):
    """The mailboxes of one node when messages stay in the process."""

    kind = "in-process"

    def __init__(
        self,
        config: MeshConfig,
        node_name: str,
        settings: MailboxSettings | None = None,
        *,
        host: HostSlot | None = None,
    ) -> None:
        super().__init__(config, node_name, settings or MailboxSettings(), host)
        self._queues: dict[str, _Queue] = {}
        self._mailboxes: dict[str, LocalMailbox] = {}
        self._lock = threading.Lock()
        self._caller = TrioCaller()
        self._ids = MessageIds()
        self._closed = False
        self.counters: dict[str, int] = {
            "sent": 0,
            "acked": 0,
            "redelivered": 0,
            "retried": 0,  # failed, delivered again after a backoff
            "dead_lettered": 0,
            "dead_letters_dropped": 0,  # the oldest, beyond dead_letter_size
        }
        self._dead: dict[str, deque[DeadLetter]] = {}
        self._dead_ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<InProcessHub {self.node_name} queues={len(self._queues)}>"

    def stats(self) -> dict[str, int]:
        """Counters (see :meth:`MailboxHub.stats`) and ``waiting``: messages queued in the
        node's mailboxes, not yet claimed."""
        with self._lock:
            waiting = sum(len(queue.waiting) for queue in self._queues.values())
        return {**self.counters, "waiting": waiting}

    @trio_side
    async def consumer_lag(self, agent_ids: Sequence[str]) -> dict[str, int]:
        """Per agent: messages queued for it and not claimed, plus those it claimed and has
        not acknowledged (see :meth:`MailboxHub.consumer_lag`); read from memory."""
        await trio.lowlevel.checkpoint()
        lag: dict[str, int] = {}
        with self._lock:
            for agent_id in agent_ids:
                queue = self._queues.get(agent_id)
                mailbox = self._mailboxes.get(agent_id)
                lag[agent_id] = (0 if queue is None else len(queue.waiting)) + (
                    0 if mailbox is None else len(mailbox._claims)
                )
        return lag

    def mailbox_for(self, agent_id: str) -> LocalMailbox:
        """The mailbox of ``agent_id`` (the same object until :meth:`release`)."""
        check_target(agent_id)
        mailbox = self._mailboxes.get(agent_id)
        if mailbox is None:
            mailbox = self._mailboxes[agent_id] = LocalMailbox(self, agent_id)
        return mailbox

    def release(self, agent_id: str) -> None:
        """``agent_id`` stopped or crashed: its unacknowledged messages are queued again and
        the next :meth:`mailbox_for` returns a fresh mailbox that receives them first."""
        mailbox = self._mailboxes.pop(agent_id, None)
        if mailbox is not None:
            mailbox.release()

    def queue(self, agent_id: str) -> _Queue:
        with self._lock:
            return self._queue_locked(agent_id)

    def _queue_locked(self, agent_id: str) -> _Queue:
        queue = self._queues.get(agent_id)
        if queue is None:
            if len(self._queues) >= self.settings.max_mailboxes:
                raise MailboxFull(
                    f"in-process hub {self.node_name} already holds "
                    f"{self.settings.max_mailboxes} mailboxes (max_mailboxes); "
                    f"no queue for {agent_id}"
                )
            queue = self._queues[agent_id] = _Queue()
        return queue

    def deliver(
        self, sender: str | None, target: str, data: bytes, traceparent: str | None = None
    ) -> str:
        """Append an encoded message to ``target``'s queue; thread-safe, never blocks."""
        if self._closed:
            raise MailboxError(f"in-process hub {self.node_name} is closed")
        message_id = self._ids.next()
        with self._lock:
            queue = self._queue_locked(target)
            if len(queue.waiting) >= self.settings.queue_size:
                raise MailboxFull(
                    f"mailbox of {target} holds {len(queue.waiting)} waiting messages "
                    f"(queue_size={self.settings.queue_size}); message refused"
                )
            entry = _Entry(message_id, sender, target, data, time.time(), traceparent)
            queue.waiting.append(entry)
            self.counters["sent"] += 1
        self._caller.wake(queue.lot)
        return message_id

    def give_back(self, agent_id: str, entries: list[_Entry]) -> None:
        """Put claimed entries back at the front of the queue, in their original order."""
        if not entries:
            return
        with self._lock:
            queue = self._queue_locked(agent_id)
            queue.waiting.extendleft(reversed(entries))
        self._caller.call(queue.lot.unpark_all)

    # -- dead letters ---------------------------------------------------------------------

    def bury(self, entry: _Entry, error: str, error_type: str) -> None:
        """Move a message that failed too often to its agent's dead-letter list."""
        letters = self._dead.setdefault(entry.target, deque())
        if len(letters) >= self.settings.dead_letter_size:
            dropped = letters.popleft()
            self.counters["dead_letters_dropped"] += 1
            log.error(
                "dead-letter list of %s is full (dead_letter_size=%d): dropped %s",
                entry.target,
                self.settings.dead_letter_size,
                dropped.message_id,
            )
        letters.append(buried(entry.message(), f"dl-{next(self._dead_ids)}", error, error_type))
        self.counters["dead_lettered"] += 1
        log.warning(
            "mailbox message %s to %s moved to the dead-letter list after %d deliveries: %s: %s",
            entry.message_id,
            entry.target,
            entry.delivery_count,
            error_type,
            error,
        )

    @trio_side
    async def dead_letters(self, agent_id: str, limit: int = 100) -> list[DeadLetter]:
        """The dead letters of ``agent_id``, oldest first (at most ``limit``)."""
        check_limit(limit)
        await trio.lowlevel.checkpoint()
        return list(self._dead.get(agent_id, ()))[:limit]

    @trio_side
    async def dead_letter(self, agent_id: str, dead_id: str) -> DeadLetter | None:
        """One dead letter of ``agent_id`` by its ``dead_id``, or ``None``."""
        await trio.lowlevel.checkpoint()
        return next((d for d in self._dead.get(agent_id, ()) if d.dead_id == dead_id), None)

    @trio_side
    async def replay_dead_letters(
        self, agent_id: str, dead_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Send dead letters of ``agent_id`` (all, or those named) to its mailbox again, as
        new messages from their original sender, and remove them from the list. Returns the
        new message ids."""
        await trio.lowlevel.checkpoint()
        chosen = self._take_dead(agent_id, dead_ids)
        return [
            self.deliver(d.sender, agent_id, encode_payload(d.payload, self.max_message_size))
            for d in chosen
        ]

    @trio_side
    async def purge_dead_letters(self, agent_id: str, dead_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters of ``agent_id`` (all, or those named); returns how many."""
        await trio.lowlevel.checkpoint()
        return len(self._take_dead(agent_id, dead_ids))

    def _take_dead(self, agent_id: str, dead_ids: Sequence[str] | None) -> list[DeadLetter]:
        letters = self._dead.get(agent_id)
        if not letters:
            return []
        if dead_ids is None:
            taken = list(letters)
            letters.clear()
            return taken
        wanted = set(dead_ids)
        taken = [d for d in letters if d.dead_id in wanted]
        kept = [d for d in letters if d.dead_id not in wanted]
        letters.clear()
        letters.extend(kept)
        return taken

    def close(self) -> None:
        self._closed = True


@asynccontextmanager
async def open_in_process_hub(
    config: MeshConfig,
    node_name: str,
    settings: MailboxSettings | None = None,
    *,
    host: HostSlot | None = None,
) -> AsyncIterator[InProcessHub]:
    """An in-process hub for the lifetime of the block."""
    hub = InProcessHub(config, node_name, settings, host=host)
    try:
        yield hub
    finally:
        hub.close()

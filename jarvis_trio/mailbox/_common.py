"""What both mailbox backends share: their bounds, message ids and argument checks."""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import trio

from .. import _tracing
from .._sides import HostSlot
from ..config import MeshConfig
from ..errors import MailboxError
from ._codec import encode_payload
from .contracts import DeadLetter, MailboxMessage

__all__ = [
    "Claims",
    "HubBase",
    "MailboxSettings",
    "MessageIds",
    "Pacer",
    "Redeliveries",
    "TrioCaller",
    "buried",
    "check_limit",
    "check_target",
    "error_fields",
    "send_encoded",
]

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    """Bounds and timings of a node's mailboxes. Every buffer is bounded by one of these.

    ``queue_size``
        In-process: messages waiting (not yet claimed) per agent; a send beyond it raises
        ``MailboxFull``. Redis: the retention of an agent's stream, ``XADD MAXLEN ~``; when
        an agent does not read, its oldest unacknowledged messages are trimmed first.
    ``max_mailboxes``
        In-process: agents that have a queue, including agents that have not joined yet and
        already have mail; a send that would create one more raises ``MailboxFull``. Redis:
        mailboxes one hub serves; ``mailbox_for`` beyond it raises ``MailboxFull``.
    ``max_unacked``
        Messages one mailbox has claimed and not yet acknowledged; ``receive`` / ``read``
        beyond it raise ``MailboxError`` (acknowledge or nack first).
    ``outbox_size``
        Redis: messages accepted by ``send`` and not yet confirmed by Redis; a send beyond it
        raises ``MailboxFull`` (this is what bounds memory while Redis is down).
    ``batch_size``
        Redis: most commands written in one pipeline round trip.
    ``prefetch``
        Redis: most messages one blocking read claims at once (they stay pending in Redis
        until acknowledged, so a crash never loses them).
    ``idle_ttl``
        Redis: seconds after the last write before an agent's stream expires.
    ``max_block``
        Redis: longest server-side ``BLOCK`` of one read; bounds how long a worker thread
        of an abandoned read can live.
    ``ack_delay``
        Redis: how long acknowledgements alone wait to share the next message's round trip
        (a crash in that window delivers those messages once more).
    ``close_timeout``
        Redis: how long closing the hub keeps trying to write the outbox and the pending
        acknowledgements before it reports what it could not write.
    ``max_deliveries``
        Deliveries of one message whose handler keeps failing (it raised, or the process
        died while handling it) before the message moves to the agent's dead-letter stream
        (the ``mailbox_max_deliveries`` config key).
    ``retry_base`` / ``retry_max``
        Backoff before a failed message is delivered again: ``retry_base`` seconds after the
        first failure, doubling, at most ``retry_max``.
    ``dead_letter_size``
        Dead letters kept per agent; beyond it the oldest are dropped (counted, logged).
    """

    queue_size: int = 10_000
    max_mailboxes: int = 10_000
    max_unacked: int = 1_024
    outbox_size: int = 10_000
    batch_size: int = 512
    prefetch: int = 128
    idle_ttl: float = 7 * 24 * 3600.0
    max_block: float = 2.0
    close_timeout: float = 5.0
    ack_delay: float = 0.005
    max_deliveries: int = 5
    retry_base: float = 0.1
    retry_max: float = 30.0
    dead_letter_size: int = 10_000

    def retry_delay(self, deliveries: int) -> float:
        """Seconds to wait before delivering again a message that failed ``deliveries``
        times."""
        return min(self.retry_max, self.retry_base * 2.0 ** max(0, min(deliveries - 1, 32)))

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(
                    f"MailboxSettings.{item.name}={value!r}: expected a positive number"
                )


class HubBase:
    """What every hub of one node holds: its node, settings, payload limit and host slot
    (handed to each mailbox it builds, see :mod:`jarvis_trio._sides`)."""

    def __init__(
        self,
        config: MeshConfig,
        node_name: str,
        settings: MailboxSettings,
        host: HostSlot | None,
    ) -> None:
        self.host_slot = HostSlot() if host is None else host
        self.node_name = node_name
        self.settings = settings
        self.max_message_size = config.max_message_size


class MessageIds:
    """Message ids ``msg-`` + 20 hex digits: 48 random bits drawn once per hub, then a
    counter — unique without coordination, and cheaper than drawing random bytes per message.
    """

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = "msg-" + os.urandom(6).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFF:08x}"


def check_target(target_id: object) -> str:
    """The target of a send must be an agent id: a non-empty string."""
    if not isinstance(target_id, str) or not target_id:
        raise ValueError(f"mailbox target_id must be a non-empty agent id, got {target_id!r}")
    return target_id


class _Sending(Protocol):
    node_name: str
    max_message_size: int


def send_encoded(
    hub: _Sending,
    put: Callable[[str, str, bytes, str | None], str],
    sender: str,
    target_id: str,
    message: Mapping[str, Any],
) -> str:
    """What ``send`` is on every backend: check the target, encode ``message`` within the
    hub's size limit, hand it to ``put`` (the hub's own queueing) and return its id; while
    tracing is on, inside a client span whose context travels with the message."""
    target = check_target(target_id)
    data = encode_payload(message, hub.max_message_size)
    if not _tracing.active():
        return put(sender, target, data, None)
    with _tracing.client_span("mailbox", target, hub.node_name) as traceparent:
        return put(sender, target, data, traceparent)


def check_limit(limit: object) -> int:
    """``read(limit)`` takes a positive whole number."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"mailbox read limit must be a positive whole number, got {limit!r}")
    return limit


class TrioCaller:
    """Runs small synchronous callbacks on the hub's Trio thread.

    ``send`` is synchronous and may be called from another thread (an asyncio host, a worker
    thread). Trio objects (events, parking lots) may only be touched from the Trio thread, so
    a wake-up requested elsewhere is handed over with ``TrioToken.run_sync_soon``.
    """

    __slots__ = ("_thread", "_token")

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()

    def wake(self, lot: trio.lowlevel.ParkingLot) -> None:
        """Unpark one task waiting on ``lot`` (cheap when none waits)."""
        if threading.get_ident() == self._thread:
            if lot:
                lot.unpark()
        else:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(lot.unpark)

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` now if on the Trio thread, else as soon as the Trio thread can."""
        if threading.get_ident() == self._thread:
            fn()
        else:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(fn)


class Pacer:
    """Checkpoints for operations that usually complete at once.

    Every mailbox call is a cancellation point (``checkpoint_if_cancelled``, a fraction of a
    microsecond). Yielding to the scheduler costs a full scheduler pass (~10 µs), which would
    cap an in-process mailbox far below 100,000 messages per second, so a call that finds
    its work done yields only every ``every``-th time: a reader draining a long queue still
    lets other tasks run regularly.
    """

    __slots__ = ("_count", "_every")

    def __init__(self, every: int = 64) -> None:
        self._every = every
        self._count = 0

    async def checkpoint(self) -> None:
        self._count += 1
        if self._count >= self._every:
            self._count = 0
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()


class Claims(Generic[C]):
    """The messages one mailbox has claimed and not yet acknowledged, keyed by message id.

    Bounded by ``max_unacked``: :meth:`check_usable` refuses a claim beyond it, so a reader
    that never acknowledges fails loudly instead of growing without limit. ``C`` is what the
    backend keeps per claim (an in-process queue entry, a Redis stream entry).
    """

    __slots__ = ("_agent_id", "_items", "_max", "released")

    def __init__(self, agent_id: str, max_unacked: int) -> None:
        self._agent_id = agent_id
        self._max = max_unacked
        self._items: dict[str, C] = {}
        self.released = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def room(self) -> int:
        """How many more messages may be claimed now."""
        return self._max - len(self._items)

    def check_usable(self, wanted: int) -> None:
        """Raise ``MailboxError`` when the mailbox was released or ``wanted`` more claims
        would exceed ``max_unacked``."""
        if self.released:
            raise MailboxError(
                f"mailbox of {self._agent_id} was released; ask the hub for a new one"
            )
        if len(self._items) + wanted > self._max:
            raise MailboxError(
                f"mailbox of {self._agent_id} holds {len(self._items)} unacknowledged messages "
                f"(max_unacked={self._max}): ack or nack some first"
            )

    def add(self, message_id: str, item: C) -> None:
        self._items[message_id] = item

    def pop(self, message: MailboxMessage) -> C:
        """End the claim of ``message`` (ack or nack); ``MailboxError`` if it holds none."""
        item = self._items.pop(message.message_id, None)
        if item is None:
            raise MailboxError(
                f"message {message.message_id} is not claimed by the mailbox of "
                f"{self._agent_id} (already acknowledged or given back, or claimed by "
                "another mailbox)"
            )
        return item

    def get(self, message: MailboxMessage) -> C:
        """What the claim of ``message`` holds; ``MailboxError`` if it holds none."""
        item = self._items.get(message.message_id)
        if item is None:
            raise MailboxError(
                f"message {message.message_id} is not claimed by the mailbox of {self._agent_id}"
            )
        return item

    def values(self) -> list[C]:
        return list(self._items.values())

    def clear(self) -> None:
        self._items.clear()


def error_fields(error: BaseException | str) -> tuple[str, str]:
    """``(error, error_type)`` as a dead letter records them (the text bounded)."""
    if isinstance(error, BaseException):
        text, kind = str(error) or repr(error), type(error).__name__
    else:
        text, kind = error, "Undelivered"
    return text[:4096], kind


def buried(message: MailboxMessage, dead_id: str, error: str, error_type: str) -> DeadLetter:
    """``message`` as a dead letter, failed now after its ``delivery_count`` deliveries."""
    return DeadLetter(
        dead_id=dead_id,
        message_id=message.message_id,
        sender=message.sender,
        target=message.target,
        payload=message.payload,
        timestamp=message.timestamp,
        deliveries=message.delivery_count,
        error=error,
        error_type=error_type,
        failed_at=time.time(),
    )


class Redeliveries(Generic[C]):
    """Failed messages waiting out their backoff before they are delivered again.

    They stay claimed meanwhile (so bounded by ``max_unacked``, and never acknowledged);
    :meth:`due` hands back the first whose time has come, :meth:`next_due` says when to wake.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, C]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, when: float, item: C) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), item))

    def due(self, now: float) -> C | None:
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def next_due(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def clear(self) -> list[C]:
        items = [item for _, _, item in sorted(self._heap)]
        self._heap.clear()
        return items

"""The bounded table of requests waiting for a response, for one node.

Two kinds of entries share it, keyed by message id:

* ``request()`` entries live exactly as long as the requesting call: the caller parks its own
  task (no Event, no helper task, no cancel scope) and removes the entry in ``finally``, so
  cancellation at any checkpoint leaves nothing behind; :meth:`PendingTable.reap_forever`
  wakes it with ``None`` at its deadline. A caller that is not a Trio task (the asyncio host,
  ``PeerClient._start_request``) sets the entry's ``on_done`` instead of parking: resolution
  calls it, and its cancellation removes the entry as a cancelled wait does.
* ``ask_async()`` entries outlive the call; :meth:`PendingTable.reap_forever` (a task in the
  node's nursery) removes each one at its deadline, sleeping until the earliest deadline
  rather than polling. An expired id leaves a tombstone (bounded) so ``check_inbox`` can tell
  *expired* from *pending* and return at once.

A response that finds no entry — its request was cancelled, timed out, expired or already
answered — is dropped and counted in :attr:`PendingTable.late_replies`; it never reaches an
inbox. A response from any node but the one the request was sent to is dropped and counted in
:attr:`PendingTable.wrong_node_replies`, and the entry keeps waiting for the real answer: a
member that learns a request id cannot answer in another node's place.
When the table is full, new entries are refused (``request`` → ``None``,
``ask_async`` → ``ValueError``) and counted in :attr:`PendingTable.refused`.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import trio
from outcome import Value

if TYPE_CHECKING:
    from .messages import IncomingMessage

__all__ = ["DEFAULT_MAX_PENDING", "PendingEntry", "PendingTable", "Status"]

DEFAULT_MAX_PENDING = 65_536  # waiting requests per node; beyond it new ones are refused
_TOMBSTONES = 4096  # expired ask_async ids remembered, oldest forgotten first
TICK = 0.005  # resolution of request deadlines, seconds
_IN_QUEUE = -1  # PendingEntry.tick of an entry whose deadline sits in the queue, not the wheel
_QUEUE_SLACK = 48  # answered entries the deadline queue may hold beyond twice the live ones

Status = Literal["pending", "ready", "expired", "unknown"]


class PendingEntry:
    """One request waiting for its response."""

    __slots__ = (
        "deadline",
        "done",
        "event",
        "is_async",
        "key",
        "node_id",
        "on_done",
        "reply",
        "table",
        "task",
        "tick",
    )

    def __init__(
        self, table: PendingTable, key: str, node_id: str, deadline: float, is_async: bool
    ) -> None:
        self.table = table
        self.key = key
        self.node_id = node_id
        self.deadline = deadline
        self.is_async = is_async
        self.done = False
        self.reply: IncomingMessage | None = None
        self.task: trio.lowlevel.Task | None = None
        self.event: trio.Event | None = None
        self.tick = _IN_QUEUE
        # instead of a parked task: called once, on the Trio thread, when the entry is
        # resolved (reply, deadline, failed node, node stopping); see PeerClient._start_request
        self.on_done: Callable[[PendingEntry], None] | None = None

    def abort(self, _: object) -> trio.lowlevel.Abort:
        """Abort function of a task parked on this entry: a cancelled wait removes the entry
        at once, so a reply arriving before the caller runs again is counted as late."""
        self.task = None
        self.table._remove(self.key, self)
        return trio.lowlevel.Abort.SUCCEEDED


class PendingTable:
    """Pending requests of one node; every method is called from the node's Trio thread.

    Deadlines are kept without one cancel scope per request, in two places:

    * a queue in arming order, for every deadline no earlier than the last one queued -- the
      common case, since requests made with one timeout expire in the order they were made.
      Arming is an append; an answered entry is not searched for but left there and skipped
      when reached, and the queue is rebuilt from the live entries whenever the answered ones
      outnumber them (amortised O(1)), so it stays within a constant factor of the entries;
    * a timer wheel of :data:`TICK`-second buckets for the others (a short timeout after a
      long one): arming and disarming are a set insertion and removal. Such a timeout fires
      up to one tick late, never early.

    The reaper sleeps until the earlier of the queue's head and the first non-empty bucket.
    """

    def __init__(self, limit: int = DEFAULT_MAX_PENDING) -> None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        self.limit = limit
        self.late_replies = 0
        self.wrong_node_replies = 0
        self.refused = 0
        self.expired = 0
        self.timed_out = 0
        self.closed = False
        self._entries: dict[str, PendingEntry] = {}
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        self._buckets: dict[int, set[str]] = {}
        self._ticks: list[int] = []
        self._queue: deque[PendingEntry] = deque()  # deadlines in arming order (see above)
        self._reaper_scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._entries

    # -- entries ------------------------------------------------------------------------

    def open_request(self, request_id: str, node_id: str, deadline: float) -> PendingEntry | None:
        """A new entry for a waiting ``request()``; ``None`` when full or closed."""
        entries = self._entries  # _open, inlined: this is every request's path
        if self.closed or len(entries) >= self.limit or request_id in entries:
            self.refused += 1
            return None
        entry = entries[request_id] = PendingEntry(self, request_id, node_id, deadline, False)
        if deadline < math.inf:
            queue = self._queue  # _arm's common case, inlined
            if (
                queue
                and deadline >= queue[-1].deadline
                and len(queue) <= 2 * len(entries) + _QUEUE_SLACK
            ):
                queue.append(entry)
            else:
                self._arm(request_id, entry, deadline)
        return entry

    def open_async(self, request_id: str, node_id: str, deadline: float) -> PendingEntry | None:
        """A new ``ask_async()`` entry, reaped at ``deadline``; ``None`` when full or closed."""
        return self._open(request_id, node_id, deadline, True)

    def _open(self, key: str, node_id: str, deadline: float, is_async: bool) -> PendingEntry | None:
        entries = self._entries
        if self.closed or len(entries) >= self.limit or key in entries:
            self.refused += 1
            return None
        entry = PendingEntry(self, key, node_id, deadline, is_async)
        entries[key] = entry
        if deadline < math.inf:
            self._arm(key, entry, deadline)
        return entry

    def _arm(self, key: str, entry: PendingEntry, deadline: float) -> None:
        queue = self._queue
        if not queue:
            queue.append(entry)
            scope = self._reaper_scope
            if scope is not None and deadline < scope.deadline:
                scope.deadline = deadline
            return
        if deadline >= queue[-1].deadline:
            queue.append(entry)
            if len(queue) > 2 * len(self._entries) + _QUEUE_SLACK:
                entries = self._entries
                live = [e for e in queue if entries.get(e.key) is e]
                queue.clear()
                queue.extend(live)
            return
        tick = entry.tick = math.ceil(deadline / TICK)
        buckets = self._buckets
        bucket = buckets.get(tick)
        if bucket is None:
            bucket = buckets[tick] = set()
            heapq.heappush(self._ticks, tick)
            scope = self._reaper_scope
            if scope is not None and tick * TICK < scope.deadline:
                scope.deadline = tick * TICK
        bucket.add(key)

    def _remove(self, key: str, entry: PendingEntry) -> None:
        if self._entries.pop(key, None) is None:
            return
        tick = entry.tick
        if tick == _IN_QUEUE:
            return  # skipped when the queue reaches it
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.discard(key)
            if not bucket:
                # An answered request must not leave its bucket behind until the deadline:
                # with long timeouts that is one bucket per tick for the whole timeout.
                del self._buckets[tick]
                self._compact_ticks()

    def _compact_ticks(self) -> None:
        """Keep the heap of ticks within a constant factor of the live buckets: ticks of
        removed buckets are dropped lazily, rebuilding the heap in place (the reaper holds a
        reference to it) once they outnumber the live ones. Amortised O(1) per removal."""
        ticks = self._ticks
        if len(ticks) > 2 * len(self._buckets) + 64:
            ticks[:] = self._buckets.keys()
            heapq.heapify(ticks)

    @property
    def timer_buckets(self) -> int:
        """Queue slots, buckets and heap slots the deadlines hold now (bounded by the
        pending entries, not by the timeout length)."""
        return len(self._queue) + len(self._buckets) + len(self._ticks)

    async def wait(self, request_id: str, entry: PendingEntry) -> IncomingMessage | None:
        """Park the calling task until the entry is resolved (a reply, its deadline, a
        failed node or the node stopping). A cancelled wait removes the entry at once, so
        a reply arriving before the caller runs again is counted as late."""
        if entry.done:
            await trio.lowlevel.checkpoint()
            return entry.reply
        entry.task = trio.lowlevel.current_task()
        reply: IncomingMessage | None = await trio.lowlevel.wait_task_rescheduled(entry.abort)
        return reply

    def discard(self, request_id: str) -> None:
        """Remove a ``request()`` entry (its caller returns or was cancelled)."""
        entry = self._entries.get(request_id)
        if entry is not None:
            self._remove(request_id, entry)

    # -- ask_async() / check_inbox() ----------------------------------------------------

    def status(self, request_id: str) -> Status:
        """Where an ``ask_async()`` id stands."""
        entry = self._entries.get(request_id)
        if entry is not None and entry.is_async:
            return "ready" if entry.done else "pending"
        return "expired" if request_id in self._tombstones else "unknown"

    async def check(self, request_id: str, timeout: float, remove: bool) -> IncomingMessage | None:
        """The response to an ``ask_async()`` id, waiting up to ``timeout`` (event-driven).

        Returns ``None`` at once for an expired or unknown id.
        """
        entry = self._entries.get(request_id)
        if entry is None or not entry.is_async:
            await trio.lowlevel.checkpoint()
            return None
        if not entry.done and timeout > 0:
            if entry.event is None:
                entry.event = trio.Event()
            with trio.move_on_after(timeout):
                await entry.event.wait()
        else:
            await trio.lowlevel.checkpoint()
        if not entry.done:
            return None
        if remove and self._entries.get(request_id) is entry:
            self._remove(request_id, entry)
        return entry.reply

    def fail_async(self, request_id: str) -> None:
        """An ``ask_async()`` whose message could not be handed over: its result is ``None``."""
        entry = self._entries.get(request_id)
        if entry is not None and not entry.done:
            self._finish(request_id, entry, None)

    # -- resolution ---------------------------------------------------------------------

    def resolve(self, response: IncomingMessage) -> bool:
        """Hand a response to its waiting entry; ``False`` (counted) when it is late."""
        key = response.correlation_id
        entry = self._entries.get(key) if key is not None else None
        if entry is None or entry.done:
            self.late_replies += 1
            return False
        if response.sender_node != entry.node_id:
            self.wrong_node_replies += 1
            return False
        assert key is not None
        if entry.is_async or entry.tick != _IN_QUEUE:
            self._finish(key, entry, response)
            return True
        # _finish's common case (a request() entry whose deadline is queued), inlined
        entry.done = True
        entry.reply = response
        del self._entries[key]
        task = entry.task
        if task is not None:
            entry.task = None
            trio.lowlevel.reschedule(task, Value(response))
        elif entry.on_done is not None:
            entry.on_done(entry)
        return True

    def fail_node(self, node_id: str) -> int:
        """Every entry waiting on ``node_id`` ends with ``None`` now; returns how many."""
        hit = [(k, e) for k, e in self._entries.items() if e.node_id == node_id and not e.done]
        for key, entry in hit:
            self._finish(key, entry, None)
        return len(hit)

    def close(self) -> None:
        """The node stops: every waiter gets ``None`` and new entries are refused."""
        self.closed = True
        for key, entry in list(self._entries.items()):
            if not entry.done:
                self._finish(key, entry, None)

    def _finish(self, key: str, entry: PendingEntry, reply: IncomingMessage | None) -> None:
        entry.done = True
        entry.reply = reply
        if entry.is_async:
            if entry.event is not None:
                entry.event.set()
            return
        if entry.tick == _IN_QUEUE:  # _remove's common case, inlined
            self._entries.pop(key, None)
        else:
            self._remove(key, entry)
        task = entry.task
        if task is not None:
            entry.task = None
            trio.lowlevel.reschedule(task, Value(reply))
        elif entry.on_done is not None:
            entry.on_done(entry)

    # -- deadlines ----------------------------------------------------------------------

    async def reap_forever(self) -> None:
        """End entries at their deadlines: a ``request()`` gets ``None``, an ``ask_async()``
        entry is removed (and remembered as expired). Runs in the node's nursery."""
        ticks = self._ticks
        queue = self._queue
        entries = self._entries
        while True:
            now = trio.current_time()
            while ticks and ticks[0] * TICK <= now:
                for key in self._buckets.pop(heapq.heappop(ticks), ()):
                    entry = entries.get(key)
                    if entry is not None:
                        self._deadline_passed(key, entry)
            while queue:
                entry = queue[0]
                if entries.get(entry.key) is not entry:
                    queue.popleft()  # answered (or cancelled) meanwhile
                elif entry.deadline <= now:
                    queue.popleft()
                    self._deadline_passed(entry.key, entry)
                else:
                    break
            wake = min(
                ticks[0] * TICK if ticks else math.inf, queue[0].deadline if queue else math.inf
            )
            with trio.CancelScope(deadline=wake) as scope:
                self._reaper_scope = scope
                try:
                    await trio.sleep_forever()
                finally:
                    self._reaper_scope = None

    def _deadline_passed(self, key: str, entry: PendingEntry) -> None:
        if entry.is_async:
            self._expire(key, entry)
        elif not entry.done:
            self.timed_out += 1
            self._finish(key, entry, None)

    def _expire(self, key: str, entry: PendingEntry) -> None:
        del self._entries[key]
        self.expired += 1
        self._tombstones[key] = None
        if len(self._tombstones) > _TOMBSTONES:
            self._tombstones.popitem(last=False)
        if entry.event is not None:
            entry.event.set()

"""An agent's bounded inbox and the bookkeeping that lets a node stop it promptly.

The inbox is a small purpose-built queue rather than a Trio memory channel: it is the hot path
of every same-node message and one exists per agent, so it allocates its buffer lazily, hands
a message straight to a waiting receiver, and parks tasks with
``trio.lowlevel.wait_task_rescheduled`` (cancellation-safe: an aborted waiter is removed
before it could be handed anything).

``capacity`` bounds the queue. A sender finding it full either gives up at once
(:meth:`AgentInbox.put_nowait` returns ``False``) or waits for space until a deadline
(:meth:`AgentInbox.put`) — what a full inbox means for each call is decided by the router.

Stopping must not cut a handler off in the middle of its work, yet must not wait for an
agent that is merely idle. So every place where an agent waits for work (``peers.receive()``,
the default loop, the mailbox loop) counts itself as *waiting*; once the node asks the agent
to stop, the agent's run scope is cancelled as soon as all of its receivers wait — at once
for an idle agent, right after the last in-flight handler for a busy one. Work already queued
is not started after the stop request. The node's grace period bounds the whole thing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from outcome import Value

from .messages import IncomingMessage

__all__ = ["AgentInbox", "InboxSender"]

T = TypeVar("T")
_Abort = trio.lowlevel.Abort


class AgentInbox:
    """The bounded queue of one agent plus its stop state."""

    __slots__ = (
        "_queue",
        "_receivers",
        "_senders",
        "capacity",
        "closed",
        "run_scope",
        "stopping",
        "waiting",
        "workers",
    )

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"inbox capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.closed = False
        self._queue: deque[IncomingMessage] | None = None
        # waiters are few (one per worker, a few blocked senders): small lists beat deques
        self._receivers: list[trio.lowlevel.Task] | None = None
        self._senders: list[tuple[trio.lowlevel.Task, IncomingMessage]] | None = None
        self.run_scope: trio.CancelScope | None = None
        self.stopping = False
        self.waiting = 0
        self.workers = 0

    def __len__(self) -> int:
        return len(self._queue) if self._queue else 0

    @property
    def tx(self) -> InboxSender:
        """A memory-channel-shaped sending face (``send_nowait`` / ``send``), for code
        written against ``trio.MemorySendChannel``."""
        return InboxSender(self)

    # -- sending ------------------------------------------------------------------------

    def put_nowait(self, message: IncomingMessage) -> bool:
        """Queue ``message`` (or hand it to a waiting receiver); ``False`` when full or
        closed."""
        if self.closed:
            return False
        receivers = self._receivers
        if receivers:
            trio.lowlevel.reschedule(receivers.pop(0), Value(message))
            return True
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self.capacity:
            return False
        queue.append(message)
        return True

    async def put(self, message: IncomingMessage, deadline: float) -> bool:
        """Wait for space until ``deadline``; ``True`` once queued, ``False`` when the
        deadline passed or the inbox closed meanwhile."""
        if self.put_nowait(message):
            await trio.lowlevel.checkpoint()
            return True
        if self.closed:
            await trio.lowlevel.checkpoint()
            return False
        with trio.move_on_at(deadline):
            senders = self._senders
            if senders is None:
                senders = self._senders = []
            entry = (trio.lowlevel.current_task(), message)
            senders.append(entry)

            def abort(_: object) -> trio.lowlevel.Abort:
                senders.remove(entry)
                return _Abort.SUCCEEDED

            queued: bool = await trio.lowlevel.wait_task_rescheduled(abort)
            return queued
        return False

    # -- receiving ----------------------------------------------------------------------

    def get_nowait(self) -> IncomingMessage | None:
        """The next message, or ``None`` when there is none (or the agent is stopping)."""
        queue = self._queue
        if not queue or self.stopping:
            return None
        message = queue.popleft()
        senders = self._senders
        if senders:
            task, waiting_message = senders.pop(0)
            queue.append(waiting_message)
            trio.lowlevel.reschedule(task, Value(True))
        elif not queue:
            self._queue = None  # an idle agent keeps no buffer
        return message

    async def wait(self) -> IncomingMessage | None:
        """Wait for the next message, counted as idle; ``None`` once the inbox is closed."""
        message = self.get_nowait()
        if message is not None:
            return message
        return await self.park()

    async def park(
        self,
        task: trio.lowlevel.Task | None = None,
        abort: Callable[[object], trio.lowlevel.Abort] | None = None,
    ) -> IncomingMessage | None:
        """Wait for a message known not to be queued yet (see :meth:`wait`). A loop that
        parks again and again passes its task and :meth:`receiver_abort` for it, built once,
        instead of a fresh closure per wait."""
        self.waiting += 1
        try:
            if self.stopping:
                self.quiesce_if_stopping()
                await trio.sleep_forever()
            if self.closed:
                await trio.lowlevel.checkpoint()
                return None
            receivers = self._receivers
            if receivers is None:
                receivers = self._receivers = []
            if task is None or abort is None:
                task = trio.lowlevel.current_task()
                abort = self.receiver_abort(task)
            receivers.append(task)
            received: IncomingMessage | None = await trio.lowlevel.wait_task_rescheduled(abort)
            return received
        finally:
            self.waiting -= 1

    def receiver_abort(self, task: trio.lowlevel.Task) -> Callable[[object], trio.lowlevel.Abort]:
        """The abort function of ``task`` parked in :meth:`park`: a cancelled receiver leaves
        the waiting list before anything could be handed to it."""

        def abort(_: object) -> trio.lowlevel.Abort:
            receivers = self._receivers
            if receivers is not None:
                receivers.remove(task)
            return _Abort.SUCCEEDED

        return abort

    async def get(self, timeout: float | None) -> IncomingMessage | None:
        """The next message; ``timeout=0`` never blocks, ``None`` waits without limit."""
        message = self.get_nowait()
        if message is not None:
            await trio.lowlevel.checkpoint_if_cancelled()
            return message
        if timeout == 0:
            await trio.lowlevel.checkpoint()
            return None
        if timeout is None:
            return await self.wait()
        with trio.move_on_after(timeout):
            return await self.wait()
        return None

    async def idle(self, wait: Callable[[], Awaitable[T]]) -> T:
        """Await ``wait()`` counted as idle: a stop request may cancel the agent meanwhile.
        Once stopping, ``wait()`` is not started at all (no new work is claimed)."""
        self.waiting += 1
        try:
            if self.stopping:
                self.quiesce_if_stopping()
                await trio.sleep_forever()
            return await wait()
        finally:
            self.waiting -= 1

    # -- lifecycle ----------------------------------------------------------------------

    def request_stop(self) -> None:
        """The node stops: take no new work; end the run once every receiver is idle."""
        self.stopping = True
        self.quiesce_if_stopping()

    def quiesce_if_stopping(self) -> None:
        """Cancel the run scope when a stop was requested and nothing is in flight."""
        if self.stopping and self.waiting >= self.workers and self.run_scope is not None:
            self.run_scope.cancel()

    def close(self) -> None:
        """The agent is gone: waiting receivers get ``None``, waiting senders ``False``,
        later sends fail at once. Queued messages are dropped."""
        self.closed = True
        if self._receivers:
            for task in self._receivers:
                trio.lowlevel.reschedule(task, Value(None))
            self._receivers.clear()
        if self._senders:
            for task, _ in self._senders:
                trio.lowlevel.reschedule(task, Value(False))
            self._senders.clear()
        self._queue = None


class InboxSender:
    """Sends into an :class:`AgentInbox` with the exceptions of a Trio memory channel:
    ``trio.WouldBlock`` when full, ``trio.BrokenResourceError`` when the agent is gone."""

    __slots__ = ("_inbox",)

    def __init__(self, inbox: AgentInbox) -> None:
        self._inbox = inbox

    def send_nowait(self, message: IncomingMessage) -> None:
        """Queue without waiting."""
        if self._inbox.put_nowait(message):
            return
        if self._inbox.closed:
            raise trio.BrokenResourceError("the agent's inbox is closed")
        raise trio.WouldBlock

    async def send(self, message: IncomingMessage) -> None:
        """Queue, waiting for space as long as it takes (bound it with a cancel scope)."""
        if not await self._inbox.put(message, float("inf")):
            raise trio.BrokenResourceError("the agent's inbox is closed")

"""The two hand-off points between Trio and the bridge's I/O thread.

Each direction is a list guarded by a lock plus one wake-up, rung only when the list goes from
empty to non-empty (or, thread to Trio, when no wake-up is already pending), so that a burst
costs one wake-up, and the receiving side takes the whole list in one swap:

* Trio -> thread: :class:`Outbox` + :class:`Doorbell` (an ``eventfd``, or a socket pair where
  there is none), whose file descriptor the I/O thread polls together with its ZeroMQ sockets.
  Only commands travel this way (the members ZAP admits, stop, a resume of reading): frames
  leave on DEALERs the Trio thread owns (:mod:`.outlets`), with no wake-up of the thread.
* thread -> Trio: :class:`Inbox` and a doorbell of its own, on whose descriptor the Trio
  consumer waits with ``trio.lowlevel.wait_readable``: the thread never touches a Trio object.
  (Measured on the 2-core development VM: a thread -> Trio wake-up through
  ``TrioToken.run_sync_soon`` costs ~55 µs round trip, through ``wait_readable`` ~14 µs,
  because the former goes through Trio's entry-queue task first.)

Neither side ever sleeps in a loop or polls: each blocks in its own event loop until rung.
Bounds: the Trio -> thread side carries a handful of commands; the other is enforced here
(:meth:`Inbox.room`: the thread stops reading when the inbox is full, and the Trio consumer's
swap re-arms it).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

__all__ = ["Doorbell", "Inbox", "Outbox"]

T = TypeVar("T")


class Doorbell:
    """A file descriptor the I/O thread polls; rung from Trio, cleared by the thread."""

    def __init__(self) -> None:
        self._pair: tuple[socket.socket, socket.socket] | None = None
        if hasattr(os, "eventfd"):
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._write_fd = self._fd
        else:  # pragma: no cover - platforms without eventfd
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._pair = (reader, writer)
            self._fd = reader.fileno()
            self._write_fd = writer.fileno()
        self.closed = False

    def fileno(self) -> int:
        """The descriptor to poll for readability."""
        return self._fd

    def ring(self) -> None:
        """Make the descriptor readable (idempotent until cleared)."""
        if self.closed:
            return
        try:
            if self._pair is None:
                os.eventfd_write(self._write_fd, 1)
            else:  # pragma: no cover - platforms without eventfd
                self._pair[1].send(b"\0")
        except BlockingIOError:  # pragma: no cover - counter saturated: already readable
            pass

    def clear(self) -> None:
        """Consume every ring so far (called by the polling side)."""
        if self.closed:
            return
        try:
            if self._pair is None:
                os.eventfd_read(self._fd)
            else:  # pragma: no cover - platforms without eventfd
                while self._pair[0].recv(4096):
                    pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Release the descriptor(s); rings after this are ignored."""
        if self.closed:
            return
        self.closed = True
        if self._pair is None:
            os.close(self._fd)
        else:  # pragma: no cover - platforms without eventfd
            for sock in self._pair:
                sock.close()


class Outbox(Generic[T]):
    """Items from Trio to the I/O thread; the doorbell rings on empty -> non-empty only."""

    def __init__(self, doorbell: Doorbell) -> None:
        self._lock = threading.Lock()
        self._items: list[T] = []
        self._armed = True  # True: the next put must ring (the thread may be asleep)
        self._doorbell = doorbell

    def put(self, item: T) -> None:
        """Queue one item (Trio side)."""
        with self._lock:
            self._items.append(item)
            ring = self._armed
            self._armed = False
        if ring:
            self._doorbell.ring()

    def take(self) -> list[T]:
        """Clear the doorbell, then take everything queued so far and re-arm it (thread
        side): a put after the clear rings again, so none is missed."""
        self._doorbell.clear()
        with self._lock:
            items = self._items
            self._items = []
            self._armed = True
        return items


class Inbox(Generic[T]):
    """Bounded items from the I/O thread to Trio, woken through a doorbell of their own.

    The single Trio consumer waits on the doorbell's descriptor with
    ``trio.lowlevel.wait_readable`` -- one scheduler step, no detour through Trio's entry
    queue -- and swaps the whole list. The thread rings only when the list goes from empty to
    non-empty; when :meth:`room` reaches 0 the inbox marks itself paused and the consumer's
    next take calls ``on_resume`` (which rings the thread, so it reads again).
    """

    def __init__(self, capacity: int, on_resume: Callable[[], None]) -> None:
        if capacity < 1:
            raise ValueError(f"inbox capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._doorbell = Doorbell()
        self._lock = threading.Lock()
        self._items: list[T] = []
        self._armed = True
        self._paused = False
        self._closed = False
        self._stale = False  # the doorbell may still be readable for items already taken
        self._on_resume = on_resume

    # -- thread side ------------------------------------------------------------------------
    def room(self) -> int:
        """How many items the thread may still post (0 marks the inbox paused)."""
        with self._lock:
            room = self.capacity - len(self._items)
            if room <= 0:
                self._paused = True
            return room

    def post(self, items: list[T]) -> int:
        """Hand a batch to Trio (``items`` must fit in :meth:`room`); returns the room left,
        and at 0 marks the inbox paused exactly like :meth:`room` does."""
        with self._lock:
            if items:
                self._items.extend(items)
            ring = self._armed and bool(items)
            if ring:
                self._armed = False
            room = self.capacity - len(self._items)
            if room <= 0:
                self._paused = True
        if ring:
            self._doorbell.ring()
        return room

    # -- Trio side --------------------------------------------------------------------------
    def take_nowait(self) -> list[T]:
        """Everything posted so far (possibly nothing), re-arming a paused thread."""
        if self._stale or not self._armed:
            # A ring is owed, done, or left over from the last wake-up: consume it right
            # before the swap, so that a ring for a later post is never lost. With nothing
            # rung, the (GIL-releasing) system call is skipped; a ring racing past these
            # unlocked reads only costs :meth:`take` one spurious wake-up.
            self._stale = False
            self._doorbell.clear()
        return self._swap()

    def _swap(self) -> list[T]:
        with self._lock:
            items = self._items
            self._items = []
            self._armed = True
            resume = self._paused and bool(items)
            if resume:
                self._paused = False
        if resume:
            self._on_resume()
        return items

    async def take(self) -> list[T]:
        """Wait for at least one item and take all of them; ``[]`` once closed.

        Woken, it swaps without clearing the doorbell first: the system call would release
        the GIL to the I/O thread (which has just rung, and wants it) while the items wait.
        The ring is marked stale and consumed before the next swap instead.

        Single consumer: a second concurrent caller gets ``trio.BusyResourceError``.
        """
        if self._closed:
            return []
        items = self.take_nowait()
        while not items:
            try:
                await trio.lowlevel.wait_readable(self._doorbell.fileno())
            except trio.ClosedResourceError:
                return []
            if self._closed:
                return []
            self._stale = True
            items = self._swap()
            if not items:  # a ring whose items were taken already: never spin on it
                items = self.take_nowait()
        return items

    def close(self) -> None:
        """Wake the consumer for good: :meth:`take` returns ``[]`` from now on (Trio side).

        The descriptor stays open until :meth:`release`, which the owner calls once the
        thread that rings it has ended.
        """
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._doorbell.fileno())

    def release(self) -> None:
        """Close the descriptor; only once no thread can ring it any more."""
        self._closed = True
        self._doorbell.close()

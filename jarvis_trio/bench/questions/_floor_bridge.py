"""The cheapest ZeroMQ-to-Trio bridge the design card allows, written from scratch.

Used by ``bench_floors`` (and its far process, ``floors_peer``) to measure what a node built
the constrained way cannot go below, with no code of the runtime in the path:

* a ROUTER, bound on loopback, that only a dedicated I/O thread touches: the thread blocks in
  ``recv`` (no poll loop, no timeout: the cheapest blocking wait ZeroMQ offers), drains what
  else is already queued without blocking, appends it to a deque and rings a doorbell once;
* the Trio side sleeps on the doorbell and takes the frames from the deque;
* outbound frames go out on a DEALER that only the Trio thread touches (``send`` from the
  Trio thread, as the runtime's outlets do).

The doorbells are the candidates for the hand-over: an eventfd or a socket pair that the Trio
task waits on with ``trio.lowlevel.wait_readable``, or ``TrioToken.run_sync_soon`` of a
callback that reschedules the parked task. The I/O thread is stopped by a message from an
``inproc`` DEALER with a reserved routing id, so that its loop needs no second socket to poll.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from itertools import count
from typing import Protocol, cast

import trio
import zmq

__all__ = ["DOORBELLS", "Doorbell", "Endpoint", "make_doorbell", "open_endpoint"]

DOORBELLS = ("eventfd", "socketpair", "run_sync_soon")
_STOP_ID = b"\x00floors-stop"
_names = count()


class Doorbell(Protocol):
    """Rung by the I/O thread after it queued frames; waited on by the Trio task."""

    def ring(self) -> None: ...

    async def wait(self) -> None: ...

    def close(self) -> None: ...


class _EventfdBell:
    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        fd = self._fd
        write = os.eventfd_write

        def ring() -> None:
            write(fd, 1)

        self.ring: Callable[[], None] = ring

    async def wait(self) -> None:
        await trio.lowlevel.wait_readable(self._fd)
        with suppress(BlockingIOError):  # already consumed by an earlier wake-up
            os.eventfd_read(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class _SocketpairBell:
    def __init__(self) -> None:
        self._out, self._in = socket.socketpair()
        self._in.setblocking(False)
        send = self._out.send

        def ring() -> None:
            send(b"\0")

        self.ring: Callable[[], None] = ring

    async def wait(self) -> None:
        await trio.lowlevel.wait_readable(self._in)
        with suppress(BlockingIOError):
            self._in.recv(4096)

    def close(self) -> None:
        self._out.close()
        self._in.close()


class _TokenBell:
    """``run_sync_soon`` of a callback that reschedules the parked task, if one is parked."""

    def __init__(self) -> None:
        self._waiter: trio.lowlevel.Task | None = None
        token = trio.lowlevel.current_trio_token()
        soon = token.run_sync_soon
        wake = self._wake

        def ring() -> None:
            soon(wake)

        self.ring: Callable[[], None] = ring

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> None:
        self._waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def close(self) -> None:
        self._waiter = None


def make_doorbell(kind: str) -> Doorbell:
    """A doorbell of ``kind`` (one of :data:`DOORBELLS`); call it in the Trio thread."""
    if kind == "eventfd":
        return _EventfdBell()
    if kind == "socketpair":
        return _SocketpairBell()
    if kind == "run_sync_soon":
        return _TokenBell()
    raise ValueError(f"unknown doorbell {kind!r}")


def _pump(router: zmq.Socket[bytes], inbox: deque[bytes], ring: Callable[[], None]) -> None:
    """The I/O thread: block in ``recv``, drain what else is queued (``EVENTS``, cheaper than
    a non-blocking ``recv`` that raises when nothing is left), ring once per batch."""
    recv = router.recv
    append = inbox.append
    events = cast(Callable[[int], int], router.getsockopt)
    EVENTS, POLLIN = zmq.EVENTS, zmq.POLLIN
    while True:
        sender = recv()
        frame = recv()
        if sender == _STOP_ID:
            return
        append(frame)
        while events(EVENTS) & POLLIN:
            sender = recv()
            frame = recv()
            if sender == _STOP_ID:
                ring()
                return
            append(frame)
        ring()


class Endpoint:
    """One node's side: its ROUTER's port, its DEALER, the frames its I/O thread received."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], port: int, bell: Doorbell) -> None:
        self.port = port
        self.inbox: deque[bytes] = deque()
        self._bell = bell
        self._dealer = ctx.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self.send: Callable[[bytes], object] = self._dealer.send

    def connect(self, port: int) -> None:
        """Point this side's DEALER at the other side's ROUTER."""
        self._dealer.connect(f"tcp://127.0.0.1:{port}")

    async def receive(self) -> bytes:
        """The next frame the I/O thread handed over (sleeping on the doorbell until then)."""
        inbox = self.inbox
        while not inbox:
            await self._bell.wait()
        return inbox.popleft()

    async def receive_batch(self) -> list[bytes]:
        """Every frame handed over so far, at least one."""
        inbox = self.inbox
        while not inbox:
            await self._bell.wait()
        batch = list(inbox)
        inbox.clear()
        return batch

    def close(self) -> None:
        self._dealer.close()


@asynccontextmanager
async def open_endpoint(
    ctx: zmq.Context[zmq.Socket[bytes]], doorbell: str
) -> AsyncIterator[Endpoint]:
    """A bound ROUTER with its I/O thread, and a DEALER; all stopped and closed on exit."""
    bell = make_doorbell(doorbell)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        stop_address = f"inproc://floors-stop-{os.getpid()}-{next(_names)}"
        router.bind(stop_address)
        endpoint = Endpoint(ctx, port, bell)
    except BaseException:
        router.close()
        bell.close()
        raise
    thread = threading.Thread(
        target=_pump, args=(router, endpoint.inbox, bell.ring), name="floors-io", daemon=True
    )
    thread.start()
    try:
        yield endpoint
    finally:
        stopper = ctx.socket(zmq.DEALER)
        stopper.setsockopt(zmq.LINGER, 0)
        stopper.setsockopt(zmq.ROUTING_ID, _STOP_ID)
        stopper.connect(stop_address)
        stopper.send(b"")
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(thread.join, 5.0)
        stopper.close()
        endpoint.close()
        router.close()
        bell.close()
        if thread.is_alive():
            raise RuntimeError("the I/O thread did not stop")

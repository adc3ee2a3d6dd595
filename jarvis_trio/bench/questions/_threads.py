"""The floor of every two-thread design: a bare round trip between two plain threads.

One byte each way over a socket pair, the echoing thread blocked in ``recv``: two thread
wake-ups and nothing else. The questions that compare a cross-thread path with it measure both
in alternating blocks inside one run, so that both see the same machine load (on a shared
machine the wake-up cost moves several-fold with the load, a minute apart).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ThreadEcho", "thread_echo"]


class ThreadEcho:
    """The calling side of an echo thread on a socket pair (see :func:`thread_echo`)."""

    def __init__(self, left: socket.socket) -> None:
        self._left = left

    def round_trips(self, count: int) -> list[float]:
        """``count`` one-byte round trips, each timed (seconds). Blocks the calling thread."""
        left = self._left
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            left.send(b"x")
            left.recv(1)
            samples.append(time.perf_counter() - started)
        return samples


@contextmanager
def thread_echo() -> Iterator[ThreadEcho]:
    """``with thread_echo() as echo: echo.round_trips(n)``; the thread ends with the block."""
    left, right = socket.socketpair()

    def echo() -> None:
        while (data := right.recv(1)) not in (b"q", b""):
            right.send(data)

    thread = threading.Thread(target=echo, name="bare-echo", daemon=True)
    thread.start()
    try:
        yield ThreadEcho(left)
    finally:
        left.send(b"q")
        thread.join(5)
        left.close()
        right.close()

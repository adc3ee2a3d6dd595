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
from types import TracebackType

__all__ = ["ThreadEcho"]


class ThreadEcho:
    """An echo thread on a socket pair; ``with ThreadEcho() as echo: echo.round_trips(n)``."""

    def __init__(self) -> None:
        self._left, self._right = socket.socketpair()
        self._thread = threading.Thread(target=self._echo, name="bare-echo", daemon=True)

    def _echo(self) -> None:
        right = self._right
        while (data := right.recv(1)) not in (b"q", b""):
            right.send(data)

    def __enter__(self) -> ThreadEcho:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._left.send(b"q")
        self._thread.join(5)
        self._left.close()
        self._right.close()

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

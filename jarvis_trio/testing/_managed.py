"""``with server:`` for the servers of this package: started on entry, closed on exit."""

from __future__ import annotations

import contextlib
import subprocess
from types import TracebackType
from typing import Self

__all__ = ["Managed", "stop_process"]


def stop_process(process: subprocess.Popen[str], *, kill: bool = False) -> None:
    """Stop a server process (SIGTERM, or SIGKILL as in a crash), wait for it -- killing it
    after 10 s if it does not stop -- and close its output pipe."""
    if process.poll() is None:
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10.0)
    if process.stdout is not None:
        with contextlib.suppress(OSError):
            process.stdout.close()


class Managed:
    """A server a test starts and must close whatever happens: ``start()`` on entry,
    ``close()`` on exit (also after a failure inside the block)."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

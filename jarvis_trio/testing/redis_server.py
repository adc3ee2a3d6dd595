"""A real ``redis-server`` for tests and benchmarks: free port, private directory, restartable.

::

    with RedisServer(persistent=True) as server:
        config = MeshConfig.load({"redis_url": server.url})
        ...
        server.stop()      # or server.kill() to simulate a crash
        server.start()     # same port, same directory: with persistence the data is back

``extra_args`` are appended to the command line (``--cluster-enabled yes`` for a cluster
node); with ``sentinel_config`` the process is a Sentinel running that configuration.
With ``persistent=True`` the server writes an append-only file with ``appendfsync always``
(every acknowledged write is on disk before the reply); without it nothing is written to
disk. Readiness is detected from the server's own log line ("Ready to accept connections"),
read by a small thread from its stdout, so starting never sleeps-and-retries. The same thread
rings a :class:`LogBell` (when one is given) on every line: a group of servers waits on it for
the changes Redis reports in its log.

The methods block (they start and stop a process); from Trio call them through
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from ._managed import Managed, stop_process
from .ports import free_port

__all__ = ["LogBell", "RedisServer", "RedisServerError", "find_program", "find_redis_server"]

_READY = "Ready to accept connections"
_SENTINEL_READY = "+monitor master"


class RedisServerError(RuntimeError):
    """The redis-server binary is missing or the server did not start."""


def find_program(name: str) -> str | None:
    """Path of the program ``name``: on ``PATH``, else in /usr/bin (where the distribution's
    packages put it), else ``None``."""
    found = shutil.which(name)
    if found:
        return found
    fallback = Path("/usr/bin") / name
    return str(fallback) if fallback.exists() else None


def find_redis_server() -> str | None:
    """Path of the ``redis-server`` binary, or ``None`` when it is not installed."""
    return find_program("redis-server")


class LogBell:
    """Rings each time one of the servers it was given to logs a line or exits.

    Redis logs the changes of state a test waits for (a replica in sync, the cluster state,
    what a Sentinel learns); a waiter notes :attr:`rung`, checks its condition, and if that
    does not hold yet sleeps in :meth:`wait_past` until a server has something new to say.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.rung = 0

    def ring(self) -> None:
        with self._changed:
            self.rung += 1
            self._changed.notify_all()

    def wait_past(self, rung: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ring after the ``rung``-th; ``False`` if none."""
        with self._changed:
            return self._changed.wait_for(lambda: self.rung > rung, max(timeout, 0.0))


class RedisServer(Managed):
    """One ``redis-server`` process on 127.0.0.1, restartable on the same port and data."""

    def __init__(
        self,
        *,
        persistent: bool = False,
        directory: str | Path | None = None,
        port: int | None = None,
        executable: str | None = None,
        start_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
        sentinel_config: str | None = None,
        bell: LogBell | None = None,
    ) -> None:
        binary = executable or find_redis_server()
        if binary is None:
            raise RedisServerError("redis-server is not installed (looked in PATH and /usr/bin)")
        self.executable = binary
        self.persistent = persistent
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.sentinel_config = sentinel_config
        self.bell = bell
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="jarvis-redis-"))
        self.port = port or free_port()
        self._fixed_port = port is not None
        self._process: subprocess.Popen[str] | None = None
        self._log: deque[str] = deque(maxlen=200)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        if self.sentinel_config is not None:
            conf = self.directory / "sentinel.conf"
            if not conf.exists():  # a restart keeps what the sentinel learnt
                conf.write_text(
                    f'port {self.port}\nbind 127.0.0.1\ndir {self.directory}\nlogfile ""\n'
                    + self.sentinel_config
                )
            return [self.executable, str(conf), "--sentinel", *self.extra_args]
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--save", "",
            "--logfile", "",
            "--loglevel", "notice",
        ]  # fmt: skip
        if self.persistent:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        return command + self.extra_args

    def start(self) -> None:
        """Start the server and return once it accepts connections.

        On the first start a port taken in the meantime is replaced by another free one; a
        restart keeps its port (clients reconnect to the same URL).
        """
        if self.running:
            return
        attempts = 1 if (self._fixed_port or self._process is not None) else 3
        for attempt in range(attempts):
            if self._launch():
                return
            if attempt + 1 < attempts:
                self.port = free_port()
        log = "\n".join(self._log)
        raise RedisServerError(f"redis-server did not start on port {self.port}:\n{log}")

    def _launch(self) -> bool:
        ready = threading.Event()
        process = subprocess.Popen(
            self._command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.directory,
        )
        self._process = process

        def pump() -> None:
            assert process.stdout is not None
            with contextlib.suppress(ValueError, OSError):  # closed by stop_process()
                for line in process.stdout:
                    self._log.append(line.rstrip())
                    if self.bell is not None:
                        self.bell.ring()
                    if (_SENTINEL_READY if self.sentinel_config is not None else _READY) in line:
                        ready.set()
            ready.set()  # the process ended: wake the waiter, which then sees it is gone
            if self.bell is not None:
                self.bell.ring()

        threading.Thread(target=pump, name=f"redis-server-{self.port}-log", daemon=True).start()
        if ready.wait(self.start_timeout) and process.poll() is None:
            return True
        stop_process(process, kill=True)
        self._process = None
        return False

    def stop(self) -> None:
        """Stop gracefully (SIGTERM); with persistence every acknowledged write is kept."""
        if self._process is not None:
            stop_process(self._process, kill=False)

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    def kill(self) -> None:
        """Kill the server (SIGKILL), as in a crash."""
        if self._process is not None:
            stop_process(self._process, kill=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory if this object created it."""
        self.stop()
        self._process = None
        if self._own_dir:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.directory)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server logged (for failure messages)."""
        return "\n".join(list(self._log)[-lines:])

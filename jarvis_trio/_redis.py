"""Redis from Trio, without ever blocking the event loop.

redis-py's asyncio client does not run under Trio, so every command runs with redis-py's
synchronous client in a Trio worker thread (``trio.to_thread.run_sync``):

* Ordinary commands share one connection pool whose size equals the thread limiter's, so a
  thread never waits for a connection. They are short (bounded by ``command_timeout``) and
  are not abandoned on cancellation: a cancelled caller waits for its command to finish, so a
  pipeline is never left half-read on a pooled connection.
* Blocking reads (``XREADGROUP`` / ``XREAD`` with ``BLOCK``) each get a *dedicated*
  connection, never shared, under their own limiter, so readers waiting for mail cannot
  starve writers. The server-side ``BLOCK`` is bounded (``max_block``), so the thread always
  returns soon. On cancellation the read is abandoned (``abandon_on_cancel=True``): the Trio
  side shuts the dedicated socket down at once — the server drops the blocked client instead
  of handing it the next message — and the thread, when it returns, closes the connection
  instead of reusing it. Whatever the abandoned read may have claimed is the caller's to
  recover (the mailbox re-reads its pending list); see :meth:`RedisClient.blocking`.
* redis-py's own retries are switched off: a worker thread must never sleep through a
  backoff. Retrying with backoff happens on the Trio side (:class:`Backoff`), where it can be
  cancelled.

The only thing a worker thread shares with Trio is a :class:`threading.Lock`-guarded flag
per blocking read; no Trio object is touched from a thread.

A small RESP client on Trio sockets was considered: it would avoid threads, but would have
to re-implement connection setup, authentication, TLS and reply parsing that redis-py already
gets right. With pipelining, one thread round trip carries hundreds of commands, so the
thread hop is not what limits throughput.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.exceptions
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import RedisUnavailable

__all__ = ["Backoff", "RedisClient", "is_transient", "open_redis_client", "redact_url"]

log = logging.getLogger("jarvis_trio.redis")

T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError while an AOF is replayed
    redis.exceptions.TimeoutError,
    OSError,
)


def is_transient(error: BaseException) -> bool:
    """True for errors that mean "Redis is not reachable right now": retry later."""
    return isinstance(error, TRANSIENT_ERRORS)


def redact_url(url: str) -> str:
    """``url`` without its password, for log lines and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_shared_rng = random.Random()  # seeding a Random costs far more than a backoff step


class Backoff:
    """Exponential backoff with full jitter: ``initial``, doubling up to ``cap`` seconds."""

    def __init__(
        self, initial: float = 0.05, cap: float = 2.0, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.cap = cap
        self._rng = rng or _shared_rng
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * (1 << self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self._attempt = 0

    async def sleep(self) -> None:
        await trio.sleep(self.next_delay())


class _Abandoned(Exception):
    """Raised in a worker thread whose read was abandoned before it was sent."""


class _BlockingRead:
    """The hand-over between the Trio side and the thread of one blocking read."""

    __slots__ = ("abandoned", "client", "finished", "lock")

    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.abandoned = False
        self.finished = False


class RedisClient:
    """Trio access to one Redis server (see the module docstring for the threading rules)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        blocking_slots: int = 64,
        connect_timeout: float = 1.0,
        command_timeout: float = 5.0,
        max_block: float = 2.0,
    ) -> None:
        self.url = url
        self.safe_url = redact_url(url)
        self.max_block = max_block
        self._options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
        }
        self._pool = redis.ConnectionPool.from_url(
            url, max_connections=pool_size, socket_timeout=command_timeout, **self._options
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._limiter = trio.CapacityLimiter(pool_size)
        self._blocking_limiter = trio.CapacityLimiter(blocking_slots)
        self._blocking_timeout = max_block + command_timeout
        # dedicated connections of finished blocking reads, kept for the next one; at most
        # ``blocking_slots`` (as many as can be in use at once), the rest are closed
        self._idle: list[redis.Redis] = []
        self._blocking_slots = blocking_slots
        self._closed = False

    def __repr__(self) -> str:
        return f"<RedisClient {self.safe_url}>"

    async def run(self, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(client)`` in a worker thread with a pooled connection."""
        return await trio.to_thread.run_sync(fn, self._client, limiter=self._limiter)

    async def execute(self, *args: Any) -> Any:
        """One command, its reply parsed by redis-py."""
        return await self.run(lambda client: cast(Any, client).execute_command(*args))

    async def ping(self) -> None:
        await self.run(lambda client: client.ping())

    def _dedicated(self) -> redis.Redis:
        pool = redis.ConnectionPool.from_url(
            self.url, max_connections=1, socket_timeout=self._blocking_timeout, **self._options
        )
        return redis.Redis(connection_pool=pool, single_connection_client=True)

    async def blocking(self, fn: Callable[[redis.Redis], T]) -> T:
        """Run a blocking read ``fn(client)`` on a dedicated connection.

        ``fn`` must bound its server-side wait (``BLOCK`` ≤ :attr:`max_block` seconds). If the
        caller is cancelled the read is abandoned: the socket is shut down so the server
        drops the client, and the connection is closed and never reused. A reply that
        arrives anyway is discarded; a caller whose read has side effects in Redis (a
        consumer group's pending list) must recover them itself.
        """
        handle = _BlockingRead(self._idle.pop() if self._idle else None)

        def work() -> T:
            try:
                with handle.lock:
                    if handle.abandoned:
                        raise _Abandoned
                client = handle.client or self._dedicated()
                with handle.lock:
                    # From here on the Trio side can see the client and shut its socket.
                    handle.client = client
                    if handle.abandoned:
                        raise _Abandoned
                return fn(client)
            finally:
                with handle.lock:
                    handle.finished = True
                    abandoned = handle.abandoned
                if abandoned and handle.client is not None:
                    handle.client.close()

        try:
            result = await trio.to_thread.run_sync(
                work, limiter=self._blocking_limiter, abandon_on_cancel=True
            )
        except trio.Cancelled:
            with handle.lock:
                handle.abandoned = True
                finished = handle.finished
                client = handle.client
            if finished:
                if client is not None:
                    client.close()
            else:
                _shutdown(client)
            raise
        except BaseException:
            if handle.client is not None:
                handle.client.close()
            raise
        if handle.client is not None:
            if self._closed or len(self._idle) >= self._blocking_slots:
                handle.client.close()
            else:
                self._idle.append(handle.client)
        return result

    def close(self) -> None:
        """Close every connection this client holds (sockets only; nothing blocks)."""
        self._closed = True
        for client in self._idle:
            client.close()
        self._idle.clear()
        self._pool.disconnect()


def _shutdown(client: redis.Redis | None) -> None:
    """Shut the socket of a dedicated connection down from the Trio thread.

    ``shutdown`` (not ``close``) is safe while another thread is blocked reading the socket:
    its read returns at once and the file descriptor stays owned by that thread, which closes
    it. The socket is redis-py's ``Connection._sock``; if it is absent the read has not
    connected yet or has already finished.
    """
    connection = getattr(client, "connection", None) if client is not None else None
    sock = getattr(connection, "_sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


async def open_redis_client(url: str, **options: Any) -> RedisClient:
    """A :class:`RedisClient` for ``url``, after one successful ``PING``.

    Raises :class:`~jarvis_trio.errors.RedisUnavailable` naming the (password-free) URL when
    the server cannot be reached or refuses the connection.
    """
    client = RedisClient(url, **options)
    try:
        await client.ping()
    except (redis.exceptions.RedisError, OSError) as error:
        client.close()
        raise RedisUnavailable(f"Redis at {client.safe_url} is unreachable: {error}") from error
    return client

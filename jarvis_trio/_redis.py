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

Three deployments are reached through the same :class:`RedisClient` (see
:func:`parse_redis_url`): one server (``redis://``, ``rediss://``, ``unix://``), a Redis
Cluster (``redis+cluster://host:port,host:port``: redis-py's ``RedisCluster`` routes each
command by its key's slot and follows ``MOVED``/``ASK``; :meth:`RedisClient.run_grouped` runs
one pipeline per node for batches), and Sentinel (``redis+sentinel://host:port,.../service``:
every new connection asks the Sentinels for the current master, so a failover is followed
on the next reconnect).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
import redis.exceptions
import trio
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from .errors import RedisUnavailable

__all__ = [
    "Backoff",
    "RedisClient",
    "RedisTarget",
    "ReplicationShortfall",
    "is_transient",
    "open_redis_client",
    "parse_redis_url",
    "redact_url",
]

log = logging.getLogger("jarvis_trio.redis")

T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError while an AOF is replayed
    redis.exceptions.TimeoutError,
    OSError,
    # a cluster between two states: a master failing over, a slot moving, a node demoted
    redis.exceptions.ClusterDownError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ReadOnlyError,
)


class ReplicationShortfall(redis.exceptions.RedisError):
    """``WAIT`` counted fewer replicas than required: the writes are not confirmed yet."""


TRANSIENT_ERRORS += (ReplicationShortfall,)


def is_transient(error: BaseException) -> bool:
    """True for errors that mean "Redis is not reachable right now": retry later."""
    return isinstance(error, TRANSIENT_ERRORS)


def redact_url(url: str) -> str:
    """``url`` without its password, for log lines and error messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    credentials, _, hosts = parts.netloc.rpartition("@")
    if ":" not in credentials:
        return url
    netloc = f"{credentials.split(':', 1)[0]}:***@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL points at: one server, a Cluster or a Sentinel-watched master."""

    kind: Literal["single", "cluster", "sentinel"]
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """Read a Redis URL; :class:`ValueError` names what is wrong with it.

    ``redis+cluster://[user:pass@]host:port[,host:port...]`` lists Cluster startup nodes
    (any live one is enough; the rest of the topology is discovered).
    ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]`` lists Sentinels and
    names the monitored master. The ``rediss+`` forms use TLS. Anything else is handed to
    redis-py as one server's URL.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        return RedisTarget("single", url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, password = None, None
    if credentials:
        user, _, secret = credentials.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) or None)
    nodes = tuple(_host_port(item, url) for item in hosts.split(",") if item.strip())
    if not nodes:
        raise ValueError(f"Redis URL {redact_url(url)!r} names no host:port")
    tls = scheme.startswith("rediss")
    if scheme in CLUSTER_SCHEMES:
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"Redis URL {redact_url(url)!r}: a Cluster has only database 0")
        return RedisTarget("cluster", url, nodes, username=username, password=password, tls=tls)
    service, _, db = parts.path.strip("/").partition("/")
    if not service:
        raise ValueError(
            f"Redis URL {redact_url(url)!r} names no service: redis+sentinel://host:port/SERVICE"
        )
    if db and not db.isdigit():
        raise ValueError(f"Redis URL {redact_url(url)!r}: database {db!r} is not a number")
    return RedisTarget("sentinel", url, nodes, service, int(db or 0), username, password, tls)


def _host_port(item: str, url: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"Redis URL {redact_url(url)!r}: {item!r} is not host:port")
    return host.strip("[]"), int(port)


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
    """Trio access to one Redis deployment (see the module docstring for the threading rules).

    Build it with :func:`open_redis_client`: creating a Cluster client already talks to the
    cluster (it loads the slot map), which must happen in a worker thread.
    """

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
        self.target = parse_redis_url(url)
        self.safe_url = redact_url(url)
        self.max_block = max_block
        self._options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.target.kind != "single":
            self._options.update(
                username=self.target.username, password=self.target.password, ssl=self.target.tls
            )
        self._pool_size = pool_size
        self._command_timeout = command_timeout
        self._limiter = trio.CapacityLimiter(pool_size)
        self._blocking_limiter = trio.CapacityLimiter(blocking_slots)
        self._blocking_timeout = max_block + command_timeout
        # dedicated connections of finished blocking reads, kept for the next one, per
        # server address; at most ``blocking_slots`` in all, the rest are closed
        self._idle: dict[str, list[redis.Redis]] = {}
        self._idle_count = 0
        self._blocking_slots = blocking_slots
        self._closed = False
        self._pool: redis.ConnectionPool | None = None
        # redis-py's cluster and sentinel modules carry no type hints
        self._sentinel: Any = None
        self._cluster: Any = None
        self._client: Any = None

    @property
    def kind(self) -> str:
        """``"single"``, ``"cluster"`` or ``"sentinel"``."""
        return self.target.kind

    @property
    def retry_cap(self) -> float:
        """Longest backoff between retries: 2 s for one server (it is down until someone
        restarts it), 0.5 s for a Cluster or Sentinel, whose failover completes on its own
        within seconds and should be noticed at once."""
        return 2.0 if self.target.kind == "single" else 0.5

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """Bounds the worker threads using the pool (as many as it has connections)."""
        return self._limiter

    @property
    def sync(self) -> Any:
        """The blocking redis-py client (``Redis`` or ``RedisCluster``), for code that
        already runs in a worker thread; never call it from the Trio thread."""
        return self._client

    def connect(self) -> None:
        """Create the redis-py client (blocking: a Cluster loads its slot map here)."""
        target = self.target
        if target.kind == "cluster":
            self._cluster = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],  # type: ignore[no-untyped-call]
                socket_timeout=self._command_timeout,
                max_connections=self._pool_size,
                require_full_coverage=False,
                **self._options,
            )
            self._client = self._cluster
        elif target.kind == "sentinel":
            sentinel_options = {
                "socket_connect_timeout": self._options["socket_connect_timeout"],
                "socket_timeout": self._options["socket_connect_timeout"],
            }
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(target.nodes), sentinel_kwargs=sentinel_options, **self._options
            )
            self._client = self._sentinel.master_for(
                target.service,
                socket_timeout=self._command_timeout,
                db=target.db,
                max_connections=self._pool_size,
            )
        else:
            self._pool = redis.ConnectionPool.from_url(
                self.url,
                max_connections=self._pool_size,
                socket_timeout=self._command_timeout,
                **self._options,
            )
            self._client = redis.Redis(connection_pool=self._pool)

    def __repr__(self) -> str:
        return f"<RedisClient {self.safe_url}>"

    async def run(self, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(client)`` in a worker thread with a pooled connection.

        For a Cluster, ``client`` is redis-py's ``RedisCluster``: single-key commands (and
        scripts whose keys share one slot) are routed by key; it offers the same command
        methods as ``redis.Redis``.
        """
        return await trio.to_thread.run_sync(self._refreshing, fn, limiter=self._limiter)

    def _refreshing(self, fn: Callable[[redis.Redis], T]) -> T:
        """``fn(client)``; a transient failure on a Cluster reloads the slot map first, so
        the caller's retry goes where the slot lives now (a node that failed over, was
        restarted as a replica, or lost a slot)."""
        try:
            return fn(self._client)
        except Exception as error:
            if self._cluster is not None and is_transient(error):
                self.refresh_topology()
            raise

    async def execute(self, *args: Any) -> Any:
        """One command, its reply parsed by redis-py."""
        return await self.run(lambda client: cast(Any, client).execute_command(*args))

    async def ping(self) -> None:
        if self._cluster is not None:
            await self.run(lambda client: cast(Any, client).ping(target_nodes="primaries"))
        else:
            await self.run(lambda client: client.ping())

    # -- Cluster topology ------------------------------------------------------------------

    def slot_of(self, key: str) -> int:
        """The Cluster slot of ``key`` (0 when not a Cluster: everything is one group)."""
        return int(key_slot(key.encode())) if self._cluster is not None else 0

    def group_by_node(self, keys: Sequence[str]) -> dict[str, list[int]]:
        """Indexes of ``keys`` grouped by the node that serves their slot (by slot map)."""
        if self._cluster is None:
            return {"": list(range(len(keys)))}
        manager = self._cluster.nodes_manager
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            try:
                name = manager.get_node_from_slot(self.slot_of(key)).name
            except (redis.exceptions.SlotNotCoveredError, IndexError, KeyError):
                name = "?"  # no known owner: sent to any node, which answers MOVED
            groups.setdefault(name, []).append(index)
        return groups

    def node_client(self, name: str) -> redis.Redis:
        """A pooled client of the Cluster node ``name`` (``host:port``), or of the server."""
        if self._cluster is None:
            return cast(redis.Redis, self._client)
        node = self._cluster.get_node(node_name=name) if name != "?" else None
        if node is None:
            node = self._cluster.get_random_node()
        connection: redis.Redis = self._cluster.get_redis_connection(node)
        return connection

    def node_at(self, host: str, port: int) -> redis.Redis:
        """A pooled client of the Cluster node at ``host:port`` (learnt from ``ASK``)."""
        assert self._cluster is not None
        node = self._cluster.get_node(host=host, port=port)
        if node is None:
            node = self._cluster.nodes_manager.startup_nodes.get(f"{host}:{port}")
        if node is None:
            self.refresh_topology()
            node = self._cluster.get_node(host=host, port=port)
        if node is None:
            raise redis.exceptions.ClusterError(f"ASK names unknown node {host}:{port}")
        connection: redis.Redis = self._cluster.get_redis_connection(node)
        return connection

    def refresh_topology(self) -> None:
        """Reload the Cluster slot map (blocking; worker thread only). No-op otherwise."""
        if self._cluster is not None:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                self._cluster.nodes_manager.initialize()

    async def run_grouped(
        self, keys: Sequence[str], fn: Callable[[redis.Redis, list[int]], T]
    ) -> list[tuple[list[int], T | Exception]]:
        """Run ``fn(node_client, indexes)`` once per node serving ``keys``, concurrently.

        Each group's outcome is its result or the exception it raised, so one node down
        does not cost the groups of the others. One server (or Sentinel's master) is one
        group.
        """
        groups = self.group_by_node(keys)
        outcomes: list[tuple[list[int], T | Exception]] = []

        async def one(name: str, indexes: list[int]) -> None:
            def work() -> T:
                return fn(self.node_client(name), indexes)

            try:
                result: T | Exception = await trio.to_thread.run_sync(work, limiter=self._limiter)
            except Exception as error:
                result = error
            outcomes.append((indexes, result))

        if len(groups) == 1:
            ((name, indexes),) = groups.items()
            await one(name, indexes)
            return outcomes
        async with trio.open_nursery() as nursery:
            for name, indexes in groups.items():
                nursery.start_soon(one, name, indexes)
        return outcomes

    # -- blocking reads --------------------------------------------------------------------

    def _dedicated(self, key: str) -> tuple[str, redis.Redis]:
        """A new single-connection client for a blocking read of ``key`` (worker thread)."""
        options = dict(self._options, socket_timeout=self._blocking_timeout)
        if self._cluster is not None:
            node = self._cluster.get_node_from_key(key)
            return node.name, redis.Redis(
                host=node.host, port=node.port, single_connection_client=True, **options
            )
        if self._sentinel is not None:
            pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
                self.target.service,
                self._sentinel,
                max_connections=1,
                db=self.target.db,
                **options,
            )
            return "", redis.Redis(connection_pool=pool, single_connection_client=True)
        plain = redis.ConnectionPool.from_url(self.url, max_connections=1, **options)
        return "", redis.Redis(connection_pool=plain, single_connection_client=True)

    def _idle_for(self, key: str) -> tuple[str, redis.Redis] | None:
        if self._cluster is not None:
            try:
                name = self._cluster.nodes_manager.get_node_from_slot(self.slot_of(key)).name
            except (redis.exceptions.SlotNotCoveredError, IndexError, KeyError):
                return None
        else:
            name = ""
        kept = self._idle.get(name)
        if not kept:
            return None
        self._idle_count -= 1
        return name, kept.pop()

    async def blocking(self, fn: Callable[[redis.Redis], T], key: str = "") -> T:
        """Run a blocking read ``fn(client)`` of ``key`` on a dedicated connection.

        ``fn`` must bound its server-side wait (``BLOCK`` ≤ :attr:`max_block` seconds). If the
        caller is cancelled the read is abandoned: the socket is shut down so the server
        drops the client, and the connection is closed and never reused. A reply that
        arrives anyway is discarded; a caller whose read has side effects in Redis (a
        consumer group's pending list) must recover them itself. On a Cluster the
        connection goes to the node serving ``key``; any failure reloads the slot map before
        the caller retries.
        """
        kept = self._idle_for(key)
        handle = _BlockingRead(kept[1] if kept else None)
        where = kept[0] if kept else ""

        def work() -> T:
            nonlocal where
            try:
                with handle.lock:
                    if handle.abandoned:
                        raise _Abandoned
                client = handle.client
                if client is None:
                    where, client = self._dedicated(key)
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

        def work_then_refresh() -> T:
            try:
                return work()
            except Exception as error:
                if is_transient(error):
                    self.refresh_topology()
                raise

        try:
            result = await trio.to_thread.run_sync(
                work_then_refresh, limiter=self._blocking_limiter, abandon_on_cancel=True
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
            if self._closed or self._idle_count >= self._blocking_slots:
                handle.client.close()
            else:
                self._idle.setdefault(where, []).append(handle.client)
                self._idle_count += 1
        return result

    def close(self) -> None:
        """Close every connection this client holds (sockets only; nothing blocks)."""
        self._closed = True
        for clients in self._idle.values():
            for client in clients:
                client.close()
        self._idle.clear()
        self._idle_count = 0
        if self._cluster is not None:
            self._cluster.close()
        elif self._client is not None:
            cast(redis.Redis, self._client).connection_pool.disconnect()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                sentinel.connection_pool.disconnect()


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
    the server (every Cluster startup node, every Sentinel) cannot be reached or refuses the
    connection.
    """
    try:
        client = RedisClient(url, **options)
    except ValueError as error:
        raise RedisUnavailable(f"Redis URL {redact_url(url)!r} is not usable: {error}") from error
    try:
        await trio.to_thread.run_sync(client.connect)
        await client.ping()
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as error:
        client.close()
        raise RedisUnavailable(f"Redis at {client.safe_url} is unreachable: {error}") from error
    return client

"""Where this node says it can be reached, how names are resolved, and whether its binding
deserves a warning.

Names (seeds, ``advertise_host``) are resolved through :func:`resolve_all`: every A/AAAA
record, in the resolver's order. It asks the system resolver unless the running task (and
the tasks it starts) installed another with :func:`use_resolver` -- the seam tests use to
give a name several addresses, the first one dead, or to move a seed to a new address. It is
a context variable, not a process global: two nodes in one process can resolve differently.

A node bound to ``0.0.0.0`` or ``::`` must not advertise that (the original did, so its peers
could never reach it). In order: the configured ``advertise_host``; the local address the
kernel would use to reach the first reachable seed (a UDP ``connect`` sends nothing); the
addresses the host name resolves to, non-loopback first; loopback as the last resort.
"""

from __future__ import annotations

import ipaddress
import socket as _socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import trio

from ..config import MeshConfig
from ..swim.driver import Resolver
from ..swim.driver import resolve_all as system_resolve_all

__all__ = [
    "Resolver",
    "advertise_host",
    "is_loopback",
    "is_unspecified",
    "needs_key_warning",
    "resolve_all",
    "use_resolver",
]

_resolver: ContextVar[Resolver | None] = ContextVar("jarvis_trio_resolver", default=None)


@contextmanager
def use_resolver(resolver: Resolver) -> Iterator[None]:
    """Resolve names with ``resolver(host, family) -> [IP, ...]`` in this task and the tasks
    it starts, for the duration of the block (nodes started inside keep it)."""
    token = _resolver.set(resolver)
    try:
        yield
    finally:
        _resolver.reset(token)


async def resolve_all(host: str, family: int = 0) -> list[str]:
    """Every address of ``host`` (an IP literal is its own); ``OSError`` if it does not
    resolve. Uses the resolver installed by :func:`use_resolver`, else the system's."""
    custom = _resolver.get()
    if custom is None or _ip(host) is not None:
        return await system_resolve_all(host, family)
    return list(await custom(host, family))


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_unspecified(host: str) -> bool:
    """True for ``0.0.0.0``, ``::`` and the empty host (bind to every interface)."""
    ip = _ip(host)
    return host in ("", "*") or (ip is not None and ip.is_unspecified)


def is_loopback(host: str) -> bool:
    """True for loopback literals and ``localhost``."""
    ip = _ip(host)
    return host == "localhost" or (ip is not None and ip.is_loopback)


def needs_key_warning(config: MeshConfig) -> bool:
    """A node reachable from other hosts with no cluster key: anyone could join and send."""
    return config.cluster_key is None and not is_loopback(config.bind_host)


async def advertise_host(config: MeshConfig) -> str | None:
    """The address to advertise, or ``None`` to advertise the bind address itself."""
    if config.advertise_host:
        return config.advertise_host
    if not is_unspecified(config.bind_host):
        return None
    family = _socket.AF_INET6 if ":" in config.bind_host else _socket.AF_INET
    for seed in config.seed_nodes:
        found = await _route_to(seed.host, seed.port, family)
        if found is not None:
            return found
    try:
        infos = await trio.socket.getaddrinfo(
            _socket.gethostname(), None, family, _socket.SOCK_DGRAM
        )
    except OSError:
        infos = []
    candidates = [str(info[4][0]) for info in infos]
    usable = [c for c in candidates if not is_loopback(c) and not is_unspecified(c)]
    if usable:
        return usable[0]
    return "::1" if family == _socket.AF_INET6 else "127.0.0.1"


async def _route_to(host: str, port: int, family: int) -> str | None:
    try:
        addresses = await resolve_all(host, family)
    except OSError:
        return None
    if not addresses:
        return None
    sock = trio.socket.socket(family, _socket.SOCK_DGRAM)
    try:
        await sock.connect((addresses[0], port))
        local = str(sock.getsockname()[0])
    except OSError:
        return None
    finally:
        sock.close()
    return None if is_unspecified(local) else local

"""The Nexus authentication manager (``self._auth_manager``) and its lifetime.

:func:`open_auth_manager` opens one :class:`AuthenticationManager` per node. It owns a nursery
where the consent flows, token fetches and connection refreshes run, and an
:class:`httpx.AsyncClient` (httpx runs on Trio through anyio); both end with the block.

:meth:`AuthenticationManager.get_connection_id` drives the protocol: request-connection (a 409
reuses the pending connection) -> present the consent URL (printed and logged; a browser is
opened only with ``AuthSettings(open_browser=True)``) -> poll check-connection every
``poll_interval`` until ACTIVE -> cache per (provider, user). REVOKED and EXPIRED end the wait
with :class:`ConnectionNotActive`; FAILED does too once it has lasted ``failed_grace``;
PENDING / ATTENTION keep polling until ``consent_timeout`` (:class:`AuthTimeout`). Concurrent
callers for one (provider, user) share one flow. Once ACTIVE, the connection is refreshed
right away and every ``refresh_interval`` while it stays cached.

``NexusCallProxy(connection_id)`` works without being handed the manager: the id returned by
``get_connection_id`` is a :class:`ConnectionId`, a ``str`` that remembers its manager. For a
plain string id the proxy looks in the context variable :data:`current_auth_manager`, set for
the task that entered :func:`open_auth_manager` (Trio copies a task's context into every task
it starts, so tasks the node starts afterwards see it); :func:`use_auth_manager` sets it for
code started from elsewhere.

Without a gateway URL the manager is still created; its first use raises
:class:`NexusNotConfigured` (a ``ValueError``) naming ``NEXUS_GATEWAY_URL``.
"""

from __future__ import annotations

import contextlib
import getpass
import inspect
import logging
import math
import time
import uuid
import weakref
import webbrowser
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType

import httpx
import trio

from .._sides import HostSlot, trio_side, trio_side_sync
from ..config import MeshConfig
from ..errors import (
    AuthError,
    AuthTimeout,
    ConnectionNotActive,
    NexusNotConfigured,
    NexusProtocolError,
    NexusUnavailable,
)
from ._flight import SingleFlight
from .client import ConnectionRequest, NexusClient
from .strategies import TokenStrategy

__all__ = [
    "AuthSettings",
    "AuthenticationManager",
    "ConnectionId",
    "ConsentPrompt",
    "current_auth_manager",
    "normalize_user_id",
    "open_auth_manager",
    "use_auth_manager",
]

log = logging.getLogger("jarvis_trio.auth")

DEFAULT_SCOPES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"github": ("repo", "read:org", "read:user", "workflow")}
)


@dataclass(frozen=True, slots=True)
class ConsentPrompt:
    """What the user must do to activate a connection: open ``auth_url``."""

    provider: str
    connection_id: str
    auth_url: str
    user_id: str
    reused: bool


ConsentHandler = Callable[[ConsentPrompt], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Timing, limits and presentation of the Nexus flow. Defaults follow the protocol's.

    ``consent_handler`` replaces the default presentation (print + log); it runs in the
    manager's nursery, so a slow handler never delays polling, and its errors are logged.
    """

    poll_interval: float = 2.0
    consent_timeout: float = 300.0
    failed_grace: float = 120.0
    refresh_interval: float = 60.0
    token_ttl: float = 300.0
    http_timeout: float = 10.0
    max_poll_errors: int = 3
    open_browser: bool = False
    return_url: str = "about:blank"
    user_id: str | None = None
    default_scopes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_SCOPES)
    max_connections: int = 1024
    max_response_bytes: int = 32 << 20
    consent_handler: ConsentHandler | None = None

    def __post_init__(self) -> None:
        for name in (
            "poll_interval",
            "consent_timeout",
            "failed_grace",
            "refresh_interval",
            "token_ttl",
            "http_timeout",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (value > 0 and math.isfinite(value))
            ):
                raise ValueError(f"AuthSettings.{name} must be a positive number, got {value!r}")
        for name in ("max_poll_errors", "max_connections", "max_response_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"AuthSettings.{name} must be a positive integer, got {value!r}")


current_auth_manager: ContextVar[AuthenticationManager | None] = ContextVar(
    "jarvis_trio_auth_manager", default=None
)


@contextlib.contextmanager
def use_auth_manager(manager: AuthenticationManager | None) -> Iterator[None]:
    """Publish ``manager`` as :data:`current_auth_manager` for the enclosed code."""
    token = current_auth_manager.set(manager)
    try:
        yield
    finally:
        current_auth_manager.reset(token)


def normalize_user_id(user_id: str) -> str:
    """A UUID as text: UUIDs pass through, anything else maps with UUID5 over the DNS namespace."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    try:
        return str(uuid.UUID(user_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, user_id))


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "jarvis"


class ConnectionId(str):
    """A connection id (a plain ``str`` to every other code) that remembers the manager that
    issued it, so ``NexusCallProxy(connection_id)`` finds its manager from any task, including
    a script calling an agent's method directly from ``main()``. The reference is weak: the id
    never keeps a closed manager alive."""

    _manager: Callable[[], AuthenticationManager | None]

    def __new__(cls, value: str, manager: AuthenticationManager) -> ConnectionId:
        issued = super().__new__(cls, value)
        issued._manager = weakref.ref(manager)
        return issued

    @property
    def manager(self) -> AuthenticationManager | None:
        """The issuing manager, or ``None`` once it is gone."""
        return self._manager()


@dataclass(slots=True)
class _Token:
    strategy: TokenStrategy
    valid_until: float  # trio clock


class AuthenticationManager:
    """Nexus connections and credentials of one node; build it with :func:`open_auth_manager`."""

    def __init__(
        self,
        gateway_url: str | None,
        *,
        http: httpx.AsyncClient,
        nursery: trio.Nursery,
        settings: AuthSettings | None = None,
        host: HostSlot | None = None,
    ) -> None:
        self._host_slot = HostSlot() if host is None else host  # see jarvis_trio._sides
        self.settings = settings or AuthSettings()
        self.gateway_url = gateway_url.rstrip("/") if gateway_url else None
        self._http = http
        self._nursery = nursery
        self._client = (
            NexusClient(self.gateway_url, http, timeout=self.settings.http_timeout)
            if self.gateway_url
            else None
        )
        limit = self.settings.max_connections
        self._connections: OrderedDict[tuple[str, str], tuple[str, trio.CancelScope]] = (
            OrderedDict()
        )
        self._tokens: OrderedDict[str, _Token] = OrderedDict()
        self._flows: SingleFlight[tuple[str, str], str] = SingleFlight(
            nursery, limit=limit, what="Nexus connection flows"
        )
        self._token_fetches: SingleFlight[str, TokenStrategy] = SingleFlight(
            nursery, limit=limit, what="Nexus token fetches"
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"AuthenticationManager(gateway_url={self.gateway_url!r})"

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The HTTP client proxied calls go through (shared connection pool)."""
        self._check_open()
        return self._http

    @property
    def configured(self) -> bool:
        """True when a gateway URL was given."""
        return self._client is not None

    def nexus_calls(self) -> dict[str, dict[str, int]]:
        """Calls to the gateway so far: endpoint -> outcome (``ok``, ``unavailable``,
        ``protocol_error``) -> count. Empty without a gateway."""
        out: dict[str, dict[str, int]] = {}
        if self._client is not None:
            for (endpoint, outcome), count in self._client.calls.items():
                out.setdefault(endpoint, {})[outcome] = count
        return out

    def cached_connections(self) -> dict[tuple[str, str], str]:
        """(provider, user UUID) -> connection id, for every connection being watched."""
        return {key: value[0] for key, value in self._connections.items()}

    # -- connections --------------------------------------------------------------------------

    @trio_side
    async def get_connection_id(
        self,
        provider: str,
        scopes: Sequence[str] | None = None,
        user_id: str | None = None,
    ) -> str:
        """The id of an ACTIVE connection to ``provider``, running the consent flow if needed.

        ``scopes`` default to the provider's known defaults (GitHub: repo, read:org, read:user,
        workflow). Concurrent callers for the same (provider, user) share one flow, with the
        first caller's scopes.
        """
        client = self._require()
        if not isinstance(provider, str) or not provider.strip() or len(provider) > 128:
            raise ValueError(
                f"provider must be a non-empty name of at most 128 characters, got {provider!r}"
            )
        wanted = self._scopes(provider, scopes)
        user = normalize_user_id(user_id if user_id is not None else self._user())
        key = (provider, user)
        cached = self._connections.get(key)
        if cached is not None:
            self._connections.move_to_end(key)
            return ConnectionId(cached[0], self)
        connection_id = await self._flows.run(key, lambda: self._connect(client, key, wanted))
        return ConnectionId(connection_id, self)

    async def _connect(self, client: NexusClient, key: tuple[str, str], scopes: list[str]) -> str:
        provider, user = key
        request = await client.request_connection(user, provider, scopes, self.settings.return_url)
        self._present(request, provider, user)
        await self._await_active(client, request)
        log.info("Nexus connection %s to %s is ACTIVE", request.connection_id, provider)
        self._remember(key, request.connection_id)
        return request.connection_id

    def _present(self, request: ConnectionRequest, provider: str, user: str) -> None:
        prompt = ConsentPrompt(
            provider, request.connection_id, request.auth_url, user, request.reused
        )
        handler = self.settings.consent_handler
        if handler is not None:
            self._nursery.start_soon(self._run_handler, handler, prompt)
        else:
            state = "pending connection reused; " if request.reused else ""
            print(f"Nexus: {state}authorise {provider} by opening {request.auth_url}", flush=True)
            log.info(
                "Nexus consent for %s (%s): %s", provider, request.connection_id, request.auth_url
            )
        if self.settings.open_browser:
            self._nursery.start_soon(self._open_browser, request.auth_url)

    async def _run_handler(self, handler: ConsentHandler, prompt: ConsentPrompt) -> None:
        try:
            outcome = handler(prompt)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.warning("Nexus consent handler failed for %s", prompt.connection_id, exc_info=True)

    async def _open_browser(self, url: str) -> None:
        try:
            opened = await trio.to_thread.run_sync(webbrowser.open, url)
        except Exception as error:  # a background task: a broken browser never stops the node
            log.warning("opening a browser failed (%s); open %s by hand", error, url)
            return
        if not opened:
            log.warning("no browser could be opened; open %s by hand", url)

    async def _await_active(self, client: NexusClient, request: ConnectionRequest) -> None:
        settings = self.settings
        cid = request.connection_id
        status = "PENDING"
        failed_since: float | None = None
        errors = 0
        attention_told = False
        with trio.move_on_after(settings.consent_timeout):
            while True:
                try:
                    status = await client.check_connection(cid)
                    errors = 0
                except NexusUnavailable:
                    errors += 1
                    if errors >= settings.max_poll_errors:
                        raise
                    log.warning(
                        "Nexus check-connection failed (%d of %d tolerated); retrying",
                        errors,
                        settings.max_poll_errors - 1,
                        exc_info=True,
                    )
                    await trio.sleep(settings.poll_interval)
                    continue
                if status == "ACTIVE":
                    return
                if status in ("REVOKED", "EXPIRED"):
                    raise ConnectionNotActive(cid, status)
                pause = settings.poll_interval
                if status == "FAILED":
                    now = trio.current_time()
                    failed_since = now if failed_since is None else failed_since
                    left = settings.failed_grace - (now - failed_since)
                    if left <= 0:
                        raise ConnectionNotActive(cid, status)
                    pause = min(pause, left)
                else:
                    failed_since = None
                if status == "ATTENTION" and not attention_told:
                    attention_told = True
                    log.warning("Nexus connection %s needs attention at %s", cid, request.auth_url)
                await trio.sleep(pause)
        raise AuthTimeout(
            f"Nexus connection {cid} was not ACTIVE after {settings.consent_timeout} s "
            f"(last status {status}); consent URL: {request.auth_url}"
        )

    def _remember(self, key: tuple[str, str], connection_id: str) -> None:
        if self._closed:
            return
        old = self._connections.pop(key, None)
        if old is not None:
            old[1].cancel()
        while len(self._connections) >= self.settings.max_connections:
            evicted_key, (evicted_id, scope) = self._connections.popitem(last=False)
            scope.cancel()
            self._tokens.pop(evicted_id, None)
            log.info(
                "Nexus connection cache full: stopped watching %s (%s)", evicted_id, evicted_key[0]
            )
        scope = trio.CancelScope()
        self._connections[key] = (connection_id, scope)
        self._nursery.start_soon(self._watch, connection_id, scope)

    async def _watch(self, connection_id: str, scope: trio.CancelScope) -> None:
        """Refresh the connection now and every ``refresh_interval`` until no longer cached.

        A background task of the node: nothing it meets may stop the node. A failed refresh
        is a WARNING and is tried again sooner, with backoff (``poll_interval`` doubling up
        to ``refresh_interval``), until the gateway answers again."""
        settings = self.settings
        failures = 0
        with scope:
            while True:
                try:
                    await self._refresh(self._require(), connection_id)
                except ConnectionNotActive as error:
                    log.warning("Nexus connection ended, no longer watched: %s", error)
                    return
                except Exception as error:  # AuthError, or anything else: degrade, retry
                    failures += 1
                    pause = min(
                        settings.refresh_interval,
                        settings.poll_interval * 2.0 ** min(failures - 1, 16),
                    )
                    log.warning(
                        "Nexus refresh of %s failed (%d in a row; retrying in %.1f s): %s: %s",
                        connection_id,
                        failures,
                        pause,
                        type(error).__name__,
                        error,
                    )
                    await trio.sleep(pause)
                    continue
                failures = 0
                await trio.sleep(settings.refresh_interval)

    @trio_side_sync
    def forget(self, provider: str, user_id: str | None = None) -> bool:
        """Stop watching the cached connection of (provider, user); True if there was one."""
        key = (provider, normalize_user_id(user_id if user_id is not None else self._user()))
        entry = self._connections.get(key)
        if entry is None:
            return False
        self._drop(entry[0])
        return True

    # -- tokens -------------------------------------------------------------------------------

    @trio_side
    async def get_token(self, connection_id: str) -> TokenStrategy:
        """The connection's credentials, fetched lazily and cached for ``token_ttl`` seconds
        or until the gateway's ``expires_at``, whichever comes first."""
        client = self._require()
        cached = self._tokens.get(connection_id)
        if cached is not None and trio.current_time() < cached.valid_until:
            return cached.strategy
        return await self._token_fetches.run(
            connection_id, lambda: self._fetch_token(client, connection_id)
        )

    @trio_side
    async def token_after_unauthorized(
        self, connection_id: str, rejected: TokenStrategy
    ) -> TokenStrategy:
        """Credentials to retry with after ``rejected`` got a 401: refresh the connection and
        fetch new ones, unless another call already did (the cache holds different ones)."""
        client = self._require()
        cached = self._tokens.get(connection_id)
        if cached is not None and cached.strategy != rejected:
            return cached.strategy
        self._tokens.pop(connection_id, None)
        await self._refresh(client, connection_id)
        return await self.get_token(connection_id)

    async def _refresh(self, client: NexusClient, connection_id: str) -> None:
        """Refresh; when the gateway refuses, find out whether the connection has ended and if
        so stop caching it (the next ``get_connection_id`` runs a new consent flow)."""
        try:
            await client.refresh(connection_id)
        except NexusProtocolError:
            status = await client.check_connection(connection_id)
            if status == "ACTIVE":
                raise
            self._drop(connection_id)
            raise ConnectionNotActive(connection_id, status) from None

    def _drop(self, connection_id: str) -> None:
        self._tokens.pop(connection_id, None)
        for key, (cid, scope) in list(self._connections.items()):
            if cid == connection_id:
                del self._connections[key]
                scope.cancel()

    async def _fetch_token(self, client: NexusClient, connection_id: str) -> TokenStrategy:
        strategy = await client.get_token(connection_id)
        ttl = self.settings.token_ttl
        if strategy.expires_at is not None:
            ttl = min(ttl, strategy.expires_at - time.time())
        if ttl > 0 and not self._closed:
            self._tokens[connection_id] = _Token(strategy, trio.current_time() + ttl)
            self._tokens.move_to_end(connection_id)
            while len(self._tokens) > self.settings.max_connections:
                self._tokens.popitem(last=False)
        return strategy

    # -- helpers ------------------------------------------------------------------------------

    def _require(self) -> NexusClient:
        self._check_open()
        if self._client is None:
            raise NexusNotConfigured(
                "Nexus auth is not configured: set NEXUS_GATEWAY_URL (environment or .env) or "
                "the mesh config key nexus_gateway_url to the gateway's http(s) URL"
            )
        return self._client

    def _check_open(self) -> None:
        if self._closed:
            raise AuthError("the AuthenticationManager is closed (its node has stopped)")

    def _user(self) -> str:
        return self.settings.user_id or _default_user()

    def _scopes(self, provider: str, scopes: Sequence[str] | None) -> list[str]:
        if scopes is None:
            return list(self.settings.default_scopes.get(provider.lower(), ()))
        if isinstance(scopes, str) or not all(isinstance(s, str) and s for s in scopes):
            raise ValueError(f"scopes must be a list of non-empty strings, got {scopes!r}")
        return list(scopes)

    def _close(self) -> None:
        self._closed = True
        for _, scope in self._connections.values():
            scope.cancel()
        self._connections.clear()
        self._tokens.clear()


@contextlib.asynccontextmanager
async def open_auth_manager(
    config: MeshConfig,
    *,
    settings: AuthSettings | None = None,
    host: HostSlot | None = None,
) -> AsyncIterator[AuthenticationManager | None]:
    """The node's auth manager for the lifetime of the block (``None`` when
    ``auth_mode == "disabled"``), published in :data:`current_auth_manager` meanwhile."""
    if config.auth_mode == "disabled":
        yield None
        return
    settings = settings or AuthSettings()
    timeout = httpx.Timeout(settings.http_timeout)
    async with httpx.AsyncClient(timeout=timeout) as http, trio.open_nursery() as nursery:
        manager = AuthenticationManager(
            config.nexus_gateway_url, http=http, nursery=nursery, settings=settings, host=host
        )
        token = current_auth_manager.set(manager)
        try:
            yield manager
        finally:
            with contextlib.suppress(ValueError):
                current_auth_manager.reset(token)
            manager._close()
            nursery.cancel_scope.cancel()

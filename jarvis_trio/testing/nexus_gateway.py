"""A development Nexus gateway: a real HTTP server on loopback, for tests and local runs.

It implements the four protocol endpoints, plus what a human (or a test) does around them::

    POST /v1/request-connection   {user_id (UUID), provider_name, scopes, return_url}
                                  -> 200 {connection_id, authUrl}; 409 with the pending
                                     connection when one exists for that user and provider
    GET  /v1/check-connection/ID  -> {status}
    GET  /v1/token/ID             -> {type, credentials, expires_at}  (ACTIVE connections)
    POST /v1/refresh/ID           -> {refreshed: true}; issues new credentials, old ones stay
                                     valid until invalidate_credentials()
    GET  /consent/ID              the authUrl: opening it gives consent (the connection takes
                                  its provider's ``outcome``, ACTIVE by default)
    ANY  /echo[...]               a provider API: 200 with which auth header arrived and whose
                                  connection it belongs to, 401 without valid credentials;
                                  /echo/status/CODE answers CODE once authenticated

Behaviour is chosen per provider (:class:`ProviderSettings`: strategy type, consent outcome
FAILED / REVOKED / EXPIRED / ATTENTION, auto-consent after N polls, token lifetime) and for the
whole server (:class:`GatewaySwitches`: forced 409, 5xx on every call or on the next N calls,
malformed answers per endpoint, slowness). Tests mutate them between calls; the server runs
on the test's Trio loop, so no locking is needed.

Use it from Trio with :func:`serve_nexus_gateway`, or from a shell::

    python -m jarvis_trio.testing.nexus_gateway --port 8765 --strategy api_key

The HTTP layer is :mod:`jarvis_trio._http` (h11 over Trio sockets); connections, request
bodies and stored connections are bounded (:data:`MAX_CLIENTS`, :data:`MAX_BODY`,
:data:`MAX_CONNECTIONS`).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import trio

from .._http import HttpLimits, HttpServer, Request, Response

__all__ = [
    "MALFORMED_KINDS",
    "MAX_BODY",
    "MAX_CLIENTS",
    "MAX_CONNECTIONS",
    "GatewayConnection",
    "GatewaySwitches",
    "NexusGateway",
    "ProviderSettings",
    "main",
    "serve_nexus_gateway",
]

MAX_CLIENTS = 256
"""Concurrent HTTP connections served; further clients wait in the listen backlog."""
MAX_BODY = 64 * 1024
"""Largest request body accepted (413 above)."""
MAX_CONNECTIONS = 10_000
"""Nexus connections kept; request-connection answers 503 when full."""
IDLE_TIMEOUT = 30.0
"""Seconds a keep-alive HTTP connection may stay silent before it is closed."""

ENDPOINTS = ("request-connection", "check-connection", "token", "refresh")
MALFORMED_KINDS = ("not-json", "not-object", "missing-field", "wrong-type", "unknown-value")
STRATEGIES = ("oauth2", "api_key", "basic_auth")
OUTCOMES = ("ACTIVE", "FAILED", "REVOKED", "EXPIRED", "ATTENTION")
STATUSES = ("PENDING", *OUTCOMES)
_KEPT_CREDENTIALS = 4
_log = logging.getLogger("jarvis_trio.testing.nexus_gateway")
_LIMITS = HttpLimits(
    max_clients=MAX_CLIENTS,
    max_body=MAX_BODY,
    max_header=16 * 1024,
    idle_timeout=IDLE_TIMEOUT,
    request_timeout=IDLE_TIMEOUT,
    refuse_when_full=False,  # a test's client pool waits in the backlog rather than failing
)


@dataclass(slots=True)
class ProviderSettings:
    """How the gateway treats connections to one provider.

    ``auto_consent_after``: after answering PENDING to that many polls, the connection gets
    consent by itself (``None``: only opening the authUrl gives consent). ``token_ttl``:
    seconds until the issued credentials' ``expires_at`` (``None``: no ``expires_at``).
    """

    strategy: str = "oauth2"
    outcome: str = "ACTIVE"
    auto_consent_after: int | None = None
    token_ttl: float | None = 3600.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r}: expected one of {STRATEGIES}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r}: expected one of {OUTCOMES}")
        if self.auto_consent_after is not None and self.auto_consent_after < 0:
            raise ValueError("auto_consent_after must be >= 0 or None")


@dataclass(slots=True)
class GatewaySwitches:
    """Server-wide fault switches, applied to the ``/v1`` endpoints only.

    ``conflict``: request-connection answers 409 (with the new connection's id and authUrl) as
    if it had been pending. ``error_status``: every call answers it (e.g. 503).
    ``fail_next``: the next N calls answer 503. ``malformed``: endpoint -> one of
    :data:`MALFORMED_KINDS`. ``delay``: seconds to wait before answering.
    """

    conflict: bool = False
    error_status: int | None = None
    fail_next: int = 0
    malformed: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def malform(self, endpoint: str, kind: str) -> None:
        """Make ``endpoint`` answer malformed ``kind`` from now on."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint {endpoint!r}: expected one of {ENDPOINTS}")
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"kind {kind!r}: expected one of {MALFORMED_KINDS}")
        self.malformed[endpoint] = kind


@dataclass(slots=True)
class GatewayConnection:
    """One connection as the gateway sees it."""

    connection_id: str
    user_id: str
    provider: str
    scopes: list[str]
    return_url: str
    status: str = "PENDING"
    polls: int = 0
    refreshes: int = 0
    token_fetches: int = 0
    secrets: list[str] = field(default_factory=list)


_Answer = tuple[int, str, bytes]  # status, content type, body


class NexusGateway:
    """State and behaviour of a development gateway; see the module docstring."""

    def __init__(self, default: ProviderSettings | None = None) -> None:
        self.default = default or ProviderSettings()
        self.providers: dict[str, ProviderSettings] = {}
        self.switches = GatewaySwitches()
        self.connections: dict[str, GatewayConnection] = {}
        self.calls: Counter[str] = Counter()
        self.url = ""
        # the HTTP server's bounds (a client that does not read is dropped after
        # write_timeout, so it cannot hold a slot), and the server once serving
        self.limits = _LIMITS
        self.http: HttpServer | None = None
        self._by_credential: dict[str, str] = {}
        self._changed = trio.Event()

    # -- test API -------------------------------------------------------------------------------

    def provider(self, name: str) -> ProviderSettings:
        """The settings of provider ``name`` (a copy of the default on first use), to mutate."""
        settings = self.providers.get(name)
        if settings is None:
            settings = ProviderSettings(
                self.default.strategy,
                self.default.outcome,
                self.default.auto_consent_after,
                self.default.token_ttl,
            )
            self.providers[name] = settings
        return settings

    def consent(self, connection_id: str) -> str:
        """Give consent, as opening the authUrl does; returns the new status."""
        conn = self.connections[connection_id]
        if conn.status == "PENDING":
            conn.status = self.provider(conn.provider).outcome
            if conn.status == "ACTIVE":
                self._issue(conn)
        self._notify()
        return conn.status

    def set_status(self, connection_id: str, status: str) -> None:
        """Force a connection's status (for example FAILED -> ACTIVE within the grace)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r}: expected one of {STATUSES}")
        conn = self.connections[connection_id]
        conn.status = status
        if status == "ACTIVE" and not conn.secrets:
            self._issue(conn)
        self._notify()

    def invalidate_credentials(self, connection_id: str) -> None:
        """The provider stops accepting the connection's current credentials (they expired
        early); the next refresh issues valid ones."""
        conn = self.connections[connection_id]
        for secret in conn.secrets:
            self._by_credential.pop(secret, None)
        conn.secrets.clear()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; re-checked after every request served."""
        while not predicate():
            await self._changed.wait()

    # -- protocol ---------------------------------------------------------------------------------

    async def _answer(self, request: Request) -> _Answer:
        path = request.path
        if path.startswith("/v1/"):
            answer = await self._v1(request)
        elif path.startswith("/consent/"):
            answer = self._consent_page(unquote(path.removeprefix("/consent/")))
        elif path == "/echo" or path.startswith("/echo/"):
            answer = self._echo(request)
        elif path == "/health":
            answer = _json(200, {"ok": True})
        else:
            answer = _json(404, {"error": f"no route for {path}"})
        self._notify()
        return answer

    async def _v1(self, request: Request) -> _Answer:
        endpoint, _, rest = request.path.removeprefix("/v1/").partition("/")
        connection_id = unquote(rest)
        expected = "POST" if endpoint in ("request-connection", "refresh") else "GET"
        if endpoint not in ENDPOINTS:
            return _json(404, {"error": f"unknown endpoint {endpoint!r}"})
        if request.method != expected:
            return _json(405, {"error": f"{endpoint} takes {expected}"})
        self.calls[endpoint] += 1
        sw = self.switches
        if sw.delay > 0:
            await trio.sleep(sw.delay)
        if sw.error_status is not None:
            return _json(sw.error_status, {"error": "simulated failure"})
        if sw.fail_next > 0:
            sw.fail_next -= 1
            return _json(503, {"error": "simulated outage"})
        if endpoint == "request-connection":
            status, payload = self._request_connection(request.body)
        else:
            conn = self.connections.get(connection_id)
            if conn is None:
                return _json(404, {"error": f"unknown connection {connection_id!r}"})
            if endpoint == "check-connection":
                status, payload = self._check(conn)
            elif endpoint == "token":
                status, payload = self._token(conn)
            else:
                status, payload = self._refresh(conn)
        kind = sw.malformed.get(endpoint)
        if kind is not None and status < 400:
            return _malformed(kind, endpoint, status, payload)
        return _json(status, payload)

    def _request_connection(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            data = json.loads(body)
        except ValueError:
            return 400, {"error": "body is not JSON"}
        problem = _invalid_request(data)
        if problem:
            return 400, {"error": problem}
        user, provider = data["user_id"], data["provider_name"]
        for conn in self.connections.values():
            if conn.user_id == user and conn.provider == provider and conn.status == "PENDING":
                return 409, self._connection_answer(conn)
        if len(self.connections) >= MAX_CONNECTIONS:
            return 503, {"error": f"gateway holds {MAX_CONNECTIONS} connections; full"}
        conn = GatewayConnection(
            connection_id=f"conn-{secrets.token_hex(8)}",
            user_id=user,
            provider=provider,
            scopes=list(data["scopes"]),
            return_url=data["return_url"],
        )
        self.connections[conn.connection_id] = conn
        return (409 if self.switches.conflict else 200), self._connection_answer(conn)

    def _connection_answer(self, conn: GatewayConnection) -> dict[str, Any]:
        return {
            "connection_id": conn.connection_id,
            "authUrl": f"{self.url}/consent/{conn.connection_id}",
        }

    def _check(self, conn: GatewayConnection) -> tuple[int, dict[str, Any]]:
        settings = self.provider(conn.provider)
        if conn.status == "PENDING":
            after = settings.auto_consent_after
            if after is not None and conn.polls >= after:
                self.consent(conn.connection_id)
        conn.polls += 1
        return 200, {"status": conn.status}

    def _token(self, conn: GatewayConnection) -> tuple[int, dict[str, Any]]:
        if conn.status != "ACTIVE":
            return 409, {"error": f"connection is {conn.status}, not ACTIVE"}
        if not conn.secrets:
            self._issue(conn)
        conn.token_fetches += 1
        settings = self.provider(conn.provider)
        secret = conn.secrets[-1]
        credentials: dict[str, str]
        if settings.strategy == "oauth2":
            credentials = {"access_token": secret, "token_type": "bearer"}
        elif settings.strategy == "api_key":
            credentials = {"api_key": secret}
        else:
            credentials = {"username": f"user-{conn.connection_id}", "password": secret}
        answer: dict[str, Any] = {"type": settings.strategy, "credentials": credentials}
        if settings.token_ttl is not None:
            answer["expires_at"] = time.time() + settings.token_ttl
        return 200, answer

    def _refresh(self, conn: GatewayConnection) -> tuple[int, dict[str, Any]]:
        if conn.status != "ACTIVE":
            return 409, {"error": f"connection is {conn.status}, not ACTIVE"}
        conn.refreshes += 1
        self._issue(conn)
        return 200, {"refreshed": True}

    def _issue(self, conn: GatewayConnection) -> None:
        secret = secrets.token_urlsafe(18)
        conn.secrets.append(secret)
        self._by_credential[secret] = conn.connection_id
        while len(conn.secrets) > _KEPT_CREDENTIALS:
            self._by_credential.pop(conn.secrets.pop(0), None)

    def _consent_page(self, connection_id: str) -> _Answer:
        if connection_id not in self.connections:
            return 404, "text/html", b"<h1>Unknown connection</h1>"
        status = self.consent(connection_id)
        page = f"<h1>Nexus development gateway</h1><p>Connection {connection_id}: {status}</p>"
        return 200, "text/html; charset=utf-8", page.encode()

    def _echo(self, request: Request) -> _Answer:
        header, scheme, secret = _presented_credential(request.headers)
        connection_id = self._by_credential.get(secret) if secret else None
        conn = self.connections.get(connection_id) if connection_id else None
        valid = conn is not None and conn.status == "ACTIVE"
        if valid and conn is not None and scheme == "basic" and not _basic_user_ok(request, conn):
            valid = False
        payload = {
            "authenticated": valid,
            "auth_header": header,
            "scheme": scheme,
            "connection_id": connection_id if valid else None,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "body_bytes": len(request.body),
        }
        status = 200 if valid else 401
        forced = request.path.removeprefix("/echo/status/")
        if valid and forced != request.path and forced.isdigit() and 200 <= int(forced) <= 599:
            status = int(forced)
        return _json(status, payload)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- HTTP -------------------------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; reports the base URL through ``task_status``."""
        server = HttpServer(self._handle, limits=self.limits, server_name="jarvis-trio-nexus-dev")
        self.http = server
        async with trio.open_nursery() as nursery:
            bound_host, bound_port = await nursery.start(server.serve, host, port)
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            self.url = f"http://{shown}:{bound_port}"
            task_status.started(self.url)

    async def _handle(self, request: Request) -> Response:
        try:
            status, content_type, body = await self._answer(request)
        except Exception as error:  # a bug here must not take the server down
            _log.exception("development gateway failed on %s", request.path)
            status, content_type, body = _json(500, {"error": f"{type(error).__name__}: {error}"})
        return Response(status, body, content_type)


def _json(status: int, payload: Any) -> _Answer:
    return status, "application/json", json.dumps(payload).encode()


def _malformed(kind: str, endpoint: str, status: int, payload: dict[str, Any]) -> _Answer:
    if kind == "not-json":
        return status, "text/html", b"<html><body>502 Bad Gateway (upstream)</body></html>"
    if kind == "not-object":
        return _json(status, [payload])
    broken = dict(payload)
    key = {
        "request-connection": "connection_id",
        "check-connection": "status",
        "token": "credentials",
        "refresh": "refreshed",
    }[endpoint]
    if kind == "missing-field":
        broken.pop(key, None)
    elif kind == "wrong-type":
        broken[key] = 12345
    elif endpoint == "token":
        broken["type"] = "kerberos"
    elif endpoint == "check-connection":
        broken["status"] = "SLEEPING"
    else:
        broken[key] = "\x00bad id"
    return _json(status, broken)


def _invalid_request(data: object) -> str | None:
    if not isinstance(data, dict):
        return "body must be a JSON object"
    user = data.get("user_id")
    try:
        uuid.UUID(str(user))
    except ValueError:
        return f"user_id must be a UUID, got {user!r}"
    if not isinstance(user, str):
        return "user_id must be a string"
    provider = data.get("provider_name")
    if not isinstance(provider, str) or not provider:
        return "provider_name must be a non-empty string"
    scopes = data.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return "scopes must be a list of strings"
    if not isinstance(data.get("return_url"), str):
        return "return_url must be a string"
    return None


def _presented_credential(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(header name, scheme, secret) of the credential a request carries."""
    api_key = headers.get("x-api-key")
    if api_key:
        return "X-Api-Key", "api_key", api_key
    authorization = headers.get("authorization")
    if not authorization:
        return None, None, None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return "Authorization", "bearer", value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:
            return "Authorization", "basic", None
        _, _, password = decoded.partition(":")
        return "Authorization", "basic", password
    return "Authorization", scheme.lower(), None


def _basic_user_ok(request: Request, conn: GatewayConnection) -> bool:
    value = request.headers.get("authorization", "").partition(" ")[2]
    try:
        user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except ValueError:
        return False
    return user == f"user-{conn.connection_id}"


@asynccontextmanager
async def serve_nexus_gateway(
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    strategy: str = "oauth2",
    outcome: str = "ACTIVE",
    auto_consent_after: int | None = None,
    token_ttl: float | None = 3600.0,
) -> AsyncIterator[NexusGateway]:
    """Run a development gateway for the block; ``gw.url`` is its base URL."""
    gateway = NexusGateway(ProviderSettings(strategy, outcome, auto_consent_after, token_ttl))
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.serve, host, port)
        try:
            yield gateway
        finally:
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve a development gateway until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m jarvis_trio.testing.nexus_gateway",
        description="Development Nexus gateway on loopback (not for production).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--strategy", choices=STRATEGIES, default="oauth2")
    parser.add_argument(
        "--outcome", choices=OUTCOMES, default="ACTIVE", help="status a connection takes on consent"
    )
    parser.add_argument(
        "--auto-consent-after",
        type=int,
        default=None,
        metavar="N",
        help="give consent by itself after N polls answered PENDING",
    )
    parser.add_argument("--token-ttl", type=float, default=3600.0, metavar="SECONDS")
    parser.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before answering each /v1 call",
    )
    parser.add_argument(
        "--error-status",
        type=int,
        default=None,
        metavar="CODE",
        help="answer every /v1 call with this HTTP status",
    )
    parser.add_argument(
        "--conflict", action="store_true", help="answer request-connection with 409"
    )
    parser.add_argument(
        "--malformed",
        action="append",
        default=[],
        metavar="ENDPOINT=KIND",
        help=f"kinds: {', '.join(MALFORMED_KINDS)}",
    )
    args = parser.parse_args(argv)
    gateway = NexusGateway(
        ProviderSettings(args.strategy, args.outcome, args.auto_consent_after, args.token_ttl)
    )
    gateway.switches.delay = args.delay
    gateway.switches.error_status = args.error_status
    gateway.switches.conflict = args.conflict
    for item in args.malformed:
        endpoint, _, kind = item.partition("=")
        try:
            gateway.switches.malform(endpoint, kind)
        except ValueError as error:
            parser.error(str(error))

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(gateway.serve, args.host, args.port)
            print(
                f"Nexus development gateway on {url} (NEXUS_GATEWAY_URL={url}); "
                f"provider echo at {url}/echo",
                flush=True,
            )

    try:
        trio.run(run)
    except KeyboardInterrupt:
        print("stopped", flush=True)


if __name__ == "__main__":
    main()

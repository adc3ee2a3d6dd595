"""The node's admin HTTP endpoint, opt-in with ``admin_port`` (``JC_ADMIN_PORT``).

Routes (``GET``; JSON unless said otherwise)::

    /healthz   200 while the process serves (liveness; never needs a token)
    /readyz    200 once every agent's setup() finished and, with P2P and seeds, the node
               joined; 503 before (readiness; never needs a token)
    /members   the SWIM view: [{name, address, data_port, state, incarnation, agents, since,
               local}]
    /agents    every agent, local and remote, as list_peers() dicts
    /stats     every counter of the node (jarvis_trio.ops.stats.snapshot)
    /metrics   Prometheus text format (needs the ``metrics`` extra; 501 saying so without it)
    /events    newline-delimited JSON: a ``snapshot`` line with the members, then membership
               and agent events as they happen, until the client hangs up or the node stops
    /keys      the cluster keyring, as fingerprints; ``POST /keys/install|use|remove`` change
               it (:mod:`jarvis_trio.ops.admin_keys`; these always need the token)

Bound to ``admin_host`` (127.0.0.1 by default). With ``admin_token`` -- or, failing that, a
``cluster_key`` -- every route but the probes needs ``Authorization: Bearer <token>`` (401
otherwise). The server is :mod:`jarvis_trio._http`, run from the node's own nursery, with its
bounds (:data:`ADMIN_LIMITS`): a node never lets its admin port grow without limit.
"""

from __future__ import annotations

import hmac
import importlib.util
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import trio

from .._http import HttpLimits, HttpServer, Request, Response, json_response
from .admin_keys import KEY_ROUTES, handle_keys
from .stats import OperatedNode, mailbox_lag, snapshot

__all__ = ["ADMIN_LIMITS", "AdminApp", "serve_admin"]

log = logging.getLogger("jarvis_trio.ops.admin")

ADMIN_LIMITS = HttpLimits(
    max_clients=64,
    max_header=8192,
    max_body=4096,  # every route is a GET but the keyring's, whose body is one key
    idle_timeout=15.0,
    request_timeout=5.0,
    write_timeout=10.0,
    refuse_when_full=True,  # answer 503 at once: a probe never hangs behind idle clients
)
EVENTS_BUFFER = 1024
"""Events buffered per ``/events`` client; a client that reads slower loses the oldest
(it then receives a ``lost`` line with the count)."""
PROBES = frozenset({"/healthz", "/readyz"})
METRICS_HINT = "metrics need prometheus-client: pip install 'jarvis_trio[metrics]'\n"


class AdminApp:
    """The routes of one node's admin endpoint."""

    def __init__(self, mesh: OperatedNode, token: str | None) -> None:
        self.mesh = mesh
        self._token = None if token is None else token.encode()
        self.server: HttpServer | None = None
        self.unauthorized = 0

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), self._token
        )

    async def handle(self, request: Request) -> Response:
        """Answer one request (total: anything unexpected is a 4xx, never an exception)."""
        path = request.path.rstrip("/") or "/"
        if request.method not in ("GET", "HEAD") and path not in KEY_ROUTES:
            return json_response(405, {"error": f"{request.method} is not allowed; use GET"})
        if path not in PROBES and not self._authorized(request):
            self.unauthorized += 1
            return json_response(
                401,
                {"error": "this route needs Authorization: Bearer <admin token>"},
                [("www-authenticate", 'Bearer realm="jarvis-trio"')],
            )
        mesh = self.mesh
        if path in KEY_ROUTES:
            return handle_keys(request, path, mesh.node_id, mesh.keyring, self._token is not None)
        if path == "/healthz":
            return json_response(200, {"status": "ok", "node": mesh.node_id})
        if path == "/readyz":
            ready = mesh.ready
            return json_response(
                200 if ready else 503,
                {"ready": ready, "node": mesh.node_id, "state": mesh.state, "joined": mesh.joined},
            )
        if path == "/members":
            return json_response(200, [m.as_dict() for m in mesh.members()])
        if path == "/agents":
            return json_response(200, [info.as_dict() for info in mesh.directory.matching()])
        if path == "/stats":
            stats = snapshot(mesh, await mailbox_lag(mesh))
            if self.server is not None:
                stats["admin"] = {**self.server.counters, "unauthorized": self.unauthorized}
            return json_response(200, stats)
        if path == "/metrics":
            return await self._metrics()
        if path == "/events":
            return Response(200, content_type="application/x-ndjson", stream=self._events())
        return json_response(404, {"error": f"no route {path}", "routes": sorted(_ROUTES)})

    async def _metrics(self) -> Response:
        if importlib.util.find_spec("prometheus_client") is None:
            return Response(501, METRICS_HINT.encode(), "text/plain; charset=utf-8")
        from . import metrics  # prometheus-client is installed: safe to import now

        body, content_type = metrics.render(self.mesh, await mailbox_lag(self.mesh))
        return Response(200, body, content_type)

    async def _events(self) -> AsyncIterator[bytes]:
        mesh = self.mesh
        async with mesh.membership_events(agents=True, maxlen=EVENTS_BUFFER) as events:
            first: dict[str, Any] = {
                "event": "snapshot",
                "node": mesh.node_id,
                "members": [m.as_dict() for m in mesh.members()],
            }
            yield _line(first)
            async for event in events:
                yield _line(event.as_dict())


_ROUTES = (
    "/healthz",
    "/readyz",
    "/members",
    "/agents",
    "/stats",
    "/metrics",
    "/events",
    *KEY_ROUTES,
)


def _line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode() + b"\n"


async def serve_admin(
    mesh: OperatedNode, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``mesh``'s admin endpoint until cancelled; reports the bound ``(host, port)``."""
    config = mesh.config
    assert config.admin_port is not None
    app = AdminApp(mesh, config.admin_token or config.cluster_key)
    server = app.server = HttpServer(app.handle, limits=ADMIN_LIMITS, server_name="jarvis-trio")
    async with trio.open_nursery() as nursery:
        address = await nursery.start(server.serve, config.admin_host, config.admin_port)
        log.info(
            "node %s: admin endpoint on http://%s:%d%s",
            mesh.node_id,
            address[0],
            address[1],
            " (token required)" if app._token is not None else "",
            extra={"node": mesh.node_id},
        )
        task_status.started(address)

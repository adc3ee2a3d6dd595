"""A small, bounded HTTP/1.1 server on Trio sockets (h11), shared by the node's admin
endpoint and the development Nexus gateway.

Why h11 rather than hypercorn: both servers answer a handful of routes on loopback; h11 is
already a dependency (httpx needs it), it is sans-I/O so the server runs on plain Trio
streams in the nursery of whoever serves it (the node's own, for the admin endpoint), and the
whole server is this module — no ASGI layer, no second event-loop abstraction, nothing to
configure. Hypercorn would add a dependency and ~50 ms of import time for features (HTTP/2,
TLS termination, workers) an admin port does not use.

Bounds, each a clear outcome (:class:`HttpLimits`):

* ``max_clients`` concurrent connections; beyond it a new connection either waits in the
  listen backlog (``refuse_when_full=False``) or is answered ``503`` and closed at once, so
  that probes never hang behind idle connections;
* ``max_header`` bytes of request line + headers (``431``); ``max_body`` bytes of body
  (``413``; an oversized body is read to its end up to 16x the limit so that the client still
  sees the answer);
* ``idle_timeout`` seconds a keep-alive connection may stay silent, ``request_timeout``
  seconds to receive a whole request once it started, ``write_timeout`` seconds for an answer
  to be written; a connection that exceeds one is closed.

A handler returns a :class:`Response`; one with ``stream`` set is sent with chunked encoding,
chunk by chunk, until the iterator ends, the client disconnects or the server stops. A handler
that raises is logged and answered ``500``: it never takes the server down.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

__all__ = ["HttpLimits", "HttpServer", "Request", "Response", "json_response"]

_log = logging.getLogger("jarvis_trio.http")
_READ = 16384


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The bounds of one server (see the module docstring)."""

    max_clients: int = 64
    max_header: int = 8192
    max_body: int = 64 * 1024
    idle_timeout: float = 30.0
    request_timeout: float = 10.0
    write_timeout: float = 10.0
    refuse_when_full: bool = True


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request; header names are lower case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    """What a handler answers: a whole body, or a ``stream`` of chunks."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None


Handler = Callable[[Request], Awaitable[Response]]


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A JSON answer."""
    return Response(status, json.dumps(payload).encode(), "application/json", headers or [])


class HttpServer:
    """Serves ``handler`` with :class:`HttpLimits`; counts what it refuses."""

    def __init__(self, handler: Handler, *, limits: HttpLimits, server_name: str) -> None:
        self.handler = handler
        self.limits = limits
        self.server_name = server_name
        self.address: tuple[str, int] | None = None
        self.counters: dict[str, int] = {
            "connections": 0,
            "requests": 0,
            "refused_full": 0,
            "timeouts": 0,
            "bad_requests": 0,
            "handler_errors": 0,
        }
        self._active = 0

    @property
    def active(self) -> int:
        """Connections being served now."""
        return self._active

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` and serve until cancelled; reports the bound address."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        listener = listeners[0]
        for extra in listeners[1:]:
            await extra.aclose()
        sockname = listener.socket.getsockname()
        self.address = (host, sockname[1])
        slots = trio.Semaphore(self.limits.max_clients)
        async with listener, trio.open_nursery() as nursery:
            task_status.started(self.address)
            while True:
                if not self.limits.refuse_when_full:
                    await slots.acquire()
                try:
                    stream = await listener.accept()
                except BaseException:
                    if not self.limits.refuse_when_full:
                        slots.release()
                    raise
                if self.limits.refuse_when_full:
                    try:
                        slots.acquire_nowait()
                    except trio.WouldBlock:
                        self.counters["refused_full"] += 1
                        nursery.start_soon(self._refuse, stream)
                        continue
                nursery.start_soon(self._serve_client, stream, slots)

    async def _refuse(self, stream: trio.SocketStream) -> None:
        body = b'{"error": "too many connections"}'
        head = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        with (
            trio.move_on_after(1.0),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await stream.send_all(head + body)
            await stream.send_eof()
            # read what the client sent (a little, briefly) so that closing does not reset
            # the connection before it has read the answer
            drained = 0
            while drained < 65536 and (chunk := await stream.receive_some(_READ)):
                drained += len(chunk)
        await trio.aclose_forcefully(stream)

    async def _serve_client(self, stream: trio.SocketStream, slots: trio.Semaphore) -> None:
        limits = self.limits
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header)
        self.counters["connections"] += 1
        self._active += 1
        try:
            async with stream:
                while True:
                    request = await self._read_request(conn, stream)
                    if request is None:
                        return
                    if isinstance(request, Request):
                        self.counters["requests"] += 1
                        response = await self._call(request)
                    else:
                        self.counters["bad_requests"] += 1
                        response = json_response(request, {"error": _REASONS.get(request)})
                    if not await self._send(conn, stream, response):
                        return
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self._active -= 1
            slots.release()

    async def _call(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception as error:  # a bug in a route must not take the server down
            self.counters["handler_errors"] += 1
            _log.exception(
                "%s: handler failed on %s %s", self.server_name, request.method, request.path
            )
            return json_response(500, {"error": f"{type(error).__name__}: {error}"})

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> Request | int | None:
        """The next request, an HTTP error status to answer with, or ``None`` (end of
        stream, or a timeout: the connection is closed)."""
        limits = self.limits
        head: h11.Request | None = None
        body = bytearray()
        received = 0
        drain_limit = 16 * limits.max_body
        deadline: float | None = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as error:
                return error.error_status_hint
            if event is h11.NEED_DATA:
                # waiting for a request to begin is bounded by the idle timeout; once it has
                # begun, the whole of it must arrive within the request timeout
                now = trio.current_time()
                if deadline is None and (head is not None or conn.trailing_data[0]):
                    deadline = now + limits.request_timeout
                wait_until = deadline if deadline is not None else now + limits.idle_timeout
                data = None
                with trio.move_on_at(wait_until):
                    data = await stream.receive_some(_READ)
                if data is None:
                    self.counters["timeouts"] += 1
                    return None
                if deadline is None and data:
                    deadline = trio.current_time() + limits.request_timeout
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                # h11 bounds a head that arrives in pieces; one that arrives whole is
                # measured here
                size = len(event.method) + len(event.target) + 12
                size += sum(len(name) + len(value) + 4 for name, value in event.headers)
                if size > limits.max_header:
                    return 431
                head = event
            elif isinstance(event, h11.Data):
                received += len(event.data)
                if received > drain_limit:
                    return 413
                if received <= limits.max_body:
                    body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                if received > limits.max_body:
                    return 413
                target = urlsplit(head.target.decode("ascii", errors="replace"))
                headers = {
                    name.decode("latin-1").lower(): value.decode("latin-1")
                    for name, value in head.headers
                }
                return Request(
                    head.method.decode("ascii", errors="replace"),
                    target.path,
                    target.query,
                    headers,
                    bytes(body),
                )
            else:
                return None

    async def _send(
        self, conn: h11.Connection, stream: trio.SocketStream, response: Response
    ) -> bool:
        """Write ``response``; ``False`` when the connection must be closed."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        headers = [("content-type", response.content_type), ("server", self.server_name)]
        headers += response.headers
        if response.stream is None:
            headers.append(("content-length", str(len(response.body))))
        head = h11.Response(status_code=response.status, headers=headers)
        with trio.move_on_after(self.limits.write_timeout) as timer:
            await _write(conn, stream, head)
            if response.stream is None:
                await _write(conn, stream, h11.Data(data=response.body))
        if timer.cancelled_caught:
            self.counters["timeouts"] += 1
            return False
        if response.stream is not None and not await self._stream(conn, stream, response.stream):
            return False
        with trio.move_on_after(self.limits.write_timeout) as timer:
            await _write(conn, stream, h11.EndOfMessage())
        # a streamed answer ends its connection (what the client sent meanwhile was not read)
        return not timer.cancelled_caught and response.stream is None

    async def _stream(
        self, conn: h11.Connection, stream: trio.SocketStream, chunks: AsyncIterator[bytes]
    ) -> bool:
        """Send chunks until the iterator ends (``True``) or the client goes away."""
        gone = False

        async def watch_for_hangup(cancel: trio.CancelScope) -> None:
            nonlocal gone
            # the client sends nothing more on a streamed response: end of stream (or an
            # error) means it went away, and the stream is cancelled at once
            try:
                while await stream.receive_some(_READ):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            gone = True
            cancel.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_for_hangup, nursery.cancel_scope)
                try:
                    async for chunk in chunks:
                        with trio.move_on_after(self.limits.write_timeout) as timer:
                            await _write(conn, stream, h11.Data(data=chunk))
                        if timer.cancelled_caught:
                            self.counters["timeouts"] += 1
                            gone = True
                            break
                finally:
                    aclose = getattr(chunks, "aclose", None)
                    if aclose is not None:
                        with trio.CancelScope(shield=True):
                            await aclose()
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return not gone


async def _write(conn: h11.Connection, stream: trio.SocketStream, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


_REASONS = {
    400: "malformed request",
    413: "request body too large",
    431: "request header too large",
}

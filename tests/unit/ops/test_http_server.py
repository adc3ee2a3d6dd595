"""The shared HTTP server (jarvis_trio._http) on real loopback sockets: its bounds, its
totality, and streamed answers that end when the client hangs up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from jarvis_trio._http import HttpLimits, HttpServer, Request, Response, json_response


class App:
    def __init__(self) -> None:
        self.stream_ended = trio.Event()

    async def __call__(self, request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("a bug in a route")
        if request.path == "/stream":
            return Response(200, content_type="application/x-ndjson", stream=self._ticks())
        return json_response(
            200, {"path": request.path, "query": request.query, "body": len(request.body)}
        )

    async def _ticks(self) -> AsyncIterator[bytes]:
        try:
            for n in range(1_000_000):
                yield b'{"n": %d}\n' % n
                await trio.sleep(0.01)  # a slow, endless stream: the client hangs up on it
        finally:
            self.stream_ended.set()


async def _raw(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        if data:
            await stream.send_all(data)
        got = bytearray()
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                got += chunk
        return bytes(got)


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
async def server(nursery: trio.Nursery, app: App) -> HttpServer:
    limits = HttpLimits(
        max_clients=2, max_header=1024, max_body=100, idle_timeout=0.3, request_timeout=0.3
    )
    served = HttpServer(app, limits=limits, server_name="test")
    await nursery.start(served.serve, "127.0.0.1", 0)
    return served


def _port(server: HttpServer) -> int:
    assert server.address is not None
    return server.address[1]


async def test_routes_answer_and_a_failing_handler_is_a_500(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{_port(server)}") as client:
        ok = await client.get("/x?y=1")
        assert ok.json() == {"path": "/x", "query": "y=1", "body": 0}
        assert ok.headers["server"] == "test"
        boom = await client.get("/boom")
        assert boom.status_code == 500 and "a bug in a route" in boom.json()["error"]
        assert (await client.get("/after")).status_code == 200  # still serving
    assert server.counters["handler_errors"] == 1


async def test_oversized_head_and_body_and_garbage_get_their_status(server: HttpServer) -> None:
    port = _port(server)
    head = await _raw(port, b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 4000 + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431")
    body = await _raw(
        port, b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n" + b"b" * 500
    )
    assert body.startswith(b"HTTP/1.1 413")
    garbage = await _raw(port, b"\x00\x01 not http\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400")
    assert server.counters["bad_requests"] == 3


async def test_silent_and_slow_clients_are_cut_off(server: HttpServer) -> None:
    port = _port(server)
    with trio.fail_after(5):
        # connects and says nothing: closed after the idle timeout, nothing answered
        assert await _raw(port, b"") == b""
        # starts a request and never finishes it (slowloris): closed after the request timeout
        assert await _raw(port, b"GET / HTTP/1.1\r\nhost: x\r\n") == b""
    assert server.counters["timeouts"] == 2


async def test_connections_beyond_the_bound_get_503_at_once(server: HttpServer) -> None:
    port = _port(server)
    idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    # the accept loop takes a slot before accepting the next connection: in backlog order,
    # the first two hold both slots by the time the third is accepted
    refused = await _raw(port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 503")
    assert server.counters["refused_full"] == 1
    for stream in idle:
        await stream.aclose()


async def test_a_streamed_answer_ends_when_the_client_hangs_up(
    server: HttpServer, app: App
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", _port(server))
    await stream.send_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    got = b""
    with trio.fail_after(5):
        while got.count(b'{"n"') < 3:
            got += await stream.receive_some(4096)
        assert b"transfer-encoding: chunked" in got.lower()
        await stream.aclose()
        await app.stream_ended.wait()

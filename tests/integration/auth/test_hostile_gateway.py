"""The Nexus client and the auth manager against a gateway that answers anything: a real
HTTP server on 127.0.0.1 that writes whatever raw bytes a test (or hypothesis) chooses --
broken gzip, JSON nested thousands deep, wrong lengths, a body dripped a byte at a time.
Whatever it sends, callers get the AuthError family, background tasks keep the node up, and
no call outlives its deadline."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarvis_trio.auth.client import NexusClient
from jarvis_trio.auth.manager import AuthenticationManager, AuthSettings
from jarvis_trio.errors import AuthError, NexusProtocolError, NexusUnavailable

Answer = Callable[[str, str], list[bytes]]  # (method, path) -> chunks to write, in order


def response(status: int, body: bytes, *headers: tuple[str, str]) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", "connection: close"]
    head += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class HostileServer:
    """Answers each request with the chunks ``answer(method, path)`` returns, waiting
    ``pause`` seconds between chunks, then closes the connection."""

    def __init__(self, answer: Answer, pause: float = 0.0) -> None:
        self.answer = answer
        self.pause = pause
        self.port = 0
        self.requests: list[str] = []
        self._arrived = trio.Event()  # set at each request, then replaced

    def count(self, prefix: str) -> int:
        return sum(1 for path in self.requests if path.startswith(prefix))

    async def wait_count(self, prefix: str, count: int) -> None:
        """Return once ``count`` requests for ``prefix`` have arrived, woken by each request
        (bound it with ``trio.fail_after``)."""
        while self.count(prefix) < count:
            await self._arrived.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                method, path = data.split(b" ", 2)[:2]
                self.requests.append(path.decode())
                self._arrived.set()
                self._arrived = trio.Event()
                for chunk in self.answer(method.decode(), path.decode()):
                    await stream.send_all(chunk)
                    if self.pause:
                        await trio.sleep(self.pause)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return


@asynccontextmanager
async def hostile(answer: Answer, pause: float = 0.0) -> AsyncIterator[HostileServer]:
    server = HostileServer(answer, pause)
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            partial(trio.serve_tcp, server._serve, 0, host="127.0.0.1")
        )
        server.port = listener.socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


async def every_call(client: NexusClient) -> list[BaseException | object]:
    """Each client call once; what it returned or raised."""
    outcomes: list[BaseException | object] = []
    calls = [
        lambda: client.request_connection("u", "github", ["repo"], "about:blank"),
        lambda: client.check_connection("c1"),
        lambda: client.get_token("c1"),
        lambda: client.refresh("c1"),
    ]
    for call in calls:
        try:
            outcomes.append(await call())
        except AuthError as error:
            outcomes.append(error)
    return outcomes


deep_json = b"[" * 50_000 + b"]" * 50_000
bodies = st.one_of(
    st.binary(max_size=512),
    st.sampled_from(
        [
            deep_json,
            b'{"status": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b'{"status": "ACTIVE"}',
            b'{"type": "oauth2", "credentials": {"access_token": "t\\u00e9\\u2028"}}',
            b'{"type": "oauth2", "credentials": {"access_token": "ok"}, "expires_at": 1e999}',
            b'{"type": "basic_auth", "credentials": {"username": 1, "password": null}}',
            b'{"connection_id": "c", "authUrl": "https://x"}',
            b'{"connection_id": "' + b"x" * 5000 + b'", "authUrl": "https://x"}',
            b"\xff\xfe{}",
            b"1" * 10_000,
        ]
    ),
)
statuses = st.sampled_from([200, 201, 204, 301, 302, 401, 404, 409, 500, 503, 599])
encodings = st.sampled_from(["", "gzip", "deflate", "br", "identity, gzip", "x-unknown"])


@given(status=statuses, body=bodies, encoding=encodings, lie=st.integers(-3, 3))
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
def test_no_answer_escapes_the_auth_error_family(
    status: int, body: bytes, encoding: str, lie: int
) -> None:
    """Property: for any status, body, content encoding and declared length, every client
    call returns or raises an AuthError (a broken gzip body used to raise DecodingError,
    deep JSON RecursionError)."""

    def answer(method: str, path: str) -> list[bytes]:
        headers = [("content-type", "application/json")]
        if encoding:
            headers.append(("content-encoding", encoding))
        if status in (301, 302):
            headers.append(("location", path))  # a redirect loop
        raw = response(status, body, *headers)
        if lie:  # a content-length that does not match the body
            raw = raw.replace(
                f"content-length: {len(body)}".encode(),
                f"content-length: {max(0, len(body) + lie)}".encode(),
            )
        return [raw]

    async def main() -> None:
        async with hostile(answer) as server, httpx.AsyncClient() as http:
            client = NexusClient(server.url, http, timeout=2.0)
            with trio.fail_after(20):
                outcomes = await every_call(client)
        assert len(outcomes) == 4

    trio.run(main)


async def test_a_broken_gzip_body_and_deep_json_are_protocol_errors() -> None:
    def answer(method: str, path: str) -> list[bytes]:
        if "check-connection" in path:
            return [response(200, b"not gzip at all", ("content-encoding", "gzip"))]
        return [response(200, deep_json)]

    async with hostile(answer) as server, httpx.AsyncClient() as http:
        client = NexusClient(server.url, http, timeout=2.0)
        with pytest.raises(NexusProtocolError, match=r"unreadable.*DecodingError"):
            await client.check_connection("c1")
        with pytest.raises(NexusProtocolError, match="non-JSON"):
            await client.get_token("c1")


async def test_a_dripping_gateway_cannot_hold_a_call_past_its_timeout() -> None:
    body = json.dumps({"status": "ACTIVE"}).encode()
    raw = response(200, body)

    def answer(method: str, path: str) -> list[bytes]:
        return [raw[i : i + 1] for i in range(len(raw))]  # one byte every 0.5 s

    async with hostile(answer, pause=0.5) as server, httpx.AsyncClient() as http:
        client = NexusClient(server.url, http, timeout=1.0)
        start = trio.current_time()
        with pytest.raises(NexusUnavailable, match=r"within 1\.0 s"):
            await client.check_connection("c1")
        # The whole call is bounded, not each read: with a per-read timeout this answer
        # (about 70 bytes, one every 0.5 s) would take some 35 s. The margin over 1 s is for
        # a loaded machine's scheduling, far below what a per-read timeout would allow.
        assert trio.current_time() - start < 5.0


async def test_the_refresh_task_degrades_and_recovers_instead_of_stopping_the_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"on": False}
    good_token = json.dumps({"type": "api_key", "credentials": {"api_key": "k"}}).encode()

    def answer(method: str, path: str) -> list[bytes]:
        if path.startswith("/v1/request-connection"):
            payload = {"connection_id": "c1", "authUrl": "https://consent.example/c1"}
            return [response(200, json.dumps(payload).encode())]
        if broken["on"]:  # every other answer: a broken gzip body, or deep JSON
            if path.startswith("/v1/refresh"):
                return [response(200, b"\x1f\x8b garbage", ("content-encoding", "gzip"))]
            return [response(200, deep_json)]
        if path.startswith("/v1/check-connection"):
            return [response(200, b'{"status": "ACTIVE"}')]
        if path.startswith("/v1/token"):
            return [response(200, good_token)]
        return [response(200, b"{}")]

    auth = AuthSettings(
        poll_interval=0.05, refresh_interval=0.2, http_timeout=2.0, consent_handler=lambda p: None
    )
    with trio.fail_after(20), caplog.at_level(logging.WARNING, logger="jarvis_trio.auth"):
        async with (
            hostile(answer) as server,
            httpx.AsyncClient() as http,
            trio.open_nursery() as nursery,
        ):
            manager = AuthenticationManager(server.url, http=http, nursery=nursery, settings=auth)
            connection_id = await manager.get_connection_id("github", user_id="u")
            broken["on"] = True
            refreshes = server.count("/v1/refresh")
            # the watch keeps retrying: three more refreshes reach the server
            await server.wait_count("/v1/refresh", refreshes + 3)
            with pytest.raises(AuthError):  # a caller gets the family, not RecursionError
                await manager.get_token(connection_id)
            broken["on"] = False
            token = await manager.get_token(connection_id)
            assert token.headers == {"X-Api-Key": "k"}
            assert manager.cached_connections()  # still watched
            manager._close()
            nursery.cancel_scope.cancel()
    warnings = [r.getMessage() for r in caplog.records if "refresh of c1 failed" in r.getMessage()]
    assert warnings and "retrying in" in warnings[0]

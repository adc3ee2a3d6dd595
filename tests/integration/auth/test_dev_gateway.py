"""The development gateway itself, spoken to with a plain HTTP client, and its command line."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from jarvis_trio.testing.nexus_gateway import (
    MAX_BODY,
    NexusGateway,
    ProviderSettings,
    serve_nexus_gateway,
)
from jarvis_trio.testing.ports import free_port


@pytest.fixture
async def gw() -> AsyncIterator[NexusGateway]:
    async with serve_nexus_gateway() as gateway:
        yield gateway


def request_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "user_id": str(uuid.uuid4()),
        "provider_name": "github",
        "scopes": ["repo"],
        "return_url": "about:blank",
    }
    body.update(overrides)
    return body


async def test_protocol_round_trip_by_hand(gw: NexusGateway) -> None:
    async with httpx.AsyncClient(base_url=gw.url) as client:
        created = await client.post("/v1/request-connection", json=request_body())
        assert created.status_code == 200
        cid, auth_url = created.json()["connection_id"], created.json()["authUrl"]
        assert (await client.get(f"/v1/check-connection/{cid}")).json() == {"status": "PENDING"}
        assert (await client.get(f"/v1/token/{cid}")).status_code == 409
        assert (await client.get("/echo")).status_code == 401
        page = await client.get(auth_url)
        assert page.status_code == 200
        assert "ACTIVE" in page.text
        assert (await client.get(f"/v1/check-connection/{cid}")).json() == {"status": "ACTIVE"}
        token = (await client.get(f"/v1/token/{cid}")).json()
        assert token["type"] == "oauth2"
        assert isinstance(token["expires_at"], float)
        bearer = {"Authorization": f"Bearer {token['credentials']['access_token']}"}
        echo = await client.get("/echo", headers=bearer)
        assert echo.json()["authenticated"] is True
        assert (await client.post(f"/v1/refresh/{cid}")).json() == {"refreshed": True}
        # Old credentials stay valid after a refresh until invalidated.
        assert (await client.get("/echo", headers=bearer)).status_code == 200
        gw.invalidate_credentials(cid)
        assert (await client.get("/echo", headers=bearer)).status_code == 401


async def test_second_request_while_pending_is_409_with_the_same_connection(
    gw: NexusGateway,
) -> None:
    body = request_body()
    async with httpx.AsyncClient(base_url=gw.url) as client:
        first = await client.post("/v1/request-connection", json=body)
        second = await client.post("/v1/request-connection", json=body)
    assert second.status_code == 409
    assert second.json() == first.json()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (request_body(user_id="ann"), "user_id must be a UUID"),
        (request_body(provider_name=""), "provider_name"),
        (request_body(scopes="repo"), "scopes"),
        (request_body(return_url=None), "return_url"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_request_connection_bodies_are_400(
    gw: NexusGateway, body: object, named: str
) -> None:
    async with httpx.AsyncClient(base_url=gw.url) as client:
        answer = await client.post("/v1/request-connection", json=body)
    assert answer.status_code == 400
    assert named in answer.json()["error"]


async def test_routing_errors(gw: NexusGateway) -> None:
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/v1/check-connection/nope")).status_code == 404
        assert (await client.get("/v1/request-connection")).status_code == 405
        assert (await client.get("/v1/unknown")).status_code == 404
        assert (await client.get("/elsewhere")).status_code == 404
        assert (await client.get("/consent/nope")).status_code == 404
        too_big = await client.post("/v1/request-connection", content=b"x" * (MAX_BODY + 10))
        assert too_big.status_code == 413
        assert (await client.get("/health")).json() == {"ok": True}


async def test_malformed_http_gets_400_and_the_server_keeps_serving(gw: NexusGateway) -> None:
    port = int(gw.url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"NOT-HTTP\r\n\r\n")
        with trio.fail_after(5):
            reply = await stream.receive_some(4096)
    assert reply.startswith(b"HTTP/1.1 400")
    async with httpx.AsyncClient() as client:
        assert (await client.get(gw.url + "/health")).status_code == 200


async def test_provider_settings_choose_strategy_and_outcome(gw: NexusGateway) -> None:
    gw.provider("stripe").strategy = "api_key"
    gw.provider("stripe").auto_consent_after = 0
    async with httpx.AsyncClient(base_url=gw.url) as client:
        cid = (
            await client.post("/v1/request-connection", json=request_body(provider_name="stripe"))
        ).json()["connection_id"]
        assert (await client.get(f"/v1/check-connection/{cid}")).json()["status"] == "ACTIVE"
        token = (await client.get(f"/v1/token/{cid}")).json()
    assert token["type"] == "api_key"
    assert gw.provider("github").strategy == "oauth2"
    with pytest.raises(ValueError, match="strategy"):
        ProviderSettings(strategy="kerberos")
    with pytest.raises(ValueError, match="endpoint"):
        gw.switches.malform("token-please", "not-json")


async def test_command_line_serves_until_stopped() -> None:
    port = free_port()
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "jarvis_trio.testing.nexus_gateway",
            "--port",
            str(port),
            "--strategy",
            "api_key",
            "--auto-consent-after",
            "0",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = b""
        with trio.fail_after(20):
            while b"\n" not in banner:
                chunk = await process.stdout.receive_some(1024)
                assert chunk, "the gateway exited before printing its URL"
                banner += chunk
        url = f"http://127.0.0.1:{port}"
        assert url.encode() in banner
        async with httpx.AsyncClient(base_url=url) as client:
            cid = (await client.post("/v1/request-connection", json=request_body())).json()[
                "connection_id"
            ]
            assert (await client.get(f"/v1/check-connection/{cid}")).json()["status"] == "ACTIVE"
            assert (await client.get(f"/v1/token/{cid}")).json()["type"] == "api_key"
    finally:
        process.kill()
        with trio.fail_after(10):
            await process.wait()


async def test_connection_table_is_bounded(
    gw: NexusGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jarvis_trio.testing.nexus_gateway.MAX_CONNECTIONS", 2)
    async with httpx.AsyncClient(base_url=gw.url) as client:
        codes = [
            (await client.post("/v1/request-connection", json=request_body())).status_code
            for _ in range(3)
        ]
    assert codes == [200, 200, 503]
    assert len(gw.connections) == 2


async def test_an_internal_error_is_a_500_and_the_server_keeps_serving(
    gw: NexusGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: object) -> None:
        raise RuntimeError("bug in a handler")

    async with httpx.AsyncClient(base_url=gw.url) as client:
        cid = (await client.post("/v1/request-connection", json=request_body())).json()[
            "connection_id"
        ]
        monkeypatch.setattr(gw, "_check", broken)
        failed = await client.get(f"/v1/check-connection/{cid}")
        assert failed.status_code == 500
        assert "bug in a handler" in failed.json()["error"]
        assert (await client.get("/health")).status_code == 200


async def test_a_client_that_never_reads_is_dropped_after_the_write_deadline() -> None:
    """Pipelined requests from a client that never reads its answers fill the socket
    buffers; the gateway's write then waits at most ``write_timeout`` and drops the client,
    so such clients cannot hold its slots forever."""
    gateway = NexusGateway()
    gateway.limits = dataclasses.replace(gateway.limits, write_timeout=0.2)
    request = b"GET /v1/check-connection/nope HTTP/1.1\r\nhost: x\r\n\r\n"
    with trio.fail_after(30):
        async with trio.open_nursery() as server:
            url = await server.start(gateway.serve)
            assert gateway.http is not None
            counters = gateway.http.counters
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
            stream = trio.SocketStream(sock)
            # the flood ends when the gateway drops the connection: it closes its socket with
            # our requests unread, and the kernel resets ours
            with pytest.raises(trio.BrokenResourceError):
                while True:
                    await stream.send_all(request * 64)
            assert counters["timeouts"] == 1
            await stream.aclose()
            async with httpx.AsyncClient() as http:  # still serving
                answer = await http.get(f"{url}/v1/check-connection/nope")
            assert answer.status_code == 404
            server.cancel_scope.cancel()

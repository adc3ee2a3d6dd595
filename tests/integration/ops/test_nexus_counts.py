"""Nexus calls are counted by endpoint and outcome (what ``jarvis_nexus_calls_total`` shows),
against the development gateway on loopback."""

from __future__ import annotations

import httpx
import pytest
import trio

from jarvis_trio.auth.client import NexusClient
from jarvis_trio.errors import NexusProtocolError, NexusUnavailable
from jarvis_trio.testing.nexus_gateway import serve_nexus_gateway
from jarvis_trio.testing.ports import free_port


async def test_calls_are_counted_by_endpoint_and_outcome() -> None:
    with trio.fail_after(10):
        async with serve_nexus_gateway() as gateway, httpx.AsyncClient() as http:
            client = NexusClient(gateway.url, http, timeout=5)
            made = await client.request_connection(
                "5b6f2a0e-0000-4000-8000-000000000001", "github", ["repo"], "http://x/"
            )
            assert await client.check_connection(made.connection_id) == "PENDING"
            gateway.switches.error_status = 503
            with pytest.raises(NexusUnavailable):
                await client.check_connection(made.connection_id)
            gateway.switches.error_status = None
            gateway.switches.malform("check-connection", "not-json")
            with pytest.raises(NexusProtocolError):
                await client.check_connection(made.connection_id)
            down = NexusClient(f"http://127.0.0.1:{free_port()}", http, timeout=5)
            with pytest.raises(NexusUnavailable):
                await down.check_connection("c-1")
    assert client.calls == {
        ("request-connection", "ok"): 1,
        ("check-connection", "ok"): 1,
        ("check-connection", "unavailable"): 1,
        ("check-connection", "protocol_error"): 1,
    }
    assert down.calls == {("check-connection", "unavailable"): 1}

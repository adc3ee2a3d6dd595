"""The seed's TechnicalAgent pattern inside a real node, against the development gateway:
``self._auth_manager.get_connection_id(...)`` then ``NexusCallProxy(connection_id)`` with no
manager passed, exactly as the documentation writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from jarvis_trio.agent import CustomAgent
from jarvis_trio.auth import AuthenticationManager, ConnectionId
from jarvis_trio.auth.nexus import NexusCallProxy
from jarvis_trio.mesh import open_mesh
from jarvis_trio.testing.nexus_gateway import NexusGateway, serve_nexus_gateway


class TechnicalAgent(CustomAgent):
    role = "technical_support"
    requires_auth = True

    async def handle_query(self, url: str) -> dict[str, Any]:
        connection_id = await self._auth_manager.get_connection_id("github")
        proxy = NexusCallProxy(connection_id)
        result: dict[str, Any] = await proxy.get(url)
        return result


class BillingAgent(CustomAgent):
    role = "billing_support"


def mesh_config(gw: NexusGateway, tmp_path: Path) -> dict[str, Any]:
    return {"nexus_gateway_url": gw.url, "blob_storage_path": str(tmp_path / "blobs")}


async def test_scripted_call_from_main_like_the_seed(tmp_path: Path) -> None:
    # consent after 0 polls: the default 2 s poll interval is never waited for
    async with (
        serve_nexus_gateway(auto_consent_after=0) as gw,
        open_mesh(
            mesh_config(gw, tmp_path),
            agents=[TechnicalAgent, BillingAgent],
            environ={},
            env_file=None,
        ) as mesh,
    ):
        technical = next(a for a in mesh.agents if isinstance(a, TechnicalAgent))
        billing = next(a for a in mesh.agents if isinstance(a, BillingAgent))
        assert isinstance(technical._auth_manager, AuthenticationManager)
        assert billing._auth_manager is None
        with trio.fail_after(10):
            result = await technical.handle_query(gw.url + "/echo")
    assert result["ok"] is True
    assert result["body"]["scheme"] == "bearer"


async def test_plain_string_id_inside_an_agent_task_finds_the_manager(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    class Caller(CustomAgent):
        role = "caller"
        requires_auth = True

        async def setup(self) -> None:
            connection_id = await self._auth_manager.get_connection_id("github")
            assert isinstance(connection_id, ConnectionId)
            proxy = NexusCallProxy(str(connection_id))  # no manager reference on a plain str
            seen.append(await proxy.get(gw.url + "/echo"))

    async with serve_nexus_gateway(auto_consent_after=0) as gw:
        with trio.fail_after(10):
            async with open_mesh(
                mesh_config(gw, tmp_path), agents=[Caller], environ={}, env_file=None
            ):
                pass
    assert [r["status_code"] for r in seen] == [200]

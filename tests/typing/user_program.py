"""A user's program written against the documented API, checked by ``mypy --strict``.

It is what a user of the installed package would write -- the seeds' patterns (mailbox routing,
Nexus auth, blob escalation, the ScoutAgent's task-style ``run``, every PeerClient call) --
importing only the documented paths. ``make test`` type-checks it (``py.typed`` makes the
package's hints visible) and ``test_user_program.py`` runs it, so it can rot neither way.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from jarvis_trio import (
    CustomAgent,
    IncomingMessage,
    MailboxMessage,
    Mesh,
    PeerInfo,
    open_mesh,
)
from jarvis_trio.auth.nexus import NexusCallProxy


class GatewayAgent(CustomAgent):
    role = "gateway"

    def route(self, query: str, target_id: str) -> str:
        # the seed's documented call: self.mailbox is injected, never None once started
        return self.mailbox.send(target_id, {"query": query, "routed_by": self.agent_id})


class TechnicalAgent(CustomAgent):
    role = "technical_support"
    requires_auth = True

    async def handle_query(self, query: str) -> str:
        if self._auth_manager:
            try:
                connection_id = await self._auth_manager.get_connection_id("github")
            except ValueError as exc:  # no NEXUS_GATEWAY_URL: degrade gracefully
                return f"no auth: {exc}"
            proxy = NexusCallProxy(connection_id)
            result = await proxy.get("https://api.github.com/user")
            return str(result["status_code"])
        return "auth disabled"

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        await self.handle_query(str(message.payload["query"]))


class EscalationAgent(CustomAgent):
    role = "escalation"

    async def handle_query(self, query: str, customer_id: str) -> str:
        if self._blob_storage:
            return await self._blob_storage.save(
                f"escalations/{customer_id}-{int(time.time())}.txt", f"Customer: {customer_id}"
            )
        return ""

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        name = await self.handle_query(message.data["query"], message.data["customer_id"])
        return {"status": "escalated", "blob": name}


class ScoutAgent(CustomAgent):
    name = "Scout"
    role = "scout"
    capabilities = ["reconnaissance", "data-gathering"]

    async def run(self, task: str, context: dict[str, Any]) -> dict[str, Any]:
        delivered = await self.peers.notify(
            "escalation", {"event": "data_ready"}, context={"mission_id": context["mission_id"]}
        )
        peer: PeerInfo | None = self.peers.discover_one(role="escalation", strategy="random")
        reply = None
        if peer:
            reply = await self.peers.request(
                peer.agent_id, {"query": task, "customer_id": "c-1"}, timeout=15
            )
            self.peers.record_peer_usage(peer.agent_id)
        return {"task": task, "notified": delivered, "reply": reply}


class Analyst(CustomAgent):
    role = "analyst"

    async def run(self) -> None:
        message = await self.peers.receive(timeout=0)
        if message is not None and message.is_request:
            await self.peers.respond(message, {"status": "acknowledged"})
        await trio.sleep_forever()


async def documented_form() -> dict[str, Any]:
    """``Mesh(config=...)``, ``add``, ``start``, ``execute_task``, ``stop``."""
    mesh = Mesh(config={"p2p_enabled": False}, env_file=None, environ={})
    gateway = mesh.add(GatewayAgent)
    technical = mesh.add(TechnicalAgent)
    mesh.add(EscalationAgent)
    scout = mesh.add(ScoutAgent)
    await mesh.start()
    try:
        assert isinstance(gateway, GatewayAgent)
        gateway.route("my API returns 401", technical.agent_id)
        result: Any = await scout.execute_task("sector-7", {"mission_id": "abc123"})
        peers = gateway.peers
        assert peers.my_role == "gateway" and peers.my_id == gateway.agent_id
        assert peers.get_peer(role="scout") is not None
        assert [p["role"] for p in peers.list_peers()]
        assert "scout" in peers.list_roles() and len(peers.registry) == 3
        assert len(peers.discover(capability="reconnaissance", strategy="round_robin")) == 1
        assert await peers.broadcast({"hello": True}) == 3
        ask_id = await peers.ask_async("escalation", {"query": "q", "customer_id": "c-2"})
        answer = await peers.check_inbox(ask_id, timeout=5)
        assert answer is not None and answer["status"] == "escalated"
        return {"scout": result}
    finally:
        await mesh.stop()


async def main() -> None:
    """Both faces: the documented form, then the structured one."""
    result = await documented_form()
    assert result["scout"]["reply"]["status"] == "escalated"
    async with open_mesh({"p2p_enabled": False}, env_file=None, environ={}) as mesh:
        analyst = await mesh.start_agent(Analyst)
        assert analyst.is_started


if __name__ == "__main__":
    trio.run(main)

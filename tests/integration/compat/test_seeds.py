"""The seed documents' code, run under ``asyncio.run`` and under ``trio.run``.

Each scenario is one ``main()`` written against the documented API only (``Mesh``, ``add``,
``start``, agent methods called from ``main``, ``stop``), run once per backend; ``run_main``
proves which library runs it. The classes are the seeds' snippets with their imports changed
(``jarviscore`` -> ``jarvis_trio``); where a snippet calls a helper the seed does not show
(``gather_data``, ``_find_agent_id``, the specialists' mailbox loop), a subclass or an added
method supplies it. The meshes are given ``env_file=None, environ={}`` so that nothing in the
environment of the test run changes their configuration. The support swarm runs with its
seed configuration (Redis, p2p, production auth against a Nexus gateway) except for what a
test run must change: a free port, faster SWIM, the development gateway, and that gateway's
echo endpoint instead of ``https://api.github.com/user``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest
from seed_snippets import ScoutAgent, ask_every_analyst

from jarvis_trio.agent import CustomAgent
from jarvis_trio.mesh import Mesh
from jarvis_trio.peers.messages import IncomingMessage
from jarvis_trio.services import MailboxMessage
from jarvis_trio.testing.nexus_gateway import NexusGateway
from jarvis_trio.testing.redis_server import RedisServer

from .conftest import BACKENDS, run_main

# -- seeds/p2p-communication.txt: "Practical Example: CustomAgent with Peer Communication" ------


class FieldScout(ScoutAgent):
    """The helpers the seed's ScoutAgent calls but does not show, and the validation side."""

    async def gather_data(self, task: str) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        return {"sector": task, "readings": [3, 1, 4]}

    async def re_gather(self, task: str, feedback: str) -> dict[str, Any]:
        return {"sector": task, "readings": [3, 1, 4], "units": "m", "fixed": feedback}

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        data = message.data["data"]
        if "units" not in data:
            return {"valid": False, "feedback": "readings have no units"}
        return {"valid": True}


class AnalystAgent(CustomAgent):
    role = "analyst"
    capabilities = ["analysis"]

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.events: list[dict[str, Any]] = []

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        self.events.append(
            {"event": message.data["event"], "from": message.sender, "context": message.context}
        )

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("question") == "events":
            return {"events": list(self.events)}
        return {"analysis": f"{message.data['question']} by {self.agent_id}"}


def jarviscore_mesh(mode: str | None, **kwargs: Any) -> Mesh:
    """``Mesh(...)`` as written (``mode=None``) or as JarvisCore code writes it (``mode=...``):
    then it must warn that ``mode`` has no effect, and nothing else may change."""
    if mode is None:
        return Mesh(**kwargs)
    with pytest.warns(DeprecationWarning, match="no effect"):
        return Mesh(mode=mode, **kwargs)


@pytest.mark.parametrize("mode", [None, "autonomous"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_scout_example(backend: str, mode: str | None) -> None:
    async def main() -> dict[str, Any]:
        mesh = jarviscore_mesh(mode, config={"p2p_enabled": False}, env_file=None, environ={})
        mesh.add(AnalystAgent)
        scout = mesh.add(FieldScout)
        checker = mesh.add(FieldScout)
        await mesh.start()
        try:
            result = await scout.execute_task("sector-7", {"mission_id": "abc123"})
            # Messages are handled in arrival order: the notify came before this request.
            seen = await checker.peers.request("analyst", {"question": "events"}, timeout=5)
        finally:
            await mesh.stop()
        assert seen is not None
        return {"result": result, "events": seen["events"], "scout": scout.agent_id}

    outcome = run_main(backend, main)
    assert outcome["result"] == {
        "status": "complete",
        "data": {
            "sector": "sector-7",
            "readings": [3, 1, 4],
            "units": "m",
            "fixed": "readings have no units",
        },
    }
    assert outcome["events"] == [
        {"event": "data_ready", "from": outcome["scout"], "context": {"mission_id": "abc123"}}
    ]


# -- seeds/p2p-communication.txt: "Async Request Pattern" -------------------------------------


async def process_other_tasks() -> None:
    await anyio.lowlevel.checkpoint()


class CoordinatorAgent(CustomAgent):
    role = "coordinator"

    async def survey(self) -> list[dict[str, Any]]:
        return await ask_every_analyst(self, process_other_tasks)


@pytest.mark.parametrize("mode", [None, "p2p"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_async_request_pattern_called_from_main(backend: str, mode: str | None) -> None:
    async def main() -> tuple[list[str], list[dict[str, Any]]]:
        mesh = jarviscore_mesh(mode, config={"p2p_enabled": False}, env_file=None, environ={})
        analysts = [mesh.add(AnalystAgent) for _ in range(3)]
        coordinator = mesh.add(CoordinatorAgent)
        await mesh.start()
        try:
            results = await coordinator.survey()
        finally:
            await mesh.stop()
        return [a.agent_id for a in analysts], results

    ids, results = run_main(backend, main)
    assert results == [{"analysis": f"Analyse sector X by {agent_id}"} for agent_id in ids]


# -- seeds/customer-support-swarm.txt -------------------------------------------------------

QUERIES = [
    ("cust-001", "My API keeps returning 401 Unauthorized errors", "technical_support"),
    ("cust-002", "I was charged twice for my subscription last month", "billing_support"),
    ("cust-003", "The dashboard shows wrong data for my organisation", "escalation"),
    ("cust-004", "API token refresh is failing with integration error", "technical_support"),
]


class GatewayAgent(CustomAgent):
    role = "gateway"
    capabilities = ["routing", "intake", "triage"]

    def _classify(self, query: str) -> str:
        q = query.lower()
        if any(w in q for w in ["api", "error", "bug", "auth", "401", "token"]):
            return "technical_support"
        if any(w in q for w in ["invoice", "billing", "charge", "refund"]):
            return "billing_support"
        return "escalation"

    async def route(self, query: str, customer_id: str, all_agents) -> dict:
        target_role = self._classify(query)
        target_id = self._find_agent_id(target_role, all_agents)

        # self.mailbox is auto-injected by Mesh.start()
        self.mailbox.send(
            target_id,
            {
                "query": query,
                "customer_id": customer_id,
                "routed_by": self.agent_id,
            },
        )
        return {"routed_to": target_role, "agent_id": target_id}

    def _find_agent_id(self, role: str, all_agents: list[CustomAgent]) -> str:
        return next(agent.agent_id for agent in all_agents if agent.role == role)


class Specialist(CustomAgent):
    """Serves its mailbox: each routed query is handled, then confirmed to the gateway."""

    async def handle_query(self, query: str, customer_id: str) -> str:
        raise NotImplementedError

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        payload = message.payload
        outcome = await self.handle_query(payload["query"], payload["customer_id"])
        self.mailbox.send(
            payload["routed_by"],
            {"customer_id": payload["customer_id"], "role": self.role, "outcome": outcome},
        )


PROVIDER_URL = ""  # the provider API; set per test to the development gateway's echo endpoint


class TechnicalAgent(Specialist):
    role = "technical_support"
    capabilities = ["technical", "debugging", "api_help", "integration"]
    requires_auth = True

    async def handle_query(self, query: str, customer_id: str) -> str:
        if self._auth_manager:
            # get_connection_id() triggers the full Nexus flow:
            # request_connection → browser OAuth → poll ACTIVE → resolve_strategy
            connection_id = await self._auth_manager.get_connection_id("github")

            # Make authenticated API calls using NexusCallProxy
            from jarvis_trio.auth.nexus import NexusCallProxy

            proxy = NexusCallProxy(connection_id)
            result = await proxy.get(PROVIDER_URL)
            return f"status {result['status_code']} via {connection_id}"
        return "no auth"


class BillingAgent(Specialist):
    role = "billing_support"
    capabilities = ["billing", "invoices", "subscriptions", "refunds"]

    async def handle_query(self, query: str, customer_id: str) -> str:
        return f"invoice checked for {customer_id}"


class EscalationAgent(Specialist):
    role = "escalation"
    capabilities = ["escalation", "complex_issues", "human_handoff"]

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.escalation_count = 0

    async def handle_query(self, query: str, customer_id: str) -> str:
        self.escalation_count += 1
        if self._blob_storage:
            record = (
                f"ESCALATION #{self.escalation_count}\nCustomer: {customer_id}\n"
                f"Query: {query}\nTimestamp: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
            )
            return await self._blob_storage.save(
                f"escalations/support-swarm/{customer_id}-{int(time.time())}.txt",
                record,
            )
        return "no blob storage"


@pytest.mark.redis
@pytest.mark.parametrize(("backend", "mode"), [("asyncio", None), ("trio", "distributed")])
def test_support_swarm_main(
    backend: str,
    mode: str | None,
    redis_server: RedisServer,
    nexus_gateway: NexusGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(globals(), "PROVIDER_URL", f"{nexus_gateway.url}/echo")
    namespace = f"swarm-{backend}-{time.monotonic_ns()}"

    async def main() -> dict[str, Any]:
        mesh = jarviscore_mesh(
            mode,
            config={
                "redis_url": redis_server.url,
                "p2p_enabled": True,
                "bind_host": "127.0.0.1",
                "bind_port": 0,  # the seed's 7960, chosen free at run time here
                "swim_period": 0.1,  # SWIM ten times faster than the LAN profile: a quick stop
                "swim_probe_timeout": 0.05,
                "node_name": namespace,
                "auth_mode": "production",
                "nexus_gateway_url": nexus_gateway.url,
                "blob_storage_path": str(tmp_path / "blob_storage"),
            },
            env_file=None,
            environ={},
        )
        gateway = mesh.add(GatewayAgent)
        tech = mesh.add(TechnicalAgent)
        billing = mesh.add(BillingAgent)
        escalation = mesh.add(EscalationAgent)
        await mesh.start()
        try:
            agents = [gateway, tech, billing, escalation]
            routes = [await gateway.route(q, c, agents) for c, q, _ in QUERIES]
            confirmations = []
            assert gateway.mailbox is not None
            for _ in QUERIES:
                message = await gateway.mailbox.receive(timeout=10)
                assert message is not None, "a specialist did not confirm"
                await gateway.mailbox.ack(message)
                confirmations.append(dict(message.payload))
            # Calling agent methods directly from main, as the seed's scripted test does.
            direct = {
                "billing": await billing.handle_query("refund please", "cust-005"),
                "escalation": await escalation.handle_query("strange issue", "cust-006"),
                "connection": await tech._auth_manager.get_connection_id("github"),
                "stored": await escalation._blob_storage.list("escalations/support-swarm/"),
            }
        finally:
            await mesh.stop()
        return {"routes": routes, "confirmations": confirmations, "direct": direct}

    outcome = run_main(backend, main)
    assert [r["routed_to"] for r in outcome["routes"]] == [role for _, _, role in QUERIES]
    by_customer = {c["customer_id"]: c for c in outcome["confirmations"]}
    assert sorted(by_customer) == ["cust-001", "cust-002", "cust-003", "cust-004"]
    for customer, _, role in QUERIES:
        assert by_customer[customer]["role"] == role
    for customer in ("cust-001", "cust-004"):
        assert by_customer[customer]["outcome"].startswith("status 200 via ")
    assert by_customer["cust-002"]["outcome"] == "invoice checked for cust-002"
    direct = outcome["direct"]
    assert direct["billing"] == "invoice checked for cust-005"
    assert by_customer["cust-001"]["outcome"].endswith(direct["connection"])
    escalations = sorted((tmp_path / "blob_storage" / "escalations" / "support-swarm").iterdir())
    assert [p.name.split("-1")[0] for p in escalations] == ["cust-003", "cust-006"]
    assert len(direct["stored"]) == 2
    record = escalations[0].read_text().splitlines()
    assert record[:3] == [
        "ESCALATION #1",
        "Customer: cust-003",
        "Query: The dashboard shows wrong data for my organisation",
    ]
    assert record[3].startswith("Timestamp: ")

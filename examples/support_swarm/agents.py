"""The four agents of the customer support swarm: what the seed document describes.

The :class:`GatewayAgent` classifies each query by keyword and drops it into the chosen
specialist's mailbox (``self.mailbox.send``). Each specialist serves its own mailbox
(``on_mailbox_message``) and sends its resolution back to the gateway over the peer mesh
(``self.peers.notify``). The :class:`TechnicalAgent` needs credentials and runs the Nexus auth
flow (``self._auth_manager``, ``NexusCallProxy``); the :class:`EscalationAgent` keeps a record
of every case it takes in blob storage (``self._blob_storage``).

Nothing here knows how it is run: ``harness.py`` builds the mesh, sends the test queries and
checks the success criteria.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio

from jarvis_trio import (
    CustomAgent,
    IncomingMessage,
    MailboxMessage,
    NexusCallProxy,
    StorageError,
)

SPECIALIST_ROLES = ("technical_support", "billing_support", "escalation")


class GatewayAgent(CustomAgent):
    """Classifies each query and hands it to the right specialist's mailbox."""

    name = "Gateway"
    role = "gateway"
    capabilities = ["routing", "intake", "triage"]
    description = "Receives customer queries, classifies them and routes them to a specialist"

    resolution_timeout = 5.0

    async def setup(self) -> None:
        self._waiting: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.ready_roles: set[str] = set()
        self.swarm_ready = trio.Event()  # every specialist said it sees the other three

    def _classify(self, query: str) -> str:
        q = query.lower()
        if any(
            w in q for w in ["api", "error", "bug", "auth", "integration", "401", "403", "token"]
        ):
            return "technical_support"
        if any(
            w in q for w in ["invoice", "billing", "charge", "refund", "subscription", "payment"]
        ):
            return "billing_support"
        return "escalation"

    def _find_agent_id(self, role: str) -> str | None:
        peer = self.peers.discover_one(role=role)
        return peer.agent_id if peer else None

    async def route(self, query: str, customer_id: str) -> dict[str, Any]:
        """Route one query and wait for its resolution, re-routing to escalation when the
        chosen specialist is gone or does not answer in time."""
        target_role = self._classify(query)
        outcome = await self._hand_over(target_role, query, customer_id)
        if outcome is None and target_role != "escalation":
            self._logger.warning(
                "%s: %s did not resolve %s in %.1f s; escalating",
                customer_id,
                target_role,
                customer_id,
                self.resolution_timeout,
            )
            outcome = await self._hand_over("escalation", query, customer_id)
            if outcome is not None:
                outcome["rerouted_from"] = target_role
        if outcome is None:
            return {
                "customer_id": customer_id,
                "classified": target_role,
                "route": None,
                "resolution": "undeliverable: no specialist answered",
            }
        outcome["classified"] = target_role
        return outcome

    async def _hand_over(self, role: str, query: str, customer_id: str) -> dict[str, Any] | None:
        target_id = self._find_agent_id(role)
        if target_id is None:
            return None
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[customer_id] = send
        try:
            # self.mailbox is injected by the mesh before setup()
            self.mailbox.send(
                target_id,
                {
                    "query": query,
                    "customer_id": customer_id,
                    "routed_by": self.agent_id,
                },
            )
            with trio.move_on_after(self.resolution_timeout):
                return await receive.receive()
            return None
        finally:
            del self._waiting[customer_id]

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        data = message.data
        if data.get("event") == "ready":
            self.ready_roles.add(str(data.get("role")))
            if self.ready_roles >= set(SPECIALIST_ROLES):
                self.swarm_ready.set()
            return
        if data.get("event") != "resolved":
            return
        waiter = self._waiting.get(str(data.get("customer_id")))
        if waiter is not None:
            waiter.send_nowait({**data, "route": data.get("role")})


class Specialist(CustomAgent):
    """Serves its mailbox; each resolution goes back to the gateway over the peer mesh.

    Subclasses define ``handle_query(query, customer_id) -> str``.
    """

    handle_query: Callable[[str, str], Awaitable[str]]

    async def setup(self) -> None:
        self.released = trio.Event()

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        payload = message.payload
        customer_id = str(payload["customer_id"])
        resolution = await self.handle_query(str(payload["query"]), customer_id)
        self._logger.info("%s resolved: %s", customer_id, resolution)
        await self.peers.notify(
            str(payload["routed_by"]),
            {
                "event": "resolved",
                "customer_id": customer_id,
                "role": self.role,
                "handled_by": self.agent_id,
                "resolution": resolution,
            },
        )

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        if message.data.get("event") == "shutdown":
            self.released.set()

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("action") == "report":
            return self.report()
        if message.data.get("action") == "read_records":
            paths = [str(path) for path in message.data.get("paths", [])]
            return {"role": self.role, "texts": await read_records(self, paths)}
        return {"status": "failure", "error": f"unknown action {message.data.get('action')!r}"}

    def report(self) -> dict[str, Any]:
        """What this specialist tells the gateway for the run's summary."""
        return {"role": self.role}


async def read_records(agent: CustomAgent, paths: list[str]) -> dict[str, str]:
    """The records at ``paths`` as this agent's node reads them from blob storage (a record
    it cannot read is left out): with shared storage (S3, Redis) every node reads every one."""
    texts = {}
    for path in paths:
        try:
            texts[path] = await agent._blob_storage.read_text(path)
        except (StorageError, UnicodeDecodeError) as error:
            agent._logger.warning("cannot read escalation record %s: %s", path, error)
    return texts


@dataclass
class AuthOutcome:
    """What happened to the Nexus flow, reported truthfully in the summary."""

    state: str = "not run"  # completed | degraded | failed | not run
    detail: str = ""


class TechnicalAgent(Specialist):
    name = "Technical Support"
    role = "technical_support"
    capabilities = ["technical", "debugging", "api_help", "integration"]
    description = "API errors, authentication and integration problems"
    requires_auth = True

    provider_api = "https://api.github.com/user"

    async def setup(self) -> None:
        await super().setup()
        self.auth = AuthOutcome()

    def report(self) -> dict[str, Any]:
        return {"role": self.role, "state": self.auth.state, "detail": self.auth.detail}

    async def handle_query(self, query: str, customer_id: str) -> str:
        account = await self._account_check()
        return f"technical diagnosis for '{query}': {account}"

    async def _account_check(self) -> str:
        if self._auth_manager is None:
            self.auth = AuthOutcome("degraded", "auth disabled")
            return "no provider credentials (auth disabled)"
        try:
            # get_connection_id() drives the Nexus flow: request-connection -> consent ->
            # poll check-connection until ACTIVE; cached for later calls
            connection_id = await self._auth_manager.get_connection_id("github")
            proxy = NexusCallProxy(connection_id)
            result = await proxy.get(self.provider_api)
        except ValueError as error:  # no NEXUS_GATEWAY_URL: degrade, as documented
            self.auth = AuthOutcome("degraded", str(error))
            self._logger.warning("Nexus auth unavailable, continuing without it: %s", error)
            return "provider account not checked (no Nexus gateway configured)"
        except Exception as error:  # any failure of the flow is reported, truthfully
            self.auth = AuthOutcome("failed", f"{type(error).__name__}: {error}")
            self._logger.error("Nexus auth flow failed: %s", self.auth.detail)  # noqa: TRY400
            return "provider account check failed"
        if not result["ok"]:
            self.auth = AuthOutcome("failed", f"provider answered {result['status_code']}")
            self._logger.error("provider API call failed: HTTP %s", result["status_code"])
            return f"provider answered HTTP {result['status_code']}"
        self.auth = AuthOutcome("completed", connection_id)
        return f"provider account verified through Nexus connection {connection_id}"


class BillingAgent(Specialist):
    name = "Billing Support"
    role = "billing_support"
    capabilities = ["billing", "invoices", "subscriptions", "refunds"]
    description = "Invoices, charges, subscriptions and refunds"

    async def handle_query(self, query: str, customer_id: str) -> str:
        q = query.lower()
        if "twice" in q or "refund" in q:
            return f"duplicate charge confirmed for {customer_id}; refund issued"
        return f"billing record for {customer_id} reviewed; invoice re-sent"


class EscalationAgent(Specialist):
    name = "Escalation"
    role = "escalation"
    capabilities = ["escalation", "complex_issues", "human_handoff"]
    description = "Cases no specialist can resolve; kept for human review"

    async def setup(self) -> None:
        await super().setup()
        self.escalation_count = 0
        self.records: list[str] = []

    def report(self) -> dict[str, Any]:
        return {"role": self.role, "records": list(self.records)}

    async def handle_query(self, query: str, customer_id: str) -> str:
        self.escalation_count += 1
        record = (
            f"ESCALATION #{self.escalation_count}\n"
            f"Customer: {customer_id}\n"
            f"Query: {query}\n"
            f"Timestamp: {datetime.now(UTC).isoformat()}\n"
        )
        path = await self._blob_storage.save(
            f"escalations/support-swarm/{customer_id}-{int(time.time())}.txt", record
        )
        self.records.append(path)
        return f"escalated for human review (record {path})"


AGENT_CLASSES: dict[str, type[CustomAgent]] = {
    "gateway": GatewayAgent,
    "technical_support": TechnicalAgent,
    "billing_support": BillingAgent,
    "escalation": EscalationAgent,
}

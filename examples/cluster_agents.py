"""Three small agents for running a cluster from the command line (see README, "Operating a
cluster"): a request to ``gateway`` goes to ``technical``, which asks ``billing``.

    jarvis-trio run examples.cluster_agents:Billing --name billing-node --port 7946 \\
        --admin-port 8946
    jarvis-trio run examples.cluster_agents:Technical --name tech-node --port 7947 \\
        --seed 127.0.0.1:7946
    jarvis-trio request gateway '{"ticket": 7}' --seed 127.0.0.1:7946
"""

from __future__ import annotations

from typing import Any

from jarvis_trio import CustomAgent, IncomingMessage


class Billing(CustomAgent):
    """Answers with the balance of an account."""

    role = "billing"
    capabilities = ["invoices"]
    description = "account balances"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        self._logger.info("balance asked for ticket %s", message.data.get("ticket"))
        return {"balance": 42.0, "ticket": message.data.get("ticket"), "node": self.peers.node_id}


class Technical(CustomAgent):
    """Diagnoses a ticket, asking billing for the account's balance."""

    role = "technical"
    capabilities = ["diagnosis"]
    description = "diagnoses tickets"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        billing = await self.peers.request("billing", message.data, timeout=5.0)
        return {"diagnosis": "router reboot", "billing": billing, "node": self.peers.node_id}


class Gateway(CustomAgent):
    """The entry point: hands every ticket to technical support."""

    role = "gateway"
    capabilities = ["tickets"]
    description = "takes tickets in"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        answer = await self.peers.request("technical", message.data, timeout=8.0)
        if answer is None:
            raise RuntimeError("technical support did not answer")  # an error reply
        return answer

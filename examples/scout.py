"""The ScoutAgent of the P2P Communication document, working with an analyst and a second scout.

A task given to a scout gathers data, notifies the analyst (by role), then asks another scout,
chosen with ``discover_one(role="scout", strategy="random")``, to validate the data before
returning it. The second scout answers validation requests from its inbox; the analyst counts
what it was told.

    python examples/scout.py
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import trio

from jarvis_trio import CustomAgent, IncomingMessage, Mesh

log = logging.getLogger("scout")


class ScoutAgent(CustomAgent):
    name = "Scout"
    role = "scout"
    capabilities = ["reconnaissance", "data-gathering"]

    async def run(self, task: str, context: dict[str, Any]) -> dict[str, Any]:
        # Perform primary data gathering
        raw_data = await self.gather_data(task)

        # Notify the analyst that data is ready
        await self.peers.notify(
            "analyst",
            {"event": "data_ready", "data": raw_data},
            context={"mission_id": context.get("mission_id")},
        )

        # Request a quality check from another scout if available
        peer_scout = self.peers.discover_one(role="scout", strategy="random")
        if peer_scout:
            validation = await self.peers.request(
                peer_scout.agent_id,
                {"action": "validate", "data": raw_data},
                timeout=15,
            )
            print(f"{self.agent_id}: validation by {peer_scout.agent_id}: {validation}")
            if validation and not validation.get("valid"):
                raw_data = await self.re_gather(task, validation["feedback"])

        return {"status": "complete", "data": raw_data}

    async def gather_data(self, task: str) -> dict[str, Any]:
        return {"task": task, "sources": ["registry", "news"], "entities": ["Entity_X"]}

    async def re_gather(self, task: str, feedback: str) -> dict[str, Any]:
        data = await self.gather_data(task)
        data["sources"].append("archive")
        data["revised_for"] = feedback
        return data

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("action") != "validate":
            return {"valid": False, "feedback": f"unknown action {message.data.get('action')!r}"}
        sources = message.data["data"].get("sources", [])
        if len(sources) < 3:
            return {"valid": False, "feedback": "needs a third, independent source"}
        return {"valid": True}


class AnalystAgent(CustomAgent):
    name = "Analyst"
    role = "analyst"
    capabilities = ["analysis"]

    async def setup(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        self.received.append(message.data)
        mission = (message.context or {}).get("mission_id")
        print(f"analyst received {message.data['event']} from {message.sender} (mission {mission})")


async def main() -> int:
    mesh = Mesh(config={"p2p_enabled": False})
    scout = mesh.add(ScoutAgent)
    mesh.add(ScoutAgent)  # the second scout, which validates
    analyst = mesh.add(AnalystAgent)
    async with mesh:
        result = await scout.execute_task("Survey Entity_X", context={"mission_id": "abc123"})
        print(f"{scout.agent_id}: task result: {result}")
    assert isinstance(analyst, AnalystAgent)
    ok = (
        result["status"] == "complete"
        and "archive" in result["data"]["sources"]
        and len(analyst.received) == 1
    )
    print("scout example:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(trio.run(main))

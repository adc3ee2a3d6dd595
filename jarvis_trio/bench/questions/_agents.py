"""The agents the benchmark questions share: one definition each, so that two questions that
say "an echo agent" measure the same agent."""

from __future__ import annotations

from typing import Any

from jarvis_trio import CustomAgent, IncomingMessage

__all__ = ["Caller", "Echo"]


class Echo(CustomAgent):
    """Answers every request with its payload."""

    role = "echo"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        return message.data


class Caller(CustomAgent):
    """An agent whose own loop ends at once: the benchmark drives its ``peers``."""

    role = "caller"

    async def run(self) -> None:
        return None

"""Two agents talking on one node: a greeter asks, a translator answers.

Run it with ``python examples/hello_mesh.py``. It shows the documented form (``Mesh``,
``add``, ``start``, ``stop``), discovery by role, ``request`` / ``notify``, the default
inbox loop (``on_peer_request`` / ``on_peer_notify``) and an error reply.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from jarvis_trio import CustomAgent, IncomingMessage, Mesh

GREETINGS = {"fr": "Bonjour", "de": "Hallo", "es": "Hola"}


class Translator(CustomAgent):
    """Answers requests to translate a greeting; reports the thank-you note."""

    name = "Translator"
    role = "translator"
    capabilities = ["translation"]
    description = "translates greetings"

    async def setup(self) -> None:
        self.thanked = trio.Event()

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        language = message.data["language"]
        if language not in GREETINGS:
            raise KeyError(f"no greeting known for {language!r}")
        return {"greeting": f"{GREETINGS[language]}, {message.data['name']}!"}

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        print(f"translator got a note from {message.sender}: {message.data}")
        self.thanked.set()


class Greeter(CustomAgent):
    """Drives the conversation from its own run() loop, then stays idle."""

    name = "Greeter"
    role = "greeter"

    async def run(self) -> None:
        translator = self.peers.get_peer(role="translator")
        assert translator is not None
        print(f"greeter {self.peers.my_id} found {translator.agent_id} on {translator.node_id}")
        for language in ("fr", "de", "es", "xx"):
            reply = await self.peers.request(
                "translator", {"language": language, "name": "Ada"}, timeout=5
            )
            print(f"  {language}: {reply}")
        delivered = await self.peers.notify("translator", {"thanks": True})
        print(f"thank-you note delivered: {delivered}")


async def main() -> None:
    mesh = Mesh(config={"node_name": "hello-node"})
    translator = mesh.add(Translator)
    mesh.add(Greeter)
    await mesh.start()
    assert isinstance(translator, Translator)
    with trio.fail_after(5):
        await translator.thanked.wait()
    await mesh.stop()
    print(f"mesh {mesh.node_id}: {mesh.state}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    trio.run(main)

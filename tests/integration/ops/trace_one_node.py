"""Run in its own interpreter by test_tracing.py (OpenTelemetry allows one tracer provider per
process): one node, every sending call, spans printed as JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jarvis_trio import CustomAgent, IncomingMessage, MailboxMessage, open_mesh

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


class Worker(CustomAgent):
    role = "worker"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.seen = 0
        self.done = trio.Event()

    def _count(self) -> None:
        self.seen += 1
        if self.seen == 3:  # a notify, a broadcast and a mailbox message
            self.done.set()

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        return {"ok": True}

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        self._count()

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        self._count()


class Client(CustomAgent):
    role = "client"

    async def run(self) -> None:
        return None


async def main(blob: str) -> None:
    config = {"node_name": "solo", "blob_storage_path": blob}
    async with open_mesh(config, agents=[Worker, Client], env_file=None, environ={}) as mesh:
        worker, client = mesh.agents
        assert isinstance(worker, Worker)
        peers = client.peers
        assert await peers.request("worker", {"a": 1}) == {"ok": True}
        assert await peers.notify("worker", {"b": 2})
        assert await peers.broadcast({"c": 3}) == 1
        request_id = await peers.ask_async("worker", {"d": 4})
        assert await peers.check_inbox(request_id, timeout=5) == {"ok": True}
        assert client.mailbox is not None
        client.mailbox.send(worker.agent_id, {"e": 5})
        with trio.fail_after(10):
            await worker.done.wait()
    spans = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "trace_id": f"{s.context.trace_id:032x}",
            "span_id": f"{s.context.span_id:016x}",
            "parent_id": None if s.parent is None else f"{s.parent.span_id:016x}",
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps(spans))


trio.run(main, sys.argv[1])

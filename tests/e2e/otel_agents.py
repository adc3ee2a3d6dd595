"""Agents of the cross-process tracing test, with an OpenTelemetry SDK configured on import
(as a user's module would), exporting to memory and dumping the spans as JSON at exit.

gateway --request (ZeroMQ)--> technical --mailbox.send (Redis)--> billing
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jarvis_trio import CustomAgent, IncomingMessage, MailboxMessage

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)


def _dump() -> None:
    spans = [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
            "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
            "attributes": dict(span.attributes or {}),
        }
        for span in EXPORTER.get_finished_spans()
    ]
    Path(os.environ["SPANS_FILE"]).write_text(json.dumps(spans))


atexit.register(_dump)


class Gateway(CustomAgent):
    role = "gateway"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        answer = await self.peers.request("technical", message.data, timeout=10)
        return {"gateway": True, "technical": answer}


class Technical(CustomAgent):
    role = "technical"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        billing = self.peers.get_peer("billing")
        assert billing is not None and self.mailbox is not None
        self.mailbox.send(billing.agent_id, {"invoice_for": message.data})
        return {"queued_for": billing.agent_id}


class Billing(CustomAgent):
    role = "billing"

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        print("handled", json.dumps(dict(message.payload)), flush=True)  # the test waits for it

"""One trace across three processes: gateway -> technical over ZeroMQ, technical -> billing
through the Redis mailbox, with an OpenTelemetry SDK (in-memory exporter) in each process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from jarvis_trio.testing.ports import free_swim_port
from jarvis_trio.testing.redis_server import RedisServer

from .cli_cluster import CHECK_BOUND, FAST_SWIM, Node, Watch, clean_env, cli

HERE = Path(__file__).resolve().parent
# three node processes and CLI runs: minutes on a loaded machine, each step bounded
pytestmark = pytest.mark.timeout(600)


@pytest.mark.redis
def test_one_trace_with_correct_parents_across_zeromq_and_the_redis_mailbox(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    nodes: list[Node] = []
    try:
        for name in ("gateway", "technical", "billing"):
            env = clean_env(
                **FAST_SWIM,
                REDIS_URL=redis_server.url,
                SPANS_FILE=str(tmp_path / f"{name}.json"),
                JC_BLOB_STORAGE_PATH=str(tmp_path / f"blob-{name}"),
            )
            seed = ["--seed", nodes[0].swim] if nodes else ["--admin-port", "0"]
            cls = name.capitalize()
            node = Node(
                name,
                [f"otel_agents:{cls}"],
                "--port",
                str(free_swim_port()),
                *seed,
                env=env,
                cwd=HERE,
            )
            nodes.append(node.wait_ready())
        gateway = nodes[0]

        with Watch(gateway.admin, agents=True) as seen:
            seen.wait(lambda view: len(view.agents) == 3, "three agents known to the gateway")
        asked = cli(
            "request", "gateway", '{"ticket": 9}', "--seed", gateway.swim, "--timeout", "60"
        )
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["technical"]["queued_for"].startswith("billing-")
        # billing prints a line from its mailbox handler
        handled = nodes[2].stdout.find(re.compile(r"^handled "), CHECK_BOUND)
        assert handled is not None, "billing never handled the mailbox message"
        for node in reversed(nodes):
            assert node.terminate() == 0  # graceful: the SDK's spans are dumped at exit
    finally:
        for node in nodes:
            node.kill()

    spans: dict[str, list[dict[str, Any]]] = {
        name: json.loads((tmp_path / f"{name}.json").read_text())
        for name in ("gateway", "technical", "billing")
    }

    def one(process: str, prefix: str) -> dict[str, Any]:
        found = [s for s in spans[process] if s["name"].startswith(prefix)]
        assert len(found) == 1, (process, prefix, spans[process])
        return found[0]

    served = one("gateway", "handle request")
    asked_technical = one("gateway", "request technical")
    handled_technical = one("technical", "handle request")
    queued = one("technical", "mailbox billing-")
    handled_billing = one("billing", "handle mailbox")

    chain = [served, asked_technical, handled_technical, queued, handled_billing]
    assert len({s["trace_id"] for s in chain}) == 1, chain
    assert served["parent_id"] is None and served["kind"] == "SERVER"
    assert asked_technical["parent_id"] == served["span_id"] and asked_technical["kind"] == "CLIENT"
    assert handled_technical["parent_id"] == asked_technical["span_id"]
    assert queued["parent_id"] == handled_technical["span_id"] and queued["kind"] == "PRODUCER"
    assert handled_billing["parent_id"] == queued["span_id"]
    assert handled_billing["kind"] == "CONSUMER"
    assert {s["attributes"]["jarvis.node"] for s in chain} == {"gateway", "technical", "billing"}

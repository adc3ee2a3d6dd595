"""Log records carry node, agent and correlation_id; JC_LOG_FORMAT=json prints JSON lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from jarvis_trio._logcontext import JsonFormatter
from jarvis_trio.agent import CustomAgent
from jarvis_trio.mesh import open_mesh
from jarvis_trio.peers.messages import IncomingMessage


class Talker(CustomAgent):
    role = "talker"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        self._logger.info("handling %s", message.data["n"])
        logging.getLogger("somebody.else").info("a library logs too")
        return {}


class Asker(CustomAgent):
    role = "asker"

    async def run(self) -> None:
        return None


async def test_runtime_records_carry_node_agent_and_correlation_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = {"node_name": "log-node", "blob_storage_path": str(tmp_path)}
    async with open_mesh(config, agents=[Talker, Asker], env_file=None, environ={}) as mesh:
        talker, asker = mesh.agents
        assert await asker.peers.request("talker", {"n": 1}, timeout=5) == {}
    handled = [r for r in caplog.records if r.getMessage().endswith("handling 1")]
    library = [r for r in caplog.records if r.name == "somebody.else"]
    for record in (*handled, *library):
        assert record.node == "log-node"  # type: ignore[attr-defined]
        assert record.agent == talker.agent_id  # type: ignore[attr-defined]
        assert record.correlation_id.startswith("req-")  # type: ignore[attr-defined]
    started = [
        r for r in caplog.records if "running" in r.getMessage() and r.name == "jarvis_trio.mesh"
    ]
    assert started and started[0].node == "log-node"  # type: ignore[attr-defined]
    assert started[0].agent is None  # type: ignore[attr-defined]


def test_json_lines_with_context_fields_extras_and_exceptions() -> None:
    formatter = JsonFormatter()
    logger = logging.getLogger("jarvis_trio.test")
    record = logger.makeRecord(
        "jarvis_trio.test",
        logging.WARNING,
        __file__,
        1,
        "member %s failed",
        ("b",),
        None,
        extra={"node": "explicit", "member": "b"},
    )
    line = json.loads(formatter.format(record))
    assert line["message"] == "member b failed" and line["level"] == "WARNING"
    assert line["node"] == "explicit" and line["member"] == "b"
    assert {"agent", "correlation_id", "time", "logger"} <= set(line)
    error = ValueError("boom")
    failed = logger.makeRecord(
        "x", logging.ERROR, __file__, 1, "oops", (), (ValueError, error, None)
    )
    assert "ValueError: boom" in json.loads(formatter.format(failed))["exception"]

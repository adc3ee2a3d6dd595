"""MIGRATING.md maps every documented JarvisCore name (the seeds' and what its users import
beyond them); a name dropped from the page fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "MIGRATING.md"

NAMES = [
    # seeds/p2p-communication.txt
    "P2P_ENABLED", "JC_SWIM_HOST", "JC_SWIM_PORT", "JC_SEED_NODES", "get_peer", "discover",
    "discover_one", "list_roles", "list_peers", "registry", "my_id", "my_role", "notify",
    "request", "respond", "broadcast", "receive", "ask_async", "check_inbox",
    "record_peer_usage", "SWIMManager", "round_robin", "least_recent", "run(self, task, context)",
    # seeds/customer-support-swarm.txt
    "from jarviscore import Mesh, CustomAgent", "redis_url", "node_name", "auth_mode",
    "nexus_gateway_url", "NEXUS_GATEWAY_URL", "mesh.add", "run_forever", "self.mailbox.send",
    "requires_auth", "_auth_manager", "get_connection_id", "NexusCallProxy", "_blob_storage",
    # what JarvisCore's users import beyond the seeds
    'mode="autonomous"', "keepalive_*", "state_backend", "max_parallel", "redis_store_url",
    'auth_mode="development"', "get_agent(role)", "get_diagnostics()", "MockPeerClient",
    "MockMesh", "MockBlobStorage", "MockRedisContextStore", "MockLLMClient", "as_tool()",
    "get_pending_async_requests()", "clear_inbox()", "has_pending_messages()",
    "set_request_handler()", "request_capability()", "MessageType", "OutgoingMessage",
    "PeerInfo(agent_id, role, capabilities, node_id", "base_path=", "Azure", "asyncio.sleep",
    "run_asyncio",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_every_documented_name_is_mapped(name: str) -> None:
    assert name in PAGE.read_text(encoding="utf-8"), f"MIGRATING.md does not mention {name!r}"

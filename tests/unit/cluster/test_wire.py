"""Agent messages and directories in envelopes; directory versions."""

from __future__ import annotations

from typing import Any

import pytest

from jarvis_trio.cluster.wire import (
    MAX_REMOTE_AGENTS,
    DirectoryError,
    directory_payload,
    is_newer,
    published_version,
    read_directory,
    to_envelope,
    to_message,
)
from jarvis_trio.peers.directory import PeerInfo
from jarvis_trio.peers.messages import NOTIFY, REQUEST, RESPONSE, IncomingMessage
from jarvis_trio.transport import Envelope, Kind


def message(kind: str, **changes: Any) -> IncomingMessage:
    fields: dict[str, Any] = {
        "sender": "scout-1",
        "sender_node": "node-a",
        "type": kind,
        "data": {"x": 1},
        "correlation_id": None if kind == NOTIFY else "req-000000000001",
        "timestamp": 12.5,
        "context": {"mission": "m"},
        "target": "analyst-2",
    }
    fields.update(changes)
    return IncomingMessage(**fields)


@pytest.mark.parametrize("kind", [NOTIFY, REQUEST, RESPONSE])
def test_agent_messages_round_trip_with_the_authenticated_node(kind: str) -> None:
    original = message(kind)
    envelope = to_envelope(original)
    received = to_message("node-b", envelope)
    assert received is not None
    # the node is the one the transport authenticated, whatever the sender claimed
    assert received.sender_node == "node-b"
    assert received == message(kind, sender_node="node-b")


def test_empty_context_travels_as_none_and_comes_back_empty() -> None:
    envelope = to_envelope(message(NOTIFY, context={}))
    assert envelope.context is None
    received = to_message("n", envelope)
    assert received is not None and received.context == {}


@pytest.mark.parametrize(
    "envelope",
    [
        Envelope(Kind.NOTIFY, "t", "s", None, 0.0, None, [1, 2]),  # payload not an object
        Envelope(Kind.NOTIFY, "t", "", None, 0.0, None, {}),  # no sender
        Envelope(Kind.REQUEST, "t", "s", None, 0.0, None, {}),  # request without id
        Envelope(Kind.REPLY, "t", "s", "", 0.0, None, {}),  # reply without id
        Envelope(Kind.DIRECTORY, "", "", "dir-1", 0.0, None, {}),  # not an agent message
    ],
)
def test_envelopes_that_are_not_agent_messages_are_refused(envelope: Envelope) -> None:
    assert to_message("n", envelope) is None


def test_directory_payload_round_trips() -> None:
    agents = [
        PeerInfo("a-1", "analyst", ("math", "stats"), "crunches", "node-x"),
        PeerInfo("s-1", "scout", (), ""),
    ]
    version, got = read_directory(directory_payload(7, agents))
    assert version == 7
    assert [(a.agent_id, a.role, a.capabilities, a.description) for a in got] == [
        ("a-1", "analyst", ("math", "stats"), "crunches"),
        ("s-1", "scout", (), ""),
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("nope", "malformed"),
        ({"version": 1}, "malformed"),
        ({"version": -1, "agents": []}, "64-bit"),
        ({"version": 1, "agents": [{"agent_id": "", "role": "r"}]}, "bad id or role"),
        ({"version": 1, "agents": [{"agent_id": "a", "role": ""}]}, "bad id or role"),
        (
            {"version": 1, "agents": [{"agent_id": "a", "role": "r", "capabilities": [3]}]},
            "malformed",
        ),
        ({"version": 1, "agents": [{"agent_id": "a", "role": "r"}] * 2}, "malformed"),
        ({"version": 1, "agents": [{"agent_id": "a" * 2000, "role": "r"}]}, "bad id"),
    ],
)
def test_malformed_directories_are_refused_whole(data: Any, match: str) -> None:
    with pytest.raises(DirectoryError, match=match):
        read_directory(data)


def test_a_directory_over_the_agent_bound_is_refused() -> None:
    agents = [{"agent_id": f"a-{i}", "role": "r"} for i in range(MAX_REMOTE_AGENTS + 1)]
    with pytest.raises(DirectoryError, match="more than"):
        read_directory({"version": 1, "agents": agents})


def test_versions_grow_within_an_epoch_and_differ_across_epochs() -> None:
    v1, v2 = published_version(5, 1), published_version(5, 2)
    assert v1 >> 32 == 5 and v1 & 0xFFFF_FFFF == 1
    assert is_newer(v1, None)
    assert is_newer(v2, v1) and not is_newer(v1, v2) and not is_newer(v2, v2)
    restarted = published_version(9, 1)
    assert is_newer(restarted, v2)  # a restart is always new, even with a lower counter

"""The agent directory and the selection strategies, as pure logic."""

from __future__ import annotations

import random

import pytest

from jarvis_trio.errors import DuplicateAgentError
from jarvis_trio.peers.directory import AgentDirectory, PeerInfo
from jarvis_trio.peers.strategies import SelectionState


def info(agent_id: str, role: str, *caps: str) -> PeerInfo:
    return PeerInfo(agent_id, role, caps, node_id="n1")


def filled() -> AgentDirectory[str]:
    directory: AgentDirectory[str] = AgentDirectory("n1")
    directory.add_local(info("a-1", "analyst", "data"), "route-a1")
    directory.add_local(info("s-1", "scout", "data", "recon"), "route-s1")
    directory.set_remote_agents("n2", [info("a-2", "analyst", "data")])
    directory.add_local(info("a-3", "analyst"), "route-a3")
    return directory


def test_local_before_remote_in_registration_order() -> None:
    directory = filled()
    assert [i.agent_id for i in directory.matching("analyst")] == ["a-1", "a-3", "a-2"]
    assert [i.agent_id for i in directory.matching(capability="data")] == ["a-1", "s-1", "a-2"]
    assert [i.agent_id for i in directory.matching("analyst", "data")] == ["a-1", "a-2"]
    assert directory.matching("nobody") == ()


def test_remote_entries_are_marked_remote_with_their_node() -> None:
    directory = filled()
    found = directory.get("a-2")
    assert found is not None
    assert found[1] is None
    assert (found[0].location, found[0].node_id) == ("remote", "n2")
    assert directory.get("a-1") == (directory.matching("analyst")[0], "route-a1")
    assert directory.local_route("a-2") is None


def test_version_counts_local_changes_only() -> None:
    directory = filled()
    assert directory.version.value == 3
    directory.set_remote_agents("n3", [info("x-1", "x")])
    assert directory.version.value == 3
    directory.remove_local("a-1")
    assert directory.version.value == 4
    directory.remove_local("a-1")
    assert directory.version.value == 4


def test_drop_node_forgets_its_agents_and_invalidates_caches() -> None:
    directory = filled()
    assert len(directory.matching("analyst")) == 3
    registry = directory.registry()
    directory.drop_node("n2")
    assert [i.agent_id for i in directory.matching("analyst")] == ["a-1", "a-3"]
    assert "a-2" not in directory.registry()
    assert "a-2" in registry  # an old snapshot stays what it was
    assert directory.remote_nodes() == []


def test_set_remote_agents_replaces_and_refuses_own_node() -> None:
    directory = filled()
    directory.set_remote_agents("n2", [info("b-9", "builder")])
    assert directory.get("a-2") is None
    assert directory.get("b-9") is not None
    with pytest.raises(ValueError, match="this node"):
        directory.set_remote_agents("n1", [])


def test_duplicate_local_agent_id() -> None:
    directory = filled()
    with pytest.raises(DuplicateAgentError, match="a-1"):
        directory.add_local(info("a-1", "other"), "x")


def test_registry_is_read_only() -> None:
    registry = filled().registry()
    with pytest.raises(TypeError):
        registry["z"] = info("z", "z")  # type: ignore[index]


def ident(item: str) -> str:
    return item


def test_first_keeps_order_and_unknown_strategy_fails() -> None:
    state = SelectionState(random.Random(1))
    assert state.order(["a", "b"], "first", None, ident) == ["a", "b"]
    with pytest.raises(ValueError, match="unknown strategy 'fastest'"):
        state.order(["a"], "fastest", None, ident)


def test_round_robin_has_one_cursor_per_filter() -> None:
    state = SelectionState(random.Random(1))
    items = ["a", "b", "c"]
    firsts = [state.order(items, "round_robin", ("analyst", None), ident)[0] for _ in range(4)]
    assert firsts == ["a", "b", "c", "a"]
    assert state.order(items, "round_robin", ("scout", None), ident)[0] == "a"
    assert state.order([], "round_robin", ("none", None), ident) == []


def test_random_is_a_permutation_driven_by_the_injected_rng() -> None:
    items = list("abcdefgh")
    first = SelectionState(random.Random(7)).order(items, "random", None, ident)
    again = SelectionState(random.Random(7)).order(items, "random", None, ident)
    assert first == again
    assert sorted(first) == items
    assert first != items


def test_least_recent_puts_never_used_first_then_oldest() -> None:
    now = [100.0]
    state = SelectionState(random.Random(1), clock=lambda: now[0])
    items = ["a", "b", "c"]
    state.record("a")
    now[0] += 1
    state.record("c")
    assert state.order(items, "least_recent", None, ident) == ["b", "a", "c"]
    state.record("b")  # same clock reading as a later call: the sequence breaks the tie
    state.record("a")
    assert state.order(items, "least_recent", None, ident) == ["c", "b", "a"]

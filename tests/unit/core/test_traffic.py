"""Per-role accounting keeps its label set bounded: past MAX_ROLES roles, new ones share
OTHER_ROLE's counters and are never added."""

from __future__ import annotations

from jarvis_trio.peers.traffic import MAX_ROLES, OTHER_ROLE, Traffic


def test_roles_beyond_the_bound_count_into_other() -> None:
    traffic = Traffic()
    for n in range(MAX_ROLES + 6):
        traffic.by_role[f"role-{n}"].sent += 1
    assert len(traffic.by_role) == MAX_ROLES + 1
    assert f"role-{MAX_ROLES + 5}" not in traffic.by_role
    assert traffic.by_role[OTHER_ROLE].sent == 6
    assert traffic.role("role-0").sent == 1 and traffic.role("role-0") is traffic.by_role["role-0"]
    assert traffic.role("yet-another") is traffic.by_role[OTHER_ROLE]
    assert set(traffic.as_dict()["by_role"]) == {
        *(f"role-{n}" for n in range(MAX_ROLES)),
        OTHER_ROLE,
    }

"""What a node advertises, and when it warns about having no cluster key."""

from __future__ import annotations

from typing import Any

import pytest

from jarvis_trio.cluster.addresses import (
    advertise_host,
    is_loopback,
    is_unspecified,
    needs_key_warning,
)
from jarvis_trio.config import MeshConfig


def config(**values: Any) -> MeshConfig:
    return MeshConfig.load(values, env_file=None, environ={})


@pytest.mark.parametrize(
    ("host", "unspecified", "loopback"),
    [
        ("0.0.0.0", True, False),
        ("::", True, False),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("localhost", False, True),
        ("10.1.2.3", False, False),
        ("example.org", False, False),
    ],
)
def test_address_kinds(host: str, unspecified: bool, loopback: bool) -> None:
    assert is_unspecified(host) is unspecified
    assert is_loopback(host) is loopback


def test_warning_only_without_key_off_loopback() -> None:
    assert not needs_key_warning(config(bind_host="127.0.0.1"))
    assert needs_key_warning(config(bind_host="0.0.0.0"))
    assert not needs_key_warning(
        config(bind_host="0.0.0.0", cluster_key="a-cluster-secret-of-32-characters")
    )


async def test_advertise_prefers_configuration_then_the_bind_address() -> None:
    assert await advertise_host(config(advertise_host="10.0.0.9", bind_host="0.0.0.0")) == (
        "10.0.0.9"
    )
    assert await advertise_host(config(bind_host="127.0.0.1")) is None


async def test_bound_to_all_interfaces_advertises_the_route_to_a_seed() -> None:
    found = await advertise_host(config(bind_host="0.0.0.0", seed_nodes="127.0.0.1:7946"))
    assert found == "127.0.0.1"


async def test_bound_to_all_interfaces_without_seeds_advertises_a_concrete_address() -> None:
    found = await advertise_host(config(bind_host="0.0.0.0"))
    assert found is not None and not is_unspecified(found)

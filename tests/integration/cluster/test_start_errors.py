"""A node that cannot start says which key to change: a port in use, a host that does not
resolve. Real sockets on 127.0.0.1; ``.invalid`` names never resolve (RFC 2606)."""

from __future__ import annotations

import socket

import pytest
import trio

from jarvis_trio.errors import ConfigError

from .conftest import NodeFactory


async def test_a_swim_port_in_use_names_the_port_and_the_key(start_node: NodeFactory) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with trio.fail_after(10), pytest.raises(ConfigError) as caught:
            async with start_node("a", bind_port=port, data_port=0):
                pass
    assert caught.value.key == "bind_port" and caught.value.value == port
    assert "in use" in str(caught.value)


async def test_a_data_port_in_use_names_the_port_and_the_key(start_node: NodeFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(10), pytest.raises(ConfigError) as caught:
            async with start_node("a", data_port=port):
                pass
    assert caught.value.key == "data_port" and caught.value.value == port
    assert "in use" in str(caught.value)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"seed_nodes": "no-such-node.invalid:7946"}, "seed_nodes"),
        ({"advertise_host": "no-such-host.invalid"}, "advertise_host"),
    ],
)
async def test_an_unresolvable_host_names_its_key(
    start_node: NodeFactory, extra: dict[str, str], key: str
) -> None:
    with trio.fail_after(30), pytest.raises(ConfigError) as caught:
        async with start_node("a", **extra):
            pass
    assert caught.value.key == key
    assert "resolve" in str(caught.value)

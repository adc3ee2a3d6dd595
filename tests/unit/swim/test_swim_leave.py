"""Graceful leave: how long a leaving node keeps gossiping its *left* record."""

from __future__ import annotations

import random

from jarvis_trio.swim import codec
from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.members import NodeMeta
from jarvis_trio.swim.protocol import SwimProtocol

CFG = SwimConfig(gossip_interval=None, pushpull_interval=None, rejoin_interval=None)


def protocol(peers: int) -> SwimProtocol:
    proto = SwimProtocol("n0", NodeMeta("10.0.0.1", 7946, 8946), CFG, random.Random(7))
    proto.bootstrap(
        [
            (name, meta, codec.encode_name(name), codec.encode_meta(meta))
            for name, meta in (
                (f"n{j}", NodeMeta(f"10.0.0.{j + 1}", 7946, 8946)) for j in range(1, peers + 1)
            )
        ]
    )
    return proto


def test_a_lone_node_is_done_leaving_at_once() -> None:
    proto = protocol(peers=0)
    proto.leave(now=1.0)
    assert proto.leave_done()


def test_a_node_with_live_peers_keeps_its_left_record_queued() -> None:
    proto = protocol(peers=3)
    fx = proto.leave(now=1.0)
    assert fx.datagrams, "the left record goes out at once"
    assert not proto.leave_done()

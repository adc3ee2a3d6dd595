"""One translation of MeshConfig into SWIM settings: a mesh and a standalone SWIM node built
from the same configuration run on the same timings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jarvis_trio import MeshConfig, SwimConfig, SwimNode

from .conftest import NodeFactory, cluster_of, node_config


async def test_mesh_and_standalone_node_share_the_swim_timings(
    tmp_path: Path, start_node: NodeFactory
) -> None:
    settings = {"swim_period": 0.1, "swim_probe_timeout": 0.04, "swim_indirect_probes": 2}
    config = MeshConfig.load(node_config(tmp_path, "a", **settings), env_file=None, environ={})
    standalone = SwimNode.from_mesh(config).config
    async with start_node("a", **settings) as mesh:
        running = cluster_of(mesh).swim.config
    assert dataclasses.asdict(running) == dataclasses.asdict(standalone)
    # the period scales the whole profile, not only the probe rate
    lan = SwimConfig()
    assert running.period == 0.1 and running.probe_timeout == 0.04
    assert running.indirect_probes == 2
    assert lan.gossip_interval is not None and lan.pushpull_interval is not None
    assert running.gossip_interval == pytest.approx(lan.gossip_interval * 0.1)
    assert running.pushpull_interval == pytest.approx(lan.pushpull_interval * 0.1)
    assert running.dead_retention == pytest.approx(lan.dead_retention * 0.1)
    assert running.join_retry == pytest.approx(lan.join_retry * 0.1)


def test_overrides_apply_after_the_mapping() -> None:
    config = MeshConfig.load(
        {"swim_period": 0.5, "swim_probe_timeout": 0.2}, env_file=None, environ={}
    )
    swim = SwimConfig.from_mesh(config, gossip_nodes=5)
    assert (swim.period, swim.probe_timeout, swim.gossip_nodes) == (0.5, 0.2, 5)
    assert swim.rejoin_interval == pytest.approx(5.0)

"""Code written for JarvisCore runs with its imports changed: ``Mesh(mode=...)``, JarvisCore-only
config keys, ``get_agent(role)`` and ``get_diagnostics()``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from jarvis_trio.config import MeshConfig
from jarvis_trio.errors import ConfigError
from jarvis_trio.mesh import Mesh

from .conftest import Echo, Idle, MeshFactory


def test_jarviscore_keys_are_accepted_with_one_warning_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis_trio.config")
    config = MeshConfig.load(
        {
            "keepalive_interval": 30,
            "keepalive_timeout": 90,
            "state_backend": "redis",
            "max_parallel": 8,
            "redis_store_url": "redis://127.0.0.1:6379/1",
            "bind_port": 7001,
        },
        environ={},
        env_file=None,
    )
    assert config.bind_port == 7001
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 5
    for key in ("keepalive_interval", "keepalive_timeout", "state_backend", "max_parallel"):
        assert sum(f"'{key}'" in text for text in warned) == 1, key
    assert any("'redis_store_url'" in text and "redis_url" in text for text in warned)


def test_auth_mode_development_is_production_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis_trio.config")
    config = MeshConfig.load({"auth_mode": "development"}, environ={}, env_file=None)
    assert config.auth_mode == "production"
    assert ["auth_mode" in r.getMessage() for r in caplog.records] == [True]


def test_unknown_keys_are_still_refused_with_the_closest_key() -> None:
    with pytest.raises(ConfigError) as info:
        MeshConfig.load({"bind_prot": 7001}, environ={}, env_file=None)
    assert "bind_prot" in str(info.value) and "bind_port" in str(info.value)
    with pytest.raises(ConfigError):  # a JarvisCore-looking key that JarvisCore never had
        MeshConfig.load({"keepalive": 1}, environ={}, env_file=None)
    with pytest.raises(ConfigError):
        MeshConfig.load({"auth_mode": "sometimes"}, environ={}, env_file=None)


@pytest.mark.parametrize("mode", ["autonomous", "p2p", "distributed"])
def test_mode_is_accepted_with_a_deprecation_warning(mode: str, tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="no effect") as record:
        mesh = Mesh(mode=mode, config={"blob_storage_path": str(tmp_path)}, env_file=None)
    assert record[0].filename == __file__  # points at the caller's line
    assert mesh.config == Mesh(config=mesh.config).config


async def test_get_agent_takes_a_role_or_an_agent_id(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        first = await mesh.start_agent(Echo)
        second = await mesh.start_agent(Echo, agent_id="echo-second")
        assert mesh.get_agent("echo") is first  # the first of the role, as JarvisCore
        assert mesh.get_agent("echo-second") is second
        assert mesh.get_agent(first.agent_id) is first
        assert mesh.get_agent("nobody") is None


async def test_diagnostics_of_a_local_node(make_mesh: MeshFactory, tmp_path: Path) -> None:
    stopped = Mesh(config={"blob_storage_path": str(tmp_path)}, env_file=None, environ={})
    assert stopped.get_diagnostics()["status"] == "stopped"
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Echo)
        assert await caller.peers.notify("nobody", {}) is False
        diag = mesh.get_diagnostics()
    assert diag["status"] == "local" and diag["state"] == "running"
    assert diag["swim"] == {"status": "off"} and diag["known_peers"] == []
    assert [a["role"] for a in diag["local_agents"]] == ["caller", "echo"]
    assert diag["stats"]["notify_failed"] == 1

"""MeshConfig: precedence of the four sources and one clear error per bad value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jarvis_trio import ConfigError, MeshConfig
from jarvis_trio.config import SeedAddress, parse_host_port, read_env_file


def load(
    config: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    env_file: Path | None = None,
) -> MeshConfig:
    return MeshConfig.load(config, environ=env or {}, env_file=env_file)


def test_defaults_follow_the_documentation() -> None:
    config = load()
    assert config.p2p_enabled is False
    assert config.bind_host == "127.0.0.1"
    assert config.bind_port == 7946
    assert config.data_port == 8946
    assert config.seed_nodes == ()
    assert config.blob_storage_path == "blob_storage"
    assert config.node_name and config.node_name.startswith("node-")


def test_dict_beats_environment_beats_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("JC_SWIM_PORT=7000\nJC_SWIM_HOST=10.0.0.9\nP2P_ENABLED=true\n")
    config = load(
        {"bind_port": 7100}, {"JC_SWIM_PORT": "7050", "JC_SWIM_HOST": "10.0.0.8"}, env_file
    )
    assert config.bind_port == 7100  # dict
    assert config.bind_host == "10.0.0.8"  # environment over .env
    assert config.p2p_enabled is True  # .env over default
    assert config.data_port == 8100


def test_reading_env_file_never_touches_os_environ(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("JC_TEST_ONLY_MARKER=1\nJC_SWIM_PORT=7001\n")
    before = dict(os.environ)
    assert MeshConfig.load(env_file=env_file).bind_port in {
        7001,
        int(os.environ.get("JC_SWIM_PORT", 7001)),
    }
    assert dict(os.environ) == before


def test_env_file_syntax(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\n\nexport P2P_ENABLED=yes\nJC_NODE_NAME='alpha beta'\n"
        'NEXUS_GATEWAY_URL="http://127.0.0.1:9/"\nJC_SWIM_PORT=7002 # trailing comment\n'
    )
    assert read_env_file(env_file) == {
        "P2P_ENABLED": "yes",
        "JC_NODE_NAME": "alpha beta",
        "NEXUS_GATEWAY_URL": "http://127.0.0.1:9/",
        "JC_SWIM_PORT": "7002",
    }
    config = load(env_file=env_file)
    assert config.nexus_gateway_url == "http://127.0.0.1:9"
    assert config.node_name == "alpha beta"


def test_bad_env_file_line_names_file_and_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("P2P_ENABLED=true\nthis is not a pair\n")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        load(env_file=env_file)


def test_missing_env_file_is_empty(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "absent.env") == {}


@pytest.mark.parametrize(
    ("config", "env", "key", "fragment"),
    [
        ({"bind_port": "seventy"}, {}, "bind_port", "port number"),
        ({"bind_port": 70000}, {}, "bind_port", "port number"),
        ({}, {"JC_SWIM_PORT": "-1"}, "JC_SWIM_PORT", "port number"),
        ({"bind_port": True}, {}, "bind_port", "port number"),
        ({"seed_nodes": "10.0.0.1"}, {}, "seed_nodes", "port is missing"),
        ({}, {"JC_SEED_NODES": "10.0.0.1:7946,10.0.0.2"}, "JC_SEED_NODES", "port is missing"),
        ({"seed_nodes": "::1:7946"}, {}, "seed_nodes", "IPv6"),
        ({"seed_nodes": "[nothost]:7946"}, {}, "seed_nodes", "IPv6"),
        ({"bind_port": 7000, "data_port": 7000}, {}, "data_port", "different from bind_port"),
        ({"bind_port": 65000}, {}, "bind_port", "data_port"),
        ({"p2p_enabled": "perhaps"}, {}, "p2p_enabled", "true or false"),
        ({"redis_url": "localhost:6379"}, {}, "redis_url", "redis://"),
        ({"nexus_gateway_url": "ftp://x"}, {}, "nexus_gateway_url", "http://"),
        ({"auth_mode": "sometimes"}, {}, "auth_mode", "production"),
        ({"inbox_size": 0}, {}, "inbox_size", "positive"),
        ({"swim_period": 0.5, "swim_probe_timeout": 0.5}, {}, "swim_probe_timeout", "less than"),
        ({"cluster_key": "short"}, {}, "cluster_key", "16 characters"),
    ],
)
def test_each_bad_value_names_key_value_and_expectation(
    config: dict[str, object], env: dict[str, str], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(config, env)
    assert caught.value.key == key
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_cluster_key_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"cluster_key": "hunter2"})
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(load({"cluster_key": "a-long-enough-cluster-secret"}))


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'bind_port'"):
        load({"bind_prot": 7946})
    with pytest.raises(ConfigError, match="a known key"):
        load({"completely_unrelated": 1})


def test_seed_parsing_ipv4_ipv6_and_lists() -> None:
    config = load({"seed_nodes": "10.0.0.1:7946, [::1]:7947,host.example:7"})
    assert config.seed_nodes == (
        SeedAddress("10.0.0.1", 7946),
        SeedAddress("::1", 7947),
        SeedAddress("host.example", 7),
    )
    assert str(config.seed_nodes[1]) == "[::1]:7947"
    assert load({"seed_nodes": ["127.0.0.1:1"]}).seed_nodes == (SeedAddress("127.0.0.1", 1),)
    assert parse_host_port("[fe80::1]:80").host == "fe80::1"


def test_port_zero_means_any_free_port_for_both_sockets() -> None:
    config = load({"bind_port": 0})
    assert config.bind_port == 0
    assert config.data_port == 0


def test_replace_validates_and_rederives_data_port() -> None:
    config = load({"bind_port": 7000})
    moved = config.replace(bind_port=7100)
    assert moved.data_port == 8100
    with pytest.raises(ConfigError):
        config.replace(bind_port="x")
    with pytest.raises(ConfigError):
        config.replace(nonsense=1)


def test_the_probe_timeout_follows_the_period_unless_set() -> None:
    assert load().resolved_swim_probe_timeout == 0.5  # the documented default at period 1 s
    faster = load(env={"JC_SWIM_PERIOD": "0.5"})  # the period alone is a valid change
    assert faster.swim_probe_timeout is None and faster.resolved_swim_probe_timeout == 0.25
    assert faster.replace(swim_period=0.2).resolved_swim_probe_timeout == 0.1
    pinned = load({"swim_period": 2.0, "swim_probe_timeout": 0.3})
    assert pinned.replace(swim_period=1.0).resolved_swim_probe_timeout == 0.3
    with pytest.raises(ConfigError, match="swim_probe_timeout"):
        pinned.replace(swim_period=0.3)


def test_documented_keys_cover_the_design_table() -> None:
    keys = MeshConfig.documented_keys()
    for key, env in {
        "p2p_enabled": "P2P_ENABLED",
        "bind_host": "JC_SWIM_HOST",
        "bind_port": "JC_SWIM_PORT",
        "seed_nodes": "JC_SEED_NODES",
        "redis_url": "REDIS_URL",
        "nexus_gateway_url": "NEXUS_GATEWAY_URL",
        "cluster_key": "JC_CLUSTER_KEY",
    }.items():
        assert keys[key][0] == env


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"bind_port": "٧٩٤٦"}, "bind_port"),  # Arabic-Indic digits
        ({"data_port": "\uff18\uff19\uff14\uff16"}, "data_port"),  # fullwidth digits
        ({"seed_nodes": "127.0.0.1:७९४६"}, "seed_nodes"),  # Devanagari digits
        ({"inbox_size": "\uff11\uff10"}, "inbox_size"),
    ],
)
def test_unicode_digits_are_not_numbers(config: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert caught.value.key == key


def test_a_cluster_name_over_255_bytes_is_refused_with_the_key() -> None:
    assert load({"cluster_name": "é" * 127}).cluster_name == "é" * 127  # 254 bytes
    with pytest.raises(ConfigError, match="255 UTF-8 bytes") as caught:
        load({"cluster_name": "é" * 128})
    assert caught.value.key == "cluster_name"


def test_peer_connection_and_mailbox_bounds_are_configurable() -> None:
    config = load(
        {"max_peer_connections": 64, "peer_idle_timeout": 2.5},
        env={"JC_MAILBOX_MAX_DELIVERIES": "3"},
    )
    assert (config.max_peer_connections, config.peer_idle_timeout) == (64, 2.5)
    assert config.mailbox_max_deliveries == 3
    defaults = load()
    assert defaults.max_peer_connections == 512 and defaults.mailbox_max_deliveries == 5
    with pytest.raises(ConfigError):
        load({"max_peer_connections": 0})
    with pytest.raises(ConfigError):
        load({"max_peer_connections": 1_000_000})


def test_join_timeout_and_join_required() -> None:
    config = load()
    assert (config.join_timeout, config.join_required) == (5.0, False)
    config = load(env={"JC_JOIN_TIMEOUT": "1.5", "JC_JOIN_REQUIRED": "true"})
    assert (config.join_timeout, config.join_required) == (1.5, True)
    with pytest.raises(ConfigError, match="JC_JOIN_TIMEOUT"):
        load(env={"JC_JOIN_TIMEOUT": "0"})
    with pytest.raises(ConfigError, match="join_required"):
        load({"join_required": "maybe"})

"""``jarvis-trio run`` configuration: flags > environment > .env > --config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from jarvis_trio.cli._common import CliError
from jarvis_trio.cli.run import _read_config_file, load_agent_class, merged_config
from jarvis_trio.cli.send import parse_json_object
from jarvis_trio.config import MeshConfig


def test_flags_beat_environment_beat_env_file_beat_the_config_file() -> None:
    file = {"bind_port": 1111, "node_name": "from-file", "swim_period": 2.0, "inbox_size": 7}
    environ = {"JC_NODE_NAME": "from-env", "JC_SWIM_PERIOD": "3.0"}
    env_file = {"JC_SWIM_PERIOD": "4.0", "JC_INBOX_SIZE": "9"}
    flags = {"bind_port": 2222}
    merged = merged_config(flags, file, environ, env_file)
    config = MeshConfig.load(merged, environ=environ, env_file=None)
    assert config.bind_port == 2222  # flag over file
    assert config.node_name == "from-env"  # environment over file
    assert config.swim_period == 3.0  # environment over .env (and file)
    assert merged.get("inbox_size") is None  # .env over file: the file's key is dropped
    assert config.p2p_enabled is True  # run joins a cluster unless told otherwise


def test_p2p_can_be_turned_off_by_any_source() -> None:
    assert merged_config({"p2p_enabled": False}, {}, {}, {})["p2p_enabled"] is False
    assert "p2p_enabled" not in merged_config({}, {}, {"P2P_ENABLED": "false"}, {})
    assert merged_config({}, {"p2p_enabled": False}, {}, {})["p2p_enabled"] is False


def test_config_files_are_json_or_toml_and_errors_name_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('node_name = "t"\nbind_port = 7000\n')
    assert _read_config_file(toml) == {"node_name": "t", "bind_port": 7000}
    broken = tmp_path / "node.json"
    broken.write_text("{nope")
    with pytest.raises(CliError, match=r"node\.json: not valid json"):
        _read_config_file(broken)
    with pytest.raises(CliError, match=r"missing\.json"):
        _read_config_file(tmp_path / "missing.json")


def test_agent_specs_and_json_arguments_are_checked_at_the_boundary() -> None:
    assert load_agent_class("jarvis_trio.agent:CustomAgent").__name__ == "CustomAgent"
    for spec, message in [
        ("no_colon", "expected pkg.module:Class"),
        ("jarvis_trio.agent:Nope", "has no Nope"),
        ("jarvis_trio.config:MeshConfig", "not an Agent subclass"),
        ("no.such.module:X", "cannot import"),
    ]:
        with pytest.raises(CliError, match=message):
            load_agent_class(spec)
    assert parse_json_object('{"a": 1}', "MESSAGE") == {"a": 1}
    with pytest.raises(CliError, match="MESSAGE must be a JSON object"):
        parse_json_object("[1]", "MESSAGE")

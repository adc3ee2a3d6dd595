"""``jarvis-trio run``: a node with the given agents, until Ctrl-C or SIGTERM.

Configuration, highest first: the command's flags, the environment, ``.env`` in the working
directory, the ``--config`` file (JSON or TOML, config keys as in the README), the defaults.
P2P is on unless ``--no-p2p`` (or the configuration) turns it off: ``run`` is how a node
joins a cluster. On Ctrl-C or SIGTERM the node stops gracefully: it leaves the cluster
first, so peers drop its agents at once instead of detecting a failure.
"""

from __future__ import annotations

import json
import logging
import os
import pkgutil
import signal
import sys
from pathlib import Path
from typing import Any

import click

from ._common import CliError

__all__ = ["load_agent_class", "run"]


def load_agent_class(spec: str) -> type[Any]:
    """The agent class named ``pkg.module:Class``; a :class:`CliError` saying what is wrong
    otherwise."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"agent {spec!r}: expected pkg.module:Class")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: agents in the working directory
    try:
        found = pkgutil.resolve_name(f"{module_name}:{attribute}")
    except ImportError as error:
        raise CliError(f"agent {spec!r}: cannot import {module_name}: {error}") from None
    except AttributeError:
        raise CliError(f"agent {spec!r}: {module_name} has no {attribute}") from None
    except ValueError as error:
        raise CliError(f"agent {spec!r}: {error}") from None
    from ..agent import Agent

    if not isinstance(found, type) or not issubclass(found, Agent):
        raise CliError(f"agent {spec!r}: {attribute} is not an Agent subclass")
    return found


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except OSError as error:
        raise CliError(f"--config {path}: {error.strerror or error}") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text.decode())
        else:
            data = json.loads(text)
    except ValueError as error:
        raise CliError(
            f"--config {path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {error}"
        ) from None
    if not isinstance(data, dict):
        raise CliError(f"--config {path}: expected a table of config keys")
    return data


def merged_config(
    flags: dict[str, Any], file: dict[str, Any], environ: dict[str, str], env_file: dict[str, str]
) -> dict[str, Any]:
    """flags > environment > ``.env`` > file: a file key whose variable is set in the
    environment or ``.env`` is dropped, so that ``MeshConfig.load`` takes the variable."""
    from ..config import MeshConfig

    variables = {key: env for key, (env, _) in MeshConfig.documented_keys().items()}
    merged = {
        key: value
        for key, value in file.items()
        if not (variables.get(key) and (variables[key] in environ or variables[key] in env_file))
    }
    merged.update(flags)
    p2p_var = variables["p2p_enabled"]
    if "p2p_enabled" not in merged and p2p_var not in environ and p2p_var not in env_file:
        merged["p2p_enabled"] = True
    return merged


def configure_logging(level: str, fmt: str) -> None:
    """Root logging for a node process: text lines, or one JSON object per line."""
    from .._logcontext import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)


@click.command()
@click.argument("agents", nargs=-1, required=True, metavar="pkg.module:Class...")
@click.option("--port", type=int, help="SWIM UDP port (bind_port; 0 = any free)")
@click.option("--host", help="address to bind (bind_host)")
@click.option("--seed", "seeds", multiple=True, metavar="HOST:PORT", help="a node to join through")
@click.option("--name", help="this node's name (node_name)")
@click.option("--admin-port", type=int, help="admin HTTP endpoint port (0 = any free)")
@click.option("--admin-host", help="address the admin endpoint binds to")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="JSON or TOML")
@click.option("--p2p/--no-p2p", default=None, help="join the cluster (default: yes)")
@click.option("--log-level", default=lambda: os.environ.get("JC_LOG_LEVEL", "INFO"))
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=lambda: os.environ.get("JC_LOG_FORMAT", "text"),
    help="json: one object per line with node, agent, correlation_id [env JC_LOG_FORMAT]",
)
def run(
    agents: tuple[str, ...],
    port: int | None,
    host: str | None,
    seeds: tuple[str, ...],
    name: str | None,
    admin_port: int | None,
    admin_host: str | None,
    config_file: Path | None,
    p2p: bool | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run a node with these agents until Ctrl-C or SIGTERM, then leave the cluster.

    \b
    Example:
      jarvis-trio run myapp.agents:Gateway myapp.agents:Billing \\
          --port 7946 --seed 10.0.0.5:7946 --admin-port 8946
    """
    if log_format not in ("text", "json"):
        raise CliError(f"JC_LOG_FORMAT={log_format!r}: expected text or json")
    classes = [load_agent_class(spec) for spec in agents]
    flags: dict[str, Any] = {}
    for key, value in (
        ("bind_port", port),
        ("bind_host", host),
        ("node_name", name),
        ("admin_port", admin_port),
        ("admin_host", admin_host),
        ("p2p_enabled", p2p),
    ):
        if value is not None:
            flags[key] = value
    if seeds:
        flags["seed_nodes"] = list(seeds)
    from ..config import MeshConfig, read_env_file
    from ..errors import ConfigError

    file_values = _read_config_file(config_file) if config_file is not None else {}
    try:
        env_file = read_env_file(".env")
        config = MeshConfig.load(merged_config(flags, file_values, dict(os.environ), env_file))
    except ConfigError as error:
        raise CliError(str(error)) from None
    if not isinstance(logging.getLevelName(log_level.upper()), int):
        raise CliError(f"--log-level {log_level!r}: expected DEBUG, INFO, WARNING or ERROR")
    configure_logging(log_level, log_format)

    import trio

    try:
        trio.run(_serve, config, classes)
    except KeyboardInterrupt:
        pass
    except Exception as error:
        raise CliError(
            f"node {config.node_name} stopped: {type(error).__name__}: {error}"
        ) from None


async def _serve(config: Any, classes: list[type[Any]]) -> None:
    import trio

    from ..mesh import open_mesh

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_mesh(config, agents=classes) as mesh:
            click.echo(_banner(mesh), err=False)
            sys.stdout.flush()
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for signum in signals:
                        logging.getLogger("jarvis_trio.cli").info(
                            "%s: leaving the cluster and stopping",
                            signal.Signals(signum).name,
                        )
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                await mesh.run_forever()
                nursery.cancel_scope.cancel()


def _banner(mesh: Any) -> str:
    parts = [f"node {mesh.node_id} running {len(mesh.agents)} agent(s)"]
    cluster = mesh.cluster_node
    if cluster is not None:
        host, port = cluster.swim.address[:2]
        parts.append(f"swim {host}:{port}")
        parts.append(f"data {cluster.bridge.port}")
    if mesh.admin_address is not None:
        host, port = mesh.admin_address
        parts.append(f"admin http://{host}:{port}")
    return "jarvis-trio: " + ", ".join(parts)

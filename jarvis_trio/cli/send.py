"""``jarvis-trio request`` / ``notify``: join the cluster as a short-lived client node, send
one message, print the reply as JSON, leave gracefully.

The client node binds a free SWIM port on ``--host`` (127.0.0.1 by default), joins through
``--seed`` (or ``JC_SEED_NODES``) with the cluster key of the environment
(``JC_CLUSTER_KEY``), waits until the target is discoverable, sends, and leaves; its one
agent (role ``cli``) is gone from every node's directory right after.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from typing import Any

import click

from ._common import CliError

__all__ = ["notify", "parse_json_object", "request"]


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """``text`` as a JSON object, or a :class:`CliError` naming what is wrong."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CliError(f"{what} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise CliError(f"{what} must be a JSON object ({{...}}), got {type(value).__name__}")
    return value


def _common(command: Any) -> Any:
    for option in reversed(
        [
            click.argument("target"),
            click.argument("message"),
            click.option(
                "--seed",
                "seeds",
                multiple=True,
                metavar="HOST:PORT",
                help="a cluster node's SWIM address [env JC_SEED_NODES]",
            ),
            click.option("--host", default="127.0.0.1", show_default=True, help="address to bind"),
            click.option(
                "--timeout",
                type=float,
                default=10.0,
                show_default=True,
                help="seconds to find the target and get the reply",
            ),
            click.option("--context", "context", metavar="JSON", help="context object to send"),
        ]
    ):
        command = option(command)
    return command


@click.command()
@_common
def request(**options: Any) -> None:
    """Send a request to TARGET (a role or an agent id) and print the reply as JSON.

    \b
    Example:
      jarvis-trio request billing '{"invoice": 42}' --seed 127.0.0.1:7946 --timeout 5
    """
    reply = _send("request", **options)
    click.echo(json.dumps(reply))
    if isinstance(reply, dict) and reply.get("status") == "failure" and "error_type" in reply:
        failure = f"{reply['error_type']}: {reply.get('error')}"
        raise CliError(f"{options['target']} answered with a failure: {failure}")


@click.command()
@_common
def notify(**options: Any) -> None:
    """Send a notification to TARGET (a role or an agent id); prints {"delivered": true}.

    \b
    Example:
      jarvis-trio notify monitor '{"event": "deploy"}' --seed 127.0.0.1:7946
    """
    click.echo(json.dumps(_send("notify", **options)))


def _send(
    kind: str,
    target: str,
    message: str,
    seeds: tuple[str, ...],
    host: str,
    timeout: float,
    context: str | None,
) -> Any:
    """Send one message as a client node (the options of :func:`_common` as keywords)."""
    data = parse_json_object(message, "MESSAGE")
    sent_context = parse_json_object(context, "--context") if context is not None else None
    if not timeout > 0 or math.isinf(timeout):
        raise CliError(f"--timeout {timeout}: expected a positive number of seconds")
    from ..config import MeshConfig
    from ..errors import ConfigError, JarvisError

    seed_nodes: Any = list(seeds) or os.environ.get("JC_SEED_NODES", "")
    if not seed_nodes:
        raise CliError("no cluster to join: pass --seed host:port (or set JC_SEED_NODES)")
    with tempfile.TemporaryDirectory(prefix="jarvis-trio-cli-") as scratch:
        try:
            config = MeshConfig.load(
                {
                    "p2p_enabled": True,
                    "bind_host": host,
                    "bind_port": 0,
                    "seed_nodes": seed_nodes,
                    "node_name": f"cli-{os.getpid()}-{os.urandom(3).hex()}",
                    "blob_storage_path": scratch,
                    "admin_port": None,
                }
            )
        except ConfigError as error:
            raise CliError(str(error)) from None
        import trio

        try:
            return trio.run(_exchange, config, kind, target, data, sent_context, timeout)
        except JarvisError as error:
            raise CliError(f"{type(error).__name__}: {error}") from None


async def _exchange(
    config: Any,
    kind: str,
    target: str,
    data: dict[str, Any],
    context: dict[str, Any] | None,
    timeout: float,
) -> Any:
    import trio

    from ..agent import CustomAgent
    from ..mesh import open_mesh

    class CliClient(CustomAgent):
        role = "cli"
        description = "a short-lived jarvis-trio command"

        async def run(self) -> None:
            return None

    deadline = trio.current_time() + timeout
    async with open_mesh(config, agents=[CliClient], env_file=None) as mesh:
        peers = mesh.agents[0].peers
        directory = mesh.directory

        def found() -> bool:
            return target in peers.registry or peers.get_peer(target) is not None

        with trio.move_on_at(deadline):
            await directory.changes.wait_value(lambda _: found())
        if not found():
            reason = "nothing joined" if not mesh.joined else f"no agent matches {target!r}"
            raise CliError(
                f"{reason} in the cluster within {timeout:g} s (seeds "
                f"{', '.join(str(s) for s in config.seed_nodes)})"
            )
        remaining = max(0.001, deadline - trio.current_time())
        if kind == "notify":
            delivered = await peers.notify(target, data, context=context)
            if not delivered:
                raise CliError(f"could not deliver the notification to {target!r}")
            return {"delivered": True}
        reply = await peers.request(target, data, timeout=remaining, context=context)
        if reply is None:
            raise CliError(f"no reply from {target!r} within {timeout:g} s")
        sys.stdout.flush()
        return reply

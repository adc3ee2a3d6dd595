"""``members``, ``agents``, ``stats``, ``monitor``: a node's view, through its admin endpoint
(in the manner of ``serf members`` / ``serf monitor``)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ._common import AdminClient, CliError, admin_options, print_table

__all__ = ["agents", "members", "monitor", "stats"]

_STATES = ("alive", "suspect", "failed", "dead", "left")


def _state_matches(state: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    # serf says "failed" where SWIM says "dead": accept both
    return state == ("dead" if wanted == "failed" else wanted)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@click.command()
@admin_options
@click.option("--status", type=click.Choice(_STATES), help="only members in this state")
@click.option("--role", metavar="ROLE", help="only members running an agent of this role")
def members(
    admin: str | None,
    token: str | None,
    timeout: float,
    fmt: str,
    status: str | None,
    role: str | None,
) -> None:
    """List the cluster's members as one node sees them.

    \b
    Example:
      jarvis-trio members --admin 127.0.0.1:8946 --status alive --format json
    """
    client = AdminClient(admin, token, timeout)
    found = [m for m in client.get_json("/members") if _state_matches(m["state"], status)]
    if role is not None:
        nodes = {a["node_id"] for a in client.get_json("/agents") if a["role"] == role}
        found = [m for m in found if m["name"] in nodes]
    if fmt == "json":
        _echo_json(found)
        return
    print_table(
        ("Node", "Address", "Status", "Agents", "Incarnation", "Since"),
        [
            (
                m["name"] + (" (this node)" if m.get("local") else ""),
                m["address"],
                m["state"],
                m["agents"],
                m["incarnation"],
                _since(m["since"]),
            )
            for m in found
        ],
    )


@click.command()
@admin_options
@click.option("--role", metavar="ROLE", help="only agents of this role")
@click.option(
    "--location", type=click.Choice(["local", "remote"]), help="only local or remote agents"
)
def agents(
    admin: str | None,
    token: str | None,
    timeout: float,
    fmt: str,
    role: str | None,
    location: str | None,
) -> None:
    """List every agent in the cluster (local and remote) as one node sees it.

    \b
    Example:
      jarvis-trio agents --admin 127.0.0.1:8946 --role billing
    """
    client = AdminClient(admin, token, timeout)
    found = [
        a
        for a in client.get_json("/agents")
        if (role is None or a["role"] == role) and (location is None or a["location"] == location)
    ]
    if fmt == "json":
        _echo_json(found)
        return
    print_table(
        ("Agent", "Role", "Node", "Location", "Capabilities"),
        [
            (a["agent_id"], a["role"], a["node_id"], a["location"], ",".join(a["capabilities"]))
            for a in found
        ],
    )


@click.command()
@admin_options
def stats(admin: str | None, token: str | None, timeout: float, fmt: str) -> None:
    """Print every counter of a node.

    \b
    Example:
      jarvis-trio stats --admin 127.0.0.1:8946 --format json
    """
    client = AdminClient(admin, token, timeout)
    found = client.get_json("/stats")
    if fmt == "json":
        _echo_json(found)
        return
    rows = list(_flatten("", found))
    print_table(("Counter", "Value"), rows)


@click.command()
@admin_options
def monitor(admin: str | None, token: str | None, timeout: float, fmt: str) -> None:
    """Stream membership and agent events until Ctrl-C.

    \b
    Example:
      jarvis-trio monitor --admin 127.0.0.1:8946
    """
    client = AdminClient(admin, token, timeout)
    try:
        for raw in client.stream_lines("/events"):
            if fmt == "json":
                click.echo(raw.decode("utf-8", "replace").rstrip("\n"))
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                raise CliError(f"the event stream from {client.where} is not JSON lines") from None
            click.echo(_describe(event))
    except KeyboardInterrupt:
        return
    raise CliError(f"the node at {client.where} ended the event stream (it stopped)")


def _describe(event: dict[str, Any]) -> str:
    kind = event.get("event", "?")
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time", time.time())))
    if kind == "snapshot":
        names = ", ".join(f"{m['name']} ({m['state']})" for m in event.get("members", []))
        return f"{stamp} members of {event.get('node')}: {names}"
    if kind == "lost":
        return f"{stamp} lost {event.get('lost')} events (the monitor fell behind)"
    member = event.get("member")
    if member is not None:
        where = f"{member['name']} {member['address']}"
        return f"{stamp} {kind:<13} {where} (incarnation {member['incarnation']})"
    agent = event.get("agent") or {}
    reason = f" ({event['reason']})" if event.get("reason") else ""
    who = f"{agent.get('agent_id')} role={agent.get('role')} node={agent.get('node_id')}"
    return f"{stamp} {kind:<13} {who}{reason}"


def _since(stamp: float) -> str:
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for key, inner in value.items():
            rows += _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
        return rows
    if isinstance(value, list):
        return [(prefix, json.dumps(value))]
    return [(prefix, value)]

"""``jarvis-trio dlq``: the dead letters of Redis mailboxes -- list, show, replay, purge.

Dead letters of Redis-backed mailboxes live in Redis (``jarvis:dlq:{agent}``), so these
commands talk to Redis directly (``--redis-url`` or ``REDIS_URL``) and need no running node:
an operator can inspect and replay after a crash loop while the agent is down. (The
in-process mailbox keeps its dead letters inside its node: reach those through
``mesh.mailboxes`` in Python.)
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ._common import CliError, print_table

__all__ = ["dlq"]

T = TypeVar("T")


def _with_hub(redis_url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(hub)`` against a Redis mailbox hub for ``redis_url``."""
    url = redis_url or os.environ.get("REDIS_URL")
    if not url:
        raise CliError("no Redis given: pass --redis-url or set REDIS_URL")
    import trio

    from ..config import MeshConfig
    from ..errors import ConfigError, JarvisError
    from ..mailbox import RedisHub, open_mailbox_hub

    async def main() -> T:
        config = MeshConfig.load({"redis_url": url}, environ={}, env_file=None)
        async with open_mailbox_hub(config, "jarvis-trio-dlq") as hub:
            if not isinstance(hub, RedisHub):
                raise CliError(f"Redis at {url} cannot be reached")
            return await work(hub)

    try:
        return trio.run(main)
    except ConfigError as error:
        raise CliError(str(error)) from None
    except JarvisError as error:
        raise CliError(f"{type(error).__name__}: {error}") from None


def _redis_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--redis-url", metavar="URL", help="Redis of the mailboxes [env REDIS_URL]"
    )(command)


Selected = Callable[[str, "list[str] | None", "str | None"], None]


def _selected_letters(verb: str) -> Callable[[Selected], Callable[..., None]]:
    """AGENT_ID, then DEAD_IDS or ``--all``, and ``--redis-url``: the command is called with
    the chosen dead ids (``None`` for all of them)."""

    def decorate(command: Selected) -> Callable[..., None]:
        @functools.wraps(command)
        def chosen(
            agent_id: str, dead_ids: tuple[str, ...], everything: bool, redis_url: str | None
        ) -> None:
            command(agent_id, _chosen(dead_ids, everything), redis_url)

        every = f"{verb} every dead letter"
        wrapped: Callable[..., None] = _redis_option(chosen)
        wrapped = click.option("--all", "everything", is_flag=True, help=every)(wrapped)
        wrapped = click.argument("dead_ids", nargs=-1)(wrapped)
        return click.argument("agent_id")(wrapped)

    return decorate


def _letter_json(letter: Any) -> dict[str, Any]:
    return {
        "dead_id": letter.dead_id,
        "message_id": letter.message_id,
        "sender": letter.sender,
        "target": letter.target,
        "deliveries": letter.deliveries,
        "error_type": letter.error_type,
        "error": letter.error,
        "timestamp": letter.timestamp,
        "failed_at": letter.failed_at,
        "payload": dict(letter.payload),
    }


@click.group()
def dlq() -> None:
    """Dead letters of Redis mailboxes: messages whose handler failed
    mailbox_max_deliveries times.

    \b
    Example:
      jarvis-trio dlq list billing-1a2b3c4d --redis-url redis://127.0.0.1:6379/0
      jarvis-trio dlq replay billing-1a2b3c4d 1733119200000-0
    """


@dlq.command(name="list")
@click.argument("agent_id")
@_redis_option
@click.option("--limit", type=int, default=100, show_default=True, help="most letters shown")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def list_letters(agent_id: str, redis_url: str | None, limit: int, fmt: str) -> None:
    """List the dead letters of AGENT_ID, oldest first.

    \b
    Example:
      jarvis-trio dlq list billing-1a2b3c4d --format json
    """
    if limit < 1:
        raise CliError(f"--limit {limit}: expected a positive number")
    letters = _with_hub(redis_url, lambda hub: hub.dead_letters(agent_id, limit))
    if fmt == "json":
        click.echo(json.dumps([_letter_json(d) for d in letters], indent=2))
        return
    rows = [
        [d.dead_id, d.message_id, d.sender or "-", str(d.deliveries), f"{d.error_type}: {d.error}"]
        for d in letters
    ]
    print_table(["DEAD ID", "MESSAGE", "SENDER", "DELIVERIES", "ERROR"], rows)


@dlq.command()
@click.argument("agent_id")
@click.argument("dead_id")
@_redis_option
def show(agent_id: str, dead_id: str, redis_url: str | None) -> None:
    """Print one dead letter of AGENT_ID as JSON, payload included.

    \b
    Example:
      jarvis-trio dlq show billing-1a2b3c4d 1733119200000-0
    """
    letter = _with_hub(redis_url, lambda hub: hub.dead_letter(agent_id, dead_id))
    if letter is None:
        raise CliError(f"no dead letter {dead_id!r} for {agent_id}")
    click.echo(json.dumps(_letter_json(letter), indent=2))


@dlq.command()
@_selected_letters("replay")
def replay(agent_id: str, chosen: list[str] | None, redis_url: str | None) -> None:
    """Send dead letters of AGENT_ID to its mailbox again (new messages, same sender) and
    remove them from the dead-letter stream.

    \b
    Example:
      jarvis-trio dlq replay billing-1a2b3c4d --all
    """
    sent = _with_hub(redis_url, lambda hub: _replay_and_flush(hub, agent_id, chosen))
    click.echo(f"replayed {len(sent)} dead letter(s) to {agent_id}")


async def _replay_and_flush(hub: Any, agent_id: str, chosen: list[str] | None) -> list[str]:
    sent: list[str] = await hub.replay_dead_letters(agent_id, chosen)
    await hub.drain()  # written to Redis before the command returns
    return sent


@dlq.command()
@_selected_letters("purge")
def purge(agent_id: str, chosen: list[str] | None, redis_url: str | None) -> None:
    """Delete dead letters of AGENT_ID for good.

    \b
    Example:
      jarvis-trio dlq purge billing-1a2b3c4d 1733119200000-0
    """
    count = _with_hub(redis_url, lambda hub: hub.purge_dead_letters(agent_id, chosen))
    click.echo(f"purged {count} dead letter(s) of {agent_id}")


def _chosen(dead_ids: tuple[str, ...], everything: bool) -> list[str] | None:
    if everything and dead_ids:
        raise CliError("give dead letter ids or --all, not both")
    if not everything and not dead_ids:
        raise CliError("name the dead letters (their DEAD ID), or pass --all")
    return None if everything else list(dead_ids)

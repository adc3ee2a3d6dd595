"""``jarvis-trio dlq``: list, show, replay and purge dead letters of Redis mailboxes, run as
a subprocess against a real redis-server."""

from __future__ import annotations

import json

import pytest
import trio

from jarvis_trio.config import MeshConfig
from jarvis_trio.mailbox import MailboxSettings, RedisHub, open_mailbox_hub
from jarvis_trio.testing.redis_server import RedisServer

from .cli_cluster import clean_env, cli

# nine CLI runs, each a new Python process that spends over ten seconds importing the library
# on a loaded machine (see cli_cluster.PROCESS_BOUND, which bounds each one): the default
# 120 s for the whole test is less than their sum there, and ran out mid-way, in "dlq replay"
pytestmark = [pytest.mark.redis, pytest.mark.timeout(600)]


async def make_dead_letters(url: str, agent: str, count: int) -> None:
    """``count`` messages to ``agent`` whose handling fails until they are dead letters."""
    config = MeshConfig.load({"redis_url": url}, environ={}, env_file=None)
    settings = MailboxSettings(max_deliveries=1)
    async with open_mailbox_hub(config, "maker", settings=settings) as hub:
        for n in range(count):
            hub.mailbox_for("sender-1").send(agent, {"n": n})
        assert isinstance(hub, RedisHub)
        await hub.drain()
        mailbox = hub.mailbox_for(agent)
        for _ in range(count):
            message = await mailbox.receive(timeout=10)
            assert message is not None
            assert await mailbox.fail(message, ValueError(f"cannot handle {message.payload}"))


async def test_list_show_replay_and_purge(redis_server: RedisServer) -> None:
    agent = "billing-dlq-cli"
    await make_dead_letters(redis_server.url, agent, 3)
    env = clean_env(REDIS_URL=redis_server.url)

    listed = await trio.to_thread.run_sync(lambda: cli("dlq", "list", agent, env=env))
    assert listed.returncode == 0, listed.stderr
    assert "DEAD ID" in listed.stdout and "ValueError: cannot handle" in listed.stdout
    as_json = await trio.to_thread.run_sync(
        lambda: cli("dlq", "list", agent, "--format", "json", env=env)
    )
    letters = json.loads(as_json.stdout)
    assert [d["payload"]["n"] for d in letters] == [0, 1, 2]
    assert {d["sender"] for d in letters} == {"sender-1"}

    first = letters[0]["dead_id"]
    shown = await trio.to_thread.run_sync(lambda: cli("dlq", "show", agent, first, env=env))
    assert json.loads(shown.stdout)["payload"] == {"n": 0}
    missing = await trio.to_thread.run_sync(lambda: cli("dlq", "show", agent, "0-1", env=env))
    assert missing.returncode != 0 and "no dead letter" in missing.stderr

    replayed = await trio.to_thread.run_sync(lambda: cli("dlq", "replay", agent, first, env=env))
    assert replayed.returncode == 0 and "replayed 1" in replayed.stdout, replayed.stderr
    config = MeshConfig.load({"redis_url": redis_server.url}, environ={}, env_file=None)
    async with open_mailbox_hub(config, "reader") as hub:
        again = await hub.mailbox_for(agent).receive(timeout=10)
        assert again is not None and again.payload == {"n": 0} and again.sender == "sender-1"
        await hub.mailbox_for(agent).ack(again)

    refused = await trio.to_thread.run_sync(lambda: cli("dlq", "purge", agent, env=env))
    assert refused.returncode != 0 and "--all" in refused.stderr
    purged = await trio.to_thread.run_sync(lambda: cli("dlq", "purge", agent, "--all", env=env))
    assert purged.returncode == 0 and "purged 2" in purged.stdout, purged.stderr
    empty = await trio.to_thread.run_sync(
        lambda: cli("dlq", "list", agent, "--format", "json", env=env)
    )
    assert json.loads(empty.stdout) == []


def test_without_redis_the_error_says_what_to_set() -> None:
    result = cli("dlq", "list", "someone", env=clean_env())
    assert result.returncode != 0 and "REDIS_URL" in result.stderr

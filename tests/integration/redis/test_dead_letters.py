"""Mailbox delivery you can rely on, on both backends (in-process, and a real redis-server):
a handler that raises gets its message again with backoff, then the message moves to the
agent's dead-letter stream with its error; nothing is lost, nothing acknowledged unless
handled or dead-lettered; dead letters are listed, inspected, replayed and purged; a message
whose handling kills the process is dead-lettered after ``mailbox_max_deliveries``."""

from __future__ import annotations

import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from trio_util import AsyncValue

from jarvis_trio.agent import CustomAgent
from jarvis_trio.config import MeshConfig
from jarvis_trio.mailbox import open_mailbox_hub
from jarvis_trio.mailbox.redis_backed import stream_key
from jarvis_trio.mesh import open_mesh
from jarvis_trio.services import MailboxMessage
from jarvis_trio.testing.redis_server import RedisServer

from .conftest import unique

MAX_DELIVERIES = 3
FLAKY = 100
POISON = 100


class Picky(CustomAgent):
    """Handles ``flaky`` messages on their second delivery; ``poison`` ones always raise,
    until cured."""

    role = "picky"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.deliveries: Counter[str] = Counter()
        self.seen = AsyncValue(0)
        self.handled: list[str] = []
        self.cured = False

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        key = f"{message.payload['kind']}-{message.payload['n']}"
        self.deliveries[key] += 1
        self.seen.value += 1
        if message.payload["kind"] == "poison" and not self.cured:
            raise ValueError(f"cannot digest {key}")
        if message.payload["kind"] == "flaky" and message.delivery_count == 1:
            raise RuntimeError(f"{key} fails once")
        self.handled.append(key)


class Sender(CustomAgent):
    role = "sender"


@pytest.fixture(params=["in-process", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "node_name": unique("dlq"),
        "mailbox_max_deliveries": MAX_DELIVERIES,
        "blob_storage_path": str(tmp_path / "blobs"),
    }
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        server: RedisServer = request.getfixturevalue("redis_server")
        config["redis_url"] = server.url
    return config


async def test_a_handler_that_raises_loses_nothing(backend: dict[str, Any]) -> None:
    picky_id = unique("picky")
    with trio.fail_after(60):
        async with open_mesh(backend, env_file=None, environ={}) as mesh:
            picky = await mesh.start_agent(Picky, agent_id=picky_id)
            sender = await mesh.start_agent(Sender)
            assert isinstance(picky, Picky) and sender.mailbox is not None
            for n in range(FLAKY):
                sender.mailbox.send(picky_id, {"kind": "flaky", "n": n})
            for n in range(POISON):
                sender.mailbox.send(picky_id, {"kind": "poison", "n": n})
            await picky.seen.wait_value(FLAKY * 2 + POISON * MAX_DELIVERIES)
            # the agent serves its mailbox one message at a time: once a message sent now is
            # handled, the failure of the last poison delivery (its move to the dead letters)
            # has returned
            sender.mailbox.send(picky_id, {"kind": "marker", "n": 0})
            await picky.seen.wait_value(FLAKY * 2 + POISON * MAX_DELIVERIES + 1)
            assert picky.handled.pop() == "marker-0"

            # every flaky message handled on its second delivery, exactly once
            assert sorted(picky.handled) == sorted(f"flaky-{n}" for n in range(FLAKY))
            assert all(picky.deliveries[f"flaky-{n}"] == 2 for n in range(FLAKY))
            # every poison message delivered max times, then dead-lettered with its error
            letters = await mesh.mailboxes.dead_letters(picky_id, limit=1000)
            assert sorted(d.payload["n"] for d in letters) == list(range(POISON))
            for letter in letters:
                key = f"poison-{letter.payload['n']}"
                assert picky.deliveries[key] == MAX_DELIVERIES
                assert letter.deliveries == MAX_DELIVERIES
                assert (letter.error, letter.error_type) == (f"cannot digest {key}", "ValueError")
                assert letter.sender == sender.agent_id and letter.target == picky_id
            assert picky.mailbox is not None
            assert await picky.mailbox.dead_letters(limit=5) == letters[:5]
            first = await mesh.mailboxes.dead_letter(picky_id, letters[0].dead_id)
            assert first == letters[0]
            assert await mesh.mailboxes.dead_letter(picky_id, "no-such-id") is None

            # replay half after a fix: handled; purge the rest: gone
            picky.cured = True
            replayed = [d.dead_id for d in letters[: POISON // 2]]
            new_ids = await mesh.mailboxes.replay_dead_letters(picky_id, replayed)
            assert len(new_ids) == POISON // 2
            await picky.seen.wait_value(FLAKY * 2 + POISON * MAX_DELIVERIES + 1 + POISON // 2)
            assert len(picky.handled) == FLAKY + POISON // 2
            assert await mesh.mailboxes.purge_dead_letters(picky_id) == POISON - POISON // 2
            assert await mesh.mailboxes.dead_letters(picky_id) == []
    if "redis_url" in backend:  # nothing left pending or stored: all handled or dead
        client = redis.Redis.from_url(backend["redis_url"])
        try:
            assert client.xlen(stream_key(picky_id)) == 0
        finally:
            client.close()


CRASHING_READER = """
import os, sys, trio
from jarvis_trio.config import MeshConfig
from jarvis_trio.mailbox import open_mailbox_hub

async def main():
    config = MeshConfig.load(
        {"redis_url": sys.argv[1], "mailbox_max_deliveries": int(sys.argv[3])},
        environ={}, env_file=None,
    )
    async with open_mailbox_hub(config, "crashing") as hub:
        message = await hub.mailbox_for(sys.argv[2]).receive(timeout=1.0)
        if message is not None:
            print(message.delivery_count, flush=True)
            os._exit(17)  # the handling of this message kills the process

trio.run(main)
"""


@pytest.mark.redis
async def test_a_message_that_kills_the_process_is_dead_lettered(
    redis_server: RedisServer,
) -> None:
    victim = unique("victim")
    config = MeshConfig.load({"redis_url": redis_server.url}, environ={}, env_file=None)
    async with open_mailbox_hub(config, "sender") as hub:
        hub.mailbox_for("sender").send(victim, {"deadly": True})
        await hub.drain()  # type: ignore[union-attr]
    script = textwrap.dedent(CRASHING_READER)
    args = [sys.executable, "-c", script, redis_server.url, victim, str(MAX_DELIVERIES)]
    seen: list[str] = []
    with trio.fail_after(60):
        for _ in range(MAX_DELIVERIES):
            run = await trio.run_process(args, capture_stdout=True, check=False)
            assert run.returncode == 17
            seen.append(run.stdout.decode().strip())
        assert seen == ["1", "2", "3"]  # counted by Redis across process lives
        last = await trio.run_process(args, capture_stdout=True, check=False)
        assert last.returncode == 0 and last.stdout == b""  # not handed out again
        async with open_mailbox_hub(config, "inspector") as inspector:
            (letter,) = await inspector.dead_letters(victim)
    assert letter.payload == {"deadly": True}
    assert letter.deliveries == MAX_DELIVERIES and letter.error_type == "Undelivered"
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.xlen(stream_key(victim)) == 0
    finally:
        client.close()

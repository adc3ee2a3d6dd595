"""What the tests of both mailbox backends wait for, written once.

Tests import this module by name (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing

from jarvis_trio.services import Mailbox, MailboxMessage


async def received_after(
    mailbox: Mailbox, send: Callable[[], Awaitable[object]]
) -> MailboxMessage | None:
    """What a reader already parked in ``mailbox.receive()`` gets once ``send()`` ran
    (within 10 s)."""
    received: list[MailboxMessage | None] = []

    async def reader() -> None:
        received.append(await mailbox.receive())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await send()
    return received[0]

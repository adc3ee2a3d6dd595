"""asyncio code that runs on the Trio side gets an error saying what to use instead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from jarvis_trio.compat import asyncio_misuse_explained, explain_asyncio_misuse
from jarvis_trio.compat._guard import asyncio_guard
from jarvis_trio.errors import AsyncioMisuseError


async def _sleep() -> None:
    await asyncio.sleep(0.01)


async def _queue_get() -> None:
    await asyncio.Queue[int]().get()


async def _event_wait() -> None:
    await asyncio.Event().wait()


async def _create_task() -> None:
    await asyncio.create_task(asyncio.sleep(0))


async def _gather() -> None:
    await asyncio.gather(asyncio.sleep(0))


async def _to_thread() -> None:
    await asyncio.to_thread(print)


async def _timeout() -> None:
    async with asyncio.timeout(1):
        await trio.lowlevel.checkpoint()  # never reached: entering already fails


async def _loop_time() -> None:
    asyncio.get_running_loop().time()


async def _future() -> None:
    await asyncio.Future()


MISUSES: dict[str, tuple[Callable[[], Awaitable[None]], str]] = {
    "sleep": (_sleep, "asyncio.sleep"),
    "queue": (_queue_get, "asyncio.Queue.get"),
    "event": (_event_wait, "asyncio.Event.wait"),
    "create_task": (_create_task, "asyncio.create_task"),
    "gather": (_gather, "asyncio.gather"),
    "to_thread": (_to_thread, "asyncio.to_thread"),
    "timeout": (_timeout, "asyncio.timeout"),
    "loop_time": (_loop_time, "loop clock"),
    "future": (_future, "asyncio.Future"),
}


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.parametrize("name", sorted(MISUSES))
async def test_guarded_trio_code_gets_an_explanation(name: str) -> None:
    misuse, mentions = MISUSES[name]
    with asyncio_guard(), pytest.raises(AsyncioMisuseError) as info:
        await misuse()
    message = str(info.value)
    assert mentions in message
    assert "runs on Trio" in message or "execute on Trio" in message
    assert "anyio.sleep" in message and "trio.sleep" in message
    assert isinstance(info.value, RuntimeError)  # catchable as the documented base type


async def test_the_guard_is_reentrant_and_leaves_nothing_behind() -> None:
    assert asyncio._get_running_loop() is None
    with asyncio_guard():
        with asyncio_guard():
            pass
        with pytest.raises(AsyncioMisuseError):  # still guarded after the inner block
            await _sleep()
    assert asyncio._get_running_loop() is None
    # Harmless primitives keep working under the guard.
    with asyncio_guard():
        lock = asyncio.Lock()
        async with lock:  # uncontended: never needs a loop
            pass
        await trio.lowlevel.checkpoint()


def test_the_guard_leaves_a_real_asyncio_loop_alone() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with asyncio_guard():
            assert asyncio.get_running_loop() is loop
            await asyncio.sleep(0)

    asyncio.run(main())


async def test_raw_failures_under_plain_trio_are_explained() -> None:
    # No guard installed: asyncio fails the way it does under any plain trio.run.
    with pytest.raises(RuntimeError) as sleeping:
        await asyncio.sleep(0.01)
    with pytest.raises(TypeError) as bare_yield:
        await asyncio.sleep(0)
    for raw in (sleeping.value, bare_yield.value):
        explained = explain_asyncio_misuse(raw)
        assert isinstance(explained, AsyncioMisuseError)
        assert "anyio" in str(explained)
    with pytest.raises(AsyncioMisuseError) as info, asyncio_misuse_explained():
        await asyncio.sleep(0.01)
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("unrelated"), TypeError("bad operand"), ValueError("no running event loop")],
)
def test_other_errors_are_not_taken_for_asyncio_misuse(exc: BaseException) -> None:
    assert explain_asyncio_misuse(exc) is None
    with pytest.raises(type(exc)), asyncio_misuse_explained():
        raise exc


def test_an_explained_error_is_not_explained_twice() -> None:
    already: Any = AsyncioMisuseError("no running event loop")
    assert explain_asyncio_misuse(already) is None


async def test_probing_for_an_asyncio_task_is_not_an_error() -> None:
    with asyncio_guard():
        assert asyncio.current_task() is None
        logging.getLogger("jarvis_trio.tests").info("logging works under the guard")

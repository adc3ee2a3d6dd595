"""Single flight: concurrent callers asking for the same key share one piece of work.

The work runs in a nursery owned by the auth manager, not in the first caller's task, so a
caller that gives up (cancelled, timed out) does not abort the others' wait; all of them get
the same result or the same exception -- always one of the AuthError family (anything else
is wrapped in an ``AuthError`` naming it, so no raw exception reaches a caller). The number
of flights in progress is bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, cast

import trio

from ..errors import AuthError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Flight(Generic[V]):
    __slots__ = ("done", "error", "ok", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.ok = False
        self.value: V | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[K, V]):
    """At most one running ``fn`` per key; at most ``limit`` keys in flight."""

    def __init__(self, nursery: trio.Nursery, *, limit: int, what: str) -> None:
        self._nursery = nursery
        self._limit = limit
        self._what = what
        self._flights: dict[K, _Flight[V]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        flight = self._flights.get(key)
        if flight is None:
            if len(self._flights) >= self._limit:
                raise AuthError(f"more than {self._limit} {self._what} in progress; refused")
            flight = _Flight()
            self._flights[key] = flight
            self._nursery.start_soon(self._fly, key, flight, fn)
        await flight.done.wait()
        if not flight.ok:
            assert flight.error is not None
            raise flight.error
        return cast(V, flight.value)

    async def _fly(self, key: K, flight: _Flight[V], fn: Callable[[], Awaitable[V]]) -> None:
        try:
            flight.value = await fn()
            flight.ok = True
        except AuthError as error:
            flight.error = error
        except Exception as error:  # callers get the AuthError family, whatever went wrong
            flight.error = AuthError(f"{self._what} failed: {type(error).__name__}: {error}")
            flight.error.__cause__ = error
        finally:
            if not flight.ok and flight.error is None:
                flight.error = AuthError(f"the auth manager closed before the {self._what} ended")
            del self._flights[key]
            flight.done.set()

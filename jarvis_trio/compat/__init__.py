"""The anyio shim: the documented imperative API from asyncio programs as well as Trio ones.

Code written against the documented API runs under either library with only its imports
changed::

    from jarvis_trio import CustomAgent, Mesh

    async def main():
        mesh = Mesh(config={...})
        scout = mesh.add(ScoutAgent)
        await mesh.start()
        result = await scout.execute_task("sector-7", {"mission_id": "abc123"})
        await mesh.stop()

    asyncio.run(main())      # or: trio.run(main)

Under ``trio.run`` none of this package is involved: every call runs directly. Under
``asyncio.run``, ``await mesh.start()`` (or ``async with mesh``) starts a :class:`TrioHost` — the
Trio runtime on one dedicated daemon thread, one per asyncio loop, shared by that loop's meshes —
and runs the mesh there. Every ``@trio_side`` method of the mesh and of what it injects into
agents (``peers``, ``mailbox``, ``_blob_storage``, ``_redis_store``, ``_auth_manager``) then
crosses to that thread when awaited from asyncio:

* cancelling the awaiting asyncio task cancels the Trio side of the call, and ``CancelledError``
  is raised once that side has unwound (no pending request is left behind);
* an exception raised on the Trio side is raised, as the same object, in the asyncio caller;
* synchronous methods that touch Trio state (``mesh.add()`` after start) run on the Trio thread
  while the caller blocks for that one hop;
* agent code (``setup``/``run``/``teardown``, handlers) runs on Trio and may use anyio or Trio;
  asyncio primitives there raise :class:`~jarvis_trio.errors.AsyncioMisuseError` saying what to
  use instead;
* the host stops with the last hosted mesh; if the program does not stop its meshes, the end of
  ``asyncio.run`` (or Ctrl-C) stops them — every ``teardown()`` runs — and interpreter exit
  does so for loops that were never shut down, without ever hanging on the runtime thread.

Where the crossing is decided is visible where it is defined: ``Mesh.start`` / ``stop`` /
``__aenter__`` / ``__aexit__`` call :func:`~._hosted.start_hosted` / ``stop_hosted`` when awaited
outside Trio, and every other crossing method is marked ``@trio_side`` (``@trio_side_sync`` for
the synchronous ``Mesh.add``). The host reaches the objects through the
:class:`~jarvis_trio._sides.HostSlot` the mesh hands each of them when it builds them.

Modules: :mod:`._host` (the thread and the crossing), :mod:`._lifecycle` (one host per asyncio
loop; loop shutdown and interpreter exit), :mod:`._hosted` (what ``Mesh.start``/``stop`` call
from asyncio), :mod:`._guard` (clear errors for asyncio code that runs on the Trio side).

Public names: :class:`TrioHost` (a Trio runtime on a thread of its own, for programs that host
it themselves), :func:`asyncio_misuse_explained` / :func:`explain_asyncio_misuse` (turn the raw
failures of asyncio code run under a plain ``trio.run`` into the explanatory error) and
:func:`on_trio`; :func:`run_asyncio` (:mod:`._asyncio_calls`), with which agent code awaits an
asyncio-only library: on the host program's loop when hosted from asyncio, else on a loop the
node owns.
"""

from .._sides import on_trio
from ._asyncio_calls import run_asyncio
from ._guard import asyncio_misuse_explained, explain_asyncio_misuse
from ._host import TrioHost

__all__ = [
    "TrioHost",
    "asyncio_misuse_explained",
    "explain_asyncio_misuse",
    "on_trio",
    "run_asyncio",
]

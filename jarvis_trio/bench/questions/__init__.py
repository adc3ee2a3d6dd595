"""The standard benchmark questions, one ``bench_*`` module per concern.

Each module is imported only when its questions run (a plain import statement in a loader
below, so that readers and tools see every module this package runs). ``floors_peer``,
``swim_scale``, ``transport_node`` and ``transport_peer`` are helper programs the questions
start as separate processes (``python -m jarvis_trio.bench.questions.<name>``).
"""

from __future__ import annotations

from ..runner import QuestionModule, Questions

__all__ = ["standard"]


def _compat() -> Questions:
    from . import bench_compat

    return bench_compat.run


def _core() -> Questions:
    from . import bench_core

    return bench_core.run


def _floors() -> Questions:
    from . import bench_floors

    return bench_floors.run


def _gossip() -> Questions:
    from . import bench_gossip

    return bench_gossip.run


def _mailbox() -> Questions:
    from . import bench_mailbox

    return bench_mailbox.run


def _nexus() -> Questions:
    from . import bench_nexus

    return bench_nexus.run


def _run_asyncio() -> Questions:
    from . import bench_run_asyncio

    return bench_run_asyncio.run


def _swim() -> Questions:
    from . import bench_swim

    return bench_swim.run


def _transport() -> Questions:
    from . import bench_transport

    return bench_transport.run


def standard() -> list[QuestionModule]:
    """The questions installed with the package, in the order they run."""
    return [
        QuestionModule(f"bench_{name}", f"{__name__}.bench_{name}", load)
        for name, load in (
            ("compat", _compat),
            ("core", _core),
            ("floors", _floors),
            ("gossip", _gossip),
            ("mailbox", _mailbox),
            ("nexus", _nexus),
            ("run_asyncio", _run_asyncio),
            ("swim", _swim),
            ("transport", _transport),
        )
    ]

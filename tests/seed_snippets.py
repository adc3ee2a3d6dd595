"""The seed documents' snippets, written once for every test that runs them.

Tests import this module by name (``pythonpath = ["tests"]`` in pyproject.toml). The
ScoutAgent is the one of ``examples/scout.py``, loaded from there, so that the example a
learner reads is the code the tests run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from jarvis_trio import Agent

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# seeds/p2p-communication.txt, "Practical Example: CustomAgent with Peer Communication"
ScoutAgent: type[Agent] = load_example("scout").ScoutAgent


async def ask_every_analyst(
    self: Agent, process_other_tasks: Callable[[], Awaitable[None]]
) -> list[dict[str, Any]]:
    """seeds/p2p-communication.txt, "Async Request Pattern", as written (``self`` is the
    agent asking)."""
    analysts = self.peers.discover(role="analyst")

    # Fire off multiple requests without blocking
    request_ids = []
    for analyst in analysts:
        req_id = await self.peers.ask_async(analyst.agent_id, {"question": "Analyse sector X"})
        request_ids.append(req_id)

    # Do other work while responses arrive
    await process_other_tasks()

    # Collect responses
    results = []
    for req_id in request_ids:
        response = await self.peers.check_inbox(req_id, timeout=10)
        if response:
            results.append(response)
    return results

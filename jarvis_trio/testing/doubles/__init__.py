"""Test doubles for agents: unit-test handlers without a running mesh.

:class:`MockPeerClient`, :class:`MockMesh`, :class:`MockBlobStorage` and :class:`MockMailbox`
have the real objects' signatures; :func:`agent_under_test` injects them into one agent and
runs its ``setup()``, handlers and ``teardown()`` under Trio (``trio.run`` or pytest-trio).
See docs/testing-agents.md.
"""

from .harness import AgentHarness, NoReplyError, agent_under_test
from .mesh import MockMesh
from .peers import MockPeerClient, Reply, SentMessage
from .storage import MockBlobStorage, MockMailbox

__all__ = [
    "AgentHarness",
    "MockBlobStorage",
    "MockMailbox",
    "MockMesh",
    "MockPeerClient",
    "NoReplyError",
    "Reply",
    "SentMessage",
    "agent_under_test",
]

"""Test doubles for agents: unit-test handlers without a running mesh.

:class:`MockPeerClient`, :class:`MockMesh`, :class:`MockBlobStorage` and :class:`MockMailbox`
have the real objects' signatures; :func:`agent_under_test` injects them into one agent and
runs its ``setup()``, handlers and ``teardown()`` under Trio (``trio.run`` or pytest-trio).
See docs/testing-agents.md.

The names are re-exported explicitly (``name as name``); ``jarvis_trio.testing`` keeps the one
list of them, since it loads this package lazily.
"""

from .harness import AgentHarness as AgentHarness
from .harness import NoReplyError as NoReplyError
from .harness import agent_under_test as agent_under_test
from .mesh import MockMesh as MockMesh
from .peers import MockPeerClient as MockPeerClient
from .peers import Reply as Reply
from .peers import SentMessage as SentMessage
from .storage import MockBlobStorage as MockBlobStorage
from .storage import MockMailbox as MockMailbox

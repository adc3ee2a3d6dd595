"""The value objects that travel between agents: one frozen struct for every message kind.

:class:`IncomingMessage` is both what ``peers.receive()`` returns and what the cross-node
layer puts on the wire (msgspec encodes it directly). It carries its own return path
(``sender`` + ``sender_node``) so that ``respond()`` never needs a registry look-up, and the
``correlation_id`` that pairs a response with its request.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = ["NOTIFY", "REQUEST", "RESPONSE", "IncomingMessage", "failure_reply"]

REQUEST: Final = "request"
NOTIFY: Final = "notify"
RESPONSE: Final = "response"


class IncomingMessage(msgspec.Struct, frozen=True, gc=False):
    """One message delivered to an agent (or, with ``type="response"``, to a requester).

    ``data`` and ``context`` belong to the receiver: the sender's payload was copied when it
    was checked, so mutating them affects nobody else.
    """

    sender: str
    sender_node: str
    type: str
    data: dict[str, Any]
    correlation_id: str | None = None
    timestamp: float = 0.0
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    target: str = ""
    traceparent: str | None = None
    """The W3C trace context of the span that sent it (set only while tracing is on)."""

    @property
    def is_request(self) -> bool:
        """True when the sender waits for a ``respond()``."""
        return self.type == REQUEST

    @property
    def is_notify(self) -> bool:
        """True for fire-and-forget messages."""
        return self.type == NOTIFY

    @property
    def is_response(self) -> bool:
        """True for a reply to a request (never returned by ``receive()``)."""
        return self.type == RESPONSE


def failure_reply(exc: BaseException) -> dict[str, Any]:
    """The reply sent for a request whose handler raised, so the requester never waits out
    its timeout."""
    return {"status": "failure", "error": str(exc), "error_type": type(exc).__name__}

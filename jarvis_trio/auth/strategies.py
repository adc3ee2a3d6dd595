"""Token strategies: turn a gateway ``/v1/token/{id}`` answer into request headers.

The gateway answers ``{type, credentials, expires_at?}``. Each type maps to one header:

========== ==================================================
oauth2     ``Authorization: Bearer <credentials.access_token>``
api_key    ``X-Api-Key: <credentials.api_key>``
basic_auth ``Authorization: Basic base64(<username>:<password>)``
========== ==================================================

Parsing is strict and happens once, at the boundary: anything missing, of the wrong type,
or unknown is a :class:`~jarvis_trio.errors.NexusProtocolError` that names the field, so a
malformed answer never surfaces later as a ``KeyError`` or a broken header. Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import NexusProtocolError

__all__ = ["STRATEGY_TYPES", "TokenStrategy", "parse_token_answer"]

STRATEGY_TYPES = ("oauth2", "api_key", "basic_auth")


@dataclass(frozen=True, slots=True)
class TokenStrategy:
    """Credentials of one connection, ready to be injected into a request.

    ``expires_at`` is a UNIX time in seconds (``None`` when the gateway gave none).
    """

    kind: str
    headers: Mapping[str, str] = field(repr=False)
    expires_at: float | None = None


def parse_token_answer(answer: object, connection_id: str) -> TokenStrategy:
    """Validate a token answer and build its strategy."""
    where = f"token answer for connection {connection_id!r}"
    if not isinstance(answer, Mapping):
        raise NexusProtocolError(f"{where} is {type(answer).__name__}, expected a JSON object")
    kind = answer.get("type")
    if not isinstance(kind, str):
        raise NexusProtocolError(f"{where} has no string field 'type' (got {kind!r})")
    credentials = answer.get("credentials")
    if not isinstance(credentials, Mapping):
        raise NexusProtocolError(
            f"{where} has no object field 'credentials' (got {type(credentials).__name__})"
        )
    expires_at = _expiry(answer.get("expires_at"), where)
    if kind == "oauth2":
        token = _text(credentials, "access_token", where)
        headers = {"Authorization": f"Bearer {token}"}
    elif kind == "api_key":
        headers = {"X-Api-Key": _text(credentials, "api_key", where)}
    elif kind == "basic_auth":
        user = _text(credentials, "username", where, in_header=False)
        password = _text(credentials, "password", where, allow_empty=True, in_header=False)
        if ":" in user:
            raise NexusProtocolError(f"{where}: credentials.username contains ':'")
        pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers = {"Authorization": f"Basic {pair}"}
    else:
        raise NexusProtocolError(
            f"{where} has unknown strategy type {kind!r}; expected one of "
            + ", ".join(STRATEGY_TYPES)
        )
    return TokenStrategy(kind=kind, headers=headers, expires_at=expires_at)


def _text(
    credentials: Mapping[str, Any],
    name: str,
    where: str,
    *,
    allow_empty: bool = False,
    in_header: bool = True,
) -> str:
    value = credentials.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        shown = type(value).__name__ if value is not None else "missing"
        raise NexusProtocolError(
            f"{where}: credentials.{name} must be a non-empty string ({shown})"
        )
    if any(ch in value for ch in "\r\n\x00"):
        raise NexusProtocolError(f"{where}: credentials.{name} contains a line break or NUL")
    if in_header and not value.isascii():
        # it goes into an HTTP header as is: only ASCII can (basic_auth is base64-encoded)
        raise NexusProtocolError(f"{where}: credentials.{name} is not ASCII")
    return value


def _expiry(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise NexusProtocolError(f"{where}: expires_at must be a number or ISO-8601 text")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise NexusProtocolError(f"{where}: expires_at {value!r} is not finite")
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise NexusProtocolError(f"{where}: expires_at {value!r} is not ISO-8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    raise NexusProtocolError(
        f"{where}: expires_at must be a number or ISO-8601 text, got {type(value).__name__}"
    )

"""The Nexus gateway's HTTP protocol, one method per endpoint.

=================== ==================================== =========================================
request connection  ``POST /v1/request-connection``       ``{connection_id, authUrl}``; 409 = reuse
poll                ``GET /v1/check-connection/{id}``     ``{status}``
token               ``GET /v1/token/{id}``                ``{type, credentials, expires_at?}``
refresh             ``POST /v1/refresh/{id}``             any 2xx
=================== ==================================== =========================================

Errors are mapped here, where the answer enters: a gateway that cannot be reached, times out
or answers 5xx is :class:`~jarvis_trio.errors.NexusUnavailable` (worth retrying); an answer
that breaks the protocol -- unexpected status, non-JSON, missing or mistyped fields -- is
:class:`~jarvis_trio.errors.NexusProtocolError` naming the endpoint and what was wrong. Every
call has one deadline for the whole exchange (not per read), and answers are read up to a size
limit. Nothing else escapes: whatever the gateway sends -- a broken gzip body, JSON nested
ten thousand deep, a body dripped a byte at a time -- ends as one of those two errors
(property-tested against a real HTTP server serving hostile answers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import trio

from ..errors import NexusProtocolError, NexusUnavailable
from .strategies import TokenStrategy, parse_token_answer

__all__ = [
    "MAX_ANSWER_BYTES",
    "STATUSES",
    "ConnectionRequest",
    "NexusClient",
    "ResponseTooLarge",
    "read_limited",
]

STATUSES = ("PENDING", "ACTIVE", "ATTENTION", "REVOKED", "EXPIRED", "FAILED")
MAX_ANSWER_BYTES = 1 << 20
_MAX_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """A connection waiting for consent. ``reused`` is True after a 409 (already pending)."""

    connection_id: str
    auth_url: str
    reused: bool


class ResponseTooLarge(Exception):
    """Internal signal of :func:`read_limited`; callers map it to their own error."""


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    """Read a streamed response body, refusing more than ``limit`` bytes."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(f"{declared} bytes declared, limit {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class NexusClient:
    """Speaks the gateway protocol over a shared :class:`httpx.AsyncClient`."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._timeout = timeout
        self.calls: dict[tuple[str, str], int] = {}
        """Calls by ``(endpoint, outcome)``; outcome ``ok``, ``unavailable`` or
        ``protocol_error`` (what the metrics report)."""

    async def request_connection(
        self, user_id: str, provider: str, scopes: Sequence[str], return_url: str
    ) -> ConnectionRequest:
        """Ask for a new connection; a 409 hands back the pending one."""
        body = {
            "user_id": user_id,
            "provider_name": provider,
            "scopes": list(scopes),
            "return_url": return_url,
        }
        status, answer = await self._call(
            "POST", "/v1/request-connection", "request-connection", body, accept=(409,)
        )
        where = f"request-connection answer ({status})"
        data = _object(answer, where)
        connection_id = _identifier(data.get("connection_id"), where, "connection_id")
        auth_url = data.get("authUrl")
        if not isinstance(auth_url, str) or not auth_url.startswith(("http://", "https://")):
            raise NexusProtocolError(f"{where}: authUrl must be an http(s) URL, got {auth_url!r}")
        return ConnectionRequest(connection_id, auth_url, reused=status == 409)

    async def check_connection(self, connection_id: str) -> str:
        """The connection's status, one of :data:`STATUSES`."""
        _, answer = await self._call(
            "GET", f"/v1/check-connection/{quote(connection_id, safe='')}", "check-connection"
        )
        where = f"check-connection answer for {connection_id!r}"
        status = _object(answer, where).get("status")
        if not isinstance(status, str):
            raise NexusProtocolError(f"{where} has no string field 'status' (got {status!r})")
        if status.upper() not in STATUSES:
            raise NexusProtocolError(
                f"{where} has unknown status {status!r}; expected one of {', '.join(STATUSES)}"
            )
        return status.upper()

    async def get_token(self, connection_id: str) -> TokenStrategy:
        """Fetch and validate the connection's credentials."""
        _, answer = await self._call("GET", f"/v1/token/{quote(connection_id, safe='')}", "token")
        try:
            return parse_token_answer(answer, connection_id)
        except NexusProtocolError:
            raise
        except Exception as error:  # total: whatever the answer holds, an AuthError
            raise NexusProtocolError(
                f"token answer for connection {connection_id!r} is unusable: "
                f"{type(error).__name__}: {error}"
            ) from None

    async def refresh(self, connection_id: str) -> None:
        """Ask the gateway to refresh the connection's credentials."""
        await self._call(
            "POST", f"/v1/refresh/{quote(connection_id, safe='')}", "refresh", parse=False
        )

    async def _call(
        self,
        method: str,
        path: str,
        endpoint: str,
        body: Mapping[str, Any] | None = None,
        *,
        accept: tuple[int, ...] = (),
        parse: bool = True,
    ) -> tuple[int, Any]:
        outcome = "ok"
        try:
            return await self._exchange(method, path, endpoint, body, accept, parse)
        except NexusUnavailable:
            outcome = "unavailable"
            raise
        except NexusProtocolError:
            outcome = "protocol_error"
            raise
        finally:
            key = (endpoint, outcome)
            self.calls[key] = self.calls.get(key, 0) + 1

    async def _exchange(
        self,
        method: str,
        path: str,
        endpoint: str,
        body: Mapping[str, Any] | None,
        accept: tuple[int, ...],
        parse: bool,
    ) -> tuple[int, Any]:
        """One exchange, bounded by the timeout as a whole -- connecting, sending, and
        reading every byte of the answer -- not per read (a gateway dripping a byte at a
        time cannot hold a call). Raises nothing but the AuthError family."""
        url = self.base_url + path
        with trio.move_on_after(self._timeout) as deadline:
            try:
                status, raw = await self._transfer(method, url, body)
            except httpx.TimeoutException as error:
                raise NexusUnavailable(
                    f"Nexus gateway {endpoint} at {url} did not answer within {self._timeout} s "
                    f"({type(error).__name__})"
                ) from error
            except httpx.TransportError as error:
                raise NexusUnavailable(
                    f"Nexus gateway at {self.base_url} cannot be reached for {endpoint}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            except ResponseTooLarge as error:
                raise NexusProtocolError(f"Nexus {endpoint} answer is too large: {error}") from None
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
                # a body that does not decode (broken gzip, bad charset), too many redirects
                raise NexusProtocolError(
                    f"Nexus gateway {endpoint} answered something unreadable: "
                    f"{type(error).__name__}: {error}"
                ) from None
        if deadline.cancelled_caught:
            raise NexusUnavailable(
                f"Nexus gateway {endpoint} at {url} did not answer within {self._timeout} s "
                "(the deadline of the whole call)"
            )
        if status >= 500:
            raise NexusUnavailable(f"Nexus gateway {endpoint} answered {status}: {_snippet(raw)}")
        if not (200 <= status < 300 or status in accept):
            raise NexusProtocolError(
                f"Nexus gateway {endpoint} answered {status} (expected 2xx): {_snippet(raw)}"
            )
        if not parse:
            return status, None
        try:
            return status, json.loads(raw)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deeply
            raise NexusProtocolError(
                f"Nexus gateway {endpoint} answered {status} with non-JSON (or JSON nested too "
                f"deeply): {_snippet(raw)}"
            ) from None

    async def _transfer(
        self, method: str, url: str, body: Mapping[str, Any] | None
    ) -> tuple[int, bytes]:
        async with self._http.stream(method, url, json=body, timeout=self._timeout) as response:
            return response.status_code, await read_limited(response, MAX_ANSWER_BYTES)


def _object(answer: object, where: str) -> Mapping[str, Any]:
    if not isinstance(answer, Mapping):
        raise NexusProtocolError(f"{where} is {type(answer).__name__}, expected a JSON object")
    return answer


def _identifier(value: object, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NexusProtocolError(f"{where}: {name} must be a non-empty string, got {value!r}")
    if len(value) > _MAX_ID_LENGTH or not value.isprintable():
        raise NexusProtocolError(
            f"{where}: {name} is not a printable id of at most {_MAX_ID_LENGTH} characters"
        )
    return value


def _snippet(raw: bytes, limit: int = 120) -> str:
    text = raw[:limit].decode("utf-8", errors="replace")
    return repr(text + ("..." if len(raw) > limit else ""))

"""``NexusCallProxy``: HTTP calls to a provider with the connection's credentials injected.

Import path kept from the documentation (``jarviscore.auth.nexus`` -> ``jarvis_trio.auth.nexus``)::

    connection_id = await self._auth_manager.get_connection_id("github")
    proxy = NexusCallProxy(connection_id)
    result = await proxy.get("https://api.github.com/user")
    # {"ok": True, "status_code": 200, "body": {...}, "json": {...}, "headers": {...}}

The proxy finds its :class:`~jarvis_trio.auth.manager.AuthenticationManager` unless one is
passed: the id returned by ``get_connection_id`` remembers its manager; for an id given as a
plain string, the manager published in ``current_auth_manager`` is used. The token
is resolved lazily on the first call and cached by the manager; a 401 answer triggers one
refresh of the connection and one retry with the new credentials. HTTP error statuses are
returned, not raised: ``ok`` is False and ``status_code`` tells why. ``body`` is the decoded
JSON when the answer is JSON, its text otherwise; ``json`` is the decoded JSON or ``None``.
Transport failures (provider unreachable, timeout) raise :class:`httpx.HTTPError` subclasses.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

import httpx

from .._sides import HostSlot, trio_side
from ..errors import AuthError
from .client import ResponseTooLarge, read_limited
from .manager import AuthenticationManager, ConnectionId, current_auth_manager

__all__ = ["CallOptions", "NexusCallProxy"]

_NO_JSON = object()


class CallOptions(TypedDict, total=False):
    """The keyword options of :meth:`NexusCallProxy.call`, shared by its per-verb shortcuts
    (``get``, ``post``, ...) so that they stay in step; each defaults to ``None``."""

    headers: Mapping[str, str] | None
    params: Mapping[str, Any] | None
    json: Any
    content: bytes | str | None
    data: Mapping[str, Any] | None
    timeout: float | None


class NexusCallProxy:
    """Authenticated HTTP calls through one Nexus connection."""

    def __init__(
        self,
        connection_id: str,
        *,
        manager: AuthenticationManager | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(connection_id, str) or not connection_id:
            raise ValueError(f"connection_id must be a non-empty string, got {connection_id!r}")
        found = manager
        if found is None and isinstance(connection_id, ConnectionId):
            found = connection_id.manager
        if found is None:
            found = current_auth_manager.get()
        if found is None:
            raise AuthError(
                "NexusCallProxy needs an AuthenticationManager: create it inside an agent of a "
                "running node (requires_auth = True) or pass manager=self._auth_manager"
            )
        self.connection_id = connection_id
        self.manager = found
        self._host_slot: HostSlot = found._host_slot  # served where its manager is
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"NexusCallProxy({self.connection_id!r})"

    @trio_side
    async def call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send ``method url`` with the credentials injected (they replace any given
        ``Authorization`` / ``X-Api-Key``); retry once after a 401 with refreshed ones."""
        strategy = await self.manager.get_token(self.connection_id)
        request = self._build(method, url, headers, params, json, content, data, timeout)
        response, raw = await self._send(request, strategy.headers)
        if response.status_code == 401:
            strategy = await self.manager.token_after_unauthorized(self.connection_id, strategy)
            request = self._build(method, url, headers, params, json, content, data, timeout)
            response, raw = await self._send(request, strategy.headers)
        return _result(response, raw)

    @trio_side
    async def get(self, url: str, **options: Unpack[CallOptions]) -> dict[str, Any]:
        """``call("GET", url, ...)``."""
        return await self.call("GET", url, **options)

    @trio_side
    async def post(self, url: str, **options: Unpack[CallOptions]) -> dict[str, Any]:
        """``call("POST", url, ...)``."""
        return await self.call("POST", url, **options)

    @trio_side
    async def put(self, url: str, **options: Unpack[CallOptions]) -> dict[str, Any]:
        """``call("PUT", url, ...)``."""
        return await self.call("PUT", url, **options)

    @trio_side
    async def patch(self, url: str, **options: Unpack[CallOptions]) -> dict[str, Any]:
        """``call("PATCH", url, ...)``."""
        return await self.call("PATCH", url, **options)

    @trio_side
    async def delete(self, url: str, **options: Unpack[CallOptions]) -> dict[str, Any]:
        """``call("DELETE", url, ...)``."""
        return await self.call("DELETE", url, **options)

    def _build(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        json: Any,
        content: bytes | str | None,
        data: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> httpx.Request:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"NexusCallProxy needs an http(s) URL, got {url!r}")
        return self.manager.http_client.build_request(
            method.upper(),
            url,
            headers=dict(headers or {}),
            params=params,
            json=json,
            content=content,
            data=data,
            timeout=self.timeout if timeout is None else timeout,
        )

    async def _send(
        self, request: httpx.Request, auth_headers: Mapping[str, str]
    ) -> tuple[httpx.Response, bytes]:
        for name in ("Authorization", "X-Api-Key"):
            request.headers.pop(name, None)
        request.headers.update(auth_headers)
        limit = self.manager.settings.max_response_bytes
        response = await self.manager.http_client.send(request, stream=True)
        try:
            raw = await read_limited(response, limit)
        except ResponseTooLarge as error:
            raise AuthError(f"{request.method} {request.url} answer too large: {error}") from None
        finally:
            await response.aclose()
        return response, raw


def _result(response: httpx.Response, raw: bytes) -> dict[str, Any]:
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    decoded: Any = _NO_JSON
    if raw:
        try:
            decoded = jsonlib.loads(text)
        except ValueError:
            decoded = _NO_JSON
    parsed = None if decoded is _NO_JSON else decoded
    return {
        "ok": response.is_success,
        "status_code": response.status_code,
        "body": text if decoded is _NO_JSON else decoded,
        "json": parsed,
        "headers": dict(response.headers),
    }

"""The keyring routes of the admin endpoint: list, install, use (make primary), remove.

::

    GET  /keys           {"node", "primary", "keys": [{"fingerprint", "primary", "verified"}]}
    POST /keys/install   body {"key": KEY}                 the key verifies from now on
    POST /keys/use       body {"key": KEY or fingerprint}  the key signs from now on
    POST /keys/remove    body {"key": KEY or fingerprint}  the key is refused from now on

Each POST answers ``{"node", "action", "fingerprint", "changed", "primary", "keys"}``.

These routes always need the admin Bearer token: a node whose endpoint asks for no token
(no ``admin_token`` and no ``cluster_key``) answers 403 here, never the keyring. Nothing here
ever returns key material: listings carry fingerprints only (the first 8 bytes of the key's
SHA-256, enough to compare nodes, useless to forge a tag), and a key travels only inward, in
a request body (never in a URL, so never in an access log). Every change is logged at
WARNING with the fingerprint: rotating a key is an event an operator wants in the record.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from .._http import Request, Response, json_response

if TYPE_CHECKING:
    from ..swim.keyring import Keyring

__all__ = ["KEY_ACTIONS", "KEY_ROUTES", "handle_keys"]

log = logging.getLogger("jarvis_trio.ops.admin")

KEY_ACTIONS = ("install", "use", "remove")
KEY_ROUTES = ("/keys", *(f"/keys/{action}" for action in KEY_ACTIONS))


def _listing(node_id: str, keyring: Keyring) -> dict[str, Any]:
    return {
        "node": node_id,
        "primary": keyring.primary_fingerprint,
        "keys": [
            {"fingerprint": k.fingerprint, "primary": k.primary, "verified": k.verified}
            for k in keyring.list()
        ],
    }


def _key_of(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    key = payload.get("key") if isinstance(payload, dict) else None
    return key if isinstance(key, str) and key else None


def handle_keys(
    request: Request, path: str, node_id: str, keyring: Keyring | None, token_required: bool
) -> Response:
    """Answer one keyring route (``path`` is one of :data:`KEY_ROUTES`); total.

    The caller has already checked the token when one is configured; ``token_required``
    says whether one is, and without one these routes are refused outright.
    """
    if not token_required:
        return json_response(
            403,
            {
                "error": "the keyring routes need an admin token: set admin_token "
                "(JC_ADMIN_TOKEN) or cluster_key on this node"
            },
        )
    if keyring is None:
        return json_response(
            409, {"error": f"node {node_id} has no cluster key: there is no keyring to manage"}
        )
    if path == "/keys":
        if request.method not in ("GET", "HEAD"):
            return json_response(405, {"error": f"{request.method} /keys: use GET"})
        return json_response(200, _listing(node_id, keyring))
    action = path.removeprefix("/keys/")
    if request.method != "POST":
        return json_response(405, {"error": f"{request.method} {path}: use POST"})
    key = _key_of(request.body)
    if key is None:
        return json_response(400, {"error": 'expected a JSON body {"key": "..."}'})
    from ..swim.keyring import fingerprint

    try:
        if action == "install":
            changed = keyring.install(key)
            named = fingerprint(key)
        elif action == "use":
            before = keyring.primary_fingerprint
            keyring.use(key)
            named = keyring.primary_fingerprint
            changed = named != before
        else:
            listed = {k.fingerprint for k in keyring.list()}
            named = key if key in listed else fingerprint(key)
            changed = keyring.remove(key)
            if not changed:
                return json_response(404, {"error": f"key {named} is not installed"})
    except ValueError as error:
        return json_response(400, {"error": str(error)})
    if changed:
        log.warning(
            "node %s: cluster key %s %s through the admin endpoint",
            node_id,
            named,
            {"install": "installed", "use": "made primary", "remove": "removed"}[action],
            extra={"node": node_id},
        )
    answer = {"action": action, "fingerprint": named, "changed": changed}
    return json_response(200, {**answer, **_listing(node_id, keyring)})

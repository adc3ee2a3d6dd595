"""The keyring routes of the admin endpoint on real nodes, asked with a real HTTP client:
always behind the token, fingerprints only, every refusal a clear 4xx."""

from __future__ import annotations

from pathlib import Path

import trio

from jarvis_trio.swim.keyring import fingerprint

from .test_admin import TOKEN, Echo, node

KEY = "a-cluster-secret-of-32-characters"
NEW_KEY = "the-next-cluster-secret-of-32-chars"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_list_install_use_remove_with_fingerprints_only(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with node(tmp_path, "k", [Echo], cluster_key=KEY, admin_token=TOKEN) as (mesh, web):
            for method, route in (("GET", "/keys"), ("POST", "/keys/install")):
                refused = await web.request(method, route, json={"key": NEW_KEY})
                assert refused.status_code == 401, route
            assert mesh.keyring is not None and len(mesh.keyring) == 1

            listed = await web.get("/keys", headers=AUTH)
            assert listed.json() == {
                "node": "k",
                "primary": fingerprint(KEY),
                "keys": [{"fingerprint": fingerprint(KEY), "primary": True, "verified": 0}],
            }
            answers = [listed.text]
            for action, key in (("install", NEW_KEY), ("use", NEW_KEY), ("remove", KEY)):
                done = await web.post(f"/keys/{action}", json={"key": key}, headers=AUTH)
                assert done.status_code == 200, done.text
                assert done.json()["changed"] is True and done.json()["action"] == action
                answers.append(done.text)
            assert [k.fingerprint for k in mesh.keyring.list()] == [fingerprint(NEW_KEY)]
            again = await web.post("/keys/install", json={"key": NEW_KEY}, headers=AUTH)
            assert again.json()["changed"] is False
            answers.append(again.text)
            assert not any(KEY in text or NEW_KEY in text for text in answers)

            # a fingerprint names a key for use / remove
            await web.post("/keys/install", json={"key": KEY}, headers=AUTH)
            by_name = await web.post("/keys/remove", json={"key": fingerprint(KEY)}, headers=AUTH)
            assert by_name.status_code == 200 and by_name.json()["fingerprint"] == fingerprint(KEY)
            assert len(mesh.keyring) == 1


async def test_refusals_are_clear(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with node(tmp_path, "k", [Echo], cluster_key=KEY, admin_token=TOKEN) as (mesh, web):
            primary = await web.post("/keys/remove", json={"key": KEY}, headers=AUTH)
            assert primary.status_code == 400
            assert "is the primary key" in primary.json()["error"]
            unknown = await web.post("/keys/remove", json={"key": NEW_KEY}, headers=AUTH)
            assert unknown.status_code == 404
            assert unknown.json()["error"] == f"key {fingerprint(NEW_KEY)} is not installed"
            short = await web.post("/keys/install", json={"key": "short"}, headers=AUTH)
            assert short.status_code == 400 and "at least 16 bytes" in short.json()["error"]
            not_installed = await web.post("/keys/use", json={"key": NEW_KEY}, headers=AUTH)
            assert not_installed.status_code == 400
            for body in (b"", b"not json", b'{"key": 7}', b"[]"):
                bad = await web.post("/keys/install", content=body, headers=AUTH)
                assert bad.status_code == 400, body
            assert (await web.get("/keys/install", headers=AUTH)).status_code == 405
            assert (await web.post("/members", headers=AUTH)).status_code == 405
            assert mesh.keyring is not None and len(mesh.keyring) == 1

        # no key: no keyring to manage
        async with node(tmp_path, "plain", [Echo], admin_token=TOKEN) as (_, web):
            missing = await web.get("/keys", headers=AUTH)
            assert missing.status_code == 409 and "no cluster key" in missing.json()["error"]
        # no token configured at all: the keyring routes are refused, never open
        async with node(tmp_path, "open", [Echo]) as (_, web):
            assert (await web.get("/members")).status_code == 200
            for method, route in (("GET", "/keys"), ("POST", "/keys/install")):
                closed = await web.request(method, route, json={"key": NEW_KEY})
                assert closed.status_code == 403, route
                assert "need an admin token" in closed.json()["error"]

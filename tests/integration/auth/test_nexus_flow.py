"""The whole Nexus flow over real HTTP against the development gateway on loopback.

Every test talks to a real server on 127.0.0.1 through real sockets, so time is real: poll
intervals are small and every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from jarvis_trio.auth import (
    AuthenticationManager,
    AuthSettings,
    ConsentPrompt,
    NexusCallProxy,
    normalize_user_id,
    open_auth_manager,
)
from jarvis_trio.config import MeshConfig
from jarvis_trio.errors import (
    AuthError,
    AuthTimeout,
    ConnectionNotActive,
    NexusProtocolError,
    NexusUnavailable,
)
from jarvis_trio.testing.nexus_gateway import NexusGateway, serve_nexus_gateway
from jarvis_trio.testing.ports import free_port

FAST = {"poll_interval": 0.01, "consent_timeout": 5.0, "failed_grace": 0.1, "http_timeout": 2.0}
USER = "ann@example.com"


@pytest.fixture
async def gw() -> AsyncIterator[NexusGateway]:
    async with serve_nexus_gateway(auto_consent_after=1) as gateway:
        yield gateway


@asynccontextmanager
async def manager_for(url: str, **settings: Any) -> AsyncIterator[AuthenticationManager]:
    values = {**FAST, "user_id": USER, **settings}
    config = MeshConfig.load({"nexus_gateway_url": url}, environ={}, env_file=None)
    async with open_auth_manager(config, settings=AuthSettings(**values)) as manager:
        assert manager is not None
        yield manager


@asynccontextmanager
async def flow_awaiting_consent(
    gw: NexusGateway, manager: AuthenticationManager
) -> AsyncIterator[list[str]]:
    """``get_connection_id("github")`` in the background, already polling the gateway for
    consent; leaving the block consents its one connection, whose id then is in the list."""
    result: list[str] = []
    async with trio.open_nursery() as nursery:

        async def call() -> None:
            result.append(await manager.get_connection_id("github"))

        nursery.start_soon(call)
        await gw.wait_for(lambda: gw.calls["check-connection"] >= 1)
        yield result
        (cid,) = gw.connections
        gw.consent(cid)


def user_opens_link() -> Any:
    """A consent handler acting like the user: it opens the authUrl over HTTP."""
    prompts: list[ConsentPrompt] = []

    async def handler(prompt: ConsentPrompt) -> None:
        prompts.append(prompt)
        async with httpx.AsyncClient() as client:
            page = await client.get(prompt.auth_url)
            assert page.status_code == 200

    handler.prompts = prompts  # type: ignore[attr-defined]
    return handler


@pytest.mark.parametrize(
    ("strategy", "header", "scheme"),
    [
        ("oauth2", "Authorization", "bearer"),
        ("api_key", "X-Api-Key", "api_key"),
        ("basic_auth", "Authorization", "basic"),
    ],
)
async def test_full_flow_for_each_strategy(strategy: str, header: str, scheme: str) -> None:
    handler = user_opens_link()
    async with serve_nexus_gateway(strategy=strategy) as gw:
        async with manager_for(gw.url, consent_handler=handler) as manager:
            with trio.fail_after(10):
                cid = await manager.get_connection_id("github")
                proxy = NexusCallProxy(cid)
                result = await proxy.get(gw.url + "/echo", params={"q": "1"})
        conn = gw.connections[cid]
        assert conn.status == "ACTIVE"
        assert conn.user_id == str(uuid.uuid5(uuid.NAMESPACE_DNS, USER))
        assert conn.scopes == ["repo", "read:org", "read:user", "workflow"]
        assert handler.prompts[0].auth_url == f"{gw.url}/consent/{cid}"
        assert result["ok"] is True
        assert result["status_code"] == 200
        assert result["json"] == result["body"]
        assert result["body"]["authenticated"] is True
        assert result["body"]["auth_header"] == header
        assert result["body"]["scheme"] == scheme
        assert result["body"]["connection_id"] == cid
        assert result["body"]["query"] == "q=1"
        assert result["headers"]["content-type"] == "application/json"


async def test_basic_auth_header_is_base64_of_user_and_password() -> None:
    async with (
        serve_nexus_gateway(strategy="basic_auth", auto_consent_after=0) as gw,
        manager_for(gw.url) as manager,
    ):
        with trio.fail_after(10):
            cid = await manager.get_connection_id("jira")
            strategy = await manager.get_token(cid)
    conn = gw.connections[cid]
    expected = base64.b64encode(f"user-{cid}:{conn.secrets[-1]}".encode()).decode()
    assert strategy.headers["Authorization"] == f"Basic {expected}"


async def test_second_call_is_cached_and_consent_url_is_printed(
    gw: NexusGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            first = await manager.get_connection_id("github")
            polls = gw.connections[first].polls
            second = await manager.get_connection_id("github")
    assert first == second
    assert gw.calls["request-connection"] == 1
    assert gw.connections[first].polls == polls
    assert f"{gw.url}/consent/{first}" in capsys.readouterr().out


async def test_concurrent_callers_share_one_flow(gw: NexusGateway) -> None:
    gw.default.auto_consent_after = 3
    ids: list[str] = []
    async with manager_for(gw.url) as manager:

        async def call() -> None:
            ids.append(await manager.get_connection_id("github"))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(call)
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert gw.calls["request-connection"] == 1


async def test_users_and_providers_get_separate_connections(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            a = await manager.get_connection_id("github", user_id="ann")
            b = await manager.get_connection_id("github", user_id="bob")
            c = await manager.get_connection_id("slack", scopes=["chat:write"], user_id="ann")
            given = str(uuid.uuid4())
            d = await manager.get_connection_id("github", user_id=given)
    assert len({a, b, c, d}) == 4
    assert gw.connections[c].scopes == ["chat:write"]
    assert gw.connections[d].user_id == given
    assert gw.connections[a].user_id == normalize_user_id("ann")


async def test_refresh_right_after_active_and_periodically(gw: NexusGateway) -> None:
    async with manager_for(gw.url, refresh_interval=0.02) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
            await gw.wait_for(lambda: gw.connections[cid].refreshes >= 3)
    refreshes = gw.connections[cid].refreshes
    # The watcher ended with the manager: no refresh arrives after the block.
    async with httpx.AsyncClient() as client:
        await client.get(gw.url + "/health")
    assert gw.connections[cid].refreshes == refreshes


async def test_token_is_fetched_lazily_and_cached(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
            assert gw.connections[cid].token_fetches == 0
            proxy = NexusCallProxy(cid)
            for _ in range(3):
                assert (await proxy.get(gw.url + "/echo"))["ok"]
    assert gw.connections[cid].token_fetches == 1


async def test_expired_token_is_fetched_again(gw: NexusGateway) -> None:
    gw.default.token_ttl = -1.0  # the gateway hands out tokens already past expires_at
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
            proxy = NexusCallProxy(cid)
            await proxy.get(gw.url + "/echo")
            await proxy.get(gw.url + "/echo")
    assert gw.connections[cid].token_fetches == 2


async def test_401_refreshes_once_and_retries(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
            await gw.wait_for(lambda: gw.connections[cid].refreshes >= 1)
            proxy = NexusCallProxy(cid, manager=manager)
            assert (await proxy.get(gw.url + "/echo"))["ok"]
            gw.invalidate_credentials(cid)
            result = await proxy.post(gw.url + "/echo", json={"x": 1})
    assert result["status_code"] == 200
    assert result["body"]["body_bytes"] == len(b'{"x":1}')
    assert gw.connections[cid].refreshes == 2
    assert gw.connections[cid].token_fetches == 2


async def test_a_second_401_is_returned_not_retried_forever(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
            await gw.wait_for(lambda: gw.connections[cid].refreshes >= 1)
            proxy = NexusCallProxy(cid)
            result = await proxy.delete(gw.url + "/echo/status/401")
    assert result["ok"] is False
    assert result["status_code"] == 401
    assert gw.connections[cid].refreshes == 2


async def test_http_error_status_is_returned_not_raised(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            proxy = NexusCallProxy(await manager.get_connection_id("github"))
            missing = await proxy.put(gw.url + "/echo/status/404", content=b"abc")
            failing = await proxy.call("PATCH", gw.url + "/echo/status/503")
            page = await proxy.get(gw.url + "/health/none")
    assert (missing["ok"], missing["status_code"], missing["body"]["body_bytes"]) == (False, 404, 3)
    assert (failing["ok"], failing["status_code"], failing["body"]["method"]) == (
        False,
        503,
        "PATCH",
    )
    assert page["status_code"] == 404


async def test_non_json_answer_gives_text_body(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            proxy = NexusCallProxy(await manager.get_connection_id("github"))
            result = await proxy.get(gw.url + "/consent/unknown")
    assert result["json"] is None
    assert isinstance(result["body"], str)
    assert "Unknown connection" in result["body"]


async def test_given_auth_headers_are_replaced_by_the_connection_s(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            proxy = NexusCallProxy(await manager.get_connection_id("github"))
            result = await proxy.get(
                gw.url + "/echo", headers={"Authorization": "Bearer forged", "X-Trace": "1"}
            )
    assert result["body"]["authenticated"] is True


async def test_revoked_connection_found_at_refresh_is_dropped(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
            proxy = NexusCallProxy(cid)
            assert (await proxy.get(gw.url + "/echo"))["ok"]
            gw.set_status(cid, "REVOKED")
            with pytest.raises(ConnectionNotActive, match="REVOKED"):
                await proxy.get(gw.url + "/echo")
            assert manager.cached_connections() == {}
            fresh = await manager.get_connection_id("github")
    assert fresh != cid


@pytest.mark.parametrize("outcome", ["REVOKED", "EXPIRED"])
async def test_revoked_and_expired_end_the_wait(gw: NexusGateway, outcome: str) -> None:
    gw.default.outcome = outcome
    async with manager_for(gw.url, failed_grace=30.0) as manager:
        with trio.fail_after(10), pytest.raises(ConnectionNotActive) as info:
            await manager.get_connection_id("github")
    assert info.value.status == outcome
    assert manager.cached_connections() == {}


async def test_failed_ends_after_the_grace_period(gw: NexusGateway) -> None:
    gw.default.outcome = "FAILED"
    async with manager_for(gw.url, failed_grace=0.1) as manager:
        with trio.fail_after(10), pytest.raises(ConnectionNotActive) as info:
            await manager.get_connection_id("github")
    assert info.value.status == "FAILED"
    cid = info.value.connection_id
    assert gw.connections[cid].polls >= 3  # kept polling during the grace


async def test_failed_that_recovers_within_the_grace_succeeds(gw: NexusGateway) -> None:
    gw.default.outcome = "FAILED"
    result: list[str] = []
    async with manager_for(gw.url, failed_grace=30.0) as manager:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def call() -> None:
                    result.append(await manager.get_connection_id("github"))

                nursery.start_soon(call)
                await gw.wait_for(
                    lambda: any(
                        c.status == "FAILED" and c.polls >= 4 for c in gw.connections.values()
                    )
                )
                (cid,) = gw.connections
                gw.set_status(cid, "ACTIVE")
    assert result == [cid]


async def test_pending_past_the_timeout_is_auth_timeout(gw: NexusGateway) -> None:
    gw.default.auto_consent_after = None
    async with manager_for(gw.url, consent_timeout=0.2) as manager:
        with trio.fail_after(10), pytest.raises(AuthTimeout, match="PENDING") as info:
            await manager.get_connection_id("github")
    assert isinstance(info.value, TimeoutError)
    assert "/consent/" in str(info.value)


async def test_attention_keeps_polling_until_the_timeout(
    gw: NexusGateway, mock_clock: trio.testing.MockClock
) -> None:
    # The clock runs at real speed, and the consent timeout passes when the test jumps it:
    # once the gateway answered PENDING, then ATTENTION, and was asked again. A short real
    # timeout instead could pass, on a loaded machine, before ATTENTION was ever answered.
    mock_clock.rate = 1.0
    gw.default.outcome = "ATTENTION"
    async with manager_for(gw.url, consent_timeout=30) as manager:

        async def ask() -> None:
            with pytest.raises(AuthTimeout, match="last status ATTENTION"):
                await manager.get_connection_id("github")

        with trio.fail_after(60):  # virtual seconds, the jump's 30 included
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                await gw.wait_for(lambda: any(c.polls >= 3 for c in gw.connections.values()))
                mock_clock.jump(30)


async def test_409_reuses_the_pending_connection(gw: NexusGateway) -> None:
    gw.default.auto_consent_after = 1
    async with httpx.AsyncClient() as client:
        pending = await client.post(
            gw.url + "/v1/request-connection",
            json={
                "user_id": normalize_user_id(USER),
                "provider_name": "github",
                "scopes": [],
                "return_url": "about:blank",
            },
        )
    assert pending.status_code == 200
    handler = user_opens_link()
    async with manager_for(gw.url, consent_handler=handler) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
    assert cid == pending.json()["connection_id"]
    assert handler.prompts[0].reused is True
    assert len(gw.connections) == 1


async def test_forced_409_answer_is_followed(gw: NexusGateway) -> None:
    gw.switches.conflict = True
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
    assert gw.connections[cid].status == "ACTIVE"


async def test_gateway_down_is_a_clear_auth_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with manager_for(url) as manager:
        with trio.fail_after(10), pytest.raises(NexusUnavailable, match="cannot be reached"):
            await manager.get_connection_id("github")
    assert isinstance(NexusUnavailable(), AuthError)


async def test_gateway_5xx_is_unavailable(gw: NexusGateway) -> None:
    gw.switches.error_status = 502
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10), pytest.raises(NexusUnavailable, match="502"):
            await manager.get_connection_id("github")


async def test_transient_5xx_while_polling_is_tolerated(gw: NexusGateway) -> None:
    gw.default.auto_consent_after = None
    async with manager_for(gw.url, max_poll_errors=3) as manager:
        with trio.fail_after(10):
            async with flow_awaiting_consent(gw, manager) as result:
                gw.switches.fail_next = 2
                await gw.wait_for(lambda: gw.switches.fail_next == 0)
    assert result == list(gw.connections)


async def test_persistent_5xx_while_polling_gives_up(gw: NexusGateway) -> None:
    gw.default.auto_consent_after = None
    async with manager_for(gw.url, max_poll_errors=3) as manager:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def call() -> None:
                    with pytest.raises(NexusUnavailable, match="503"):
                        await manager.get_connection_id("github")

                nursery.start_soon(call)
                await gw.wait_for(lambda: gw.calls["check-connection"] >= 1)
                gw.switches.fail_next = 100
    assert gw.calls["check-connection"] == 1 + 3


@pytest.mark.parametrize(
    ("endpoint", "kind", "named"),
    [
        ("request-connection", "not-json", "non-JSON"),
        ("request-connection", "not-object", "expected a JSON object"),
        ("request-connection", "missing-field", "connection_id"),
        ("request-connection", "wrong-type", "connection_id"),
        ("request-connection", "unknown-value", "connection_id"),
        ("check-connection", "not-json", "non-JSON"),
        ("check-connection", "missing-field", "'status'"),
        ("check-connection", "wrong-type", "'status'"),
        ("check-connection", "unknown-value", "unknown status 'SLEEPING'"),
        ("token", "not-json", "non-JSON"),
        ("token", "not-object", "expected a JSON object"),
        ("token", "missing-field", "'credentials'"),
        ("token", "wrong-type", "'credentials'"),
        ("token", "unknown-value", "unknown strategy type 'kerberos'"),
    ],
)
async def test_malformed_answers_are_named_errors(
    gw: NexusGateway, endpoint: str, kind: str, named: str
) -> None:
    gw.switches.malform(endpoint, kind)
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10), pytest.raises(NexusProtocolError) as info:
            cid = await manager.get_connection_id("github")
            await NexusCallProxy(cid).get(gw.url + "/echo")
    assert named in str(info.value)
    assert not isinstance(info.value, KeyError)


async def test_refresh_accepts_any_2xx_body(gw: NexusGateway) -> None:
    gw.switches.malform("refresh", "not-json")
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("github")
            await gw.wait_for(lambda: gw.connections[cid].refreshes >= 1)
            proxy = NexusCallProxy(cid)
            gw.invalidate_credentials(cid)
            assert (await proxy.get(gw.url + "/echo"))["ok"]


async def test_slow_gateway_hits_the_http_timeout(gw: NexusGateway) -> None:
    gw.switches.delay = 2.0
    async with manager_for(gw.url, http_timeout=0.1) as manager:
        with trio.fail_after(10), pytest.raises(NexusUnavailable, match="did not answer within"):
            await manager.get_connection_id("github")


async def test_slowness_under_the_timeout_still_works(gw: NexusGateway) -> None:
    gw.switches.delay = 0.02
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            assert await manager.get_connection_id("github")


async def test_connection_cache_is_bounded_least_recent_first(gw: NexusGateway) -> None:
    async with manager_for(gw.url, max_connections=2) as manager:
        with trio.fail_after(10):
            a = await manager.get_connection_id("a")
            await manager.get_connection_id("b")
            await manager.get_connection_id("a")  # a is now the most recent
            await manager.get_connection_id("c")  # evicts b
            assert set(manager.cached_connections().values()) >= {a}
            assert [k[0] for k in manager.cached_connections()] == ["a", "c"]
            await manager.get_connection_id("b")
    assert gw.calls["request-connection"] == 4


async def test_oversized_provider_answer_is_refused(gw: NexusGateway) -> None:
    async with manager_for(gw.url, max_response_bytes=64) as manager:
        with trio.fail_after(10):
            proxy = NexusCallProxy(await manager.get_connection_id("github"))
            with pytest.raises(AuthError, match="too large"):
                await proxy.get(gw.url + "/echo")


async def test_forget_stops_watching_and_next_call_asks_again(gw: NexusGateway) -> None:
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            first = await manager.get_connection_id("github")
            assert manager.forget("github") is True
            assert manager.forget("github") is False
            second = await manager.get_connection_id("github")
    assert first != second


async def test_browser_is_opened_only_when_asked(
    gw: NexusGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    browser_called = trio.Event()

    def fake_open(url: str) -> bool:  # runs in a worker thread, like the real one
        opened.append(url)
        trio.from_thread.run_sync(browser_called.set)
        return True

    monkeypatch.setattr("webbrowser.open", fake_open)
    async with manager_for(gw.url) as manager:
        with trio.fail_after(10):
            await manager.get_connection_id("github")
    assert opened == []
    async with manager_for(gw.url, open_browser=True) as manager:
        with trio.fail_after(10):
            cid = await manager.get_connection_id("gitlab")
            await browser_called.wait()
    assert opened == [f"{gw.url}/consent/{cid}"]


async def test_a_failing_consent_handler_is_logged_not_fatal(
    gw: NexusGateway, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(prompt: ConsentPrompt) -> None:
        raise RuntimeError("handler bug")

    async with manager_for(gw.url, consent_handler=broken) as manager:
        with trio.fail_after(10):
            assert await manager.get_connection_id("github")
    assert "consent handler failed" in caplog.text


async def test_flows_in_progress_are_bounded(gw: NexusGateway) -> None:
    gw.default.auto_consent_after = None
    async with manager_for(gw.url, max_connections=1) as manager:
        with trio.fail_after(10):
            async with flow_awaiting_consent(gw, manager) as outcome:
                with pytest.raises(AuthError, match="more than 1 Nexus connection flows"):
                    await manager.get_connection_id("gitlab")
    assert outcome == list(gw.connections)


async def test_waiters_get_a_clear_error_when_the_manager_closes(gw: NexusGateway) -> None:
    gw.default.auto_consent_after = None
    errors: list[BaseException] = []

    async def waiter(manager: AuthenticationManager) -> None:
        try:
            await manager.get_connection_id("github")
        except AuthError as error:
            errors.append(error)

    with trio.fail_after(10):
        async with trio.open_nursery() as outer, manager_for(gw.url) as manager:
            outer.start_soon(waiter, manager)
            await gw.wait_for(lambda: gw.calls["check-connection"] >= 1)
    assert len(errors) == 1
    assert "closed before" in str(errors[0])

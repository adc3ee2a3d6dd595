"""AuthenticationManager without a gateway: configuration, lifetime, context, validation."""

from __future__ import annotations

import uuid

import pytest
import trio

from jarvis_trio.auth import (
    AuthenticationManager,
    AuthSettings,
    NexusCallProxy,
    current_auth_manager,
    normalize_user_id,
    open_auth_manager,
    use_auth_manager,
)
from jarvis_trio.config import MeshConfig
from jarvis_trio.errors import AuthError, NexusNotConfigured


def config(**values: object) -> MeshConfig:
    return MeshConfig.load(values, environ={}, env_file=None)


async def test_disabled_mode_yields_none() -> None:
    async with open_auth_manager(config(auth_mode="disabled")) as manager:
        assert manager is None
        assert current_auth_manager.get() is None


async def test_without_gateway_url_the_manager_exists_and_first_use_names_the_variable() -> None:
    async with open_auth_manager(config()) as manager:
        assert isinstance(manager, AuthenticationManager)
        assert not manager.configured
        with pytest.raises(ValueError, match="NEXUS_GATEWAY_URL") as info:
            await manager.get_connection_id("github")
        assert isinstance(info.value, NexusNotConfigured)
        assert isinstance(info.value, AuthError)
        with pytest.raises(NexusNotConfigured):
            await manager.get_token("conn-1")


async def test_manager_is_published_to_tasks_started_inside_the_block() -> None:
    seen: list[AuthenticationManager | None] = []

    async def agent() -> None:
        seen.append(current_auth_manager.get())

    async with open_auth_manager(config(nexus_gateway_url="http://127.0.0.1:9")) as manager:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent)
        proxy = NexusCallProxy("conn-1")
        assert proxy.manager is manager
    assert seen == [manager]
    assert current_auth_manager.get() is None


async def test_use_after_close_is_a_clear_error() -> None:
    async with open_auth_manager(config(nexus_gateway_url="http://127.0.0.1:9")) as manager:
        assert manager is not None
    with pytest.raises(AuthError, match="closed"):
        await manager.get_connection_id("github")


async def test_proxy_outside_a_node_needs_a_manager() -> None:
    with pytest.raises(AuthError, match="AuthenticationManager"):
        NexusCallProxy("conn-1")
    with pytest.raises(ValueError, match="connection_id"):
        NexusCallProxy("")


async def test_use_auth_manager_sets_and_restores() -> None:
    async with open_auth_manager(config()) as manager:
        with use_auth_manager(None):
            assert current_auth_manager.get() is None
        assert current_auth_manager.get() is manager


async def test_bad_arguments_are_refused_at_the_call() -> None:
    async with open_auth_manager(config(nexus_gateway_url="http://127.0.0.1:9")) as manager:
        assert manager is not None
        with pytest.raises(ValueError, match="provider"):
            await manager.get_connection_id("")
        with pytest.raises(ValueError, match="scopes"):
            await manager.get_connection_id("github", scopes="repo")
        with pytest.raises(ValueError, match="user_id"):
            await manager.get_connection_id("github", user_id="")


def test_user_ids_are_uuids() -> None:
    given = str(uuid.uuid4())
    assert normalize_user_id(given) == given
    assert normalize_user_id(given.upper()) == given
    mapped = normalize_user_id("ann@example.com")
    assert mapped == str(uuid.uuid5(uuid.NAMESPACE_DNS, "ann@example.com"))
    assert normalize_user_id("ann@example.com") == mapped


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("poll_interval", 0),
        ("consent_timeout", -1),
        ("failed_grace", float("inf")),
        ("token_ttl", True),
        ("http_timeout", "3"),
        ("max_poll_errors", 0),
        ("max_connections", 1.5),
    ],
)
def test_settings_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        AuthSettings(**{field: value})  # type: ignore[arg-type]

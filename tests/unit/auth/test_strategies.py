"""Token answers -> headers: each strategy, expiry forms, and every malformed shape."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from jarvis_trio.auth.strategies import parse_token_answer
from jarvis_trio.errors import NexusProtocolError


def test_oauth2_gives_a_bearer_header() -> None:
    strategy = parse_token_answer(
        {"type": "oauth2", "credentials": {"access_token": "tok"}, "expires_at": 1700000000}, "c1"
    )
    assert strategy.kind == "oauth2"
    assert dict(strategy.headers) == {"Authorization": "Bearer tok"}
    assert strategy.expires_at == 1700000000.0


def test_api_key_gives_x_api_key() -> None:
    strategy = parse_token_answer({"type": "api_key", "credentials": {"api_key": "k"}}, "c1")
    assert dict(strategy.headers) == {"X-Api-Key": "k"}
    assert strategy.expires_at is None


def test_basic_auth_gives_base64_user_password() -> None:
    strategy = parse_token_answer(
        {"type": "basic_auth", "credentials": {"username": "ann", "password": "p:w"}}, "c1"
    )
    expected = base64.b64encode(b"ann:p:w").decode()
    assert dict(strategy.headers) == {"Authorization": f"Basic {expected}"}


def test_iso_8601_expiry_is_understood_with_and_without_zone() -> None:
    zulu = parse_token_answer(
        {"type": "api_key", "credentials": {"api_key": "k"}, "expires_at": "2023-11-14T22:13:20Z"},
        "c1",
    )
    naive = parse_token_answer(
        {"type": "api_key", "credentials": {"api_key": "k"}, "expires_at": "2023-11-14T22:13:20"},
        "c1",
    )
    assert zulu.expires_at == naive.expires_at == 1700000000.0


def test_credentials_are_not_shown_in_repr() -> None:
    strategy = parse_token_answer(
        {"type": "oauth2", "credentials": {"access_token": "very-secret"}}, "c1"
    )
    assert "very-secret" not in repr(strategy)


MALFORMED: list[tuple[Any, str]] = [
    ("just text", "expected a JSON object"),
    ([], "expected a JSON object"),
    ({"credentials": {"access_token": "t"}}, "'type'"),
    ({"type": 3, "credentials": {}}, "'type'"),
    ({"type": "oauth2"}, "'credentials'"),
    ({"type": "oauth2", "credentials": "tok"}, "'credentials'"),
    ({"type": "oauth2", "credentials": {}}, "credentials.access_token"),
    ({"type": "oauth2", "credentials": {"access_token": ""}}, "credentials.access_token"),
    ({"type": "oauth2", "credentials": {"access_token": 5}}, "credentials.access_token"),
    ({"type": "oauth2", "credentials": {"access_token": "a\r\nX-Evil: 1"}}, "line break"),
    ({"type": "api_key", "credentials": {"key": "k"}}, "credentials.api_key"),
    ({"type": "basic_auth", "credentials": {"username": "u"}}, "credentials.password"),
    ({"type": "basic_auth", "credentials": {"username": "a:b", "password": "p"}}, "':'"),
    ({"type": "kerberos", "credentials": {}}, "unknown strategy type 'kerberos'"),
    ({"type": "api_key", "credentials": {"api_key": "k"}, "expires_at": True}, "expires_at"),
    ({"type": "api_key", "credentials": {"api_key": "k"}, "expires_at": "soon"}, "ISO-8601"),
    ({"type": "api_key", "credentials": {"api_key": "k"}, "expires_at": [1]}, "expires_at"),
    (
        {"type": "api_key", "credentials": {"api_key": "k"}, "expires_at": float("nan")},
        "not finite",
    ),
]


@pytest.mark.parametrize(("answer", "named"), MALFORMED)
def test_malformed_answers_name_what_was_wrong(answer: Any, named: str) -> None:
    with pytest.raises(NexusProtocolError, match="conn-7") as info:
        parse_token_answer(answer, "conn-7")
    assert named in str(info.value)

"""The keyring: several keys verify, the primary signs; the rules of install/use/remove."""

from __future__ import annotations

import pytest

from jarvis_trio import ConfigError, Mesh
from jarvis_trio.swim.keyring import MAX_KEYS, TAG_SIZE, Keyring, fingerprint

OLD = "the-old-cluster-secret-0123456789"
NEW = "the-new-cluster-secret-0123456789"
DATA = b"\x02\x05\x00"


def test_the_primary_signs_and_every_installed_key_verifies() -> None:
    ring = Keyring([OLD], "prod")
    assert ring.install(NEW) is True
    assert ring.install(NEW.encode()) is False  # str and bytes name the same key
    old_only, new_only = Keyring([OLD], "prod"), Keyring([NEW], "prod")
    assert ring.open(old_only.seal(DATA)) == DATA
    assert ring.open(new_only.seal(DATA)) == DATA
    assert new_only.open(ring.seal(DATA)) is None  # still signing with the old key
    ring.use(NEW)
    assert new_only.open(ring.seal(DATA)) == DATA
    assert ring.remove(OLD) is True and ring.remove(OLD) is False
    assert ring.open(old_only.seal(DATA)) is None  # refused once removed
    assert [(k.fingerprint, k.primary) for k in ring.list()] == [(fingerprint(NEW), True)]


def test_the_cluster_name_is_bound_into_every_tag() -> None:
    assert Keyring([OLD], "staging").open(Keyring([OLD], "prod").seal(DATA)) is None


def test_list_shows_fingerprints_and_counts_never_keys() -> None:
    ring = Keyring([OLD, NEW], "prod")
    for _ in range(3):
        ring.open(Keyring([NEW], "prod").seal(DATA))
    listed = ring.list()
    assert [(k.primary, k.verified) for k in listed] == [(True, 0), (False, 3)]
    assert OLD not in repr(listed) + repr(ring) and NEW not in repr(listed) + repr(ring)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda r: r.use(NEW), "not installed"),
        (lambda r: r.remove(OLD), "primary"),
        (lambda r: r.install("short"), "at least 16"),
    ],
)
def test_mistakes_are_refused_with_a_reason(action: object, message: str) -> None:
    ring = Keyring([OLD], "prod")
    with pytest.raises(ValueError, match=message):
        action(ring)  # type: ignore[operator]
    assert [k.fingerprint for k in ring.list()] == [fingerprint(OLD)]


def test_bounds_and_truncated_input() -> None:
    ring = Keyring([OLD], "prod")
    for i in range(MAX_KEYS - 1):
        ring.install(f"another-cluster-secret-{i:04d}")
    with pytest.raises(ValueError, match="at most"):
        ring.install(NEW)
    assert ring.open(b"") is None and ring.open(b"x" * (TAG_SIZE + 1)) is None
    with pytest.raises(ValueError, match="255"):
        Keyring([OLD], "n" * 256)


def test_a_mesh_has_a_keyring_only_with_a_cluster_key() -> None:
    assert Mesh({"cluster_key": OLD}, env_file=None, environ={}).keyring is not None
    assert Mesh({}, env_file=None, environ={}).keyring is None
    with pytest.raises(ConfigError, match="cluster_name"):
        Mesh({"cluster_key": OLD, "cluster_name": "x" * 256}, env_file=None, environ={})


def test_use_and_remove_take_a_fingerprint() -> None:
    ring = Keyring([OLD], "prod")
    ring.install(NEW)
    ring.use(fingerprint(NEW))
    assert ring.primary_fingerprint == fingerprint(NEW)
    assert ring.remove(fingerprint(OLD))
    assert [k.fingerprint for k in ring.list()] == [fingerprint(NEW)]
    assert not ring.remove(fingerprint(OLD))  # gone: no longer names anything
    with pytest.raises(ValueError, match="not installed"):
        ring.use(fingerprint(OLD))

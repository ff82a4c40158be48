"""API key format, hashing and the tenants each role may carry (pure parts of
hero.readmodels.keys; create/verify/revoke run against Valkey in the integration tests)."""

from __future__ import annotations

import hashlib

import pytest

from hero.access import Role
from hero.readmodels.keys import check_tenants, format_key, hash_secret, new_key, parse_key


def test_a_new_key_has_the_documented_shape_and_enough_entropy() -> None:
    key_id, secret = new_key()
    key = format_key(key_id, secret)
    assert key.startswith(f"hero_{key_id}_")
    assert len(key_id) == 16
    assert all(c in "0123456789abcdef" for c in key_id)
    assert len(secret) >= 43  # 32 bytes, URL-safe base64
    assert parse_key(key) == (key_id, secret)
    assert new_key() != new_key()


def test_a_secret_with_underscores_still_parses() -> None:
    secret = "ab_cd" * 10
    assert parse_key(format_key("0123456789abcdef", secret)) == ("0123456789abcdef", secret)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "hero",
        "bearer_0123456789abcdef_" + "x" * 43,
        "hero_0123456789ABCDEF_" + "x" * 43,  # upper-case id
        "hero_0123_" + "x" * 43,  # short id
        "hero_0123456789abcdef_short",  # short secret
    ],
)
def test_malformed_keys_do_not_parse(presented: str) -> None:
    assert parse_key(presented) is None


def test_only_a_sha256_of_the_secret_is_kept() -> None:
    assert hash_secret("s3cret") == hashlib.sha256(b"s3cret").hexdigest()
    assert "s3cret" not in hash_secret("s3cret")


def test_tenants_per_role() -> None:
    assert check_tenants(Role.FARMER, ["f1", "f2", "f1"]) == ("f1", "f2")
    assert check_tenants(Role.OFFTAKER, ["o1"]) == ("o1",)
    assert check_tenants(Role.DEVELOPER, []) == ()
    assert check_tenants(Role.ADMIN, []) == ()
    with pytest.raises(ValueError, match="farm ids"):
        check_tenants(Role.FARMER, [])
    with pytest.raises(ValueError, match="exactly one"):
        check_tenants(Role.OFFTAKER, ["o1", "o2"])
    with pytest.raises(ValueError, match="exactly one"):
        check_tenants(Role.OFFTAKER, [])
    with pytest.raises(ValueError, match="no tenants"):
        check_tenants(Role.DEVELOPER, ["f1"])
    with pytest.raises(ValueError, match="not an id"):
        check_tenants(Role.FARMER, ["bad id"])


def test_a_tenant_longer_than_its_role_s_ids_is_refused() -> None:
    """A key for a 185-character offtaker could be made, for an offtaker no request could name."""
    assert check_tenants(Role.OFFTAKER, ["o" * 24]) == ("o" * 24,)
    with pytest.raises(ValueError, match="offtaker ids have at most 24 characters"):
        check_tenants(Role.OFFTAKER, ["o" * 185])
    with pytest.raises(ValueError, match="farmer ids have at most 24 characters"):
        check_tenants(Role.FARMER, ["f1", "f" * 25])

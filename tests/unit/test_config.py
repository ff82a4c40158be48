"""HeroSettings: HERO_* environment variables over embedded defaults, secrets masked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from hero.config import LOOPBACK, HeroSettings, mask_url
from hero.store import sqlite_path_from_url


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No HERO_* variable leaks in from the outside, and the working directory is tmp_path."""
    for name in list(os.environ):
        if name.upper().startswith("HERO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_pieces(tmp_path):
    settings = HeroSettings()
    assert settings.data_dir == tmp_path.resolve() / ".hero"
    assert settings.host == "127.0.0.1"
    assert settings.store_url is None
    assert settings.kafka_bootstrap is None
    assert settings.redis_url is None
    assert settings.ray_address is None
    assert settings.api_secret is None
    assert settings.relay_batch_size == 1000


def test_hero_variables_are_read(monkeypatch):
    monkeypatch.setenv("HERO_HOST", "0.0.0.0")
    monkeypatch.setenv("HERO_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("HERO_REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("HERO_RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setenv("HERO_KAFKA_PARTITIONS", "6")
    monkeypatch.setenv("HERO_RELAY_BATCH_SIZE", "250")
    monkeypatch.setenv("HERO_RELAY_POLL_INTERVAL_S", "0.5")
    monkeypatch.setenv("HERO_RELAY_PURGE_ON_REFILL", "true")
    settings = HeroSettings()
    assert settings.host == "0.0.0.0"
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.ray_address == "ray://head:10001"
    assert settings.kafka_partitions == 6
    assert settings.relay_batch_size == 250
    assert settings.relay_poll_interval_s == 0.5
    assert settings.relay_purge_on_refill is True


def test_only_the_gateway_follows_the_configured_listen_address(monkeypatch):
    assert HeroSettings().gateway_bind == "127.0.0.1"
    monkeypatch.setenv("HERO_HOST", "10.0.0.1")
    assert HeroSettings().gateway_bind == "10.0.0.1"  # what moved the gateway before
    monkeypatch.setenv("HERO_GATEWAY_HOST", "0.0.0.0")
    assert HeroSettings().gateway_bind == "0.0.0.0"
    assert LOOPBACK == "127.0.0.1"  # where infra binds every internal server, whatever these say


def test_variable_names_are_case_insensitive(monkeypatch):
    monkeypatch.setenv("hero_host", "10.0.0.1")
    assert HeroSettings().host == "10.0.0.1"


def test_unprefixed_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("HOST", "10.9.9.9")
    monkeypatch.setenv("DATA_DIR", "/elsewhere")
    settings = HeroSettings()
    assert settings.host == "127.0.0.1"
    assert settings.data_dir.name == ".hero"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HERO_KAFKA_PARTITIONS", "0"),
        ("HERO_KAFKA_PARTITIONS", "65"),
        ("HERO_RELAY_BATCH_SIZE", "many"),
        ("HERO_RELAY_POLL_INTERVAL_S", "0"),
    ],
)
def test_out_of_range_values_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("HERO_").lower()):
        HeroSettings()


def test_a_relative_data_dir_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("HERO_DATA_DIR", "state/hero")
    settings = HeroSettings()
    assert settings.data_dir.is_absolute()
    assert settings.data_dir == tmp_path.resolve() / "state" / "hero"


def test_a_home_relative_data_dir_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HERO_DATA_DIR", "~/hero-data")
    assert HeroSettings().data_dir == (tmp_path / "home" / "hero-data").resolve()


def test_an_explicit_data_dir_argument_is_made_absolute(tmp_path):
    assert HeroSettings(data_dir=Path("x")).data_dir == tmp_path.resolve() / "x"


def test_effective_store_url_defaults_to_sqlite_under_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HERO_DATA_DIR", str(tmp_path / "data"))
    settings = HeroSettings()
    url = settings.effective_store_url
    assert url == f"sqlite:///{tmp_path.resolve() / 'data' / 'events.db'}"
    assert sqlite_path_from_url(url) == settings.data_dir / "events.db"


def test_an_explicit_store_url_wins(monkeypatch):
    monkeypatch.setenv("HERO_STORE_URL", "postgresql://hero:pw@db/hero")
    assert HeroSettings().effective_store_url == "postgresql://hero:pw@db/hero"


# --- masking ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u:secret@h:5432/db?sslmode=require",
            "postgresql://u:***@h:5432/db?sslmode=require",
        ),
        ("redis://:secret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////var/hero/events.db", "sqlite:////var/hero/events.db"),
        ("k1:9092,k2:9092", "k1:9092,k2:9092"),
    ],
)
def test_mask_url_hides_only_the_password(url, masked):
    assert mask_url(url) == masked


def test_mask_url_hides_a_password_containing_an_at_sign():
    masked = mask_url("postgresql://u:p@ssw0rd@h/db")
    assert "ssw0rd" not in masked
    assert masked == "postgresql://u:***@h/db"


def test_masked_hides_passwords_in_every_url(monkeypatch):
    monkeypatch.setenv("HERO_STORE_URL", "postgresql://hero:s3cret@db:5432/hero")
    monkeypatch.setenv("HERO_REDIS_URL", "redis://:r3dis@cache:6379/0")
    monkeypatch.setenv("HERO_RAY_ADDRESS", "ray://admin:r4y@head:10001")
    monkeypatch.setenv("HERO_KAFKA_BOOTSTRAP", "k1:9092")
    data = HeroSettings().masked()
    assert data["store_url"] == "postgresql://hero:***@db:5432/hero"
    assert data["redis_url"] == "redis://:***@cache:6379/0"
    assert data["ray_address"] == "ray://admin:***@head:10001"
    assert data["kafka_bootstrap"] == "k1:9092"
    text = json.dumps(data)
    for secret in ("s3cret", "r3dis", "r4y"):
        assert secret not in text


def test_masked_hides_the_api_secret(monkeypatch):
    monkeypatch.setenv("HERO_API_SECRET", "very-secret-token")
    settings = HeroSettings()
    assert settings.api_secret is not None
    assert settings.api_secret.get_secret_value() == "very-secret-token"
    data = settings.masked()
    assert data["api_secret"] == "***"
    assert "very-secret-token" not in json.dumps(data)


def test_masked_is_json_ready_and_shows_the_effective_store_url(tmp_path):
    data = HeroSettings().masked()
    assert json.loads(json.dumps(data)) == data
    assert data["data_dir"] == str(tmp_path.resolve() / ".hero")
    assert data["store_url"] == f"sqlite:///{tmp_path.resolve() / '.hero' / 'events.db'}"
    assert data["api_secret"] is None

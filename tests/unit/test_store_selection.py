"""Which event store a data dir uses: SQLite, the embedded PostgreSQL, or an external URL."""

from __future__ import annotations

import os
import stat

import pytest
from pydantic import ValidationError

from hero.config import HeroSettings, embedded_postgres_url_file
from hero.store import StoreError, open_checkpoints, open_store
from infra._private import make_private

PG_URL = "postgresql://hero:s3cret@127.0.0.1:5999/hero"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("HERO_"):
            monkeypatch.delenv(name)


def leave_url(data_dir, url=PG_URL):
    path = embedded_postgres_url_file(data_dir)
    path.parent.mkdir(parents=True)
    path.write_text(url + "\n")


def test_without_an_embedded_postgres_the_store_is_sqlite(tmp_path):
    settings = HeroSettings(data_dir=tmp_path)
    assert not settings.embedded_postgres
    assert settings.effective_store_url.startswith("sqlite:///")


def test_a_data_dir_with_an_embedded_postgres_uses_it_and_masks_it(tmp_path):
    leave_url(tmp_path)
    settings = HeroSettings(data_dir=tmp_path)
    assert settings.embedded_postgres
    assert settings.effective_store_url == PG_URL
    assert settings.masked()["store_url"] == "postgresql://hero:***@127.0.0.1:5999/hero"


def test_store_sqlite_goes_back_to_events_db(tmp_path, monkeypatch):
    leave_url(tmp_path)
    monkeypatch.setenv("HERO_STORE", "sqlite")
    settings = HeroSettings(data_dir=tmp_path)
    assert not settings.embedded_postgres
    assert settings.effective_store_url == f"sqlite:///{tmp_path / 'events.db'}"


def test_store_postgres_before_the_first_up_names_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HERO_STORE", "postgres")
    settings = HeroSettings(data_dir=tmp_path)
    assert settings.embedded_postgres
    assert "run_hero_up" in settings.effective_store_url


@pytest.mark.parametrize("opener", [open_store, open_checkpoints])
def test_opening_the_embedded_postgres_before_the_first_up_says_to_run_it(
    tmp_path, monkeypatch, opener
):
    monkeypatch.setenv("HERO_STORE", "postgres")
    url = HeroSettings(data_dir=tmp_path).effective_store_url
    with pytest.raises(StoreError, match=r"not running .*run `hero up --store postgres`"):
        opener(url).current_position() if opener is open_store else opener(url).load("x")


def test_an_explicit_store_url_wins_over_the_embedded_one(tmp_path, monkeypatch):
    leave_url(tmp_path)
    monkeypatch.setenv("HERO_STORE", "postgres")
    monkeypatch.setenv("HERO_STORE_URL", "postgresql://u:p@db.example/hero")
    settings = HeroSettings(data_dir=tmp_path)
    assert not settings.embedded_postgres
    assert settings.effective_store_url == "postgresql://u:p@db.example/hero"


def test_an_unknown_store_kind_is_refused(monkeypatch):
    monkeypatch.setenv("HERO_STORE", "mysql")
    with pytest.raises(ValidationError, match="store"):
        HeroSettings()


@pytest.mark.parametrize("opener", [open_store, open_checkpoints])
def test_an_unknown_scheme_is_refused_without_echoing_its_password(opener):
    with pytest.raises(StoreError, match="unsupported store URL") as refused:
        opener("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(refused.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the data dir to another group needs root")
def test_make_private_keeps_the_search_bit_it_gave_the_postgres_group(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chown(data_dir, 0, 65534)  # a group other than ours, as infra/postgres.py sets it
    os.chmod(data_dir, 0o771)
    make_private(data_dir)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o710
    os.chown(data_dir, 0, os.getgid())
    make_private(data_dir)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700

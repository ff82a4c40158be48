"""Choosing Apache Kafka and finding its jars, before any JVM runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hero.config import HeroSettings
from infra import LocalStack, StackError
from infra._kafka_dist import kafka_classpath


def _kafka_log(data_dir: Path) -> None:
    log = data_dir / "kafka" / "data"
    log.mkdir(parents=True)
    (log / "meta.properties").write_text("cluster.id=x\n")


def test_a_data_dir_with_a_kafka_log_stays_on_kafka(tmp_path: Path) -> None:
    assert LocalStack(HeroSettings(data_dir=tmp_path)).settings.broker == "tansu"
    _kafka_log(tmp_path)
    assert LocalStack(HeroSettings(data_dir=tmp_path)).settings.broker == "kafka"
    chosen = HeroSettings(data_dir=tmp_path, broker="tansu")
    assert LocalStack(chosen).settings.broker == "tansu"


def test_hero_broker_accepts_only_tansu_or_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERO_BROKER", "kafak")
    with pytest.raises(ValueError, match="broker"):
        HeroSettings()


def test_kafka_home_without_kafka_jars_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    with pytest.raises(StackError, match=re.escape(f"HERO_KAFKA_HOME={tmp_path}")):
        kafka_classpath(tmp_path, tmp_path / "cache")


def test_kafka_home_libs_are_the_classpath(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "kafka_2.13-4.4.0.jar").write_bytes(b"")
    assert kafka_classpath(tmp_path, tmp_path / "cache") == f"{tmp_path}/libs/*"
    assert not (tmp_path / "cache").exists()  # nothing fetched


def test_without_kafka_home_cache_or_maven_the_error_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(StackError, match=r"neither in HERO_KAFKA_HOME nor cached.*mvn"):
        kafka_classpath(None, tmp_path / "cache")
    assert not (tmp_path / "cache" / "kafka-4.4.0" / "libs").exists()

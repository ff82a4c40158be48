"""``hero events``, ``hero schemas`` and ``hero config`` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from schemas import REGISTRY
from tests.e2e._cli import hero, hero_json

pytestmark = pytest.mark.e2e

FARM = {
    "farm_id": "farm-1",
    "name": "Green Farm",
    "grid": "grid4",
    "country": "BE",
    "region": "europe",
}


def test_append_then_read_back(tmp_path: Path) -> None:
    result = hero_json(
        "events",
        "append",
        "farm-1",
        "FarmRegistered",
        "--payload",
        json.dumps(FARM),
        data_dir=tmp_path,
    )
    assert (result["last_version"], result["duplicate"]) == (1, False)
    events = hero_json("events", "read", "farm-1", data_dir=tmp_path)
    assert [(e["type"], e["version"], e["payload"]["name"]) for e in events] == [
        ("FarmRegistered", 1, "Green Farm")
    ]
    assert events[0]["actor"] == "cli"


def test_bad_payload_is_refused_with_field_errors_and_nothing_written(tmp_path: Path) -> None:
    bad = dict(FARM, grid="grid9", surprise=True)
    del bad["name"]
    result = hero(
        "events",
        "append",
        "farm-1",
        "FarmRegistered",
        "--payload",
        json.dumps(bad),
        data_dir=tmp_path,
    )
    assert result.returncode == 2
    for field in ("grid", "name", "surprise"):
        assert field in result.stderr
    assert "nothing was written" in result.stderr
    assert hero_json("events", "read", "farm-1", data_dir=tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NoSuchEvent", "--payload", "{}"], "unknown message type 'NoSuchEvent'"),
        (["FarmRegistered", "--payload", "{not json"], "not valid JSON"),
        (["FarmRegistered", "--payload", "[1]"], "must be a JSON object"),
        (["RegisterFarm", "--payload", "{}"], "is a command, not an event"),
    ],
)
def test_unusable_input_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    result = hero("events", "append", "farm-1", *args, data_dir=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_money_as_a_float_is_refused(tmp_path: Path) -> None:
    payment = {
        "payment_id": "p1",
        "provider": "stripe",
        "provider_event_id": "evt_1",
        "offtaker_id": "acme",
        "account_id": "acct-acme",
        "amount": {"amount": 10.1, "currency": "USD"},
    }
    result = hero(
        "events",
        "append",
        "acct-acme",
        "FiatPaymentReceived",
        "--payload",
        json.dumps(payment),
        data_dir=tmp_path,
    )
    assert result.returncode == 2
    assert "amount.amount" in result.stderr
    assert "float" in result.stderr


def _append_farm(data_dir: Path, *options: str):  # type: ignore[no-untyped-def]
    return hero(
        "events", "append", "farm-1", "FarmRegistered", "--payload", json.dumps(FARM),
        "--expected-version", "0", *options, data_dir=data_dir,
    )  # fmt: skip


def test_stale_expected_version_and_repeated_command_id(tmp_path: Path) -> None:
    first = _append_farm(tmp_path, "--command-id", "cmd-1")
    assert first.returncode == 0, first.stderr
    stale = _append_farm(tmp_path)
    assert stale.returncode == 3
    assert "is at version 1, the append expected 0" in stale.stderr
    again = _append_farm(tmp_path, "--command-id", "cmd-1")
    assert again.returncode == 0
    assert "already applied" in again.stdout
    assert len(hero_json("events", "read", "farm-1", data_dir=tmp_path)) == 1


def test_schemas_export_writes_one_valid_schema_per_type(tmp_path: Path) -> None:
    result = hero("schemas", "export", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "out").glob("*.json"))
    assert [f.stem for f in files] == sorted(e.type for e in REGISTRY.entries())
    for file in files:
        schema = json.loads(file.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["x-hero"]["topic"].startswith("hero.")


def test_config_masks_secrets(tmp_path: Path) -> None:
    config = hero_json(
        "config",
        data_dir=tmp_path,
        env={
            "HERO_STORE_URL": "postgresql://hero:s3cret@db.internal/hero",
            "HERO_KAFKA_BOOTSTRAP": "127.0.0.1:9999",
        },
    )
    assert config["store_url"] == "postgresql://hero:***@db.internal/hero"
    assert config["kafka_bootstrap"] == "127.0.0.1:9999"
    assert config["data_dir"] == str(tmp_path)
    assert "s3cret" not in json.dumps(config)

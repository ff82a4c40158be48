"""The envelope JSON an append writes is what ``json.dumps`` (compact, non-ASCII kept)
wrote before orjson wrote it: byte for byte, on the golden history and on odd strings."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hero.store import NewEvent
from hero.store.port import envelope_json

GOLDEN = Path(__file__).parents[1] / "golden" / "demo-history.jsonl.gz"
AT = datetime(2026, 1, 5, 12, 30, tzinfo=UTC)


def _event(payload: dict[str, Any]) -> NewEvent:
    return NewEvent(
        type="FarmRegistered",
        schema_version=1,
        topic="market.farms",
        payload=payload,
        occurred_at=AT,
        actor="tester",
        id="evt-1",
        causation_id="cmd-1",
    )


def _json_way(event: NewEvent, stream: str, version: int, position: int) -> str:
    return json.dumps(
        {
            "id": event.id,
            "type": event.type,
            "schema_version": event.schema_version,
            "stream": stream,
            "version": version,
            "position": position,
            "occurred_at": event.occurred_at.isoformat(),
            "recorded_at": AT.isoformat(),
            "causation_id": event.causation_id,
            "correlation_id": event.correlation_id,
            "actor": event.actor,
            "payload": event.payload,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _written(event: NewEvent, stream: str = "farm-f1", version: int = 1, position: int = 7) -> str:
    return envelope_json(event, stream=stream, version=version, position=position, recorded_at=AT)


def test_every_golden_envelope_is_written_as_json_dumps_writes_it() -> None:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as source:
        lines = [line for line in source.read().splitlines() if line]
    assert lines
    for line in lines:
        stored = json.loads(line)
        event = NewEvent(
            type=stored["type"],
            schema_version=stored["schema_version"],
            topic="t",
            payload=stored["payload"],
            occurred_at=datetime.fromisoformat(stored["occurred_at"]),
            actor=stored["actor"],
            id=stored["id"],
            causation_id=stored["causation_id"],
            correlation_id=stored["correlation_id"],
        )
        args = (stored["stream"], stored["version"], stored["position"])
        assert _written(event, *args) == _json_way(event, *args)


@pytest.mark.parametrize(
    "text", ["plain", "é, 中文 and 🙂", "a\x1fb\x00", '\n\t"\\', "\u2028\x7f", ""]
)
def test_odd_strings_are_escaped_as_json_dumps_escapes_them(text: str) -> None:
    event = _event({"name": text, "tags": [text, None, True, 3], "nested": {text: -1}})
    assert _written(event) == _json_way(event, "farm-f1", 1, 7)


def test_an_integer_past_64_bits_is_written_the_json_way() -> None:
    event = _event({"big": 2**80, "negative": -(2**70)})
    assert _written(event) == _json_way(event, "farm-f1", 1, 7)
    assert json.loads(_written(event))["payload"]["big"] == 2**80

"""The trusted decode of rows read back from our own store (hero.store.decode_trusted) is the
validated decode (decode_event), event for event: on the golden history, on the replay
benchmark's generated log, and for what it must leave to the validated way."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import FrozenInstanceError, replace
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from hero.store import (
    MemoryEventStore,
    PoisonRow,
    RecordedEvent,
    decode_event,
    decode_trusted,
)
from hero.store._trusted import TrustedDecoder
from hero.store.port import recorded_event
from schemas import REGISTRY, Event

ROOT = Path(__file__).parents[2]
GOLDEN = ROOT / "tests" / "golden" / "demo-history.jsonl.gz"


def _generate() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_replay_log", ROOT / "benchmarks" / "_replay_log.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.generate


def _row(position: int, envelope_json: str) -> RecordedEvent:
    data = orjson.loads(envelope_json)
    return RecordedEvent(
        position, data["stream"], data["version"], data["type"], "t", envelope_json
    )


@cache
def _golden() -> tuple[RecordedEvent, ...]:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as source:
        lines = [line for line in source.read().splitlines() if line]
    return tuple(_row(i, line) for i, line in enumerate(lines, 1))


@cache
def _generated() -> tuple[RecordedEvent, ...]:
    store = MemoryEventStore()
    _generate()(store, 6000, 1)
    return tuple(row for rows in store.read_batches(1, 1000) for row in rows)


def _fields_set(model: Any) -> Any:
    """Every model's fields set, nested: what ``model_dump(exclude_unset=True)`` reads."""
    if isinstance(model, BaseModel):
        return (type(model), model.model_fields_set,
                {n: _fields_set(getattr(model, n)) for n in type(model).model_fields})  # fmt: skip
    if isinstance(model, (list, tuple, set, frozenset)):
        return [_fields_set(v) for v in model]
    if isinstance(model, dict):
        return {k: _fields_set(v) for k, v in model.items()}
    return type(model)


def _assert_same(rows: Iterable[RecordedEvent]) -> set[str]:
    decoder = TrustedDecoder(REGISTRY)
    types = set()
    for row in rows:
        fast = decoder.decode(row.envelope_json)
        assert fast is not None, f"{row.type} at {row.position} went the validated way"
        slow = decode_event(row)
        assert fast == slow, row.position
        for a, b in zip(fast, slow, strict=True):
            assert a.model_dump(mode="json") == b.model_dump(mode="json")
            assert a.model_dump() == b.model_dump()
            assert _fields_set(a) == _fields_set(b)
        assert decode_trusted(row) == slow
        types.add(row.type)
    return types


def test_every_event_class_has_a_trusted_builder():
    decoder = TrustedDecoder(REGISTRY)
    events = [e for e in REGISTRY.entries() if e.kind == "event"]
    assert len(events) > 20
    for entry in events:
        assert decoder._event(entry.type, entry.version) is not None, entry.type


def test_both_decodes_agree_on_the_golden_history():
    assert len(_assert_same(_golden())) > 20


def test_both_decodes_agree_on_the_generated_log():
    assert len(_assert_same(_generated())) > 20


def _mangled(row: RecordedEvent, **changes: Any) -> RecordedEvent:
    data = orjson.loads(row.envelope_json)
    payload = changes.pop("payload", None)
    data.update(changes)
    if payload is not None:
        data["payload"].update(payload)
    return RecordedEvent(row.position, row.stream, row.version, data["type"], row.topic,
                         orjson.dumps(data).decode())  # fmt: skip


def _first(kind: str) -> RecordedEvent:
    return next(row for row in _golden() if row.type == kind)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"type": "NoSuchEvent"}, "unknown_type"),
        ({"schema_version": 99}, "unsupported_version"),
        ({"type": "AcceptOffer"}, "not_an_event"),
        (None, "invalid_envelope"),
    ],
)
def test_a_row_the_trusted_decode_cannot_build_is_poison_as_the_validated_way_says(
    changes: dict[str, Any] | None, reason: str
) -> None:
    first = _first("NodeRegistered")
    if changes is None:  # not JSON at all
        row = RecordedEvent(1, first.stream, 1, first.type, first.topic, "{not json")
    else:
        row = _mangled(first, **changes)
    with pytest.raises(PoisonRow) as slow:
        decode_event(row)
    with pytest.raises(PoisonRow) as fast:
        decode_trusted(row)
    assert (fast.value.reason, fast.value.detail) == (slow.value.reason, slow.value.detail)
    assert fast.value.reason == reason


def test_a_payload_of_a_wrong_type_is_trusted_as_our_store_validated_it():
    # What "trusted" means: only rows our own store validated on append may come this way
    # (a rebuild's and a host's catch-up). Those that consume other rows use decode_event.
    row = _mangled(_first("NodeRegistered"), payload={"node_id": 7})
    with pytest.raises(PoisonRow):
        decode_event(row)
    assert decode_trusted(row)[1].node_id == 7  # type: ignore[attr-defined]


def test_a_payload_missing_a_field_goes_the_validated_way():
    row = _first("NodeRegistered")
    data = orjson.loads(row.envelope_json)
    del data["payload"]["farm_id"]
    broken = RecordedEvent(row.position, row.stream, row.version, row.type, row.topic,
                           orjson.dumps(data).decode())  # fmt: skip
    assert TrustedDecoder(REGISTRY).decode(broken.envelope_json) is None
    with pytest.raises(PoisonRow, match="farm_id"):
        decode_trusted(broken)


def test_the_trusted_decode_gives_events_of_their_own_class():
    envelope, event = decode_trusted(_first("NodeRegistered"))
    assert isinstance(event, Event)
    assert type(event) is REGISTRY.entry("NodeRegistered").model
    assert envelope.occurred_at.utcoffset() is not None


def test_an_envelope_with_a_key_it_does_not_have_goes_the_validated_way() -> None:
    # The envelope is built in the very dict orjson parsed: a key beyond its fields must not
    # ride along into the model; the validated way refuses it, naming the key.
    row = _golden()[0]
    data = orjson.loads(row.envelope_json)
    data["stray"] = 1
    odd = _row(row.position, orjson.dumps(data).decode())
    assert TrustedDecoder(REGISTRY).decode(odd.envelope_json) is None
    with pytest.raises(PoisonRow) as refused:
        decode_trusted(odd)
    assert refused.value.reason == "invalid_envelope"
    assert "stray" in refused.value.detail


def test_the_envelope_owns_its_payload_and_the_event_shares_nothing_it_could_change() -> None:
    envelope, event = decode_trusted(_golden()[0])
    again, _ = decode_trusted(_golden()[0])
    assert envelope == again
    assert envelope.payload is not again.payload
    assert envelope.model_fields_set == set(type(envelope).model_fields)
    assert event == decode_event(_golden()[0])[1]


def test_a_row_read_is_the_dataclass_its_fields_make() -> None:
    values = (7, "node-a", 3, "NodeRegistered", "hero.nodes", '{"x": 1}')
    row = recorded_event(values)
    assert row == RecordedEvent(*values)
    assert hash(row) == hash(RecordedEvent(*values))
    assert replace(row, version=4) == RecordedEvent(7, "node-a", 4, *values[3:])
    with pytest.raises(FrozenInstanceError):
        row.version = 5  # type: ignore[misc]

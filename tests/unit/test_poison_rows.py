"""Issue 13, item 1: ids are matched as whole strings, and a poison row is decoded with a
reason and recorded once when a follower steps over it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis

from hero.config import HeroSettings
from hero.domain.clock import ManualClock, SystemClock
from hero.gateway.__main__ import health_path, write_health
from hero.gateway.context import GatewayContext, Role
from hero.readmodels.keys import check_tenants
from hero.store import (
    NO_STREAM,
    EventStore,
    MemoryEventStore,
    PoisonRow,
    SqliteEventStore,
    StoreError,
    decode_event,
    recorded_after,
    skip_counts,
    skip_row,
)
from infra.gateway import GatewayProcess, gateway_degraded, gateway_detail
from infra.ports import free_ports
from schemas.ids import Identifier, is_id, is_name
from tests._poison import POISON_STREAM, insert_poison_row
from tests.unit.store_contract import new_event


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> EventStore:
    if request.param == "memory":
        return MemoryEventStore(clock)
    return SqliteEventStore(tmp_path / "events.db", clock)


@pytest.mark.parametrize("value", ["farm-x\n", "farm-x\r\n", "a b;drop", "farm\x00x", "\nfarm", ""])
def test_an_id_is_checked_as_a_whole_string(value: str) -> None:
    assert not is_id(value)


def test_pydantic_ids_refuse_a_trailing_newline_too() -> None:
    # what the gateway's path and query parameters and every schema use
    with pytest.raises(ValidationError):
        TypeAdapter(Identifier).validate_python("farm-x\n")


def test_names_refuse_whitespace_and_control_characters() -> None:
    assert is_name("cli")
    assert is_name("billing@host:1")
    assert not any(is_name(v) for v in ("a b", "cli\n", "cl\x00i", "tab\there", ""))


def test_a_stream_id_with_a_trailing_newline_is_refused_and_nothing_written(
    store: EventStore, clock: ManualClock
) -> None:
    with pytest.raises(StoreError, match="stream must be an id"):
        store.append(POISON_STREAM, NO_STREAM, [new_event(clock)], "cmd-1")
    assert store.current_position() == 0


@pytest.mark.parametrize("command_id", ["a b;drop", "cmd-1\n", "cmd\x00", ""])
def test_a_bad_command_id_is_refused_and_nothing_written(
    store: EventStore, clock: ManualClock, command_id: str
) -> None:
    with pytest.raises(StoreError, match="command id must be an id"):
        store.append("s1", NO_STREAM, [new_event(clock)], command_id)
    assert store.current_position() == 0


@pytest.mark.parametrize("actor", ["cl\x00i", "cli\n", "a b"])
def test_an_actor_with_a_nul_or_whitespace_is_refused(
    store: EventStore, clock: ManualClock, actor: str
) -> None:
    with pytest.raises(StoreError, match="actor must be"):
        store.append("s1", NO_STREAM, [new_event(clock, actor=actor)], "cmd-1")
    assert store.current_position() == 0


def test_correlation_ids_with_a_trailing_newline_are_refused(
    store: EventStore, clock: ManualClock
) -> None:
    with pytest.raises(StoreError, match="correlation_id"):
        store.append("s1", NO_STREAM, [new_event(clock, correlation_id="c-1\n")], "cmd-1")


def test_a_tenant_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="not an id"):
        check_tenants(Role.FARMER, ["farm-1\n"])
    assert check_tenants(Role.FARMER, ["farm-1"]) == ("farm-1",)


def test_a_poison_row_decodes_to_a_reason_and_its_skip_is_kept_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    db = tmp_path / "events.db"
    store = SqliteEventStore(db, clock)
    store.append("node-1", NO_STREAM, [new_event(clock, "node-1")], "cmd-1")
    poison = insert_poison_row(db)
    rows = list(recorded_after(store))
    with pytest.raises(PoisonRow) as caught:
        decode_event(rows[1])
    assert caught.value.reason == "invalid_envelope"
    assert "stream" in caught.value.detail
    before = skip_counts().get("test-follower", 0)
    skip_row(store, "test-follower", rows[1], caught.value)
    skip_row(store, "test-follower", rows[1], caught.value)  # seen again after a restart
    assert skip_counts()["test-follower"] == before + 2
    store.close()
    reopened = SqliteEventStore(db, clock)  # the record is durable, and kept once
    [kept] = reopened.skipped()
    assert (kept.source, kept.position, kept.stream, kept.reason) == (
        "test-follower",
        poison,
        POISON_STREAM,
        "invalid_envelope",
    )
    reopened.close()


def test_hero_status_shows_the_gateway_degraded_with_its_reasons(tmp_path: Path) -> None:
    """The gateway writes its /health status into run/gateway.health; a /health that does not
    answer (nothing listens on this port) is itself a reason."""
    settings = HeroSettings(data_dir=tmp_path)
    context = GatewayContext(
        settings=settings,
        store=MemoryEventStore(),
        redis=Redis.from_url("redis://127.0.0.1:1/0"),
        clock=SystemClock(),
    )
    port = free_ports(1, "127.0.0.1")[0]
    write_health(health_path(settings), port, context)
    gateway = GatewayProcess(settings, port)
    gateway._pid = os.getpid()  # as if adopted from stack.json: the report is this pid's
    assert gateway_degraded(gateway)
    assert "degraded: /health does not answer" in (gateway_detail(gateway) or "")

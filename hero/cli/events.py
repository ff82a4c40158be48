"""``hero events``: append and read events by hand, validated like any command."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from hero.cli.common import (
    AsJson,
    DataDir,
    console,
    fail,
    print_json,
    settings_for,
    warn_skipped,
)
from hero.domain.clock import SystemClock
from hero.store import (
    ANY_VERSION,
    ConcurrencyConflict,
    NewEvent,
    PoisonRow,
    StoreError,
    open_store,
)
from schemas import REGISTRY, Event, InvalidPayload, UnknownMessageType, new_id

app = typer.Typer(help="Append events to the store and read streams back.", no_args_is_help=True)


def _payload(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"--payload is not valid JSON: {error}")
    if not isinstance(data, dict):
        fail("--payload must be a JSON object")
    return data


def validated_event(type_name: str, payload: dict[str, Any]) -> Event:
    """The payload as its event class, or exit 2 naming every field that is wrong."""
    try:
        entry = REGISTRY.entry(type_name)
    except UnknownMessageType as error:
        fail(str(error))
    if entry.kind != "event":
        fail(f"{type_name} is a command, not an event; commands go through their aggregate")
    try:
        message = REGISTRY.validate(type_name, payload)
    except InvalidPayload as error:
        lines = "\n".join(f"  - {field}" for field in error.errors)
        fail(f"invalid {type_name} payload, nothing was written:\n{lines}")
    if not entry.raw_append:
        # A hand-made money event would create or move funds that no other leg accounts for.
        fail(
            f"{type_name} is a money event, recorded only by the {entry.writer} service; "
            "a raw append is refused, nothing was written (use hero payments or hero billing)"
        )
    assert isinstance(message, Event)
    return message


@app.command("append")
def append(
    stream: Annotated[str, typer.Argument(help="the aggregate's stream id")],
    type_name: Annotated[
        str, typer.Argument(metavar="TYPE", help="event type, e.g. FarmRegistered")
    ],
    payload: Annotated[str, typer.Option("--payload", help="the payload as a JSON object")],
    expected_version: Annotated[
        int | None, typer.Option(help="refuse unless the stream is at this version")
    ] = None,
    command_id: Annotated[
        str | None, typer.Option(help="idempotency key; a repeat writes nothing")
    ] = None,
    actor: Annotated[str, typer.Option(help="who is acting")] = "cli",
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Validate a payload against its schema and append it to STREAM."""
    event = validated_event(type_name, _payload(payload))
    settings = settings_for(data_dir)
    store = open_store(settings.effective_store_url)
    try:
        result = store.append(
            stream,
            ANY_VERSION if expected_version is None else expected_version,
            [NewEvent.of(event, actor=actor, occurred_at=SystemClock().now())],
            command_id or new_id("cmd"),
        )
    except ConcurrencyConflict as error:
        fail(str(error), code=3)
    except StoreError as error:
        fail(str(error))
    finally:
        store.close()
    if as_json:
        print_json(dataclasses.asdict(result))
        return
    note = " (already applied: nothing written)" if result.duplicate else ""
    console.print(
        f"appended {type_name} to {stream} at version {result.last_version}, "
        f"position {result.last_position}{note}"
    )


@app.command("read")
def read(
    stream: Annotated[str, typer.Argument(help="the aggregate's stream id")],
    from_version: Annotated[int, typer.Option(help="first version to show")] = 1,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Print a stream's events in version order."""
    settings = settings_for(data_dir)
    store = open_store(settings.effective_store_url)
    try:
        rows = store.read_stream(stream, from_version)
    finally:
        store.close()
    envelopes = []
    for row in rows:
        try:
            envelopes.append(row.envelope())
        except ValidationError as error:  # a row an older version let in: say so, go on
            warn_skipped(row, PoisonRow("invalid_envelope", f"{error.error_count()} error(s)"))
    if as_json:
        print_json([envelope.model_dump(mode="json") for envelope in envelopes])
        return
    if not envelopes:
        console.print(f"stream {stream} has no events")
        return
    table = Table("version", "position", "type", "recorded_at", "actor", "payload")
    for envelope in envelopes:
        table.add_row(
            str(envelope.version),
            str(envelope.position),
            envelope.type,
            envelope.recorded_at.isoformat(timespec="seconds"),
            envelope.actor,
            json.dumps(envelope.payload, separators=(",", ":"))[:80],
        )
    console.print(table)

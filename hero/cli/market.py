"""The CLI's way to the market: the data dir's store, the market folded from its log,
and commands sent through the market's command service, as the agents send theirs.

Every command opens the event store named by the settings directly, so it works whether the
stack runs or not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from rich.table import Table

from hero.cli.common import (
    console,
    cut_to,
    fail,
    print_json,
    settings_for,
    warn_skipped,
)
from hero.domain.node import node_stream
from hero.market.service import CommandRejected, HandleResult, MarketService
from hero.market.views import (
    MarketReport,
    json_ready,
)
from hero.store import (
    EventStore,
    PoisonRow,
    StoreError,
    decode_event,
    open_store,
    readable_events,
    recorded_after,
)
from schemas import (
    Command,
)

__all__ = [
    "ACTOR",
    "events_of_type",
    "farm_of_node",
    "known_farm",
    "load_report",
    "market_report",
    "opened_store",
    "read_json",
    "send",
    "show_rows",
    "validated",
]

ACTOR = "cli"


def show_rows(
    rows: Sequence[Any], as_json: bool, empty: str, table: Callable[[Any], Table]
) -> None:
    """Rows as JSON, or as a table, or a line saying there are none."""
    if as_json:
        print_json([json_ready(row) for row in rows])
    elif not rows:
        console.print(empty)
    else:
        console.print(table(rows))


@contextmanager
def opened_store(data_dir: Path | None, as_of: str | None = None) -> Iterator[EventStore]:
    """The data dir's store; with ``as_of``, read-only and as it was then (``--as-of``)."""
    settings = settings_for(data_dir)
    try:
        store = open_store(settings.effective_store_url)
    except StoreError as error:
        fail(str(error))
    try:
        yield cut_to(store, as_of)
    finally:
        store.close()


def load_report(
    store: EventStore, report: MarketReport | None = None, batch: int = 1000
) -> MarketReport:
    """The market folded from the whole log; given a report, only what came after it."""
    report = report or MarketReport()
    for row in recorded_after(store, report.position, batch):
        try:
            envelope, event = decode_event(row)
        except PoisonRow as error:
            warn_skipped(row, error)
            report.position = max(report.position, row.position)
            continue
        report.apply(envelope, event)
    return report


def known_farm(report: MarketReport, farm: str) -> None:
    """Exits 2 when FARM is not in the report."""
    if report.farm(farm) is None:
        fail(f"farm {farm} is not registered")


def events_of_type(store: EventStore, types: set[str], batch: int = 5000) -> Iterator[Any]:
    """(envelope, event) of every recorded event of ``types``, in log order."""
    rows = recorded_after(store, 0, batch)
    for _, envelope, event in readable_events(rows, warn_skipped, types=types):
        yield envelope, event


def market_report(
    data_dir: Path | None, as_of: str | None = None, farm: str | None = None
) -> MarketReport:
    """The data dir's market, as it was at ``as_of`` when given; exits 2 when FARM is unknown."""
    with opened_store(data_dir, as_of) as store:
        report = load_report(store)
    if farm is not None:
        known_farm(report, farm)
    return report


def send(store: EventStore, command: Command, service: MarketService | None = None) -> HandleResult:
    """Through the market service, as ``cli``; a refusal exits 2 with the service's reason."""
    try:
        return (service or MarketService(store)).handle(command, actor=ACTOR)
    except CommandRejected as error:
        fail(str(error).split(": ", 1)[-1])
    except StoreError as error:
        fail(str(error), code=1)


def farm_of_node(store: EventStore, node_id: str) -> str | None:
    first = store.read_stream(node_stream(node_id), 1)[:1]
    return str(first[0].envelope().payload.get("farm_id")) if first else None


def _field_errors(error: ValidationError, flags: dict[str, str] | None = None) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(whole)"
        flag = (flags or {}).get(str(item["loc"][0])) if item["loc"] else None
        lines.append(f"  - {where}{f' ({flag})' if flag else ''}: {item['msg']}")
    return "\n".join(lines)


def read_json(path: Path) -> Any:
    """A JSON document from a file, or from stdin when the path is ``-``."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror or error}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"{path} is not valid JSON: {error}")


def validated(
    model: type[BaseModel], data: Any, what: str, flags: dict[str, str] | None = None
) -> Any:
    if not isinstance(data, dict):
        fail(f"{what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        fail(f"invalid {what}, nothing was written:\n{_field_errors(error, flags)}")

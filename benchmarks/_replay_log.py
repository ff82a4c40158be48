"""A realistic, seeded event log of any length, for the replay benchmark.

The shape comes from the golden history (``tests/golden/demo-history.jsonl.gz``: full demo
runs of a fleet of farms and nodes, negotiations with offers, declines, holds, acceptances
and contracts, scaling and migrations, payments with their conversions, bills and transfers).
The log is that history over and over, a day apart: one fleet (registered once, by the first
copy) and the same offtakers, each copy with negotiations of its own (their sequence numbers,
so their offers, holds and contracts, and every random hex id renamed per copy, every time
moved by the copy's days), followed by the hourly usage facts of the copy's contracts and, at
the end of its day, the cancellation of those still live. So the live market (fleet,
offtakers, live contracts) is the same size at 100k and 1M events and only the history grows:
what a host's restart must not grow with. Every event is validated into its real ``schemas``
class and appended through the real :class:`~hero.store.EventStore`, so the result is a store
a user could have.

The seed chooses each copy's usage (hours per contract, seconds, traffic); the same (events,
seed) gives the same log, event ids included.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from hero.domain.usage import usage_fact, usage_stream
from hero.store import ANY_VERSION, EventStore, NewEvent
from schemas import REGISTRY, ContractCancelled, ContractCreated, Event

__all__ = ["GOLDEN", "LOG_VERSION", "generate", "new_events"]

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "demo-history.jsonl.gz"

#: Changes whenever the same (events, seed) would make another log: it names the cache.
LOG_VERSION = 3
#: Appends per transaction while generating: one commit for many appends.
_COMMIT_EVERY = 5000
_HEX = re.compile(r"[0-9a-f]{32}")
_RUN = re.compile(r"\bdemo-([0-9a-f]{6})\.")
_DAY = re.compile(r"\d{4}-\d\d-\d\d(?=T\d\d:\d\d)")
#: Registered once, by the first copy: the later copies reuse its fleet.
_FLEET_EVENTS = frozenset({"FarmRegistered", "NodeRegistered"})
#: When a copy's contracts still live are cancelled: after its usage facts, before the next day.
_DAY_END = timedelta(hours=23)


@dataclass(frozen=True)
class _Template:
    """One event of the golden history, cut where its names are: ``parts`` alternates text
    and a (kind, name) to rename, so a copy is a join, not a regular expression per line."""

    stream: str
    type: str
    parts: tuple[str | tuple[str, str], ...]


def _cut(line: str, names: re.Pattern[str]) -> tuple[str | tuple[str, str], ...]:
    parts: list[str | tuple[str, str]] = []
    at = 0
    for found in names.finditer(line):
        parts += [line[at : found.start()], (found.lastgroup or "", found.group(0))]
        at = found.end()
    parts.append(line[at:])
    return tuple(parts)


def _templates(path: Path = GOLDEN) -> list[_Template]:
    """The golden history's events, cut at their names."""
    envelopes: list[tuple[str, str, str]] = []
    runs: dict[str, None] = {}
    with gzip.open(path, "rt", encoding="utf-8") as source:
        for line in source:
            if not line.strip():
                continue
            envelope = json.loads(line)
            envelopes.append((envelope["stream"], envelope["type"], line.strip()))
            found = _RUN.search(envelope.get("causation_id") or "")
            if found:
                runs[found.group(1)] = None
    alternatives = [f"(?P<hex>{_HEX.pattern})", f"(?P<day>{_DAY.pattern})"]
    if runs:
        known = "|".join(map(re.escape, runs))
        alternatives = [rf"(?P<seq>(?:{known})\.[a-z]+\.\d+\b)", *alternatives]
    names = re.compile("|".join(alternatives))
    return [_Template(stream, kind, _cut(line, names)) for stream, kind, line in envelopes]


class _Renamer:
    """Renames one copy's ids (its negotiations, so their offers, holds and contracts, and
    random hex ids) and moves its days. The offtakers keep their names: the same customers
    come back each day, as the same fleet serves them."""

    def __init__(self, copy: int):
        self._copy = copy
        self._hex = f"{copy:08x}"
        self._days: dict[str, str] = {}

    def __call__(self, template: _Template) -> str:
        return "".join(
            part if isinstance(part, str) else self._renamed(*part) for part in template.parts
        )

    def _renamed(self, kind: str, name: str) -> str:
        if kind == "day":
            found = self._days.get(name)
            if found is None:
                moved = date.fromisoformat(name) + timedelta(days=self._copy)
                found = self._days[name] = moved.isoformat()
            return found
        if kind == "hex":
            return self._hex + name[8:]
        # acme-47d431.web.3 -> acme-47d431.web.5000003: each copy its own negotiations
        head, _, number = name.rpartition(".")
        return f"{head}.{self._copy * 1_000_000 + int(number)}"


def _event(envelope: dict[str, Any]) -> tuple[NewEvent, Event]:
    """The envelope's payload validated into its current class, as a new event."""
    event = REGISTRY.decode(envelope["type"], envelope["schema_version"], envelope["payload"])
    assert isinstance(event, Event)
    entry = REGISTRY.entry(envelope["type"])
    new = NewEvent(
        type=entry.type,
        schema_version=entry.version,
        topic=entry.topic.value,
        payload=event.model_dump(mode="json"),
        occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
        actor=envelope["actor"],
        id=envelope["id"],
        causation_id=envelope["causation_id"],
        correlation_id=envelope["correlation_id"],
    )
    return new, event


def _usage(
    contract: ContractCreated, at: datetime, copy: int, rng: random.Random
) -> Iterator[tuple[str, NewEvent]]:
    """One to six hours of usage facts for ``contract``, from the hour it started."""
    hour = at.replace(minute=0, second=0, microsecond=0)
    for index in range(rng.randint(1, 6)):
        fact = usage_fact(
            contract,
            hour + timedelta(hours=index),
            seconds=rng.choice((3600, 3600, 3600, rng.randint(0, 3600))),
            network_bytes=rng.randint(0, 5 * 10**9),
            samples=240,
        )
        new = NewEvent.of(fact, actor="usage", occurred_at=hour + timedelta(hours=index + 1))
        yield usage_stream(contract.contract_id), _with_id(new, f"use_{copy:08x}{index:02d}", fact)


def _ended(contract: ContractCreated, at: datetime, copy: int) -> tuple[str, NewEvent]:
    """The cancellation, at the end of its day, of a copy's contract still live."""
    ended = ContractCancelled(
        contract_id=contract.contract_id, node_id=contract.node_id, reason="term ended"
    )
    day_end = at.replace(hour=0, minute=0, second=0, microsecond=0) + _DAY_END
    new = NewEvent.of(ended, actor="bench", occurred_at=day_end)
    return f"node-{contract.node_id}", _with_id(new, f"end_{copy:08x}", ended)


def _with_id(new: NewEvent, prefix: str, fact: Any) -> NewEvent:
    return NewEvent(
        type=new.type,
        schema_version=new.schema_version,
        topic=new.topic,
        payload=new.payload,
        occurred_at=new.occurred_at,
        actor=new.actor,
        id=f"{prefix}.{fact.contract_id}",
        causation_id=new.causation_id,
        correlation_id=new.correlation_id,
    )


def new_events(count: int, seed: int, golden: Path = GOLDEN) -> Iterator[tuple[str, NewEvent]]:
    """``count`` events as (stream, event), in the order they are appended."""
    templates = _templates(golden)
    rng = random.Random(seed)
    made = 0
    copy = 0
    while made < count:
        rename = _Renamer(copy)
        contracts: list[tuple[ContractCreated, datetime]] = []
        cancelled: set[str] = set()
        for template in templates:
            if copy and template.type in _FLEET_EVENTS:
                continue
            envelope = json.loads(rename(template))
            new, event = _event(envelope)
            if isinstance(event, ContractCreated):
                contracts.append((event, new.occurred_at))
            elif isinstance(event, ContractCancelled):
                cancelled.add(event.contract_id)
            yield envelope["stream"], new
            made += 1
            if made == count:
                return
        for contract, at in contracts:
            for stream, new in _usage(contract, at, copy, rng):
                yield stream, new
                made += 1
                if made == count:
                    return
        for contract, at in contracts:
            if contract.contract_id not in cancelled:
                yield _ended(contract, at, copy)
                made += 1
                if made == count:
                    return
        copy += 1


def generate(store: EventStore, count: int, seed: int) -> int:
    """Append ``count`` seeded events to ``store``; consecutive events of one stream go in one
    append, and many appends in one transaction. Returns the store's position after."""
    pending: list[NewEvent] = []
    stream = ""
    appends = 0

    def flush() -> None:
        nonlocal appends
        if pending:
            store.append(stream, ANY_VERSION, list(pending), f"bench-{pending[0].id}")
            pending.clear()
            appends += 1

    events = new_events(count, seed)
    done = False
    while not done:
        with store.group_commit():
            for _ in range(_COMMIT_EVERY):
                try:
                    each_stream, new = next(events)
                except StopIteration:
                    done = True
                    break
                if each_stream != stream:
                    flush()
                    stream = each_stream
                pending.append(new)
            if done:
                flush()
    return store.current_position()

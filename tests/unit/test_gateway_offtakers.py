"""The offtakers the log names (hero.gateway.offtakers), over the in-memory event store."""

from __future__ import annotations

import asyncio
import json
import stat
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hero.config import HeroSettings
from hero.gateway._stream_rules import rendered
from hero.gateway.context import Principal, Role
from hero.gateway.offtakers import OfftakerDirectory, gateway_secret, named_in
from hero.gateway.redaction import Pseudonyms
from hero.store import ANY_VERSION, MemoryEventStore, NewEvent, RecordedEvent
from schemas import (
    Grid,
    HoldReleased,
    Money,
    Resources,
    RfqIssued,
    TransferKind,
    TransferPosted,
)

NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
DEV = Principal("d", Role.DEVELOPER)


def _append(store: MemoryEventStore, stream: str, event: Any, actor: str = "system") -> None:
    new = NewEvent.of(event, actor=actor, occurred_at=NOW, correlation_id=f"c-{stream}")
    store.append(stream, ANY_VERSION, [new], command_id=f"cmd-{stream}-{store.current_position()}")


def _rfq(offtaker: str) -> RfqIssued:
    return RfqIssued(
        negotiation_id=f"{offtaker}.web.1",
        offtaker_id=offtaker,
        workload_id="web",
        resources=Resources.from_gb(cru=1, mru_gb=1, sru_gb=10),
        replicas=1,
        grids=[Grid.GRID3],
        min_uptime_pct=Decimal(95),
        max_price_cu_hour=Money.of("0.05", "USD"),
        term_hours=720,
        deadline=NOW,
    )


def test_named_in_reads_ids_lists_accounts_and_the_actor() -> None:
    envelope = {
        "actor": "offtaker:acme",
        "payload": {
            "offtaker_id": "beta",
            "policy": {"deny_offtakers": ["gamma"], "allow_offtakers": []},
            "debit_account": "offtaker.delta.eu.TFT",
            "credit_account": "farmer.farm-a.TFT",
            "reference": "nothing-here",
        },
    }
    assert named_in(envelope) == {"acme", "beta", "gamma", "delta.eu"}


def test_the_directory_learns_from_the_log_what_later_rows_only_derive() -> None:
    """Regression: a HoldReleased names no offtaker_id; the RFQ before it does."""
    store = MemoryEventStore()
    _append(store, "nego-acme.web.1", _rfq("acme"), actor="offtaker:acme")
    transfer = TransferPosted(
        transfer_id="t-1",
        debit_account="offtaker.zeta.TFT",
        credit_account="farmer.farm-a.TFT",
        amount=Money.of("1", "TFT"),
        kind=TransferKind.BILL,
        reference="bill-1",
    )
    _append(store, "account-offtaker.zeta.TFT", transfer)
    released = HoldReleased(node_id="n-1", hold_id="acme.web.1.farm-a.0", reason="awarded")
    _append(store, "node-n-1", released)
    directory = OfftakerDirectory(store, Pseudonyms(b"s"), batch=1)
    pseudonyms = asyncio.run(directory.ensure(store.current_position()))
    assert pseudonyms.known == {"acme", "zeta"}
    assert directory.position == 3
    row = store.read_all(3, 1)[0]
    frame = rendered(DEV, json.loads(row.envelope_json), pseudonyms)
    assert frame is not None
    assert frame["payload"]["hold_id"] == f"{pseudonyms.of('acme')}.web.1.farm-a.0"
    # caught up: asking again reads nothing; a new row is read when asked for
    assert asyncio.run(directory.ensure(3)) is pseudonyms
    _append(store, "nego-new.web.1", _rfq("newcomer"))
    asyncio.run(directory.ensure())
    assert "newcomer" in pseudonyms.known
    assert pseudonyms.generation == 3


class _OnePoisonRow(MemoryEventStore):
    """The first row's text is not JSON (a row the streams would report and skip)."""

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        rows = super().read_all(from_position, limit)
        return [
            replace(row, envelope_json='{"offtaker_id": brok') if row.position == 1 else row
            for row in rows
        ]


def test_a_row_that_is_not_json_is_skipped_and_the_rest_read() -> None:
    store = _OnePoisonRow()
    _append(store, "nego-bad.web.1", _rfq("bad"))
    _append(store, "nego-acme.web.1", _rfq("acme"))
    directory = OfftakerDirectory(store, Pseudonyms(b"s"))
    assert directory.catch_up() == 2
    assert directory.pseudonyms.known == {"acme"}
    assert directory.skipped == 1


def test_the_gateway_secret_is_made_once_owner_only_or_configured(tmp_path: Path) -> None:
    settings = HeroSettings(data_dir=tmp_path)
    first = gateway_secret(settings)
    assert len(first) == 64
    assert gateway_secret(settings) == first
    mode = stat.S_IMODE((tmp_path / "gateway.secret").stat().st_mode)
    assert mode == 0o600
    configured = HeroSettings(data_dir=tmp_path, api_secret=SecretStr("from-env"))
    assert gateway_secret(configured) == b"from-env"

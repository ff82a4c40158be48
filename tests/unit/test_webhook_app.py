"""The payment webhook end to end over HTTP (the ASGI app on a real SQLite store): each kind
of delivery gets its answer, and a refused one writes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from agents.treasury.app import WEBHOOK_PATH, create_app
from agents.treasury.oracle import FixedRateOracle
from agents.treasury.service import TreasuryService
from agents.treasury.webhook import sign
from hero.domain.clock import ManualClock
from hero.payments.ledger import read_ledger
from hero.store import SqliteEventStore

SECRET = b"whsec-test"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path):
    clock = ManualClock(NOW)
    store = SqliteEventStore(tmp_path / "events.db", clock)
    treasury = TreasuryService(store, FixedRateOracle({"USD": Decimal(100)}, clock), clock)
    client = TestClient(create_app(treasury, SECRET, clock))
    yield client, store, treasury
    client.close()
    store.close()


def body(event_id: str = "evt_1", **overrides: object) -> bytes:
    notice = {"provider_event_id": event_id, "offtaker_id": "acme", "amount": "25.50"}
    notice["currency"] = "usd"
    notice.update(overrides)
    return json.dumps(notice).encode()


def post(client: TestClient, payload: bytes, *, at: datetime = NOW, secret: bytes = SECRET):
    header = sign(secret, int(at.timestamp()), payload)
    return client.post(WEBHOOK_PATH, content=payload, headers={"Stripe-Signature": header})


def test_a_valid_delivery_is_received_once_and_its_replay_answered_2xx(world):
    """A redelivery is 200 ``duplicate: true``: a 409 makes providers retry for days and
    then disable the endpoint."""
    client, store, treasury = world
    first = post(client, body())
    assert first.status_code == 200
    assert first.json()["duplicate"] is False
    payment_id = first.json()["payment_id"]
    written = store.current_position()
    assert written > 0

    replay = post(client, body())
    assert replay.status_code == 200
    assert replay.json() == {"status": "received", "payment_id": payment_id, "duplicate": True}
    assert store.current_position() == written  # nothing more

    converted, failed = treasury.convert_pending()
    assert (len(converted), failed) == (1, [])
    assert read_ledger(store).balance("offtaker.acme.TFT").amount == Decimal("2537.25")


@pytest.mark.parametrize(
    ("payload", "status", "reason", "how"),
    [
        (body(), 401, "signature_invalid", {"secret": b"not-the-secret"}),
        (body(), 401, "timestamp_stale", {"at": NOW - timedelta(seconds=301)}),
        (b'{"provider_event_id": "evt_2", ', 400, "malformed_json", {}),
        (body(currency="XYZ"), 422, "unknown_currency", {}),
        (body(amount=25.5), 422, "invalid_payment", {}),
    ],
    ids=["forged", "stale", "malformed-json", "unknown-currency", "float-amount"],
)
def test_a_refused_delivery_says_why_and_writes_nothing(world, payload, status, reason, how):
    client, store, _ = world
    response = post(client, payload, **how)
    assert response.status_code == status
    assert response.json()["error"].startswith(reason)
    assert store.current_position() == 0


def test_an_unsigned_delivery_is_refused_before_its_body_is_read(world):
    client, store, _ = world
    response = client.post(WEBHOOK_PATH, content=b"not even json")
    assert (response.status_code, response.json()["error"]) == (400, "signature_missing")
    assert store.current_position() == 0

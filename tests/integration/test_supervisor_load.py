"""Issue 16's acceptance for supervision under load: on a supervised stack of the test's own
with a demo-like load (agents negotiating contracts, payment webhooks arriving, utilization
samples streaming), kill -9 each of HERO's processes in turn -- relay, agents, gateway,
treasury, usage worker -- and let the supervisor bring it back. Afterwards no contract,
payment or usage fact is lost or doubled: the counts equal what was sent, the ledger totals
are exact and balance. Bounded (``BUDGET_S``); the figures are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.treasury.webhook import sign
from hero.domain.billing import hour_of
from hero.domain.ledger import AccountKind, account_id
from hero.log.telemetry import TelemetryPublisher
from hero.market.service import MarketService
from hero.payments.ledger import read_ledger
from hero.store import ANY_VERSION, EventStore, NewEvent, open_store
from infra import LocalStack
from infra._procfs import running
from infra._state import StackState
from infra.ports import tcp_answers
from schemas import (
    ContractCreated,
    FiatConverted,
    FiatPaymentReceived,
    NegotiationAwarded,
    RfqIssued,
    UsageRecorded,
    new_id,
)
from tests._engines import Engines, stack_settings
from tests._wait import wait_until
from tests.e2e._cli import hero_json
from tests.integration._crash_market import REPLICAS, register_farms, set_mandates
from tests.integration._usage import expected_facts, usage_contract, usage_samples

pytestmark = [pytest.mark.integration]

VICTIMS = ("relay", "agents", "gateway", "treasury", "usage")
SECRET = "supervised-load-secret"
# Each kill lands right after a new batch of offtakers asks for contracts, while payments
# keep arriving (one each PAY_PACE_S until the last process is back).
FARMS_PER_BATCH = 2
OFFTAKERS_PER_BATCH = 2
PAY_PACE_S = 0.1
USAGE_CONTRACTS = 2
INTERVAL_S = 60
BACK_S = 5.0
BUDGET_S = 420.0


def _decoded(store: EventStore) -> list[Any]:
    position, events = 1, []
    while rows := store.read_all(position, 5000):
        events += [row.envelope().decode() for row in rows]
        position = rows[-1].position + 1
    return events


def _of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


class Payer:
    """A payment provider: delivers each webhook until it is answered 200 (``duplicate``
    when an attempt before a kill was recorded), across the treasury's restarts."""

    def __init__(self, url: str, tag: str) -> None:
        self.url, self.tag = url, tag
        self.amounts: list[str] = []
        self.answers: Counter[str] = Counter()
        self.sent = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def body(self, i: int) -> bytes:
        notice = {
            "provider_event_id": f"{self.tag}-evt-{i:04d}",
            "offtaker_id": f"{self.tag}-payer-{i % 4}",
            "amount": f"{10 + i}.{i % 100:02d}",
            "currency": "usd",
        }
        return json.dumps(notice).encode()

    def run(self) -> None:
        try:
            with httpx.Client(timeout=10) as client:
                while not self.done.wait(PAY_PACE_S):  # a provider's pace
                    i = self.sent
                    self.amounts.append(f"{10 + i}.{i % 100:02d}")
                    self.answers[self._deliver(client, self.body(i))] += 1
                    self.sent = i + 1
        except BaseException as exc:
            self.error = exc

    def _deliver(self, client: httpx.Client, body: bytes) -> str:
        deadline = time.monotonic() + 90
        host, port = self.url.removeprefix("http://").split(":")
        while time.monotonic() < deadline:
            header = sign(SECRET.encode(), int(time.time()), body)
            try:
                response = client.post(
                    f"{self.url}/webhooks/payments",
                    content=body,
                    headers={"Stripe-Signature": header},
                )
            except httpx.TransportError:  # killed: retry once it listens again
                wait_until(lambda: tcp_answers(host, int(port)), 60, "the treasury back")
                continue
            if response.status_code == 200:
                return "duplicate" if response.json()["duplicate"] else "received"
            assert response.status_code == 503, response.text
        raise TimeoutError("a delivery was never answered")


def _load_at(store: EventStore, offtakers: list[str], payer: Payer) -> str:
    events = _decoded(store)
    contracts = [c for c in _of(events, ContractCreated) if c.offtaker_id in offtakers]
    return (
        f"{payer.sent} payments sent, {len(_of(events, FiatConverted))} converted, "
        f"{len(contracts)} contracts, {len(_of(events, UsageRecorded))} usage facts"
    )


def _kill_and_wait_back(data_dir: Path, label: str) -> tuple[float, float]:
    """SIGKILL the recorded ``label`` (a pid this test's stack started); the seconds until a
    new pid runs and until `hero status` shows it up again."""
    state = StackState.load(data_dir)
    assert state is not None
    old = state.processes[label]
    assert running(old.pid, old.start_ticks)
    os.kill(old.pid, signal.SIGKILL)
    killed = time.monotonic()

    def back() -> bool:
        now = StackState.load(data_dir)
        record = now.processes[label] if now is not None else old
        return record.pid != old.pid and running(record.pid, record.start_ticks)

    wait_until(back, BACK_S, f"{label} running again")
    respawned = time.monotonic() - killed

    def up() -> bool:
        row = {r["name"]: r for r in hero_json("status", data_dir=data_dir)}[label]
        return bool(row["state"] == "up" and row["supervision"] == "running")

    wait_until(up, 90, f"{label} up again", poll_s=0.5)
    return respawned, time.monotonic() - killed


@pytest.mark.embedded_only(
    reason="a stack of its own with a load; the engines' own kill tests run in the production pass"
)
async def test_kill_9_of_each_hero_process_under_load_loses_and_doubles_nothing(
    tmp_path: Path, engines: Engines
) -> None:
    began = time.monotonic()
    data_dir = tmp_path / "data"
    settings = stack_settings(
        data_dir,
        engines,
        supervise=True,
        webhook_secret=SECRET,
        treasury_interval_s=0.2,
        usage_idle_close_s=30 * 86400,  # old hours close by event time only
    )
    launcher = LocalStack(settings)
    launcher.up()
    endpoints = launcher.endpoints()
    store = open_store(settings.effective_store_url)
    tag = new_id("s")[-8:]
    figures: dict[str, tuple[float, float]] = {}
    at_kill: dict[str, str] = {}
    publisher = TelemetryPublisher(endpoints.kafka_bootstrap)
    assert endpoints.treasury_url is not None
    payer = Payer(endpoints.treasury_url, tag)
    try:
        # Usage: contracts that started hours ago, their samples sent in parts between kills.
        first_hour = hour_of(datetime.now(UTC)) - timedelta(hours=4)
        usage = [usage_contract(i, tag, first_hour) for i in range(USAGE_CONTRACTS)]
        for contract in usage:
            event = NewEvent.of(contract, actor="test", occurred_at=first_hour)
            store.append(
                f"node-{contract.node_id}", ANY_VERSION, [event], f"{tag}:{contract.contract_id}"
            )
        samples = []
        for contract in usage:
            samples += usage_samples(
                contract, first_hour, first_hour + timedelta(hours=2, minutes=10), INTERVAL_S
            )
        samples.sort(key=lambda item: item[0].sampled_at)
        # In time order, as samplers report: an hour closes once a later one's samples come.
        size = -(-len(samples) // len(VICTIMS))
        parts = [samples[i * size : (i + 1) * size] for i in range(len(VICTIMS))]

        service = MarketService(store)
        offtakers: list[str] = []
        thread = threading.Thread(target=payer.run, daemon=True)
        thread.start()
        for n, (label, part) in enumerate(zip(VICTIMS, parts, strict=True)):
            await publisher.send(part, datetime.now(UTC))
            # A market batch of its own (farms in regions of its own): negotiating at the kill.
            batch = f"{tag}b{n}"
            register_farms(service, batch, FARMS_PER_BATCH)
            offtakers += set_mandates(service, batch, OFFTAKERS_PER_BATCH)
            wanted = payer.sent + 3

            def flowing(wanted: int = wanted) -> bool:
                return payer.sent >= wanted

            wait_until(flowing, 60, "payments flowing")
            at_kill[label] = _load_at(store, offtakers, payer)
            figures[label] = await asyncio.to_thread(_kill_and_wait_back, data_dir, label)
        payer.done.set()
        thread.join(timeout=120)
        assert payer.error is None, payer.error
        assert not thread.is_alive()

        left = BUDGET_S - (time.monotonic() - began)

        def settled() -> bool:
            events = _decoded(store)
            contracts = [c for c in _of(events, ContractCreated) if c.offtaker_id in offtakers]
            per_offtaker = Counter(c.offtaker_id for c in contracts)
            return (
                len(_of(events, FiatConverted)) >= payer.sent
                and all(per_offtaker[o] >= REPLICAS for o in offtakers)
                and len(_of(events, UsageRecorded)) >= 2 * USAGE_CONTRACTS
            )

        wait_until(settled, max(left, 30), "every payment, contract and usage fact", poll_s=1)
    finally:
        payer.done.set()
        await publisher.close()
        state = StackState.load(data_dir)
        seen = [*state.processes.values()] if state is not None else []
        launcher.down()
    assert not [r.name for r in seen if running(r.pid, r.start_ticks)], "left after down"

    events = _decoded(store)
    print("\nkill -9 under load (running again, up again):")
    for label, (respawned, up) in figures.items():
        print(f"  {label}: {respawned:.2f} s, {up:.2f} s; killed at {at_kill[label]}")
    # Payments: each once, the sums exact, the ledger balanced.
    received = _of(events, FiatPaymentReceived)
    converted = _of(events, FiatConverted)
    payments = payer.sent
    assert payments == len(payer.amounts) > 0
    assert payer.answers["received"] + payer.answers["duplicate"] == payments
    assert len(received) == len({e.payment_id for e in received}) == payments
    assert len(converted) == len({e.payment_id for e in converted}) == payments
    assert sorted(e.provider_event_id for e in received) == [
        f"{tag}-evt-{i:04d}" for i in range(payments)
    ]
    assert sum(e.fiat.amount for e in converted) == sum(Decimal(a) for a in payer.amounts)
    ledger = read_ledger(store)
    for i in range(4):
        payer_id = f"{tag}-payer-{i}"
        credited = sum(e.tft.amount for e in converted if e.offtaker_id == payer_id)
        assert ledger.balance(account_id(AccountKind.OFFTAKER, payer_id)).amount == credited
    assert all(total == 0 for total in ledger.totals().values())
    # Contracts: each offtaker exactly its replicas, none twice by id or offer.
    contracts = [c for c in _of(events, ContractCreated) if c.offtaker_id in offtakers]
    assert len({c.contract_id for c in contracts}) == len(contracts)
    assert len({(c.negotiation_id, c.offer_id) for c in contracts}) == len(contracts)
    assert Counter(c.offtaker_id for c in contracts) == dict.fromkeys(offtakers, REPLICAS)
    rfqs = {e.negotiation_id for e in _of(events, RfqIssued)}
    awarded = Counter(e.negotiation_id for e in _of(events, NegotiationAwarded))
    assert set(awarded.values()) <= {1}, "a negotiation awarded twice"
    assert set(awarded) <= rfqs
    # Usage: every closed hour's fact once, equal to the pure computation on what was sent.
    facts = [f for f in _of(events, UsageRecorded) if f.contract_id.startswith(f"{tag}-")]
    got = Counter((f.contract_id, f.hour) for f in facts)
    assert set(got.values()) == {1}, "a usage fact doubled"
    expected = expected_facts(usage, samples, first_hour)
    assert {(f.contract_id, f.hour): f for f in facts if (f.contract_id, f.hour) in expected} == (
        expected
    )
    print(
        f"  after: {len(received)} payments ({sum(e.fiat.amount for e in converted)} USD), "
        f"{len(contracts)} contracts, {len(facts)} usage facts "
        f"({sum(f.samples for f in facts)} samples); {time.monotonic() - began:.0f} s in all"
    )
    assert all(respawned <= BACK_S for respawned, _ in figures.values())

"""Kill -9 the treasury/billing process at random points: payments and hours still count once.

The treasury process (``python -m agents.treasury``) takes 2,000 signed webhook deliveries
and bills 20 contracts for 48 hours while a killer thread SIGKILLs it at random moments and
starts it again. The sender retries each delivery until it is answered (200, or 409 when an
earlier attempt was recorded before the kill), as a payment provider does. Then every payment
must be credited exactly once, every contract-hour billed exactly once, the sums exact, and
every conversion must reach Kafka through the relay.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import httpx
import pytest

from agents.treasury.webhook import sign
from hero.domain.billing import hour_of
from hero.domain.clock import ManualClock
from hero.domain.ledger import AccountKind, account_id
from hero.market.service import MarketService
from hero.payments.ledger import read_ledger
from hero.store import EventStore
from infra.ports import free_ports, tcp_answers
from schemas import (
    AcceptOffer,
    ContractCreated,
    FiatConverted,
    FiatPaymentReceived,
    IssueRfq,
    MakeOffer,
    Money,
    RegisterFarm,
    RegisterNode,
    Resources,
    Sla,
    UsageBilled,
)
from tests._wait import wait_until
from tests.integration._kafka import read_topic_until
from tests.integration.test_relay import _start_relay

pytestmark = pytest.mark.integration

PAYMENTS = 2000
OFFTAKERS = 20
HOURS = 48
KILLS = 8
SECRET = b"crash-test-secret"
RATE = Decimal(100)  # TFT per USD, the fixed oracle
SPREAD = Decimal("0.005")
PRICE_HOUR = Decimal("0.05")  # USD per hour, Grid 4: billed at the contract price
SHAPE = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
TIMEOUT_S = 240


class Treasury:
    """The process under test, started and SIGKILLed by PID."""

    def __init__(self, data_dir: Path, store_url: str):
        self.port = free_ports(1)[0]
        self.env = {
            **os.environ,
            "HERO_DATA_DIR": str(data_dir),
            "HERO_STORE_URL": store_url,
            "HERO_WEBHOOK_SECRET": SECRET.decode(),
            "HERO_TREASURY_INTERVAL_S": "0.2",
            "HERO_TFT_PER_USD": str(RATE),
            "HERO_QUOTE_SPREAD": str(SPREAD),
        }
        self.log = (data_dir / "treasury.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agents.treasury", "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )
        self.starts += 1
        wait_until(lambda: tcp_answers("127.0.0.1", self.port), 30, "the treasury to listen")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class StoreCount:
    """Follows the store and counts the event types this test waits for."""

    def __init__(self, store: EventStore):
        self.store, self.position, self.types = store, 0, Counter[str]()

    def __call__(self) -> Counter[str]:
        while rows := self.store.read_all(self.position + 1, 5000):
            self.types.update(row.type for row in rows)
            self.position = rows[-1].position
        return self.types


def deliver(client: httpx.Client, treasury: Treasury, body: bytes) -> str:
    """Retry like a provider until the endpoint answers 200: ``received`` the first time,
    ``duplicate`` once recorded (never a 4xx, which a provider would retry for days)."""
    url = f"http://127.0.0.1:{treasury.port}/webhooks/payments"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        header = sign(SECRET, int(time.time()), body)
        try:
            response = client.post(url, content=body, headers={"Stripe-Signature": header})
        except httpx.TransportError:  # killed: retry once it listens again
            wait_until(lambda: tcp_answers("127.0.0.1", treasury.port), 60, "a restart")
            continue
        if response.status_code == 200:
            return "duplicate" if response.json()["duplicate"] else "received"
        assert response.status_code == 503, response.text
    raise TimeoutError("a delivery was never answered")


def make_contracts(store: EventStore, start: datetime, tag: str) -> list[str]:
    """One 48-hour Grid 4 contract per offtaker, started ``HOURS`` before the current hour."""
    clock = ManualClock(start)
    market = MarketService(store, clock)
    sla = Sla(uptime_pct=Decimal("99"))
    contracts = []
    for i in range(OFFTAKERS):
        farm, node, nego = f"{tag}-farm-{i}", f"{tag}-node-{i}", f"{tag}-nego-{i}"
        location = {"grid": "grid4", "country": "BE", "region": "europe"}
        market.handle(RegisterFarm(command_id=f"{farm}:reg", farm_id=farm, name=farm, **location))
        market.handle(
            RegisterNode(
                command_id=f"{node}:reg",
                node_id=node,
                farm_id=farm,
                total=SHAPE.times(4),
                uptime_pct=Decimal("99.9"),
                **location,
            )
        )
        market.handle(
            IssueRfq(
                command_id=f"{nego}:rfq",
                negotiation_id=nego,
                offtaker_id=f"{tag}-off-{i}",
                workload_id=f"{tag}-wl-{i}",
                resources=SHAPE,
                replicas=1,
                grids=["grid4"],
                max_price_cu_hour=Money.of("1", "USD"),
                term_hours=HOURS,
                deadline=start + timedelta(minutes=10),
                invited_farms=[farm],
            )
        )
        market.handle(
            MakeOffer(
                command_id=f"{nego}:offer",
                negotiation_id=nego,
                offer_id=f"{nego}-o",
                farm_id=farm,
                node_id=node,
                price_hour=Money.of(PRICE_HOUR, "USD"),
                term_hours=HOURS,
                sla=sla,
                firm=True,
                expires_at=start + timedelta(minutes=5),
            )
        )
        market.handle(
            AcceptOffer(command_id=f"{nego}:accept", negotiation_id=nego, offer_id=f"{nego}-o")
        )
    created = [e for e in _decoded(store) if isinstance(e, ContractCreated)]
    contracts = [c.contract_id for c in created if c.offtaker_id.startswith(f"{tag}-off-")]
    assert len(contracts) == OFFTAKERS
    return contracts


def _decoded(store: EventStore) -> list[object]:
    position, events = 1, []
    while rows := store.read_all(position, 5000):
        events += [row.envelope().decode() for row in rows]
        position = rows[-1].position + 1
    return events


def _payment(tag: str, index: int, amount: str) -> bytes:
    notice = {
        "provider_event_id": f"{tag}-evt-{index:05d}",
        "offtaker_id": f"{tag}-off-{index % OFFTAKERS}",
        "amount": amount,
        "currency": "usd",
    }
    return json.dumps(notice).encode()


async def test_payments_and_billing_count_once_through_kill_9(
    stack, store_factory, tmp_path: Path
) -> None:
    rng = random.Random(20261123)
    tag = f"crash{rng.randrange(10**6)}"
    handle = store_factory()
    store = handle.open()
    treasury = Treasury(tmp_path, handle.url)
    amounts = ["100.00"] * OFFTAKERS + [
        f"{rng.randrange(1, 5000)}.{rng.randrange(100):02d}" for _ in range(PAYMENTS - OFFTAKERS)
    ]
    count = StoreCount(store)
    kills: list[tuple[int, int]] = []  # (converted, billed) when each kill landed
    done = threading.Event()
    treasury.start()
    try:
        with httpx.Client(timeout=10) as client:
            # Fund every offtaker before its contract exists, so no hour waits on money.
            for i in range(OFFTAKERS):
                assert deliver(client, treasury, _payment(tag, i, amounts[i])) == "received"
            wait_until(lambda: count()["FiatConverted"] >= OFFTAKERS, 60, "funding converted")
            start = hour_of(datetime.now(UTC)) - timedelta(hours=HOURS)
            contracts = make_contracts(store, start, tag)

            seen_by_killer = StoreCount(handle.open())

            def killer() -> None:
                while len(kills) < KILLS and not done.wait(rng.uniform(0.3, 1.5)):
                    treasury.kill()
                    counts = seen_by_killer()
                    kills.append((counts["FiatConverted"], counts["UsageBilled"]))
                    treasury.start()

            thread = threading.Thread(target=killer, daemon=True)
            thread.start()
            answers = Counter(
                deliver(client, treasury, _payment(tag, i, amounts[i]))
                for i in range(OFFTAKERS, PAYMENTS)
            )
            thread.join(timeout=60)
            done.set()

        wait_until(
            lambda: (
                count()["FiatConverted"] >= PAYMENTS and count()["UsageBilled"] >= OFFTAKERS * HOURS
            ),
            TIMEOUT_S,
            "every payment converted and every hour billed",
        )
    finally:
        done.set()
        treasury.stop()

    assert len(kills) == KILLS
    assert treasury.starts == KILLS + 1
    print(f"kills landed at (converted, billed): {kills}")
    assert any(0 < billed < OFFTAKERS * HOURS for _, billed in kills), "a kill mid-billing"
    assert any(OFFTAKERS < converted < PAYMENTS for converted, _ in kills), "a kill mid-payments"
    assert answers["received"] + answers["duplicate"] == PAYMENTS - OFFTAKERS
    events = _decoded(store)
    received = [e for e in events if isinstance(e, FiatPaymentReceived)]
    converted = [e for e in events if isinstance(e, FiatConverted)]
    bills = [e for e in events if isinstance(e, UsageBilled)]

    # Every payment credited exactly once.
    assert len(received) == len({e.payment_id for e in received}) == PAYMENTS
    assert len(converted) == len({e.payment_id for e in converted}) == PAYMENTS
    assert sorted(e.provider_event_id for e in received) == [
        f"{tag}-evt-{i:05d}" for i in range(PAYMENTS)
    ]
    fiat_in = sum(Decimal(a) for a in amounts)
    assert sum(e.fiat.amount for e in converted) == fiat_in
    # Every contract-hour billed exactly once, for a whole hour at the contract price.
    billed = Counter((e.contract_id, e.hour) for e in bills)
    assert set(billed.values()) == {1}
    assert set(billed) == {(c, start + timedelta(hours=h)) for c in contracts for h in range(HOURS)}
    hour_tft = Money.of(PRICE_HOUR * RATE, "TFT")
    assert {(e.seconds, e.amount) for e in bills} == {(3600, hour_tft)}
    # The sums are exact, and the ledger balances to zero in every currency.
    ledger = read_ledger(store)
    for i in range(OFFTAKERS):
        offtaker = f"{tag}-off-{i}"
        credited = sum(e.tft.amount for e in converted if e.offtaker_id == offtaker)
        for e in converted:
            if e.offtaker_id == offtaker:
                assert e.tft == Money.rounded(
                    e.fiat.amount * RATE * (1 - SPREAD), "TFT", ROUND_DOWN
                )
        paid = HOURS * hour_tft.amount
        assert ledger.balance(account_id(AccountKind.OFFTAKER, offtaker)).amount == credited - paid
    farmers = sum(
        ledger.balance(account_id(AccountKind.FARMER, f"{tag}-farm-{i}")).amount
        for i in range(OFFTAKERS)
    )
    assert farmers == sum(e.farmer_share.amount for e in bills)
    assert farmers + sum(e.pool_share.amount + e.threefold_share.amount for e in bills) == sum(
        e.amount.amount for e in bills
    )
    assert ledger.balance(account_id(AccountKind.TREASURY, "cooperative", "USD")).is_zero
    assert all(total == 0 for total in ledger.totals().values())

    # Every conversion reached Kafka through the relay.
    relay = _start_relay(tmp_path, handle.url, stack.endpoints.kafka_bootstrap, batch_size=1000)
    try:
        wanted = {e.payment_id for e in converted}
        rows = await read_topic_until(
            stack.endpoints.kafka_bootstrap,
            "hero.payments",
            lambda seen: wanted <= {r["payload"]["payment_id"] for r in seen},
            keep=lambda r: (
                r.get("type") == "FiatConverted" and r["payload"]["payment_id"] in wanted
            ),
            timeout_s=120,
        )
    finally:
        relay.terminate()
        relay.wait(timeout=10)
    assert {r["payload"]["payment_id"] for r in rows} == wanted

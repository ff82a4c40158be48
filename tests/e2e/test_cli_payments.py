"""Payments through the command line: a provider's event received once, the ledger's accounts,
billing by the hour, and the treasury that ``hero up`` runs and ``hero down`` stops.

Most tests need no stack: the commands open the data dir's store directly. One starts a stack
of its own to see the treasury run, answer its webhook and stop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.treasury.app import WEBHOOK_PATH
from agents.treasury.runtime import webhook_secret
from agents.treasury.webhook import sign
from hero.config import HeroSettings
from hero.domain.billing import hour_of
from hero.domain.node import node_stream
from hero.store import ANY_VERSION, EventStore, NewEvent, open_store
from infra.treasury import WEBHOOK_PATH as LAUNCHER_WEBHOOK_PATH
from schemas import ContractCreated, Grid, Money, Resources, Sla
from tests._wait import wait_until
from tests.e2e._cli import hero, hero_json, store_url

pytestmark = pytest.mark.e2e

#: The fixed oracle's 100 TFT per USD, less the default 0.5 % spread.
TFT_PER_USD = Decimal("99.5")


def event_file(directory: Path, offtaker: str, amount: str, event_id: str = "evt_1") -> Path:
    path = directory / f"{event_id}.json"
    body = {
        "provider_event_id": event_id,
        "provider": "stripe",
        "offtaker_id": offtaker,
        "amount": amount,
        "currency": "usd",
    }
    path.write_text(json.dumps(body))
    return path


def ok(*args: str, data_dir: Path) -> str:
    result = hero(*args, data_dir=data_dir)
    assert result.returncode == 0, result.stderr + result.stdout
    return " ".join(result.stdout.split())  # rich wraps long lines


def refused(*args: str, data_dir: Path, code: int = 2) -> str:
    result = hero(*args, data_dir=data_dir)
    assert result.returncode == code, result.stderr + result.stdout
    return " ".join(result.stderr.split())


def balances(data_dir: Path) -> dict[str, Any]:
    listing = hero_json("accounts", "list", data_dir=data_dir)
    assert listing["balanced"] is True
    assert set(listing["totals"].values()) <= {"0"}
    return {row["account"]: Decimal(row["balance"]["amount"]) for row in listing["accounts"]}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "payments"


@pytest.fixture
def store(data: Path) -> Iterator[EventStore]:
    store = open_store(store_url(data))
    yield store
    store.close()


def test_the_launcher_and_the_app_agree_on_the_webhook_path() -> None:
    assert LAUNCHER_WEBHOOK_PATH == WEBHOOK_PATH


# -- hero payments receive / list, hero accounts ------------------------------------------------


def test_a_provider_event_credits_once_and_the_same_file_again_is_refused(
    data: Path, tmp_path: Path
) -> None:
    event = event_file(tmp_path, "acme", "100.00")

    out = ok("payments", "receive", "--file", str(event), data_dir=data)

    assert "received payment pay-" in out
    assert "100.00 USD from acme, 9950.00 TFT credited to offtaker.acme.TFT" in out
    again = refused("payments", "receive", "--file", str(event), data_dir=data)
    assert "duplicate_event: stripe event evt_1 was received before" in again
    assert "(converted); nothing written" in again

    accounts = balances(data)
    assert accounts["offtaker.acme.TFT"] == 100 * TFT_PER_USD
    assert accounts["world.outside.TFT"] == -100 * TFT_PER_USD
    assert accounts["treasury.cooperative.USD"] == 0  # fiat in, then out to the market
    [payment] = hero_json("payments", "list", data_dir=data)
    assert (payment["provider_event_id"], payment["offtaker_id"], payment["status"]) == (
        "evt_1", "acme", "converted",
    )  # fmt: skip
    assert payment["fiat"] == {"amount": "100.00", "currency": "USD"}
    assert Decimal(payment["tft"]["amount"]) == 100 * TFT_PER_USD
    assert payment["quote_id"]


def test_a_bad_event_or_signature_is_refused_with_the_webhooks_reason(
    data: Path, tmp_path: Path
) -> None:
    number = tmp_path / "number.json"
    number.write_text(json.dumps({"provider_event_id": "e", "offtaker_id": "acme",
                                  "amount": 10, "currency": "USD"}))  # fmt: skip
    assert "refused (422): invalid_payment: amount" in refused(
        "payments", "receive", "--file", str(number), data_dir=data
    )
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    assert "refused (400): malformed_json" in refused(
        "payments", "receive", "--file", str(garbled), data_dir=data
    )
    event = event_file(tmp_path, "acme", "5.00")
    forged = "t=1700000000,v1=" + "0" * 64
    assert "refused (401): signature_invalid" in refused(
        "payments", "receive", "--file", str(event), "--signature", forged, data_dir=data
    )
    assert "no accounts yet" in ok("accounts", "list", data_dir=data)

    # A delivery signed by the provider with the secret in --secret-file is taken as is.
    secret = tmp_path / "provider.secret"
    secret.write_text("whsec_test\n")
    header = sign(b"whsec_test", int(time.time()), event.read_bytes())
    out = ok("payments", "receive", "--file", str(event), "--secret-file", str(secret),
             "--signature", header, data_dir=data)  # fmt: skip
    assert "497.5 TFT credited to offtaker.acme.TFT" in out


def test_accounts_show_lists_the_transfers_and_refuses_an_unknown_account(
    data: Path, tmp_path: Path
) -> None:
    ok("payments", "receive", "--file", str(event_file(tmp_path, "acme", "2.00")), data_dir=data)

    shown = hero_json("accounts", "show", "offtaker.acme.TFT", data_dir=data)
    assert shown["balance"] == {"amount": "199.0000000", "currency": "TFT"}
    [transfer] = shown["transfers"]
    assert (transfer["kind"], transfer["counterparty"]) == ("conversion", "world.outside.TFT")
    assert Decimal(transfer["amount"]["amount"]) == Decimal(199)

    unknown = refused("accounts", "show", "offtaker.nobody.TFT", data_dir=data)
    assert "no account offtaker.nobody.TFT in the ledger" in unknown
    assert "is not an account" in refused("accounts", "show", "nonsense", data_dir=data)


# -- hero billing run ---------------------------------------------------------------------------


def contract(store: EventStore, offtaker: str, starts_at: datetime) -> str:
    """A Grid 4 contract at 0.05 USD an hour (5 TFT at the fixed oracle), as the market
    records it -- started in the past, so that there are hours to bill."""
    created = ContractCreated(
        contract_id="ctr-1",
        negotiation_id="neg-1",
        offer_id="offer-1",
        hold_id="hold-1",
        offtaker_id=offtaker,
        workload_id="web",
        farm_id="farm-1",
        node_id="node-1",
        grid=Grid.GRID4,
        resources=Resources.from_gb(cru=2, mru_gb=4, sru_gb=50),
        price_hour=Money.of("0.05", "USD"),
        term_hours=720,
        sla=Sla(uptime_pct=Decimal(99)),
        starts_at=starts_at,
    )
    event = NewEvent.of(created, actor="test", occurred_at=starts_at)
    store.append(node_stream("node-1"), ANY_VERSION, [event], "contract-ctr-1")
    return created.contract_id


def test_billing_run_bills_each_hour_once(data: Path, store: EventStore, tmp_path: Path) -> None:
    start = hour_of(datetime.now(UTC)) - timedelta(hours=5)
    contract(store, "acme", start)
    ok("payments", "receive", "--file", str(event_file(tmp_path, "acme", "10.00")), data_dir=data)
    until = (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")  # no offset: UTC

    first = hero_json("billing", "run", "--hour", until, data_dir=data)

    assert [bill["hour"] for bill in first["bills"]] == [
        (start + timedelta(hours=n)).isoformat().replace("+00:00", "Z") for n in range(3)
    ]
    bill = first["bills"][0]
    assert (bill["contract_id"], bill["seconds"]) == ("ctr-1", 3600)
    assert [Decimal(bill[k]["amount"]) for k in ("amount", "farmer_share", "pool_share",
                                                 "threefold_share")] == [5, 3, 1, 1]  # fmt: skip
    assert first["suspended"] == first["low_balance"] == []
    assert hero_json("billing", "run", "--hour", until, data_dir=data)["bills"] == []

    # Without --hour: every hour that is over (the clock may have passed an hour meanwhile).
    before = hour_of(datetime.now(UTC))
    rest = ok("billing", "run", data_dir=data)
    after = hour_of(datetime.now(UTC))
    owed = {int((moment - start) / timedelta(hours=1)) - 3 for moment in (before, after)}
    assert any(f"billed {hours} contract-hours of 1 contract:" in rest for hours in owed), rest
    assert "nothing to bill" in ok("billing", "run", data_dir=data)

    accounts = balances(data)
    hours = len(hero_json("accounts", "show", "farmer.farm-1.TFT", data_dir=data)["transfers"])
    assert hours in {3 + owed_hours for owed_hours in owed}
    assert accounts["offtaker.acme.TFT"] == 10 * TFT_PER_USD - 5 * hours
    assert accounts["farmer.farm-1.TFT"] == 3 * hours
    assert accounts["pool.grid.TFT"] == accounts["threefold.cooperative.TFT"] == hours


def test_billing_run_refuses_a_bad_hour(data: Path) -> None:
    message = refused("billing", "run", "--hour", "yesterday", data_dir=data)
    assert "--hour must be an ISO 8601 time" in message


# -- the treasury on the stack ------------------------------------------------------------------


@pytest.mark.integration
def test_the_stack_runs_the_treasury_and_down_stops_it(data: Path, tmp_path: Path) -> None:
    up = hero("up", data_dir=data)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        components = {c["name"]: c for c in hero_json("status", data_dir=data)}
        treasury = components["treasury"]
        assert treasury["state"] == "up", treasury
        pid = treasury["pid"]
        assert isinstance(pid, int)
        assert alive(pid)
        url = f"http://{treasury['address']}{WEBHOOK_PATH}"
        assert treasury["address"].startswith("127.0.0.1:")
        assert treasury["detail"].startswith(f"webhook {url}, 0 converted, 0 billed")

        # A provider's delivery over HTTP, signed with the stack's own secret.
        secret = webhook_secret(HeroSettings(data_dir=data))
        payload = event_file(tmp_path, "acme", "20.00", "evt_http").read_bytes()
        header = sign(secret, int(time.time()), payload)
        with httpx.Client(trust_env=False, timeout=10) as client:
            response = client.post(url, content=payload, headers={"Stripe-Signature": header})
            assert response.status_code == 200, response.text
            again = client.post(url, content=payload, headers={"Stripe-Signature": header})
            assert again.status_code == 200  # a provider's redelivery: 2xx, nothing written
            assert again.json()["duplicate"] is True
        # The stack's worker converts it on its next pass.
        wait_until(
            lambda: (
                [p["status"] for p in hero_json("payments", "list", data_dir=data)] == ["converted"]
            ),
            30,
            "the stack's treasury to convert the payment",
            poll_s=0.1,
        )
        assert balances(data)["offtaker.acme.TFT"] == 20 * TFT_PER_USD
        wait_until(
            lambda: (
                "1 converted"
                in {c["name"]: c for c in hero_json("status", data_dir=data)}["treasury"]["detail"]
            ),
            10,
            "the treasury's report to count the conversion",
            poll_s=0.1,
        )
    finally:
        down = hero("down", data_dir=data)
    assert down.returncode == 0, down.stderr
    assert not alive(pid), "hero down left the treasury running"
    assert not (data / "run" / "treasury.health").exists()
    assert {c["state"] for c in hero_json("status", data_dir=data)} == {"down"}


def test_refunds_and_payouts_leave_once_and_never_overdraw(data: Path, tmp_path: Path) -> None:
    ok("payments", "receive", "--file", str(event_file(tmp_path, "acme", "10.00")), data_dir=data)
    first = ok("payments", "refund", "acme", "100", "--reason", "unused", "--command-id", "r-1",
               data_dir=data)  # fmt: skip
    assert "refund r-1: 100 TFT out of offtaker.acme.TFT" in first.replace(".00 TFT", " TFT")
    again = ok("payments", "refund", "acme", "100", "--reason", "unused", "--command-id", "r-1",
               data_dir=data)  # fmt: skip
    assert "was made before; nothing written" in again
    too_much = refused("payments", "refund", "acme", "10000", "--reason", "x",
                       "--command-id", "r-2", data_dir=data)  # fmt: skip
    assert "insufficient_funds" in too_much
    assert "nothing written" in too_much
    nothing = refused("payments", "payout", "farm-x", "1", "--command-id", "p-1", data_dir=data)
    assert "insufficient_funds: farmer.farm-x.TFT holds 0" in nothing
    # The command id is the request's idempotency key: required, and never reused for
    # another amount.
    assert "Missing option '--command-id'" in refused("payments", "payout", "farm-x", "1",
                                                      data_dir=data)  # fmt: skip
    reused = refused("payments", "refund", "acme", "50", "--reason", "unused", "--command-id",
                     "r-1", data_dir=data)  # fmt: skip
    assert "idempotency_key_reused" in reused
    assert "nothing written" in reused
    assert balances(data)["offtaker.acme.TFT"] == 10 * TFT_PER_USD - 100


@pytest.mark.parametrize("length", [185, 195])
def test_an_id_too_long_for_its_derived_ids_exits_2_naming_it(data: Path, length: int) -> None:
    """Such ids gave a traceback (195) or were accepted and broke their agent later (185)."""
    long_id = "o" * length
    refund = refused("payments", "refund", long_id, "1", "--reason", "x", "--command-id", "r",
                     data_dir=data)  # fmt: skip
    assert "Invalid value for 'offtaker'" in refund
    assert "at most 24 characters" in refund
    payout = refused("payments", "payout", long_id, "1", "--command-id", "p", data_dir=data)
    assert "Invalid value for 'farm'" in payout

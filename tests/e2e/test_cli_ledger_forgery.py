"""Money cannot be forged by a raw append (issue 13, item 4), through the real command line.

What was seen: ``hero events append`` of a one-sided ``TransferPosted`` crediting an offtaker
1,000,000 TFT was written, ``hero accounts list`` still said balanced, and a refund of the
forged TFT was accepted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hero.domain.ledger import account_stream
from hero.store import ANY_VERSION, NewEvent, open_store
from schemas import Money, TransferKind, TransferPosted
from tests.e2e._cli import hero, hero_json, store_url
from tests.e2e.test_cli_payments import event_file

pytestmark = pytest.mark.e2e

ACME = "offtaker.acme.TFT"
FORGED = TransferPosted(
    transfer_id="forged-1",
    debit_account="world.outside.TFT",
    credit_account=ACME,
    amount=Money.of("1000000", "TFT"),
    kind=TransferKind.PAYMENT,
    reference="forged-1",
)


def test_a_raw_append_of_a_money_event_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    payload = FORGED.model_dump_json()
    result = hero("events", "append", account_stream(ACME), "TransferPosted", "--payload",
                  payload, data_dir=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stdout
    message = " ".join(result.stderr.split())
    assert "TransferPosted is a money event, recorded only by the ledger service" in message
    assert "nothing was written" in message
    assert hero_json("events", "read", account_stream(ACME), data_dir=tmp_path) == []


def test_a_one_sided_leg_already_in_the_store_is_reported_and_cannot_be_refunded(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    paid = hero("payments", "receive", "--file", str(event_file(tmp_path, "acme", "2.00")),
                data_dir=data)  # fmt: skip
    assert paid.returncode == 0, paid.stderr
    store = open_store(store_url(data))
    try:  # what the raw append wrote before it was refused
        leg = NewEvent.of(FORGED, actor="cli", occurred_at=datetime.now(UTC))
        store.append(account_stream(ACME), ANY_VERSION, [leg], "forge-1")
    finally:
        store.close()

    listing = hero("accounts", "list", "--json", data_dir=data)
    assert listing.returncode == 1
    report = json.loads(listing.stdout)
    assert report["balanced"] is False
    [unbalanced] = report["unbalanced"]
    assert unbalanced["transfer_id"] == "forged-1"
    assert "only its credit leg" in unbalanced["reason"]
    balances = {row["account"]: row["balance"]["amount"] for row in report["accounts"]}
    assert balances[ACME] == "199.0000000"  # 2 USD at 99.5 TFT, the forged leg not counted
    assert "forged-1" in " ".join(listing.stderr.split())

    shown = hero_json("accounts", "show", ACME, data_dir=data)
    assert shown["balance"]["amount"] == "199.0000000"
    assert [u["transfer_id"] for u in shown["unbalanced"]] == ["forged-1"]

    refused = hero(
        "payments",
        "refund",
        "acme",
        "1000",
        "--reason",
        "forged",
        "--command-id",
        "r-forged",
        data_dir=data,
    )
    assert refused.returncode == 2
    assert "insufficient_funds" in refused.stderr
    allowed = hero(
        "payments",
        "refund",
        "acme",
        "100",
        "--reason",
        "real",
        "--command-id",
        "r-real",
        data_dir=data,
    )
    assert allowed.returncode == 0, allowed.stderr

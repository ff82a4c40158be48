"""A transfer counts only when both of its legs are recorded and agree (issue 13, item 4).

The report: a one-sided ``TransferPosted`` crediting an offtaker 1,000,000 TFT was appended by
hand; the ledger still said balanced, the CLI and the gateway disagreed on the balance, and a
refund of the forged TFT was accepted. Here the same leg is written straight into the store
(what a raw append did), and every reader -- the CLI's book, the accounts read model, the
ledger's spendable balance -- matches legs with the one rule, ``match_leg``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from hero.domain.clock import ManualClock
from hero.domain.errors import Rejected
from hero.domain.ledger import (
    AccountKind,
    Leg,
    LegProblem,
    Transfer,
    account_id,
    account_of_stream,
    account_stream,
    match_leg,
)
from hero.payments.ledger import LedgerService, read_book, read_ledger
from hero.payments.payouts import refund
from hero.readmodels.projections import fold
from hero.store import ANY_VERSION, EventStore, MemoryEventStore, NewEvent, SqliteEventStore
from schemas import REGISTRY, Money, RefundOfftaker, Topic, TransferKind, TransferPosted
from tests.unit._ledger_book import LedgerBook

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
WORLD = account_id(AccountKind.WORLD, "outside")
ACME = account_id(AccountKind.OFFTAKER, "acme")
FARMER = account_id(AccountKind.FARMER, "farm-1")
MILLION = Money.of("1000000", "TFT")


def posted(transfer_id: str, debit: str, credit: str, amount: Money) -> TransferPosted:
    return TransferPosted(
        transfer_id=transfer_id,
        debit_account=debit,
        credit_account=credit,
        amount=amount,
        kind=TransferKind.PAYMENT,
        reference=f"ref-{transfer_id}",
    )


def pair(event: TransferPosted) -> list[Leg]:
    return [Leg(event.debit_account, event), Leg(event.credit_account, event)]


def book_of(legs: list[Leg]) -> LedgerBook:
    book = LedgerBook()
    for leg in legs:
        book.add(leg)
    return book


# -- the rule, pure ---------------------------------------------------------------------------


def test_both_legs_move_the_balances_once() -> None:
    event = posted("t-1", WORLD, ACME, Money.of("40", "TFT"))
    first, second = pair(event)
    assert match_leg(None, first).waiting == first
    assert match_leg(first, second).posted == event
    book = book_of(pair(event))
    assert book.ledger.balance(ACME) == Money.of("40", "TFT")
    assert book.ledger.balance(WORLD) == Money.of("-40", "TFT")
    assert (book.unbalanced, book.balanced) == ({}, True)


def test_a_one_sided_leg_moves_nothing_and_is_named() -> None:
    forged = posted("forged-1", WORLD, ACME, MILLION)
    book = book_of([*pair(posted("t-1", WORLD, ACME, Money.of("40", "TFT"))), Leg(ACME, forged)])
    assert book.ledger.balance(ACME) == Money.of("40", "TFT")
    assert book.ledger.balance(WORLD) == Money.of("-40", "TFT")
    assert book.balanced is False
    assert list(book.unbalanced) == ["forged-1"]
    reason = book.unbalanced["forged-1"]
    assert "only its credit leg" in reason
    assert f"the debit leg on {WORLD} is missing" in reason


@pytest.mark.parametrize(
    ("second", "words"),
    [
        (Leg(ACME, posted("t-1", WORLD, ACME, MILLION)), "its legs differ"),
        (Leg(ACME, posted("t-1", FARMER, ACME, Money.of("1", "TFT"))), "different accounts"),
        (Leg(WORLD, posted("t-1", WORLD, ACME, Money.of("1", "TFT"))), "two debit legs"),
        (Leg(FARMER, posted("t-1", WORLD, ACME, Money.of("1", "TFT"))), "neither debits"),
        (Leg(None, posted("t-1", WORLD, ACME, Money.of("1", "TFT"))), "outside the accounts"),
        (Leg(ACME, posted("t-1", WORLD, ACME, Money.of("1", "USD"))), "holds TFT"),
    ],
    ids=["amount", "accounts", "same_side", "stray_stream", "no_account", "currency"],
)
def test_legs_that_do_not_agree_move_nothing_and_are_named(second: Leg, words: str) -> None:
    first = Leg(WORLD, posted("t-1", WORLD, ACME, Money.of("1", "TFT")))
    book = book_of([first, second])
    assert book.ledger.accounts == {}
    assert words in book.unbalanced["t-1"]
    assert book.balanced is False


def test_a_third_leg_is_reported_and_changes_no_balance() -> None:
    event = posted("t-1", WORLD, ACME, Money.of("5", "TFT"))
    book = book_of([*pair(event), Leg(ACME, event)])
    assert book.ledger.balance(ACME) == Money.of("5", "TFT")
    assert "a third leg" in book.unbalanced["t-1"]


# -- on the store: the CLI's book, the read model and the ledger agree -------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    clock = ManualClock(NOW)
    made: EventStore = (
        MemoryEventStore(clock)
        if request.param == "memory"
        else SqliteEventStore(tmp_path / "events.db", clock)
    )
    yield made
    made.close()


def forge(store: EventStore, event: TransferPosted, account: str) -> None:
    """One leg written straight into the store, as ``hero events append`` used to."""
    leg = NewEvent.of(event, actor="cli", occurred_at=NOW)
    store.append(account_stream(account), ANY_VERSION, [leg], f"forge-{event.transfer_id}")


def funded(store: EventStore) -> LedgerService:
    ledger = LedgerService(store, ManualClock(NOW))
    paid = Transfer("pay-1", WORLD, ACME, Money.of("50", "TFT"), TransferKind.PAYMENT, "p-1")
    ledger.post([paid], "pay-1")
    return ledger


def test_a_forged_leg_is_not_spendable_and_a_refund_of_it_is_refused(store: EventStore) -> None:
    ledger = funded(store)
    forge(store, posted("forged-1", WORLD, ACME, MILLION), ACME)
    assert ledger.account(ACME).balance == Money.of("50", "TFT")
    with pytest.raises(Rejected, match="insufficient_funds"):
        refund(ledger, RefundOfftaker(command_id="r-1", offtaker_id="acme", amount=MILLION,
                                      reason="forged"))  # fmt: skip
    refund(ledger, RefundOfftaker(command_id="r-2", offtaker_id="acme",
                                  amount=Money.of("20", "TFT"), reason="real"))  # fmt: skip
    assert LedgerService(store).account(ACME).balance == Money.of("30", "TFT")


def test_the_book_and_the_accounts_read_model_agree_and_name_the_forgery(
    store: EventStore,
) -> None:
    ledger = funded(store)
    forge(store, posted("forged-1", WORLD, ACME, MILLION), ACME)
    stranger = account_id(AccountKind.OFFTAKER, "stranger")
    forge(store, posted("forged-2", WORLD, FARMER, MILLION), stranger)  # a third's stream
    book = read_book(store)
    assert read_ledger(store).balance(ACME) == Money.of("50", "TFT")
    assert set(book.unbalanced) == {"forged-1", "forged-2"}
    assert book.problems == {"forged-1": LegProblem.ORPHAN_LEG, "forged-2": LegProblem.INVALID_LEG}
    assert stranger in book.unbalanced["forged-2"]  # the operator's view names everything
    assert book.balanced is False

    rows = store.read_all(1, 1000)
    folded = fold("accounts", ((row.envelope(), row.envelope().decode()) for row in rows))
    for account in (ACME, WORLD, FARMER):
        doc = folded.docs[account]
        assert Decimal(doc["balance"]) == book.ledger.balance(account).amount, account
        assert Decimal(doc["balance"]) == ledger.account(account).balance.amount, account
    assert folded.docs[ACME]["unbalanced"] == [{"transfer_id": "forged-1", "problem": "orphan_leg"}]
    assert folded.docs[FARMER]["unbalanced"] == [
        {"transfer_id": "forged-2", "problem": "invalid_leg"}
    ]
    # An account's owner is not shown the stranger whose stream held the stray leg.
    assert "stranger" not in json.dumps(folded.docs[FARMER])
    assert stranger not in folded.docs
    assert folded.docs[ACME]["transfers"] == 1


def test_account_of_stream() -> None:
    assert account_of_stream(account_stream(ACME)) == ACME
    assert account_of_stream("farm-1") is None
    assert account_of_stream("account-") is None


# -- the registry: money events are the ledger's ----------------------------------------------


def test_every_money_event_is_written_only_by_the_ledger() -> None:
    payments = [entry for entry in REGISTRY.entries("event") if entry.topic is Topic.PAYMENTS]
    assert {entry.type for entry in payments} >= {"TransferPosted", "UsageBilled", "FiatConverted"}
    for entry in payments:
        assert (entry.writer, entry.raw_append) == ("ledger", False), entry.type
    assert REGISTRY.entry("SlaOutcomeRecorded").raw_append is False
    assert REGISTRY.entry("FarmRegistered").raw_append is True

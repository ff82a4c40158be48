"""The ledger's read side is a view of the market model (issue 15): ``read_book`` and
``hero accounts show`` answer from the model's fold and must say exactly what the ledger's
own book (``LedgerBook``, the fold they replaced, kept in tests/unit/_ledger_book.py) said,
on the golden history and with every kind of unsound transfer added to it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hero.cli import app as hero_app
from hero.cli.accounts import TransferRow
from hero.config import HeroSettings
from hero.domain.ledger import (
    AccountKind,
    Leg,
    account_currency,
    account_id,
    account_kind,
    account_of_stream,
    account_stream,
)
from hero.market.views import json_ready
from hero.payments.ledger import read_book
from hero.store import ANY_VERSION, EventStore, NewEvent, open_store
from schemas import Envelope, Money, TransferKind, TransferPosted
from tests.unit._ledger_book import LedgerBook

GOLDEN = Path(__file__).parents[1] / "golden" / "demo-history.jsonl.gz"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
WORLD = account_id(AccountKind.WORLD, "outside")
ACME = account_id(AccountKind.OFFTAKER, "zz-acme")
STRANGER = account_id(AccountKind.OFFTAKER, "zz-stranger")
FIVE = Money.of("5", "TFT")


def _golden_legs() -> Iterator[Envelope]:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as source:
        for line in source:
            if '"TransferPosted"' in line:
                envelope = Envelope.model_validate_json(line)
                if envelope.type == "TransferPosted":
                    yield envelope


def _posted(transfer_id: str, amount: Money = FIVE, credit: str = ACME) -> TransferPosted:
    return TransferPosted(
        transfer_id=transfer_id,
        debit_account=WORLD,
        credit_account=credit,
        amount=amount,
        kind=TransferKind.PAYMENT,
        reference=f"ref-{transfer_id}",
    )


def _leg(store: EventStore, stream: str, event: TransferPosted, at: datetime = NOW) -> None:
    new = NewEvent.of(event, actor="test", occurred_at=at)
    store.append(stream, ANY_VERSION, [new], f"cmd-{new.id}")


def _golden(store: EventStore) -> TransferPosted:
    """The golden history's transfer legs, each on its stream at its time; the first one."""
    first: TransferPosted | None = None
    for envelope in _golden_legs():
        event = envelope.decode()
        assert isinstance(event, TransferPosted)
        first = first or event
        _leg(store, envelope.stream, event, envelope.occurred_at)
    assert first is not None
    return first


def _unsound(store: EventStore, first: TransferPosted) -> set[str]:
    """One transfer of every unsound kind, after the golden legs; their ids."""
    _leg(store, account_stream(ACME), _posted("zz-orphan"))  # its debit leg never comes
    _leg(store, account_stream(WORLD), _posted("zz-mismatch"))
    _leg(store, account_stream(ACME), _posted("zz-mismatch", Money.of("6", "TFT")))
    _leg(store, account_stream(first.credit_account), first)  # a third leg of a posted one
    _leg(store, account_stream(STRANGER), _posted("zz-stray"))  # a stream it does not name
    _leg(store, "contract-zz", _posted("zz-outside"))  # no account's stream at all
    # A first leg waiting, then an invalid second: the fault's reason replaces the orphan's.
    _leg(store, account_stream(WORLD), _posted("zz-waiting"))
    _leg(store, account_stream(STRANGER), _posted("zz-waiting"))
    # A sound transfer after all that: balances still move.
    _leg(store, account_stream(WORLD), _posted("zz-sound"))
    _leg(store, account_stream(ACME), _posted("zz-sound"))
    return {"zz-orphan", "zz-mismatch", first.transfer_id, "zz-stray", "zz-outside", "zz-waiting"}


def _reference(store: EventStore) -> tuple[LedgerBook, list[tuple[Envelope, TransferPosted]]]:
    book = LedgerBook()
    items = []
    for row in store.read_all(1, 100_000):
        envelope = row.envelope()
        event = envelope.decode()
        assert isinstance(event, TransferPosted)
        items.append((envelope, event))
        book.add(Leg(account_of_stream(row.stream), event))
    return book, items


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[EventStore]:
    data_dir.mkdir()
    opened = open_store(HeroSettings(data_dir=data_dir).effective_store_url)
    try:
        yield opened
    finally:
        opened.close()


def _same_report(store: EventStore) -> LedgerBook:
    report = read_book(store)
    book, _ = _reference(store)
    assert report.ledger.accounts == book.ledger.accounts
    # Equal decimals may print differently (5 and 5.0): the view prints the same digits.
    shown = {a: str(s.balance.amount) for a, s in report.ledger.accounts.items()}
    assert shown == {a: str(s.balance.amount) for a, s in book.ledger.accounts.items()}
    assert report.ledger.applied == book.ledger.applied
    assert report.ledger.totals() == book.ledger.totals()
    assert report.unbalanced == book.unbalanced
    assert report.problems == book.problems
    assert report.balanced is book.balanced
    return book


def test_read_book_answers_what_the_ledgers_own_book_did_on_the_golden_history(store):
    _golden(store)
    book = _same_report(store)
    assert len(book.ledger.applied) > 400
    assert book.balanced  # the demo's ledger is sound


def test_read_book_names_every_unsound_transfer_with_the_books_code_and_reason(store):
    unsound = _unsound(store, _golden(store))
    book = _same_report(store)
    assert set(book.unbalanced) == unsound
    assert {p.value for p in book.problems.values()} == {
        "orphan_leg",
        "mismatched_legs",
        "third_leg",
        "invalid_leg",
    }
    assert STRANGER in read_book(store).unbalanced["zz-waiting"]  # the reason, not the orphan's
    assert read_book(store).balanced is False


def _old_show(items: list[tuple[Envelope, TransferPosted]], account: str) -> dict[str, Any]:
    """``hero accounts show --json`` as the command folded it before: its own LedgerBook."""
    book = LedgerBook()
    balance = Money.zero(account_currency(account))
    rows: list[TransferRow] = []
    touching: set[str] = set()
    for envelope, event in items:
        leg = Leg(account_of_stream(envelope.stream), event)
        if account in (leg.account, event.debit_account, event.credit_account):
            touching.add(event.transfer_id)
        posted = book.add(leg)
        if posted is None or account not in (posted.debit_account, posted.credit_account):
            continue
        credited = posted.credit_account == account
        amount = posted.amount if credited else -posted.amount
        balance = balance + amount
        counterparty = posted.debit_account if credited else posted.credit_account
        tid = posted.transfer_id
        at = envelope.occurred_at
        kind, reference = posted.kind.value, posted.reference
        rows.append(TransferRow(tid, kind, counterparty, amount, balance, reference, at))
    unbalanced = [
        {"transfer_id": tid, "problem": book.problems[tid].value, "reason": reason}
        for tid, reason in book.unbalanced.items()
        if tid in touching
    ]
    shown = {"account": account, "kind": account_kind(account).value, "balance": balance,
             "transfers": rows, "unbalanced": unbalanced}  # fmt: skip
    loaded: dict[str, Any] = json.loads(json.dumps(json_ready(shown), default=str))
    return loaded


def test_accounts_show_lists_what_the_old_fold_listed_for_every_account(store, data_dir):
    _unsound(store, _golden(store))
    _, items = _reference(store)
    accounts = sorted({a for _, e in items for a in (e.debit_account, e.credit_account)})
    assert len(accounts) > 10
    assert ACME in accounts
    runner = CliRunner()
    for account in accounts:
        result = runner.invoke(
            hero_app, ["accounts", "show", account, "--data-dir", str(data_dir), "--json"]
        )
        assert result.exit_code == 0, (account, result.output)
        assert json.loads(result.stdout) == _old_show(items, account), account
    acme = json.loads(runner.invoke(hero_app, ["accounts", "show", ACME, "--data-dir",
                                               str(data_dir), "--json"]).stdout)  # fmt: skip
    assert [row["transfer_id"] for row in acme["transfers"]] == ["zz-sound"]
    named = {"zz-orphan", "zz-mismatch", "zz-stray", "zz-outside", "zz-waiting"}
    assert {u["transfer_id"] for u in acme["unbalanced"]} == named

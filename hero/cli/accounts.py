"""``hero accounts list|show``: the ledger's accounts, their balances folded from the store's
transfers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hero.cli.common import (
    AsJson,
    AsOfOption,
    DataDir,
    console,
    fail,
    print_json,
    warn_skipped,
)
from hero.cli.market import (
    opened_store,
)
from hero.cli.tables import (
    fmt_count,
    fmt_money,
    fmt_when,
)
from hero.domain.errors import Rejected
from hero.domain.ledger import (
    AccountKind,
    account_currency,
    account_kind,
    account_of_stream,
)
from hero.market.views import json_ready
from hero.model import MarketState, apply
from hero.payments.ledger import ledger_report, read_book, transfer_items
from hero.store import EventStore
from schemas import (
    Money,
)

__all__ = ["AccountRow", "TransferRow", "accounts_app"]

accounts_app = typer.Typer(
    help="The ledger's accounts: balances and transfers.", no_args_is_help=True
)

_KIND_ORDER = {kind.value: number for number, kind in enumerate(AccountKind)}


# -- rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountRow:
    account: str
    kind: str
    owner: str
    currency: str
    balance: Money
    transfers: int


@dataclass(frozen=True)
class TransferRow:
    transfer_id: str
    kind: str
    counterparty: str
    amount: Money
    """Signed: positive when the account was credited, negative when it was debited."""
    balance: Money
    """The account's balance once this transfer was applied."""
    reference: str
    at: datetime


def _plain(value: Decimal) -> str:
    """A decimal as text without exponent or trailing zeros (``0``, ``12.5``)."""
    return f"{value.normalize():f}" if value else "0"


def _signed(money: Money) -> str:
    text = fmt_money(money)
    return text if money.is_negative else f"+{text}"


# -- hero accounts --------------------------------------------------------------------------------


@accounts_app.command("list")
def accounts_list(
    data_dir: DataDir = None, as_of: AsOfOption = None, as_json: AsJson = False
) -> None:
    """Every account with its balance, the sum per currency (zero), and any unsound transfer.

    Balanced means every transfer has both legs, equal in accounts, amount and currency, and
    every currency sums to zero; a one-sided or mismatched leg is named by its transfer id.
    """
    with opened_store(data_dir, as_of) as store:
        book = read_book(store, on_skip=warn_skipped)
    ledger = book.ledger
    rows = sorted(
        (
            AccountRow(
                account=state.account,
                kind=account_kind(state.account).value,
                owner=state.account.split(".", 1)[1].rsplit(".", 1)[0],
                currency=state.balance.currency.value,
                balance=state.balance,
                transfers=state.transfers,
            )
            for state in ledger.accounts.values()
        ),
        key=lambda row: (_KIND_ORDER.get(row.kind, 99), row.account),
    )
    totals = {currency.value: total for currency, total in sorted(ledger.totals().items())}
    unbalanced = book.unbalanced
    balanced = book.balanced
    if as_json:
        print_json(
            {
                "accounts": json_ready(rows),
                "totals": {currency: _plain(total) for currency, total in totals.items()},
                "balanced": balanced,
                "unbalanced": [
                    {"transfer_id": tid, "problem": book.problems[tid].value, "reason": reason}
                    for tid, reason in unbalanced.items()
                ],
            }
        )
    elif not rows and not unbalanced:
        console.print("no accounts yet: nothing was paid or billed")
    else:
        table = Table("account", "kind", "currency", "balance", "transfers")
        for row in rows:
            balance = fmt_money(row.balance)
            if row.balance.is_negative:
                balance = f"[yellow]{balance}[/]"  # only the outside world's accounts
            table.add_row(row.account, row.kind, row.currency, balance, str(row.transfers))
        console.print(table)
        sums = ", ".join(f"{currency} {_plain(total)}" for currency, total in totals.items())
        verdict = "[green]balanced[/]" if balanced else "[bold red]NOT balanced[/]"
        console.print(f"totals: {sums or 'none'} ({verdict})")
        for transfer_id, reason in unbalanced.items():
            console.print(escape(f"unbalanced transfer {transfer_id}: {reason}"))
    if unbalanced:
        # Counted for nothing in any balance; the ids say which rows to look at.
        fail(escape(f"transfers without two matching legs: {', '.join(unbalanced)}"), code=1)
    if not balanced:
        # Every transfer debits what it credits: a non-zero sum means a broken store.
        fail(f"the ledger does not sum to zero: {totals}", code=1)


def _checked_account(account: str) -> str:
    try:
        account_kind(account)
        account_currency(account)
    except Rejected:
        fail(
            escape(
                f"{account!r} is not an account: accounts are KIND.OWNER.CURRENCY, "
                "e.g. offtaker.acme.TFT (hero accounts list shows them)"
            )
        )
    if account.count(".") < 2:
        fail(escape(f"{account!r} is not KIND.OWNER.CURRENCY, e.g. offtaker.acme.TFT"))
    return account


@dataclass(frozen=True)
class _AccountHistory:
    rows: list[TransferRow]
    balance: Money
    unbalanced: dict[str, str]
    """The unsound transfers any of whose legs names the account or sits on its stream."""
    problems: dict[str, str]
    """Their problem codes (``LedgerReport.problems``)."""


def _account_history(store: EventStore, account: str) -> _AccountHistory:
    """The account's matched transfers, oldest first, with its balance after each.

    A view over the market model, folded leg by leg: when the account's transfer count grows,
    the leg just folded completed a transfer naming it, the newest line of its book.
    """
    state = MarketState()
    zero = Money.zero(account_currency(account))
    rows: list[TransferRow] = []
    touching: set[str] = set()
    for envelope, event in transfer_items(store, on_skip=warn_skipped):
        if account in (
            account_of_stream(envelope.stream),
            event.debit_account,
            event.credit_account,
        ):
            touching.add(event.transfer_id)
        before = _transfers_of(state, account)
        apply(state, envelope, event)
        if _transfers_of(state, account) > before:
            rows.append(_transfer_row(state, account))
    report = ledger_report(state)
    unbalanced = {tid: why for tid, why in report.unbalanced.items() if tid in touching}
    problems = {tid: report.problems[tid].value for tid in unbalanced}
    return _AccountHistory(rows, rows[-1].balance if rows else zero, unbalanced, problems)


def _transfers_of(state: MarketState, account: str) -> int:
    found = state.accounts.get(account)
    return found.transfers if found is not None else 0


def _transfer_row(state: MarketState, account: str) -> TransferRow:
    """The transfer the model just posted on ``account``, with the balance it left."""
    line = state.books[account].lines[0]
    held = state.accounts[account]
    currency = held.currency
    return TransferRow(
        transfer_id=line.transfer_id,
        kind=line.kind.value,
        counterparty=line.counterparty,
        amount=Money.of(line.amount if line.credit else -line.amount, currency),
        balance=Money.of(held.balance, currency),
        reference=line.reference,
        at=line.at,
    )


@accounts_app.command("show")
def accounts_show(
    account: Annotated[str, typer.Argument(help="KIND.OWNER.CURRENCY, e.g. offtaker.acme.TFT")],
    data_dir: DataDir = None,
    as_of: AsOfOption = None,
    as_json: AsJson = False,
) -> None:
    """An account's balance and its transfers, newest last (matched transfers only)."""
    _checked_account(account)
    with opened_store(data_dir, as_of) as store:
        history = _account_history(store, account)
    rows, balance, unbalanced = history.rows, history.balance, history.unbalanced
    if not rows and not unbalanced:
        fail(escape(f"no account {account} in the ledger (hero accounts list shows them)"))
    if as_json:
        print_json(
            json_ready(
                {
                    "account": account,
                    "kind": account_kind(account).value,
                    "balance": balance,
                    "transfers": rows,
                    "unbalanced": [
                        {"transfer_id": tid, "problem": history.problems[tid], "reason": reason}
                        for tid, reason in unbalanced.items()
                    ],
                }
            )
        )
        return
    table = Table("time (UTC)", "transfer", "kind", "counterparty", "amount", "balance",
                  "reference", title=account)  # fmt: skip
    for t in rows:
        colour = "red" if t.amount.is_negative else "green"
        table.add_row(
            fmt_when(t.at),
            t.transfer_id,
            t.kind,
            t.counterparty,
            f"[{colour}]{_signed(t.amount)}[/]",
            fmt_money(t.balance),
            t.reference,
        )
    console.print(table)
    console.print(
        f"balance of {account}: [bold]{fmt_money(balance)}[/] ({fmt_count(len(rows), 'transfer')})"
    )
    for transfer_id, reason in unbalanced.items():
        console.print(escape(f"unbalanced transfer {transfer_id} (not counted): {reason}"))

"""Payments by hand: the ledger's accounts, fiat payments, billing, and the treasury process.

* ``hero accounts list|show`` -- balances folded from the store's transfers;
* ``hero payments list|receive|serve`` -- payments received and converted to TFT; re-inject a
  provider's event from a file; run the treasury (webhook + worker) in the foreground;
* ``hero billing run`` -- bill the contract-hours that are over, once, in this process.

Like the market commands, every command opens the event store named by the settings, so it
works whether the stack runs or not; writes go through the same services the treasury uses,
whose command ids make a repeated write a no-op.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hero.cli.common import (
    AsJson,
    AsOfOption,
    DataDir,
    checked_id,
    console,
    fail,
    print_json,
    settings_for,
    warn_skipped,
)
from hero.cli.market import fmt_money, opened_store
from hero.config import LOOPBACK, HeroSettings, mask_url
from hero.domain.clock import Clock, SystemClock
from hero.domain.errors import Rejected
from hero.domain.ledger import (
    AccountKind,
    LedgerBook,
    Leg,
    account_currency,
    account_kind,
    account_of_stream,
)
from hero.market.views import json_ready
from hero.payments.billing import BillingReport, BillingService
from hero.payments.ledger import read_book
from hero.store import EventStore, StoreError, readable_events, recorded_after
from schemas import (
    FiatConverted,
    FiatPaymentReceived,
    Money,
    PayOutFarmer,
    RefundOfftaker,
)
from schemas.ids import CommandId, FarmId, OfftakerId

__all__ = [
    "AccountRow",
    "PaymentRow",
    "TransferRow",
    "accounts_app",
    "billing_app",
    "billing_service",
    "bills_table",
    "payment_row",
    "payments_app",
    "print_report",
    "read_payments",
    "report_json",
]

accounts_app = typer.Typer(
    help="The ledger's accounts: balances and transfers.", no_args_is_help=True
)
payments_app = typer.Typer(
    help="Fiat payments: received by the webhook, converted to TFT.", no_args_is_help=True
)
billing_app = typer.Typer(help="Hourly billing of the contracts.", no_args_is_help=True)

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


@dataclass
class PaymentRow:
    payment_id: str
    provider: str
    provider_event_id: str
    offtaker_id: str
    fiat: Money
    status: str
    """``received`` until converted to TFT, then ``converted``."""
    received_at: datetime
    tft: Money | None = None
    quote_id: str | None = None
    converted_at: datetime | None = None


def _plain(value: Decimal) -> str:
    """A decimal as text without exponent or trailing zeros (``0``, ``12.5``)."""
    return f"{value.normalize():f}" if value else "0"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _signed(money: Money) -> str:
    text = fmt_money(money)
    return text if money.is_negative else f"+{text}"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _rows_of_type(store: EventStore, types: set[str], batch: int = 5000) -> Iterator[Any]:
    """(envelope, event) of every recorded event of ``types``, in log order."""
    rows = recorded_after(store, 0, batch)
    for _, envelope, event in readable_events(rows, warn_skipped, types=types):
        yield envelope, event


def read_payments(store: EventStore) -> list[PaymentRow]:
    """Every payment received, oldest first, with its conversion when there is one."""
    payments: dict[str, PaymentRow] = {}
    for envelope, event in _rows_of_type(store, {"FiatPaymentReceived", "FiatConverted"}):
        if isinstance(event, FiatPaymentReceived):
            payments.setdefault(
                event.payment_id,
                PaymentRow(
                    payment_id=event.payment_id,
                    provider=event.provider,
                    provider_event_id=event.provider_event_id,
                    offtaker_id=event.offtaker_id,
                    fiat=event.amount,
                    status="received",
                    received_at=envelope.occurred_at,
                ),
            )
        elif isinstance(event, FiatConverted) and event.payment_id in payments:
            payment = payments[event.payment_id]
            payment.status = "converted"
            payment.tft, payment.quote_id = event.tft, event.quote_id
            payment.converted_at = envelope.occurred_at
    return list(payments.values())


def payment_row(store: EventStore, payment_id: str) -> PaymentRow | None:
    """One payment from its own stream, None when it was never received."""
    from agents.treasury.service import payment_stream

    found: PaymentRow | None = None
    rows = store.read_stream(payment_stream(payment_id))
    for _, envelope, event in readable_events(rows, warn_skipped):
        if isinstance(event, FiatPaymentReceived):
            found = PaymentRow(
                payment_id=event.payment_id,
                provider=event.provider,
                provider_event_id=event.provider_event_id,
                offtaker_id=event.offtaker_id,
                fiat=event.amount,
                status="received",
                received_at=envelope.occurred_at,
            )
        elif isinstance(event, FiatConverted) and found is not None:
            found.status = "converted"
            found.tft, found.quote_id = event.tft, event.quote_id
            found.converted_at = envelope.occurred_at
    return found


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
    """Their problem codes (``LedgerBook.problems``)."""


def _account_history(store: EventStore, account: str) -> _AccountHistory:
    """The account's matched transfers, oldest first, with its balance after each."""
    book = LedgerBook()
    balance = Money.zero(account_currency(account))
    rows: list[TransferRow] = []
    touching: set[str] = set()
    for envelope, event in _rows_of_type(store, {"TransferPosted"}):
        leg = Leg(account_of_stream(envelope.stream), event)
        if account in (leg.account, event.debit_account, event.credit_account):
            touching.add(event.transfer_id)
        posted = book.add(leg)
        if posted is None or account not in (posted.debit_account, posted.credit_account):
            continue
        credited = posted.credit_account == account
        amount = posted.amount if credited else -posted.amount
        balance = balance + amount
        rows.append(
            TransferRow(
                transfer_id=posted.transfer_id,
                kind=posted.kind.value,
                counterparty=posted.debit_account if credited else posted.credit_account,
                amount=amount,
                balance=balance,
                reference=posted.reference,
                at=envelope.occurred_at,
            )
        )
    unbalanced = {tid: why for tid, why in book.unbalanced.items() if tid in touching}
    problems = {tid: book.problems[tid].value for tid in unbalanced}
    return _AccountHistory(rows, balance, unbalanced, problems)


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
            _when(t.at),
            t.transfer_id,
            t.kind,
            t.counterparty,
            f"[{colour}]{_signed(t.amount)}[/]",
            fmt_money(t.balance),
            t.reference,
        )
    console.print(table)
    console.print(
        f"balance of {account}: [bold]{fmt_money(balance)}[/] ({_count(len(rows), 'transfer')})"
    )
    for transfer_id, reason in unbalanced.items():
        console.print(escape(f"unbalanced transfer {transfer_id} (not counted): {reason}"))


# -- hero payments --------------------------------------------------------------------------------


@payments_app.command("list")
def payments_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Payments received, oldest first: fiat in, and the TFT credited once converted."""
    with opened_store(data_dir) as store:
        payments = read_payments(store)
    if as_json:
        print_json(json_ready(payments))
        return
    if not payments:
        console.print("no payments received yet")
        return
    table = Table("payment", "provider event", "offtaker", "fiat", "status", "TFT credited",
                  "quote", "received (UTC)")  # fmt: skip
    for p in payments:
        status = "[green]converted[/]" if p.status == "converted" else "[yellow]received[/]"
        table.add_row(
            p.payment_id,
            f"{p.provider}:{p.provider_event_id}",
            p.offtaker_id,
            fmt_money(p.fiat),
            status,
            fmt_money(p.tft) if p.tft else "-",
            p.quote_id or "-",
            _when(p.received_at),
        )
    console.print(table)


def _read_payload(file: Path) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as error:
        fail(escape(f"cannot read {file}: {error.strerror or error}"))


def _secret(settings: HeroSettings, secret_file: Path | None) -> bytes:
    from agents.treasury.runtime import webhook_secret

    if secret_file is None:
        return webhook_secret(settings)
    try:
        secret = secret_file.read_bytes().strip()
    except OSError as error:
        fail(escape(f"--secret-file: cannot read {secret_file}: {error.strerror or error}"))
    if not secret:
        fail(escape(f"--secret-file: {secret_file} is empty"))
    return secret


@payments_app.command("receive")
def payments_receive(
    file: Annotated[
        Path,
        typer.Option(
            "--file", help="the provider's event body (JSON), exactly as delivered; - for stdin"
        ),
    ],
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file",
            help="the webhook secret [default: HERO_WEBHOOK_SECRET or <data dir>/treasury.secret]",
            show_default=False,
        ),
    ] = None,
    signature: Annotated[
        str | None,
        typer.Option(
            "--signature",
            help="the delivery's signature header (t=...,v1=...); without it the body is "
            "signed here, now, with the secret",
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Receive one payment event as the webhook would, then convert it to TFT at once.

    An operator's tool, e.g. to re-inject a provider's event. The body is verified by the
    webhook's own checks; a provider event is received once (a second time exits 2, nothing
    written).
    """
    from agents.treasury.runtime import oracle_from, quote_policy
    from agents.treasury.service import TreasuryService
    from agents.treasury.webhook import WebhookRefused, receive, sign

    settings = settings_for(data_dir)
    payload = _read_payload(file)
    secret = _secret(settings, secret_file)
    clock = SystemClock()
    now = clock.now()
    header = signature if signature is not None else sign(secret, int(now.timestamp()), payload)
    try:
        notice = receive(header, payload, secret, now=now, tolerance_s=settings.webhook_tolerance_s)
    except WebhookRefused as refused:
        fail(escape(f"{file} refused ({refused.status}): {refused.reason}; nothing written"))
    try:
        oracle = oracle_from(settings, clock)
    except ValueError as error:
        fail(escape(str(error)))
    with opened_store(data_dir) as store:
        treasury = TreasuryService(store, oracle, clock, policy=quote_policy(settings))
        try:
            result = treasury.receive(notice)
        except (Rejected, StoreError) as error:
            fail(escape(f"cannot record the payment: {error}"), code=1)
        if result.duplicate:
            known = payment_row(store, result.payment_id)
            state = known.status if known is not None else "received"
            fail(
                escape(
                    f"duplicate_event: {notice.provider} event {notice.provider_event_id} was "
                    f"received before as payment {result.payment_id} ({state}); nothing written"
                )
            )
        # Converted here rather than on the treasury's next pass: the operator sees the TFT.
        # Other pending payments convert too -- exactly what that pass would do.
        try:
            _, failures = treasury.convert_pending()
        except (Rejected, StoreError) as error:
            fail(
                escape(
                    f"payment {result.payment_id} received but not converted ({error}); "
                    "the treasury converts it on its next pass"
                ),
                code=1,
            )
        payment = payment_row(store, result.payment_id)
    assert payment is not None  # just recorded
    if as_json:
        print_json(json_ready(payment))
    if payment.tft is None:
        reasons = [f.reason for f in failures if f.payment_id == payment.payment_id]
        why = reasons[0] if reasons else "converted by another process meanwhile?"
        fail(
            escape(
                f"payment {payment.payment_id} received but not converted yet ({why}); "
                "the treasury converts it on its next pass"
            ),
            code=1,
        )
    if not as_json:
        account = f"offtaker.{payment.offtaker_id}.TFT"
        console.print(
            f"received payment [bold]{payment.payment_id}[/] "
            f"({escape(payment.provider)} event {escape(payment.provider_event_id)}): "
            f"{fmt_money(payment.fiat)} from {payment.offtaker_id}, "
            f"[bold]{fmt_money(payment.tft)}[/] credited to {account} "
            f"(quote {payment.quote_id})"
        )


@payments_app.command("serve")
def payments_serve(
    port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="[default: HERO_TREASURY_PORT, else a free port]",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(min=0.1, help="seconds between conversion and billing passes"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the treasury in the foreground: the payment webhook, converting and billing.

    The same process `hero up` starts (``python -m agents.treasury``); Ctrl-C stops it.
    """
    from infra.ports import free_ports
    from infra.processes import settings_env
    from infra.treasury import TREASURY_COMMAND, WEBHOOK_PATH

    settings = settings_for(data_dir)
    chosen = port or settings.treasury_port or free_ports(1, LOOPBACK)[0]
    command = [*TREASURY_COMMAND, "--port", str(chosen)]
    if interval is not None:
        command += ["--interval", str(interval)]
    env = settings_env(settings, os.environ)
    env["HERO_DATA_DIR"] = str(settings.data_dir)
    console.print(
        f"treasury: webhook on http://{LOOPBACK}:{chosen}{WEBHOOK_PATH}, "
        f"store {mask_url(settings.effective_store_url)} (Ctrl-C stops it)"
    )
    sys.stdout.flush()
    # Replaces this process: signals reach the treasury directly, and so does its exit code.
    os.execve(command[0], command, env)


def _tft(amount: str) -> Money:
    try:
        money = Money.of(amount, "TFT")
    except (ValueError, TypeError) as error:
        fail(f"AMOUNT must be a TFT amount such as 12.5 (7 places at most): {error}")
    if money.amount <= 0:
        fail(f"AMOUNT must be above zero, got {amount}; nothing written")
    return money


#: Money leaving the grid is sent with an id of the caller's, like a payment provider's
#: idempotency key: a retry with the same id pays once, the same id for another request is
#: refused.
CommandIdOption = Annotated[
    str,
    typer.Option(
        help="required: the request's idempotency key; repeat it to retry safely",
        callback=checked_id(CommandId),
        show_default=False,
    ),
]


def _send_out(
    data_dir: Path | None, command: PayOutFarmer | RefundOfftaker, what: str, account: str
) -> None:
    from hero.payments.ledger import LedgerService
    from hero.payments.payouts import pay_out, refund

    with opened_store(data_dir) as store:
        ledger = LedgerService(store)
        try:
            result = (
                pay_out(ledger, command)
                if isinstance(command, PayOutFarmer)
                else refund(ledger, command)
            )
        except Rejected as error:
            fail(f"{what} refused: {error}; nothing written")
        balance = ledger.account(account).balance
    if result.duplicate:
        console.print(f"{what} {command.command_id} was made before; nothing written")
    else:
        console.print(f"{what} {command.command_id}: {fmt_money(command.amount)} out of {account}")
    console.print(f"{account} now holds {fmt_money(balance)}")


@payments_app.command("payout")
def payments_payout(
    farm: Annotated[
        str, typer.Argument(help="the farm whose TFT goes out", callback=checked_id(FarmId))
    ],
    amount: Annotated[str, typer.Argument(help="TFT, e.g. 12.5")],
    command_id: CommandIdOption,
    data_dir: DataDir = None,
) -> None:
    """Pay a farmer's TFT out of the grid (to its Stellar address); once per command id."""
    command = PayOutFarmer(command_id=command_id, farm_id=farm, amount=_tft(amount))
    _send_out(data_dir, command, "payout", f"farmer.{farm}.TFT")


@payments_app.command("refund")
def payments_refund(
    offtaker: Annotated[
        str, typer.Argument(help="the offtaker refunded", callback=checked_id(OfftakerId))
    ],
    amount: Annotated[str, typer.Argument(help="TFT, e.g. 12.5")],
    reason: Annotated[str, typer.Option(help="why, recorded with the refund")],
    command_id: CommandIdOption,
    data_dir: DataDir = None,
) -> None:
    """Return an offtaker's TFT to the outside world; once per command id."""
    command = RefundOfftaker(
        command_id=command_id,
        offtaker_id=offtaker,
        amount=_tft(amount),
        reason=reason,
    )
    _send_out(data_dir, command, "refund", f"offtaker.{offtaker}.TFT")


# -- hero billing ---------------------------------------------------------------------------------


def _hour(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(escape(f"--hour must be an ISO 8601 time such as 2026-01-01T13:00Z, got {text!r}"))
    # A time without an offset is read as UTC: billing hours are UTC hours.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def billing_service(settings: HeroSettings, store: EventStore, clock: Clock) -> BillingService:
    """Billing as the treasury runs it: the settings' oracle, split, grace and pricing."""
    from agents.treasury.runtime import billing_settings, oracle_from

    try:
        oracle = oracle_from(settings, clock)
        terms = billing_settings(settings)
    except ValueError as error:  # a bad split, pricing policy or oracle in the settings
        fail(escape(str(error)))
    return BillingService(store, lambda: oracle.rate("USD").tft_per_unit, clock, settings=terms)


def bills_table(report: BillingReport, title: str | None = None) -> Table:
    table = Table("contract", "offtaker", "hour (UTC)", "seconds", "USD", "TFT", "farmer",
                  "pool", "ThreeFold", title=title)  # fmt: skip
    for bill in report.bills:
        table.add_row(
            bill.contract_id,
            bill.offtaker_id,
            bill.hour.astimezone(UTC).strftime("%Y-%m-%d %H:00"),
            str(bill.seconds),
            fmt_money(bill.usd),
            fmt_money(bill.amount),
            fmt_money(bill.farmer_share),
            fmt_money(bill.pool_share),
            fmt_money(bill.threefold_share),
        )
    return table


def report_json(report: BillingReport) -> dict[str, Any]:
    return {
        "bills": [bill.model_dump(mode="json") for bill in report.bills],
        "total": report.total.model_dump(mode="json"),
        "suspended": report.suspended,
        "resumed": report.resumed,
        "cancelled": report.cancelled,
        "low_balance": report.low_balance,
    }


def print_report(report: BillingReport, say: Callable[[str], None]) -> None:
    notes = [
        ("suspended (out of funds)", report.suspended, "red"),
        ("resumed", report.resumed, "green"),
        ("cancelled (grace period over)", report.cancelled, "red"),
        ("low balance", report.low_balance, "yellow"),
    ]
    for what, items, colour in notes:
        if items:
            say(f"[{colour}]{what}:[/] {', '.join(items)}")


@billing_app.command("run")
def billing_run(
    hour: Annotated[
        str | None,
        typer.Option(
            "--hour",
            help="bill up to this hour, included (ISO 8601; UTC without an offset) "
            "[default: every hour that is over]",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Bill every contract-hour that is over, once; suspend, resume or cancel on funds.

    The treasury does this every few seconds while the stack runs; a contract-hour is never
    billed twice, whoever bills it first.
    """
    until = _hour(hour)
    settings = settings_for(data_dir)
    with opened_store(data_dir) as store:
        billing = billing_service(settings, store, SystemClock())
        try:
            report = billing.run(until_hour=until)
        except (Rejected, StoreError) as error:
            fail(escape(f"billing stopped: {error}"), code=1)
        except Exception as error:  # the oracle (a live price source) failing, mostly
            from agents.treasury.oracle import OracleError

            if not isinstance(error, OracleError):
                raise
            fail(escape(f"no TFT price: {error}"), code=1)
    if as_json:
        print_json(report_json(report))
        return
    if report.bills:
        console.print(bills_table(report))
        contracts = len({bill.contract_id for bill in report.bills})
        console.print(
            f"billed {_count(len(report.bills), 'contract-hour')} of "
            f"{_count(contracts, 'contract')}: [bold]{fmt_money(report.total)}[/]"
        )
    elif report.suspended:
        console.print("nothing billed: the hours due found no funds")
    else:
        console.print("nothing to bill: every hour that is over was billed before")
    print_report(report, console.print)

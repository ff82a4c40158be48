"""``hero payments list|receive|serve|payout|refund``: fiat payments received and converted to
TFT, a provider's event re-injected from a file, the treasury (webhook + worker) in the
foreground, and money sent out of the grid.

Writes go through the same services the treasury uses, whose command ids make a repeated write
a no-op.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hero.cli.common import (
    AsJson,
    DataDir,
    checked_id,
    console,
    fail,
    print_json,
    settings_for,
    warn_skipped,
)
from hero.cli.market import (
    events_of_type,
    opened_store,
)
from hero.cli.tables import (
    fmt_money,
    fmt_when,
)
from hero.config import LOOPBACK, HeroSettings, mask_url
from hero.domain.clock import SystemClock
from hero.domain.errors import Rejected
from hero.market.views import json_ready
from hero.store import EventStore, StoreError, readable_events
from schemas import (
    FiatConverted,
    FiatPaymentReceived,
    Money,
    PayOutFarmer,
    RefundOfftaker,
)
from schemas.ids import CommandId, FarmId, OfftakerId

__all__ = ["PaymentRow", "payment_row", "payments_app", "read_payments"]

payments_app = typer.Typer(
    help="Fiat payments: received by the webhook, converted to TFT.", no_args_is_help=True
)


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


def _fold_payments(pairs: Iterable[Any]) -> dict[str, PaymentRow]:
    """Payments by id from (envelope, event) pairs: received, then converted when it was."""
    payments: dict[str, PaymentRow] = {}
    for envelope, event in pairs:
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
    return payments


def read_payments(store: EventStore) -> list[PaymentRow]:
    """Every payment received, oldest first, with its conversion when there is one."""
    types = {"FiatPaymentReceived", "FiatConverted"}
    return list(_fold_payments(events_of_type(store, types)).values())


def payment_row(store: EventStore, payment_id: str) -> PaymentRow | None:
    """One payment from its own stream, None when it was never received."""
    from agents.treasury.service import payment_stream

    rows = store.read_stream(payment_stream(payment_id))
    pairs = ((envelope, event) for _, envelope, event in readable_events(rows, warn_skipped))
    return _fold_payments(pairs).get(payment_id)


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
            fmt_when(p.received_at),
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

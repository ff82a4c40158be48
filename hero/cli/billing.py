"""``hero billing run``: bill the contract-hours that are over, once, in this process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hero.cli.common import (
    AsJson,
    DataDir,
    console,
    fail,
    print_json,
    settings_for,
)
from hero.cli.market import (
    opened_store,
)
from hero.cli.tables import (
    fmt_count,
    fmt_money,
)
from hero.config import HeroSettings
from hero.domain.clock import Clock, SystemClock
from hero.domain.errors import Rejected
from hero.payments.billing import BillingReport, BillingService
from hero.store import EventStore, StoreError

__all__ = ["billing_app", "billing_service", "bills_table", "print_report", "report_json"]

billing_app = typer.Typer(help="Hourly billing of the contracts.", no_args_is_help=True)


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
            f"billed {fmt_count(len(report.bills), 'contract-hour')} of "
            f"{fmt_count(contracts, 'contract')}: [bold]{fmt_money(report.total)}[/]"
        )
    elif report.suspended:
        console.print("nothing billed: the hours due found no funds")
    else:
        console.print("nothing to bill: every hour that is over was billed before")
    print_report(report, console.print)

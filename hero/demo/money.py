"""The demo's money act: the offtakers top up through the treasury's payment webhook, the demo
bills a few hours of its contracts on a clock fast-forwarded by ``BILLED_HOURS`` and reports who
was paid, the SLA refund and whether the ledger still sums to zero.

:mod:`hero.demo.run` runs it after the market and scaling acts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from rich.table import Table

from hero.cli.billing import billing_service, print_report
from hero.cli.common import fail
from hero.cli.payments import PaymentRow, payment_row
from hero.cli.tables import fmt_money
from hero.demo.scenario import Scenario
from hero.demo.settle import POLL_S
from hero.domain.clock import ManualClock, SystemClock
from hero.domain.ledger import AccountKind, account_id
from hero.market.views import (
    ContractRow,
)
from hero.payments.billing import BillingReport, billing_stream
from hero.payments.ledger import read_book
from hero.store import EventStore
from infra import LocalStack
from schemas import (
    Money,
    UsageBilled,
)

if TYPE_CHECKING:
    from hero.config import HeroSettings

__all__ = ["BILLED_HOURS", "Payments", "pay_and_bill", "treasury_for"]

BILLED_HOURS = 3
"""How far ahead the demo's billing clock runs: the contracts are seconds old, and billing
only charges hours that are over."""


# -- payments -------------------------------------------------------------------------------------


class Treasury(Protocol):
    description: str

    def deliver(self, payload: bytes) -> str:
        """Hand a signed payment event to the treasury; the payment's id."""

    def step(self) -> None:
        """Let it convert what it received (the stack's treasury does so by itself)."""


class StackTreasury:
    """The treasury ``hero up`` started: payment events go to its webhook over HTTP."""

    def __init__(self, base_url: str, secret: bytes):
        from infra.treasury import WEBHOOK_PATH

        self.url = f"{base_url}{WEBHOOK_PATH}"
        self.description = f"the stack's treasury ({self.url})"
        self._secret = secret

    def deliver(self, payload: bytes) -> str:
        import httpx

        from agents.treasury.webhook import sign

        header = sign(self._secret, int(time.time()), payload)
        try:
            # Loopback only: no proxy from the environment may stand in between.
            with httpx.Client(timeout=10.0, trust_env=False) as client:
                response = client.post(
                    self.url,
                    content=payload,
                    headers={"Hero-Signature": header, "Content-Type": "application/json"},
                )
        except httpx.HTTPError as error:
            fail(f"the stack's treasury at {self.url} did not answer: {error}", code=1)
        try:
            body = response.json()
        except ValueError:  # not the app's JSON: a proxy's or a crash's page
            body = {"body": response.text[:200]}
        # 409: this very event was delivered before (a retry); it names the same payment.
        if response.status_code in (200, 409) and "payment_id" in body:
            return str(body["payment_id"])
        fail(f"the stack's treasury refused a top-up ({response.status_code}): {body}", code=1)

    def step(self) -> None:
        """Its worker converts every HERO_TREASURY_INTERVAL_S."""


class LocalTreasury:
    """The treasury in this process (``--in-process``, or a stack without one)."""

    def __init__(self, store: EventStore, settings: HeroSettings, secret: bytes):
        from agents.treasury.runtime import oracle_from, quote_policy
        from agents.treasury.service import TreasuryService

        self.description = "the treasury in this process"
        self._settings = settings
        self._secret = secret
        self._clock = SystemClock()
        self._service = TreasuryService(
            store, oracle_from(settings, self._clock), self._clock, policy=quote_policy(settings)
        )

    def deliver(self, payload: bytes) -> str:
        from agents.treasury.webhook import WebhookRefused, receive, sign

        now = self._clock.now()
        header = sign(self._secret, int(now.timestamp()), payload)
        try:  # the webhook's own checks, without the HTTP around them
            notice = receive(
                header,
                payload,
                self._secret,
                now=now,
                tolerance_s=self._settings.webhook_tolerance_s,
            )
        except WebhookRefused as refused:
            fail(f"a top-up was refused: {refused.reason}", code=1)
        return self._service.receive(notice).payment_id

    def step(self) -> None:
        self._service.convert_pending()


def treasury_for(stack: LocalStack | None, settings: HeroSettings, store: EventStore) -> Treasury:
    """The stack's treasury when it runs one, else a treasury in this process."""
    from agents.treasury.runtime import webhook_secret

    secret = webhook_secret(settings)
    if stack is not None:
        running = {c.name: c.state for c in stack.status()}
        url = stack.endpoints().treasury_url
        if running.get("treasury") == "up" and url is not None:
            return StackTreasury(url, secret)
    return LocalTreasury(store, settings, secret)


@dataclass
class Payments:
    """The money side of one run: top-ups converted, hours billed, the ledger's sums."""

    treasury: str
    top_ups: list[PaymentRow]
    bills: list[UsageBilled]
    report: BillingReport
    convert_seconds: float
    totals: dict[str, Decimal]
    balances: dict[str, Money]
    unbalanced: dict[str, str] = field(default_factory=dict)
    """Transfer id -> why its legs are not one sound transfer (``LedgerReport.unbalanced``)."""
    unbilled: list[str] = field(default_factory=list)
    """This run's contracts that have no bill after the billing run: none, when it is sound
    (every contract ran, and each offtaker was topped up first)."""

    @property
    def balanced(self) -> bool:
        return not self.unbalanced and all(total == 0 for total in self.totals.values())

    def total(self, part: Callable[[UsageBilled], Money]) -> Money:
        return sum((part(bill) for bill in self.bills), Money.zero("TFT"))

    def summary(self) -> dict[str, Any]:
        return {
            "top_ups": len(self.top_ups),
            "top_up_usd": sum((p.fiat for p in self.top_ups), Money.zero("USD")),
            "top_up_tft": sum((p.tft for p in self.top_ups if p.tft), Money.zero("TFT")),
            "billing_clock_ahead_h": BILLED_HOURS,
            "hours_billed": len(self.bills),
            "billed_tft": self.total(lambda bill: bill.amount),
            "farmers_tft": self.total(lambda bill: bill.farmer_share),
            "pool_tft": self.total(lambda bill: bill.pool_share),
            "threefold_tft": self.total(lambda bill: bill.threefold_share),
            "ledger_totals": {currency: _plain(total) for currency, total in self.totals.items()},
            "ledger_balanced": self.balanced,
        }


def _plain(value: Decimal) -> str:
    """``0`` rather than ``0E-7`` (a sum of TFT amounts carries their 7 places)."""
    return f"{value.normalize():f}" if value else "0"


def _top_up_event(story: Scenario, offtaker: str) -> bytes:
    """A provider's payment event: the offtaker pays its monthly budget, in USD."""
    budget = next(m.mandate.budget_month for m in story.mandates if m.offtaker_id == offtaker)
    return json.dumps(
        {
            "provider_event_id": f"evt-demo-{story.tag}-{offtaker}",
            "provider": "demo",
            "offtaker_id": offtaker,
            "amount": f"{budget.amount:f}",
            "currency": budget.currency.value,
        }
    ).encode()


def _wait_for(condition: Callable[[], bool], timeout_s: float, step: Callable[[], None]) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        step()
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def pay_and_bill(
    store: EventStore,
    settings: HeroSettings,
    treasury: Treasury,
    contracts: list[ContractRow],
    story: Scenario,
    timeout_s: float,
    say: Callable[[str], None],
) -> Payments:
    offtakers = sorted({c.offtaker_id for c in contracts})
    began = time.monotonic()
    payment_ids = [treasury.deliver(_top_up_event(story, offtaker)) for offtaker in offtakers]
    rows: dict[str, PaymentRow | None] = {}

    def converted() -> bool:
        rows.update({pid: payment_row(store, pid) for pid in payment_ids})
        return all(row is not None and row.tft is not None for row in rows.values())

    if not _wait_for(converted, max(timeout_s, 3 * settings.treasury_interval_s), treasury.step):
        pending = [pid for pid, row in rows.items() if row is None or row.tft is None]
        fail(f"{treasury.description} did not convert {', '.join(pending)} in time", code=1)
    convert_seconds = time.monotonic() - began
    top_ups = [row for row in rows.values() if row is not None]
    fiat = sum((p.fiat for p in top_ups), Money.zero("USD"))
    tft = sum((p.tft for p in top_ups if p.tft), Money.zero("TFT"))
    say(
        f"[bold]payments[/] {len(top_ups)} top-ups by signed webhook to {treasury.description}: "
        f"{fmt_money(fiat)} → {fmt_money(tft)}, converted in {convert_seconds:.1f} s"
    )
    report = _bill_ahead(store, settings, {c.contract_id for c in contracts})
    bills = sorted(
        (
            event
            for c in contracts
            for row in store.read_stream(billing_stream(c.contract_id))
            if isinstance(event := row.envelope().decode(), UsageBilled)
        ),
        key=lambda bill: (bill.contract_id, bill.hour),
    )
    book = read_book(store)
    ledger = book.ledger
    billed = {bill.contract_id for bill in bills}
    return Payments(
        treasury=treasury.description,
        top_ups=top_ups,
        bills=bills,
        report=report,
        convert_seconds=convert_seconds,
        totals={currency.value: total for currency, total in sorted(ledger.totals().items())},
        balances={
            offtaker: ledger.balance(account_id(AccountKind.OFFTAKER, offtaker))
            for offtaker in offtakers
        },
        unbalanced=book.unbalanced,
        unbilled=sorted(c.contract_id for c in contracts if c.contract_id not in billed),
    )


def _bill_ahead(store: EventStore, settings: HeroSettings, contract_ids: set[str]) -> BillingReport:
    """Bill this run's contracts on a clock ``BILLED_HOURS`` ahead, in this process.

    Only this run's: the store may hold other contracts (earlier runs, a user's own), and
    billing them hours that have not happened would charge their owners for nothing.
    """
    clock = ManualClock(SystemClock().now() + timedelta(hours=BILLED_HOURS))
    return billing_service(settings, store, clock).run(contract_ids=contract_ids)


def _payments_table(payments: Payments) -> Table:
    table = Table("offtaker", "top-up", "TFT credited", "hours billed", "TFT billed",
                  "balance", title="payments")  # fmt: skip
    for top_up in payments.top_ups:
        bills = [b for b in payments.bills if b.offtaker_id == top_up.offtaker_id]
        billed = sum((b.amount for b in bills), Money.zero("TFT"))
        table.add_row(
            top_up.offtaker_id,
            fmt_money(top_up.fiat),
            fmt_money(top_up.tft) if top_up.tft else "-",
            str(len(bills)),
            fmt_money(billed),
            fmt_money(payments.balances[top_up.offtaker_id]),
        )
    return table


def _say_billing(payments: Payments, say: Callable[[str], None]) -> None:
    figures = payments.summary()
    say(
        f"[bold]billing[/] billing clock fast-forwarded {BILLED_HOURS} h for the demo: "
        f"{figures['hours_billed']} contract-hours billed, {fmt_money(figures['billed_tft'])} "
        f"→ farmers {fmt_money(figures['farmers_tft'])}, pool {fmt_money(figures['pool_tft'])}, "
        f"ThreeFold {fmt_money(figures['threefold_tft'])}"
    )
    print_report(payments.report, say)
    sums = ", ".join(f"{currency} {_plain(total)}" for currency, total in payments.totals.items())
    verdict = "balanced" if payments.balanced else "[bold red]NOT balanced[/]"
    say(f"[bold]ledger[/] totals {sums}: {verdict}")


def _payments_line(figures: dict[str, Any]) -> str:
    return (
        f"{figures['top_ups']} top-ups {fmt_money(figures['top_up_usd'])} → "
        f"{fmt_money(figures['top_up_tft'])}, {figures['hours_billed']} contract-hours billed "
        f"{fmt_money(figures['billed_tft'])} (farmers {fmt_money(figures['farmers_tft'])}, "
        f"pool {fmt_money(figures['pool_tft'])}, ThreeFold {fmt_money(figures['threefold_tft'])}), "
        f"ledger {'balanced' if figures['ledger_balanced'] else 'NOT balanced'}"
    )

"""The treasury on the event store: fiat payments in, converted to TFT through quotes.

Receiving records the payment and moves the fiat from the outside world into the
cooperative's fiat account, in one post whose command id comes from the provider's event id:
a webhook delivered twice is received once. Converting is a separate step, so a crash
between the two leaves a payment *pending*, and the next pass converts it: quotes are
checked against a fresh rate and re-quoted when expired or out of bounds; the conversion,
its quotes and both ledger legs (fiat out to the market, TFT in to the offtaker) are one post.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agents.treasury.oracle import OracleError, PriceOracle
from agents.treasury.quotes import Quote, QuoteCheck, QuoteFailed, QuotePolicy, convert
from agents.treasury.snapshot import PendingConversions, decode_pending, encode_pending
from agents.treasury.webhook import PaymentNotice
from hero.domain.clock import Clock, SystemClock
from hero.domain.ledger import AccountKind, Transfer, account_id
from hero.payments.ledger import LedgerService
from hero.payments.snapshot_restore import newest_readable
from hero.store import (
    EventStore,
    PoisonRow,
    SnapshotKeeper,
    decode_event,
    recorded_after,
    skip_row,
)
from schemas import (
    Event,
    FiatConverted,
    FiatPaymentReceived,
    QuoteIssued,
    QuoteRefused,
    TransferKind,
    new_id,
)

__all__ = [
    "COOPERATIVE",
    "OUTSIDE",
    "ConversionFailed",
    "ReceiveResult",
    "TreasuryService",
    "payment_id_for",
    "payment_stream",
]

log = logging.getLogger(__name__)

#: The name the treasury records its skipped rows under.
SOURCE = "treasury"

#: The owner of the cooperative's fiat accounts, and of the outside world's accounts.
COOPERATIVE = "cooperative"
OUTSIDE = "outside"


def payment_id_for(provider: str, provider_event_id: str) -> str:
    """The same provider event always names the same payment: that is the deduplication."""
    digest = hashlib.sha256(f"{provider}\x00{provider_event_id}".encode()).hexdigest()
    return f"pay-{digest[:32]}"


def payment_stream(payment_id: str) -> str:
    return f"payment-{payment_id}"


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    payment_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ConversionFailed:
    payment_id: str
    reason: str


class TreasuryService:
    def __init__(
        self,
        store: EventStore,
        oracle: PriceOracle,
        clock: Clock | None = None,
        *,
        policy: QuotePolicy | None = None,
        ledger: LedgerService | None = None,
        actor: str = "treasury",
        max_quotes: int = 3,
        new_quote_id: Callable[[], str] = lambda: new_id("quote"),
        snapshots: SnapshotKeeper | None = None,
    ):
        """With ``snapshots`` the pending conversions start from the newest one (see
        :mod:`agents.treasury.snapshot`), and one is saved when the cadence says so."""
        self._store = store
        self._oracle = oracle
        self._clock = clock or SystemClock()
        self.policy = policy or QuotePolicy()
        self._ledger = ledger or LedgerService(store, self._clock, actor=actor)
        self._actor = actor
        self._max_quotes = max_quotes
        self._new_quote_id = new_quote_id
        self._pending = PendingConversions()
        self._lock = threading.Lock()
        self._snapshots = snapshots
        self._restored = snapshots is None

    # -- fiat in ------------------------------------------------------------------------------

    def receive(self, notice: PaymentNotice) -> ReceiveResult:
        payment_id = payment_id_for(notice.provider, notice.provider_event_id)
        fiat = notice.fiat
        event = FiatPaymentReceived(
            payment_id=payment_id,
            provider=notice.provider,
            provider_event_id=notice.provider_event_id,
            offtaker_id=notice.offtaker_id,
            account_id=account_id(AccountKind.OFFTAKER, notice.offtaker_id),
            amount=fiat,
        )
        transfer = Transfer(
            f"{payment_id}-in",
            account_id(AccountKind.WORLD, OUTSIDE, fiat.currency),
            account_id(AccountKind.TREASURY, COOPERATIVE, fiat.currency),
            fiat,
            TransferKind.PAYMENT,
            payment_id,
        )
        result = self._ledger.post(
            [transfer],
            f"receive-{payment_id}",
            records=[(payment_stream(payment_id), event)],
            actor=self._actor,
            correlation_id=payment_id,
        )
        return ReceiveResult(payment_id, result.duplicate)

    # -- conversion to TFT --------------------------------------------------------------------

    def pending(self) -> list[FiatPaymentReceived]:
        """Payments received and not converted yet, oldest first."""
        if not self._restored:
            self._restored = True
            self._restore()
        state = self._pending
        for row in recorded_after(self._store, state.position):
            state.position = row.position
            if row.type not in ("FiatPaymentReceived", "FiatConverted"):
                continue
            try:
                _, event = decode_event(row)
            except PoisonRow as error:  # an unreadable row must not stop the conversions
                skip_row(self._store, SOURCE, row, error)
                continue
            if isinstance(event, FiatPaymentReceived):
                state.received[event.payment_id] = event
            elif isinstance(event, FiatConverted):
                state.converted.add(event.payment_id)
                state.received.pop(event.payment_id, None)
        self._snapshot_if_due()
        return [p for p in state.received.values() if p.payment_id not in state.converted]

    def _restore(self) -> None:
        """Start from the newest readable snapshot; none usable: the whole log, logged."""
        keeper = self._snapshots
        assert keeper is not None
        restored = newest_readable(keeper, self._store.current_position(), decode_pending)
        if restored is None:
            return
        found, pending = restored
        if pending.position != found.position:
            keeper.unreadable(found, f"it holds position {pending.position}")
            return
        self._pending = pending
        keeper.started_from(found.position)

    def _snapshot_if_due(self) -> None:
        keeper, state = self._snapshots, self._pending
        if keeper is not None and keeper.due(state.position):
            keeper.save(state.position, encode_pending(state))

    def convert_pending(
        self, limit: int | None = None
    ) -> tuple[list[FiatConverted], list[ConversionFailed]]:
        with self._lock:
            done: list[FiatConverted] = []
            failed: list[ConversionFailed] = []
            for payment in self.pending()[:limit]:
                try:
                    converted = self.convert(payment)
                except OracleError as error:
                    failed.append(ConversionFailed(payment.payment_id, f"oracle: {error}"))
                    break  # no price for now: the next pass tries again
                if isinstance(converted, ConversionFailed):
                    failed.append(converted)
                elif converted is not None:
                    done.append(converted)
            return done, failed

    def convert(self, payment: FiatPaymentReceived) -> FiatConverted | ConversionFailed | None:
        """Quote until a quote holds, then post; None when it was converted before."""
        stream = payment_stream(payment.payment_id)
        refusals: dict[str, QuoteCheck] = {}
        try:
            issued, accepted = convert(
                payment.payment_id,
                payment.amount,
                self._oracle,
                self.policy,
                now=self._clock.now,
                new_id=self._new_quote_id,
                max_attempts=self._max_quotes,
                on_refused=lambda quote, check: refusals.update({quote.quote_id: check}),
            )
        except QuoteFailed as failed:
            # Recorded so the refusals are visible; the payment stays pending for the next pass.
            records = _quote_records(stream, failed.quotes, refusals)
            last = failed.quotes[-1].quote_id
            self._ledger.post([], f"refused-{last}", records=records, actor=self._actor)
            return ConversionFailed(payment.payment_id, "no quote held within the slippage bound")
        return self._settle(payment, accepted, _quote_records(stream, issued, refusals))

    def _settle(
        self, payment: FiatPaymentReceived, quote: Quote, records: list[tuple[str, Event]]
    ) -> FiatConverted | None:
        payment_id, fiat = payment.payment_id, payment.amount
        converted = FiatConverted(
            payment_id=payment_id,
            quote_id=quote.quote_id,
            offtaker_id=payment.offtaker_id,
            fiat=fiat,
            tft=quote.tft,
        )
        transfers = [
            Transfer(
                f"{payment_id}-fiat-out",
                account_id(AccountKind.TREASURY, COOPERATIVE, fiat.currency),
                account_id(AccountKind.WORLD, OUTSIDE, fiat.currency),
                fiat,
                TransferKind.CONVERSION,
                payment_id,
            ),
            Transfer(
                f"{payment_id}-tft-in",
                account_id(AccountKind.WORLD, OUTSIDE, "TFT"),
                payment.account_id,
                quote.tft,
                TransferKind.CONVERSION,
                payment_id,
            ),
        ]
        records.append((payment_stream(payment_id), converted))
        result = self._ledger.post(
            transfers,
            f"convert-{payment_id}",
            records=records,
            actor=self._actor,
            correlation_id=payment_id,
        )
        return None if result.duplicate else converted


def _quote_records(
    stream: str, quotes: list[Quote], refusals: dict[str, QuoteCheck]
) -> list[tuple[str, Event]]:
    """Each quote issued, each followed by its refusal if it was refused, in order."""
    records: list[tuple[str, Event]] = []
    for quote in quotes:
        records.append((stream, _issued(quote)))
        if quote.quote_id in refusals:
            records.append((stream, _refused(quote, refusals[quote.quote_id])))
    return records


def _issued(quote: Quote) -> QuoteIssued:
    return QuoteIssued(
        quote_id=quote.quote_id,
        payment_id=quote.payment_id,
        fiat=quote.fiat,
        tft=quote.tft,
        min_tft=quote.min_tft,
        rate=quote.rate,
        market_rate=quote.market_rate,
        spread=quote.spread,
        source=quote.source,
        expires_at=quote.expires_at,
    )


def _refused(quote: Quote, check: QuoteCheck) -> QuoteRefused:
    return QuoteRefused(
        quote_id=quote.quote_id,
        payment_id=quote.payment_id,
        reason=f"{check.status.value}: {check.reason}"[:200],
    )

"""Fiat -> TFT quotes: a price the treasury commits to for a short while, within a bound.

A quote prices a payment at the market rate less a spread, rounds the TFT down (the treasury
never hands out more than it priced), and holds until ``expires_at``. Before a quote is applied
it is checked against a fresh rate, as a swap checks its minimum output and deadline
(DOMAIN.md, "Payments"): an expired quote, or one the market has moved away from by more than
the allowed slippage in either direction, is re-quoted, never applied.

Pure: time comes in as ``now``, rates from a :class:`PriceOracle`; nothing is stored and no
event is written. The caller turns the quotes into ``QuoteIssued`` and the accepted one into
``FiatConverted`` (``schemas.catalogue.payments``); the field names match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.treasury.oracle import FIAT_CURRENCIES, PriceOracle, Rate
from schemas.exact import refuse_float
from schemas.ids import Identifier
from schemas.money import Currency, CurrencyMismatch, Money

__all__ = [
    "Quote",
    "QuoteCheck",
    "QuoteFailed",
    "QuotePolicy",
    "QuoteStatus",
    "check_quote",
    "convert",
    "issue_quote",
]

# Products of a rate (up to ~30 significant digits) and an amount stay exact at this precision.
_EXACT = 60


class QuotePolicy(BaseModel):
    """How the treasury prices: its margin, how long a quote holds, how far prices may move."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spread: Decimal = Field(default=Decimal("0.005"), ge=0, lt=Decimal("0.1"))
    ttl_s: int = Field(default=120, gt=0)
    max_slippage: Decimal = Field(default=Decimal("0.01"), ge=0, lt=1)

    _no_floats = field_validator("spread", "max_slippage", mode="before")(refuse_float)


class Quote(BaseModel):
    """``fiat`` buys ``tft`` at ``rate`` (TFT per fiat unit, after the spread) until expiry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quote_id: Identifier
    payment_id: Identifier
    fiat: Money
    tft: Money
    rate: Decimal = Field(gt=0, description="TFT per unit of fiat, after the spread")
    market_rate: Decimal = Field(gt=0, description="TFT per unit of fiat the market offered")
    spread: Decimal = Field(ge=0, lt=1)
    source: str = Field(min_length=1, description="the oracle that gave the market rate")
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    min_tft: Money = Field(description="the least TFT the market may still give: the bound")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.fiat.currency not in FIAT_CURRENCIES:
            raise ValueError(f"fiat must be USD or EUR, got {self.fiat.currency}")
        if self.tft.currency is not Currency.TFT or self.min_tft.currency is not Currency.TFT:
            raise ValueError("tft and min_tft are TFT amounts")
        if self.min_tft > self.tft:
            raise ValueError(f"min_tft {self.min_tft} exceeds tft {self.tft}")
        if self.expires_at <= self.issued_at:
            raise ValueError("a quote expires after it is issued")
        return self

    def is_expired(self, now: datetime) -> bool:
        """Expired from ``expires_at`` on, inclusive: the deadline itself is too late."""
        return now >= self.expires_at


class QuoteStatus(StrEnum):
    OK = "ok"
    EXPIRED = "expired"
    OUT_OF_BOUNDS = "out_of_bounds"


class QuoteCheck(BaseModel):
    """Whether a quote may still be applied, and if not, why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: QuoteStatus
    reason: str
    #: The rate (after the quote's spread) and TFT amount the market gives now; None when
    #: the quote expired, which settles the question without asking the market.
    current_rate: Decimal | None = None
    current_tft: Money | None = None

    @property
    def ok(self) -> bool:
        return self.status is QuoteStatus.OK


class QuoteFailed(Exception):
    """No quote held within the allowed attempts; ``checks`` says why each one failed."""

    def __init__(
        self, payment_id: str, quotes: Sequence[Quote], checks: Sequence[QuoteCheck]
    ) -> None:
        self.payment_id = payment_id
        self.quotes = list(quotes)
        self.checks = list(checks)
        why = "; ".join(
            f"attempt {number} {check.status}: {check.reason}"
            for number, check in enumerate(self.checks, start=1)
        )
        super().__init__(
            f"payment {payment_id}: no quote held after {len(self.checks)} attempt(s): {why}"
        )


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")


def _after_spread(market_rate: Decimal, spread: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = _EXACT
        return market_rate * (1 - spread)


def _tft_for(fiat: Money, rate: Decimal) -> Money:
    # Exact product first (the default 28 digits could round it up past a quantum), then
    # down, never to the nearest: the treasury must not promise TFT it has not priced.
    with localcontext() as context:
        context.prec = _EXACT
        product = fiat.amount * rate
    return Money.rounded(product, Currency.TFT, ROUND_DOWN)


def issue_quote(
    payment_id: str,
    fiat: Money,
    rate: Rate,
    policy: QuotePolicy,
    *,
    now: datetime,
    quote_id: str,
) -> Quote:
    """Price ``fiat`` at ``rate`` less the policy's spread, holding for ``policy.ttl_s``."""
    _require_aware(now)
    if fiat.currency is not rate.currency:
        raise CurrencyMismatch(f"cannot quote {fiat.currency} at a {rate.currency} rate")
    if fiat.amount <= 0:
        raise ValueError(f"only a positive amount can be quoted, got {fiat}")
    quoted_rate = _after_spread(rate.tft_per_unit, policy.spread)
    tft = _tft_for(fiat, quoted_rate)
    if tft.is_zero:
        raise ValueError(f"{fiat} is too small to buy any TFT at {quoted_rate} TFT per unit")
    with localcontext() as context:
        context.prec = _EXACT
        floor = tft.amount * (1 - policy.max_slippage)
    return Quote(
        quote_id=quote_id,
        payment_id=payment_id,
        fiat=fiat,
        tft=tft,
        rate=quoted_rate,
        market_rate=rate.tft_per_unit,
        spread=policy.spread,
        source=rate.source,
        issued_at=now,
        expires_at=now + timedelta(seconds=policy.ttl_s),
        min_tft=Money.rounded(floor, Currency.TFT, ROUND_DOWN),
    )


def _percent(part: Decimal, whole: Decimal) -> str:
    with localcontext() as context:
        context.prec = _EXACT
        share = (part / whole * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return f"{share}%"


def check_quote(quote: Quote, current: Rate, *, now: datetime, policy: QuotePolicy) -> QuoteCheck:
    """May ``quote`` still be applied, given the market's ``current`` rate at ``now``?

    Out of bounds when what the market gives now for the same fiat (after the quote's spread)
    is below ``min_tft``, or when the quote's rate is more than ``policy.max_slippage`` away
    from the current one either way: too high and the treasury pays out TFT it cannot buy
    back, too low and the payer is short-changed.
    """
    _require_aware(now)
    if current.currency is not quote.fiat.currency:
        raise CurrencyMismatch(
            f"quote {quote.quote_id} is in {quote.fiat.currency}, the rate in {current.currency}"
        )
    if quote.is_expired(now):
        return QuoteCheck(
            status=QuoteStatus.EXPIRED,
            reason=f"quote {quote.quote_id} expired at {quote.expires_at.isoformat()}",
        )
    current_rate = _after_spread(current.tft_per_unit, quote.spread)
    current_tft = _tft_for(quote.fiat, current_rate)
    with localcontext() as context:
        context.prec = _EXACT
        gap = quote.rate - current_rate
        distance = abs(gap)
        allowed = policy.max_slippage * current_rate
    if current_tft < quote.min_tft:
        return QuoteCheck(
            status=QuoteStatus.OUT_OF_BOUNDS,
            reason=(
                f"the market now gives {current_tft.amount} TFT for {quote.fiat}, below the "
                f"minimum {quote.min_tft.amount} TFT"
            ),
            current_rate=current_rate,
            current_tft=current_tft,
        )
    if distance > allowed:
        direction = "above" if gap > 0 else "below"
        bound = _percent(policy.max_slippage, Decimal(1))
        return QuoteCheck(
            status=QuoteStatus.OUT_OF_BOUNDS,
            reason=(
                f"the quoted rate {quote.rate} is {_percent(distance, current_rate)} {direction} "
                f"the current {current_rate}, more than the {bound} allowed"
            ),
            current_rate=current_rate,
            current_tft=current_tft,
        )
    return QuoteCheck(
        status=QuoteStatus.OK,
        reason="within bounds",
        current_rate=current_rate,
        current_tft=current_tft,
    )


def convert(
    payment_id: str,
    fiat: Money,
    oracle: PriceOracle,
    policy: QuotePolicy,
    *,
    now: Callable[[], datetime],
    new_id: Callable[[], str],
    max_attempts: int = 3,
    on_refused: Callable[[Quote, QuoteCheck], None] = lambda quote, check: None,
) -> tuple[list[Quote], Quote]:
    """Quote ``fiat``, check the quote against a fresh rate, and re-quote until one holds.

    ``now`` is called (a clock's ``now`` method) each time the time matters, so a quote can
    expire while the oracle is asked; ``new_id`` names each quote. Each re-quote is priced
    at the rate that refused the previous one, the freshest on hand.

    Returns every quote issued, in order (the caller records each as ``QuoteIssued``), and
    the accepted one, which is the last. Raises :class:`QuoteFailed` after ``max_attempts``
    refused quotes; oracle errors (``UnknownRate``, ``OracleUnavailable``, ``StaleRate``)
    pass through, as there is then no price to quote at all. ``on_refused`` hears of each
    refused quote as it is refused (the caller may record why).
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    issued: list[Quote] = []
    refusals: list[QuoteCheck] = []
    rate = oracle.rate(fiat.currency)
    for _ in range(max_attempts):
        quote = issue_quote(payment_id, fiat, rate, policy, now=now(), quote_id=new_id())
        issued.append(quote)
        rate = oracle.rate(fiat.currency)
        check = check_quote(quote, rate, now=now(), policy=policy)
        if check.ok:
            return issued, quote
        refusals.append(check)
        on_refused(quote, check)
    raise QuoteFailed(payment_id, issued, refusals)

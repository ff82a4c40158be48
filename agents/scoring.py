"""How an offtaker ranks offers: price per CU-hour first, then uptime, region, grid and spread.

Each part is a number in [0, 1]; the score is their weighted sum, and each event that accepts
an offer can carry the parts so the choice is explained.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from hero.domain.pricing import price_per_cu_hour
from schemas import Mandate, OfferMade

__all__ = ["WEIGHTS", "Score", "score_offer"]

WEIGHTS = {
    "price": Decimal("0.5"),
    "uptime": Decimal("0.2"),
    "region": Decimal("0.1"),
    "grid": Decimal("0.1"),
    "spread": Decimal("0.1"),
}


@dataclass(frozen=True)
class Score:
    total: Decimal
    parts: dict[str, Decimal]
    price_cu_hour: Decimal


def score_offer(
    offer: OfferMade, mandate: Mandate, regions: Collection[str], farms_in_use: Collection[str]
) -> Score:
    """The offer's score; ``farms_in_use`` are the farms already running this workload."""
    per_cu = price_per_cu_hour(offer.price_hour, offer.resources).amount
    ceiling = mandate.max_price_cu_hour.amount
    price = max(Decimal(0), 1 - per_cu / ceiling) if ceiling > 0 else Decimal(0)
    parts = {
        "price": price,
        "uptime": offer.uptime_pct / 100,
        "region": Decimal(1) if not regions or offer.region in regions else Decimal(0),
        "grid": Decimal(1) if mandate.prefer_grid in (None, offer.grid) else Decimal(0),
        "spread": (
            Decimal(1)
            if not mandate.spread_across_farms or offer.farm_id not in farms_in_use
            else Decimal(0)
        ),
    }
    total = sum((WEIGHTS[k] * v for k, v in parts.items()), Decimal(0))
    return Score(total.quantize(Decimal("0.0001")), parts, per_cu)

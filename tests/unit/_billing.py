"""What the billing tests share: TFT amounts, and a market on one farm's node (memory or SQLite)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hero.store import SqliteEventStore
from schemas import Money
from tests.unit._gwt import Market

__all__ = ["farm_market", "tft"]


def tft(amount: str | Decimal) -> Money:
    return Money.of(amount, "TFT")


def farm_market(store: str, tmp_path: Path) -> Market:
    """farm_1 with node_1, on the ``memory`` store or an SQLite one under ``tmp_path``."""
    market = Market()
    if store == "sqlite":
        market = Market(SqliteEventStore(tmp_path / "events.db", market.clock), market.clock)
    market.farm("farm_1")
    market.node("node_1")
    return market

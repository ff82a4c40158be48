"""A small market seeded straight through the market service, for the gateway's tests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hero.market.service import MarketService
from hero.store import EventStore
from schemas import (
    AcceptOffer,
    Grid,
    IssueRfq,
    MakeOffer,
    Money,
    RegisterFarm,
    RegisterNode,
    Resources,
    Sla,
)

__all__ = ["seed_market"]


def seed_market(
    store: EventStore,
    *,
    actor: str,
    nodes: Mapping[str, str],
    seller: tuple[str, str],
    buyer: str,
    shape: Resources,
    open_offer_firm: bool,
) -> None:
    """Grid 4 farms in Europe with their ``nodes`` (node -> farm); then two negotiations of
    ``buyer`` for one replica of ``shape`` each, ``{buyer}.web.1`` and ``.2``, each with one
    offer of ``seller`` (farm, node) named ``{negotiation}.{farm}.0``: the first accepted (a
    live contract), the second left open (firm or awaiting approval)."""
    market = MarketService(store, actor=actor)
    now = datetime.now(UTC)
    place = {"grid": Grid.GRID4, "country": "BE", "region": "europe"}
    for farm in dict.fromkeys(nodes.values()):
        market.handle(RegisterFarm(command_id=f"reg-{farm}", farm_id=farm, name=farm, **place))
    for node, farm in nodes.items():
        market.handle(
            RegisterNode(
                command_id=f"reg-{node}",
                node_id=node,
                farm_id=farm,
                total=shape.times(4),
                uptime_pct=Decimal("99.5"),
                **place,
            )
        )
    farm, node = seller
    for n, firm in ((1, True), (2, open_offer_firm)):
        nego = f"{buyer}.web.{n}"
        offer = f"{nego}.{farm}.0"
        market.handle(
            IssueRfq(
                command_id=f"rfq-{nego}",
                negotiation_id=nego,
                offtaker_id=buyer,
                workload_id="web",
                resources=shape,
                replicas=1,
                grids=[Grid.GRID4],
                max_price_cu_hour=Money.of("0.05", "USD"),
                term_hours=24,
                deadline=now + timedelta(hours=1),
                invited_farms=[farm],
            )
        )
        market.handle(
            MakeOffer(
                command_id=f"offer-{offer}",
                negotiation_id=nego,
                offer_id=offer,
                farm_id=farm,
                node_id=node,
                price_hour=Money.of("0.03", "USD"),
                term_hours=24,
                sla=Sla(uptime_pct=Decimal("99")),
                firm=firm,
                expires_at=now + timedelta(hours=1),
            )
        )
        if n == 1:
            market.handle(
                AcceptOffer(command_id=f"accept-{offer}", negotiation_id=nego, offer_id=offer)
            )

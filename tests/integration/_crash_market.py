"""The small market of the kill tests (test_host_crash, test_ray_cluster) and of the race
(test_market_race, its farms only): farms of one node each, spread over regions or all in one,
and offtakers asking for replicas in their region, all under the test's own ``tag`` so that its
events are told from the stack's and other tests'."""

from __future__ import annotations

from decimal import Decimal

from hero.market.service import MarketService
from schemas import (
    FarmerPolicy,
    Mandate,
    Money,
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    Resources,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    WorkloadSpec,
)

__all__ = ["NODE", "REGIONS", "REPLICA", "REPLICAS", "register_farms", "set_mandates"]

REGIONS = 4
REPLICAS = 2
NODE = Resources.from_gb(cru=8, mru_gb=16, sru_gb=400)
REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)  # four fit on a node


def register_farms(
    service: MarketService, tag: str, farms: int, region: str | None = None
) -> list[str]:
    """``farms`` farms, one NODE each, all in ``region`` if given, else round-robin over
    REGIONS; their node ids."""
    policy = FarmerPolicy(
        mode=PolicyMode.AUTO,
        price_cu_hour=Money.of("0.02", "USD"),
        price_su_hour=Money.of("0.01", "USD"),
        sla=Sla(uptime_pct=Decimal(99)),
    )
    node_ids = []
    for i in range(farms):
        farm, node, place = f"{tag}-farm-{i}", f"{tag}-node-{i}", region or f"{tag}-r{i % REGIONS}"
        for command in (
            RegisterFarm(
                command_id=f"{farm}:reg", farm_id=farm, name=farm, grid="grid4",
                country="NL", region=place,
            ),
            RegisterNode(
                command_id=f"{farm}:node", node_id=node, farm_id=farm, grid="grid4",
                country="NL", region=place, total=NODE,
            ),
            SetFarmerPolicy(command_id=f"{farm}:policy", farm_id=farm, policy=policy),
        ):  # fmt: skip
            service.handle(command)
        node_ids.append(node)
    return node_ids


def set_mandates(service: MarketService, tag: str, offtakers: int) -> list[str]:
    """``offtakers`` offtakers, each wanting REPLICAS replicas of REPLICA in its region (round
    robin), with a short offer window; their ids."""
    ids = []
    for i in range(offtakers):
        offtaker = f"{tag}-offtaker-{i}"
        workload = WorkloadSpec(
            workload_id="app", resources=REPLICA, replicas=REPLICAS,
            regions=[f"{tag}-r{i % REGIONS}"],
        )  # fmt: skip
        mandate = Mandate(
            workloads=[workload],
            budget_month=Money.of("1000", "USD"),
            max_price_cu_hour=Money.of("0.05", "USD"),
            offer_window_s=Decimal("0.5"),
            offers_per_replica=2,
        )
        service.handle(
            SetOfftakerMandate(
                command_id=f"{offtaker}:mandate", offtaker_id=offtaker, mandate=mandate
            )
        )
        ids.append(offtaker)
    return ids

"""The demo's story: the fleet (the same every run), a book of farmer policies, and the
offtakers' mandates, one of them autoscaled. Pure data: nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hero.market.fleet import farm_id_for, generate_fleet
from schemas import (
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    Resources,
    ScalingPolicy,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    WorkloadSpec,
)

__all__ = ["DEMO_FARMS", "DEMO_SEED", "DEMO_SLA", "SCALED_WORKLOAD", "Scenario", "scenario"]

DEMO_SEED = 2024
DEMO_FARMS = 12
SCALED_WORKLOAD = "api"
"""The autoscaled workload of the scaling act (acme's)."""


@dataclass(frozen=True)
class Scenario:
    """One run of the demo: the fleet (the same every run), this run's policies and mandates."""

    tag: str
    fleet: list[RegisterFarm | RegisterNode]
    policies: list[SetFarmerPolicy]
    mandates: list[SetOfftakerMandate]

    @property
    def offtakers(self) -> set[str]:
        return {m.offtaker_id for m in self.mandates}

    @property
    def approve_farms(self) -> set[str]:
        return {p.farm_id for p in self.policies if p.policy.mode == PolicyMode.APPROVE}

    @property
    def replicas(self) -> int:
        return sum(w.replicas for m in self.mandates for w in m.mandate.workloads)

    @property
    def scaled(self) -> tuple[str, WorkloadSpec]:
        """The offtaker and the workload that autoscales."""
        return next(
            (m.offtaker_id, w)
            for m in self.mandates
            for w in m.mandate.workloads
            if w.autoscale is not None
        )


def _usd(amount: str) -> Money:
    return Money.of(amount, "USD")


#: What a farm promises unless its line in the book says otherwise: 99 % uptime, and half of
#: each hour down refunded when that is missed (the node failure's penalty).
DEMO_SLA = Sla(uptime_pct=Decimal(99), penalty_pct=Decimal(50))


def _fixed(cu: str, su: str, **terms: Any) -> FarmerPolicy:
    terms.setdefault("sla", DEMO_SLA)
    return FarmerPolicy(price_cu_hour=_usd(cu), price_su_hour=_usd(su), **terms)


def _markup(factor: str, **terms: Any) -> FarmerPolicy:
    terms.setdefault("sla", DEMO_SLA)
    return FarmerPolicy(markup=Decimal(factor), **terms)


def _policy_book(tag: str) -> list[FarmerPolicy]:
    """The twelve farms' policies, cheapest asks first in the offtakers' ranking; the notes
    say which RFQs each one declines."""
    umbrella = f"umbrella-{tag}"
    return [
        _fixed("0.0306", "0.0194", floor_cu_hour=_usd("0.0250"), reserve_share=Decimal("0.2")),
        _markup("1.6", mode=PolicyMode.APPROVE, approval_ttl_s=120),  # asks its farmer first
        _markup("1.5", max_term_hours=720),  # declines the 3-month term: term_too_long
        _markup("1.8", deny_offtakers=[umbrella]),  # offtaker_denied for umbrella
        _fixed("0.0550", "0.0300"),  # too dear for the thrifty: below_floor
        FarmerPolicy(mode=PolicyMode.OFF),  # takes no work
        _markup("2.0", sla=Sla(uptime_pct=Decimal(98))),  # sla_not_met for 99 % workloads
        _fixed("0.0337", "0.0213", reserve_share=Decimal("0.1")),
        _markup("2.5", max_term_hours=8760),
        _fixed("0.0306", "0.0194", floor_cu_hour=_usd("0.0280")),
        _markup("1.2", max_term_hours=168),  # one week at most: term_too_long
        _markup("1.4", sla=Sla(uptime_pct=Decimal("99.5"), penalty_pct=Decimal(10))),
    ]


def _workload(
    name: str,
    shape: tuple[int, int, int],
    replicas: int,
    regions: list[str] | None = None,
    uptime: str = "95",
    autoscale: ScalingPolicy | None = None,
) -> WorkloadSpec:
    cores, ram_gb, ssd_gb = shape
    return WorkloadSpec(
        workload_id=name,
        resources=Resources.from_gb(cru=cores, mru_gb=ram_gb, sru_gb=ssd_gb),
        replicas=replicas,
        regions=regions or [],
        grids=[Grid.GRID3, Grid.GRID4],
        min_uptime_pct=Decimal(uptime),
        autoscale=autoscale,
    )


def _mandates(tag: str) -> list[tuple[str, Mandate]]:
    """Four offtakers: one in Europe (with an ``api`` anywhere on both grids that autoscales
    on cpu, 2 to 6 replicas), one anywhere for a 3-month term at 99 % uptime, a thrifty one in
    Asia and Africa, and one the farm-0004 policy denies. Each invites every farm that fits
    (``offers_per_replica`` above the fleet's size), so the story does not depend on which of
    equally cheap farms an offtaker happens to draw."""
    api = ScalingPolicy(metric="cpu", target=Decimal("0.6"), min_replicas=2, max_replicas=6)
    return [
        (f"acme-{tag}", Mandate(
            workloads=[
                _workload("web", (2, 4, 50), 3, ["europe"]),
                _workload(SCALED_WORKLOAD, (2, 4, 50), 2, autoscale=api),
            ],
            budget_month=_usd("400"), max_price_cu_hour=_usd("0.05"), offers_per_replica=12,
        )),
        (f"globex-{tag}", Mandate(
            workloads=[_workload("db", (4, 16, 200), 2, uptime="99")],
            budget_month=_usd("600"), max_price_cu_hour=_usd("0.045"), term_hours=2160,
            offers_per_replica=12,
        )),
        (f"initech-{tag}", Mandate(
            workloads=[_workload("cache", (2, 8, 20), 2, ["asia", "africa"])],
            budget_month=_usd("200"), max_price_cu_hour=_usd("0.018"), offers_per_replica=12,
        )),
        (f"umbrella-{tag}", Mandate(
            workloads=[_workload("worker", (4, 8, 100), 2, ["asia", "north-america"])],
            budget_month=_usd("400"), max_price_cu_hour=_usd("0.05"), prefer_grid=Grid.GRID4,
            offers_per_replica=12,
        )),
    ]  # fmt: skip


def scenario(tag: str) -> Scenario:
    fleet = generate_fleet(DEMO_SEED, farms=DEMO_FARMS, nodes_per_farm=(2, 3), grid3_share=0.5)
    policies = [
        SetFarmerPolicy(
            command_id=f"demo-{tag}.{farm_id_for(number)}.policy",
            farm_id=farm_id_for(number),
            policy=policy,
        )
        for number, policy in enumerate(_policy_book(tag), start=1)
    ]
    mandates = [
        SetOfftakerMandate(command_id=f"demo-{tag}.{offtaker}", offtaker_id=offtaker, mandate=m)
        for offtaker, m in _mandates(tag)
    ]
    registrations = [c for c in fleet if isinstance(c, RegisterFarm | RegisterNode)]
    return Scenario(tag, registrations, policies, mandates)

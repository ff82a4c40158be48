"""Usage facts from samples: reserved units times the share of the hour a replica ran."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hero.domain.usage import usage_fact
from schemas import ContractCreated, Money, Resources, Sla

HOUR = datetime(2026, 11, 23, 10, tzinfo=UTC)


def contract(resources: Resources) -> ContractCreated:
    return ContractCreated(
        contract_id="c1", negotiation_id="n1", offer_id="o1", hold_id="o1", offtaker_id="acme",
        workload_id="w1", farm_id="f1", node_id="n1", grid="grid4", resources=resources,
        price_hour=Money.of("0.05", "USD"), term_hours=720, sla=Sla(uptime_pct=Decimal(99)),
        starts_at=HOUR,
    )  # fmt: skip


def test_a_whole_hour_is_the_contracts_units():
    # 2 vCPU, 4 GB, 50 GB SSD: CU = min(max(1, 1), max(0.5, 2), max(2, 0.5)) = 1; SU = 0.25
    fact = usage_fact(contract(Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)), HOUR, 3600, 0, 240)
    assert (fact.cu_hours, fact.su_hours, fact.nu_gb) == (Decimal(1), Decimal("0.25"), Decimal(0))
    assert (fact.seconds, fact.samples) == (3600, 240)


def test_a_part_of_the_hour_is_prorated_and_rounded_once():
    # 20 minutes of CU 1: 1/3, to 7 places; 1.5 GB of traffic
    fact = usage_fact(
        contract(Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)), HOUR, 1200, 1_500_000_000, 80
    )
    assert (fact.cu_hours, fact.nu_gb) == (Decimal("0.3333333"), Decimal("1.5"))


def test_more_seconds_than_the_hour_count_as_the_hour():
    fact = usage_fact(contract(Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)), HOUR, 4000, 0, 300)
    assert (fact.seconds, fact.cu_hours) == (3600, Decimal(1))

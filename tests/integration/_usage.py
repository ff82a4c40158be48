"""Contracts and their replicas' samples for the usage tests (a worker killed, its outages,
two workers sharing partitions): made up under the test's ``tag``, started at ``start``."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from hero.domain.billing import hour_of
from hero.domain.usage import usage_fact
from schemas import ContractCreated, Money, Resources, Sla, UsageRecorded, UtilizationSampled

__all__ = ["expected_facts", "usage_contract", "usage_samples"]


def usage_contract(i: int, tag: str, start: datetime) -> ContractCreated:
    """The ``i``-th contract of ``tag``: a workload of its own, 2 to 9 cores."""
    return ContractCreated(
        contract_id=f"{tag}-ctr-{i}",
        negotiation_id=f"{tag}-nego-{i}",
        offer_id=f"{tag}-offer-{i}",
        hold_id=f"{tag}-offer-{i}",
        offtaker_id=f"{tag}-off",
        workload_id=f"{tag}-wl-{i}",
        farm_id=f"{tag}-farm-{i}",
        node_id=f"{tag}-node-{i}",
        grid="grid4",
        resources=Resources.from_gb(cru=2 + i % 8, mru_gb=4, sru_gb=50),
        price_hour=Money.of("0.05", "USD"),
        term_hours=720,
        sla=Sla(uptime_pct=Decimal(99)),
        starts_at=start,
    )


def usage_samples(
    contract: ContractCreated,
    start: datetime,
    end: datetime,
    interval_s: int,
    rng: random.Random | None = None,
) -> list[tuple[UtilizationSampled, int]]:
    """One sample every ``interval_s`` from ``start`` to ``end``, with its sequence; cpu and
    traffic drawn from ``rng``, or fixed (cpu 0.5, 1000 bytes more each time) without one."""
    out, moment, seq = [], start, 0
    while moment < end:
        seq += 1
        sample = UtilizationSampled(
            sample_id=f"{contract.contract_id}-s{seq}",
            workload_id=contract.workload_id,
            replica_id=f"{contract.contract_id}-r",
            contract_id=contract.contract_id,
            node_id=contract.node_id,
            cpu=Decimal("0.5") if rng is None else Decimal(rng.randrange(0, 100)) / 100,
            memory=Decimal("0.5"),
            disk=Decimal("0.1"),
            network_bytes=1000 * seq if rng is None else rng.randrange(0, 50_000_000),
            sampled_at=moment,
            interval_s=interval_s,
        )
        out.append((sample, seq))
        moment += timedelta(seconds=interval_s)
    return out


def expected_facts(
    contracts: Iterable[ContractCreated],
    samples: list[tuple[UtilizationSampled, int]],
    first_hour: datetime,
    hours: int = 2,
) -> dict[tuple[str, datetime], UsageRecorded]:
    """The fact each contract-hour from ``first_hour`` on should have, from ``samples``."""
    expected = {}
    for contract in contracts:
        for hour in (first_hour + timedelta(hours=n) for n in range(hours)):
            mine = [
                s
                for s, _ in samples
                if s.contract_id == contract.contract_id and hour_of(s.sampled_at) == hour
            ]
            expected[(contract.contract_id, hour)] = usage_fact(
                contract,
                hour,
                sum(s.interval_s for s in mine),
                sum(s.network_bytes for s in mine),
                len(mine),
            )
    return expected

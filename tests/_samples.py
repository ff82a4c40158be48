"""Utilization samples of replicas at a given CPU load, for the autoscaling tests (unit and on
the stack): the autoscaler reads only ``cpu``, the other figures are plain."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from schemas import ContractCreated, UtilizationSampled

__all__ = ["cpu_samples"]


def cpu_samples(
    contracts: Iterable[ContractCreated], cpu: str, at: datetime, sequence: int
) -> list[tuple[UtilizationSampled, int]]:
    """One sample per contract's replica at ``at``, with its telemetry ``sequence``."""
    return [
        (
            UtilizationSampled(
                sample_id=f"{c.contract_id}.{sequence}",
                workload_id=c.workload_id,
                replica_id=c.contract_id,
                contract_id=c.contract_id,
                node_id=c.node_id,
                cpu=Decimal(cpu),
                memory=Decimal("0.5"),
                disk=Decimal("0.1"),
                network_bytes=0,
                sampled_at=at,
            ),
            sequence,
        )
        for c in contracts
    ]

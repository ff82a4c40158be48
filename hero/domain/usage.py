"""Usage facts from samples (pure): what one contract used in one hour.

A sample stands for ``interval_s`` seconds of its replica running; the hour's seconds are
capped at 3600 (a replica cannot run longer than the hour). CU-hours and SU-hours are the
contract's reserved units times the share of the hour it ran (TFChain bills reserved units,
not load); network is the bytes reported, in GB (10^9 bytes). Rounded once, to 7 places.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from hero.domain.pricing import cu, su
from schemas import REGISTRY, Envelope, Resources, UsageRecorded, UtilizationSampled

__all__ = ["ContractTerms", "sample_envelope", "usage_fact", "usage_stream"]

_PLACES = Decimal("0.0000001")
_GB = Decimal(10) ** 9


def usage_stream(contract_id: str) -> str:
    return f"usage-{contract_id}"


def _round(value: Decimal) -> Decimal:
    return value.quantize(_PLACES, rounding=ROUND_HALF_EVEN)


class ContractTerms(Protocol):
    """What a usage fact needs of its contract: the event as recorded, or the market model's
    record of it (:class:`hero.model.Contract`)."""

    @property
    def contract_id(self) -> str: ...

    @property
    def resources(self) -> Resources: ...


def usage_fact(
    contract: ContractTerms, hour: datetime, seconds: int, network_bytes: int, samples: int
) -> UsageRecorded:
    ran = min(max(seconds, 0), 3600)
    share = Decimal(ran) / 3600
    return UsageRecorded(
        contract_id=contract.contract_id,
        hour=hour,
        cu_hours=_round(cu(contract.resources) * share),
        su_hours=_round(su(contract.resources) * share),
        nu_gb=_round(Decimal(network_bytes) / _GB),
        seconds=ran,
        samples=samples,
    )


def sample_envelope(
    sample: UtilizationSampled, sequence: int, *, actor: str, recorded_at: datetime
) -> Envelope:
    """A sample in the envelope every event travels in. It is not in the store, so it has no
    store position: its stream is ``telemetry-<replica>`` and its version and position are the
    replica's own sample ``sequence``, which is what a consumer's applied-versions check needs."""
    entry = REGISTRY.entry("UtilizationSampled")
    return Envelope(
        id=f"sample-{sample.sample_id}",
        type=entry.type,
        schema_version=entry.version,
        stream=f"telemetry-{sample.replica_id}",
        version=sequence,
        position=sequence,
        occurred_at=sample.sampled_at,
        recorded_at=recorded_at,
        actor=actor,
        payload=sample.model_dump(mode="json"),
    )

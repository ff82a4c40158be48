"""Farmer auto-accept policies and offtaker mandates (topic ``hero.policies``)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from schemas.bounds import non_negative, positive
from schemas.catalogue.common import Negotiator, Sla, Value
from schemas.exact import ExactModel, honest_decimals
from schemas.ids import FarmId, NodeId, OfftakerId, WorkloadId
from schemas.messages import Event, event
from schemas.money import Money, in_currency
from schemas.resources import Grid, Resources
from schemas.topics import Topic

__all__ = [
    "MAX_REPLICAS",
    "MAX_TERM_HOURS",
    "SCALING_METRICS",
    "FarmerPolicy",
    "FarmerPolicySet",
    "Mandate",
    "OfftakerMandateSet",
    "PolicyMode",
    "ScalingPolicy",
    "WorkloadSpec",
]


_USD = in_currency("USD")  # the validators below refuse other currencies

#: A workload's replicas at most; offer indexes within a negotiation stay below it too
#: (``schemas.ids`` counts on 4 digits).
MAX_REPLICAS = 10_000
#: Ten years: a longer reservation term is a typo, not a contract.
MAX_TERM_HOURS = 87_600


class PolicyMode(StrEnum):
    AUTO = "auto"
    APPROVE = "approve"
    OFF = "off"


def _priced_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    """What ``FarmerPolicy._priced`` checks, said in the schema: a markup or fixed prices,
    never both, and one of them unless the policy is off."""
    honest_decimals(schema, floats=True)
    unset = {"type": "null"}
    given = {"not": unset}
    fixed = [{"required": [name], "properties": {name: given}} for name in _PRICES]
    no_markup = {"anyOf": [{"not": {"required": ["markup"]}}, {"properties": {"markup": unset}}]}
    no_prices = {
        "allOf": [
            {"anyOf": [{"not": {"required": [name]}}, {"properties": {name: unset}}]}
            for name in _PRICES
        ]
    }
    off = {"required": ["mode"], "properties": {"mode": {"const": PolicyMode.OFF.value}}}
    markup = {"required": ["markup"], "properties": {"markup": given}}
    schema["allOf"] = [
        {"anyOf": [no_markup, no_prices]},
        {"anyOf": [off, markup, *fixed]},
    ]


_PRICES = ("price_cu_hour", "price_su_hour")


class FarmerPolicy(Value):
    """How a farmer agent answers RFQs for a farm (or one node of it)."""

    model_config = ConfigDict(json_schema_extra=_priced_schema)

    mode: PolicyMode = PolicyMode.AUTO
    price_cu_hour: Money | None = Field(
        default=None, description="USD per CU-hour", json_schema_extra=_USD
    )
    price_su_hour: Money | None = Field(
        default=None, description="USD per SU-hour", json_schema_extra=_USD
    )
    markup: Decimal | None = Field(default=None, gt=0, description="x reference price")
    floor_cu_hour: Money | None = Field(
        default=None, description="never below, USD/CU-hour", json_schema_extra=_USD
    )
    reserve_share: Decimal = Field(default=Decimal(0), ge=0, lt=1)
    max_term_hours: int | None = Field(default=None, gt=0, le=MAX_TERM_HOURS)
    allow_offtakers: list[OfftakerId] = Field(default_factory=list)
    deny_offtakers: list[OfftakerId] = Field(default_factory=list)
    min_standing: Decimal = Field(default=Decimal(0), ge=0, le=1)
    regions: list[str] = Field(default_factory=list, description="empty: every region")
    grids: list[Grid] = Field(default_factory=lambda: [Grid.GRID3, Grid.GRID4])
    sla: Sla = Field(default_factory=lambda: Sla(uptime_pct=Decimal("99")))
    approval_ttl_s: int = Field(default=3600, gt=0, le=30 * 24 * 3600)
    negotiator: Negotiator = Field(
        default=Negotiator.RULE, description="llm: a language model moves within the policy"
    )

    @field_validator("price_cu_hour")
    @classmethod
    def _positive_price(cls, value: Money | None, info: ValidationInfo) -> Money | None:
        return positive(value, info)

    @field_validator("price_su_hour", "floor_cu_hour")
    @classmethod
    def _non_negative_price(cls, value: Money | None, info: ValidationInfo) -> Money | None:
        return non_negative(value, info)

    @model_validator(mode="after")
    def _priced(self) -> FarmerPolicy:
        fixed = self.price_cu_hour is not None or self.price_su_hour is not None
        if fixed and self.markup is not None:
            raise ValueError("give either fixed prices or a markup on the reference, not both")
        if self.mode != PolicyMode.OFF and not fixed and self.markup is None:
            raise ValueError("an active policy needs fixed prices or a markup")
        for name in ("price_cu_hour", "price_su_hour", "floor_cu_hour"):
            price = getattr(self, name)
            if price is not None and price.currency != "USD":
                raise ValueError(f"{name} must be in USD")
        overlap = set(self.allow_offtakers) & set(self.deny_offtakers)
        if overlap:
            raise ValueError(f"offtakers both allowed and denied: {sorted(overlap)}")
        return self


#: What a replica reports (``UtilizationSampled``) that an autoscaler can target: shares of
#: the reserved cpu, memory and disk in use, and requests per second.
SCALING_METRICS = ("cpu", "memory", "disk", "requests")


class ScalingPolicy(ExactModel):
    """Kubernetes HPA's knobs, with its defaults. ``target`` is the wanted mean of ``metric``
    per replica (``hero.domain.autoscaling`` applies them).

    ``full_use`` is the metric's value for a replica using all it reserved (1 for ``cpu``,
    a share of the reserved cores); a replica without a reading counts as
    ``max(full_use, target)`` on a scale-down. Unset, it counts as the target, as HPA does for
    metrics that are not a utilization.
    """

    metric: str = Field(
        min_length=1, max_length=100, json_schema_extra={"enum": list(SCALING_METRICS)}
    )
    target: Decimal = Field(gt=0)
    tolerance: Decimal = Field(default=Decimal("0.1"), ge=0, lt=1)
    min_replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    max_replicas: int = Field(ge=1, le=MAX_REPLICAS)
    scale_down_stabilization_s: int = Field(default=300, ge=0)
    scale_up_percent: int = Field(default=100, ge=0, le=10_000)
    scale_up_pods: int = Field(default=4, ge=0, le=MAX_REPLICAS)
    scale_up_period_s: int = Field(default=15, gt=0)
    full_use: Decimal | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> ScalingPolicy:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) above max_replicas ({self.max_replicas})"
            )
        if self.scale_up_percent == 0 and self.scale_up_pods == 0:
            raise ValueError("scale_up_percent and scale_up_pods cannot both be 0")
        return self


class WorkloadSpec(Value):
    """``replicas`` is the count to run; with ``autoscale`` it is the count to start with and
    the autoscaler's decisions set it from then on."""

    workload_id: WorkloadId
    resources: Resources = Field(description="per replica")
    replicas: int = Field(ge=0, le=MAX_REPLICAS)
    regions: list[str] = Field(default_factory=list)
    grids: list[Grid] = Field(default_factory=lambda: [Grid.GRID3, Grid.GRID4])
    min_uptime_pct: Decimal = Field(default=Decimal("95"), ge=0, le=100)
    autoscale: ScalingPolicy | None = None

    @model_validator(mode="after")
    def _scalable(self) -> WorkloadSpec:
        policy = self.autoscale
        if policy is None:
            return self
        if policy.metric not in SCALING_METRICS:
            raise ValueError(
                f"autoscale.metric {policy.metric!r} is not one of {', '.join(SCALING_METRICS)}"
            )
        if not policy.min_replicas <= self.replicas <= policy.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) outside autoscale's "
                f"[{policy.min_replicas}, {policy.max_replicas}]"
            )
        return self


class Mandate(Value):
    """What an offtaker agent may do on the offtaker's behalf."""

    workloads: list[WorkloadSpec] = Field(min_length=1)
    budget_month: Money = Field(json_schema_extra=_USD)
    max_price_cu_hour: Money = Field(json_schema_extra=_USD)
    prefer_grid: Grid | None = None
    certified_only: bool = False
    spread_across_farms: bool = True
    term_hours: int = Field(default=720, gt=0, le=MAX_TERM_HOURS)
    offer_window_s: Decimal = Field(default=Decimal(2), gt=0, le=3600)
    offers_per_replica: int = Field(default=3, ge=1, le=50)
    counter_discount: Decimal = Field(
        default=Decimal(0), ge=0, lt=1, description="counter once at this share below the ask"
    )
    max_share_per_farm: Decimal | None = Field(
        default=None,
        gt=0,
        le=1,
        description="at most this share of a workload's replicas on one farm; unset: no cap",
    )
    negotiator: Negotiator = Field(
        default=Negotiator.RULE, description="llm: a language model moves within the mandate"
    )

    @field_validator("budget_month", "max_price_cu_hour")
    @classmethod
    def _positive(cls, value: Money, info: ValidationInfo) -> Money:
        # Nothing can be bought with a budget or a price ceiling at or below zero: its agent
        # would ask the market again and again in vain.
        return positive(value, info)

    @model_validator(mode="after")
    def _usd(self) -> Mandate:
        for name in ("budget_month", "max_price_cu_hour"):
            if getattr(self, name).currency != "USD":
                raise ValueError(f"{name} must be in USD")
        ids = [w.workload_id for w in self.workloads]
        if len(ids) != len(set(ids)):
            raise ValueError("workload ids must be unique within a mandate")
        return self


@event(Topic.POLICIES)
class FarmerPolicySet(Event):
    farm_id: FarmId
    node_id: NodeId | None = None
    policy: FarmerPolicy
    source_text: str | None = Field(default=None, description="natural-language origin")


@event(Topic.POLICIES)
class OfftakerMandateSet(Event):
    offtaker_id: OfftakerId
    mandate: Mandate
    source_text: str | None = None

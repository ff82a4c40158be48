"""Farms, nodes and their capacity; negotiations from RFQ to contract (``hero.reservations``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, Field

from schemas.catalogue.common import DeclineReason, Sla, StrategyDecision
from schemas.ids import (
    NAME_PATTERN,
    TEXT_PATTERN,
    ContractId,
    FarmId,
    Identifier,
    NegotiationId,
    NodeId,
    OfferId,
    OfftakerId,
    WorkloadId,
)
from schemas.messages import Event, event
from schemas.money import Money
from schemas.resources import Grid, Resources
from schemas.topics import Topic

__all__ = [
    "CapacityHeld",
    "CommandRejected",
    "ContractCancelled",
    "ContractCreated",
    "ContractResumed",
    "ContractSuspended",
    "CounterAccepted",
    "CounterOffered",
    "CounterRejected",
    "FarmRegistered",
    "HoldExpired",
    "HoldReleased",
    "NegotiationAwarded",
    "NegotiationExpired",
    "NegotiationFailed",
    "NodeRegistered",
    "OfferAccepted",
    "OfferApproved",
    "OfferDeclined",
    "OfferMade",
    "OfferWithdrawn",
    "RfqIssued",
    "SlaOutcomeRecorded",
]

HoldId = Identifier


@event(Topic.RESERVATIONS)
class FarmRegistered(Event):
    farm_id: FarmId
    name: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    grid: Grid
    country: str = Field(min_length=2, max_length=64, pattern=TEXT_PATTERN)
    region: str = Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)
    certified: bool = False


@event(Topic.RESERVATIONS)
class NodeRegistered(Event):
    node_id: NodeId
    farm_id: FarmId
    grid: Grid
    country: str = Field(min_length=2, max_length=64, pattern=TEXT_PATTERN)
    region: str = Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)
    total: Resources
    certified: bool = False
    uptime_pct: Decimal = Field(default=Decimal("99"), ge=0, le=100)


@event(Topic.RESERVATIONS)
class RfqIssued(Event):
    negotiation_id: NegotiationId
    offtaker_id: OfftakerId
    workload_id: WorkloadId
    resources: Resources = Field(description="per replica")
    replicas: int = Field(ge=1)
    regions: list[str] = Field(default_factory=list)
    grids: list[Grid]
    min_uptime_pct: Decimal = Field(ge=0, le=100)
    max_price_cu_hour: Money
    term_hours: int = Field(gt=0)
    deadline: AwareDatetime
    invited_farms: list[FarmId] = Field(
        default_factory=list, description="farms asked to answer; empty: every farm"
    )
    certified_only: bool = False


@event(Topic.RESERVATIONS)
class OfferMade(Event):
    """An offer for one replica, backed by a capacity hold on the node until ``expires_at``."""

    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId
    node_id: NodeId
    hold_id: HoldId
    grid: Grid
    region: str
    certified: bool = False
    uptime_pct: Decimal = Field(ge=0, le=100)
    resources: Resources
    price_hour: Money = Field(description="price of the offered resources for one hour")
    term_hours: int = Field(gt=0)
    sla: Sla
    firm: bool = Field(description="firm: accept binds; otherwise awaits the farmer's approval")
    expires_at: AwareDatetime
    decision: StrategyDecision | None = None


@event(Topic.RESERVATIONS)
class OfferApproved(Event):
    """The farmer approved an offer that awaited approval: it is firm from here on."""

    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId


@event(Topic.RESERVATIONS)
class OfferWithdrawn(Event):
    """The farmer rejected an offer awaiting approval, or its approval expired."""

    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId
    reason: str


@event(Topic.RESERVATIONS)
class OfferDeclined(Event):
    negotiation_id: NegotiationId
    farm_id: FarmId
    node_id: NodeId | None = None
    reasons: list[DeclineReason] = Field(min_length=1)
    detail: str = ""
    decision: StrategyDecision | None = None


@event(Topic.RESERVATIONS)
class CounterOffered(Event):
    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId
    price_hour: Money
    decision: StrategyDecision | None = None


@event(Topic.RESERVATIONS)
class CounterAccepted(Event):
    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId
    price_hour: Money
    decision: StrategyDecision | None = None


@event(Topic.RESERVATIONS)
class CounterRejected(Event):
    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId
    reasons: list[DeclineReason] = Field(min_length=1)
    decision: StrategyDecision | None = None


@event(Topic.RESERVATIONS)
class CapacityHeld(Event):
    node_id: NodeId
    hold_id: HoldId
    negotiation_id: NegotiationId
    resources: Resources
    expires_at: AwareDatetime


@event(Topic.RESERVATIONS)
class HoldReleased(Event):
    node_id: NodeId
    hold_id: HoldId
    reason: str


@event(Topic.RESERVATIONS)
class HoldExpired(Event):
    node_id: NodeId
    hold_id: HoldId


@event(Topic.RESERVATIONS)
class OfferAccepted(Event):
    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId
    contract_id: ContractId
    price_hour: Money
    decision: StrategyDecision | None = None


@event(Topic.RESERVATIONS)
class NegotiationAwarded(Event):
    negotiation_id: NegotiationId
    offtaker_id: OfftakerId
    contract_ids: list[ContractId] = Field(min_length=1)
    released_offers: list[OfferId] = Field(default_factory=list)
    decisions: list[StrategyDecision] = Field(default_factory=list)


@event(Topic.RESERVATIONS)
class NegotiationFailed(Event):
    negotiation_id: NegotiationId
    offtaker_id: OfftakerId
    reason: str
    released_offers: list[OfferId] = Field(default_factory=list)
    decisions: list[StrategyDecision] = Field(default_factory=list)


@event(Topic.RESERVATIONS)
class NegotiationExpired(Event):
    negotiation_id: NegotiationId
    offtaker_id: OfftakerId
    released_offers: list[OfferId] = Field(default_factory=list)
    decisions: list[StrategyDecision] = Field(default_factory=list)


@event(Topic.RESERVATIONS)
class ContractCreated(Event):
    """Recorded on the node's stream: the hold becomes committed capacity."""

    contract_id: ContractId
    negotiation_id: NegotiationId
    offer_id: OfferId
    hold_id: HoldId
    offtaker_id: OfftakerId
    workload_id: WorkloadId
    farm_id: FarmId
    node_id: NodeId
    grid: Grid
    resources: Resources
    price_hour: Money
    term_hours: int = Field(gt=0)
    sla: Sla
    starts_at: AwareDatetime


@event(Topic.RESERVATIONS)
class ContractCancelled(Event):
    """Recorded on the node's stream: the contract's capacity is free again."""

    contract_id: ContractId
    node_id: NodeId
    reason: str


@event(Topic.RESERVATIONS)
class ContractSuspended(Event):
    """Out of funds: the contract is suspended and cancelled when the grace period ends."""

    contract_id: ContractId
    offtaker_id: OfftakerId
    node_id: NodeId
    unpaid_hour: AwareDatetime
    grace_ends_at: AwareDatetime


@event(Topic.RESERVATIONS)
class ContractResumed(Event):
    """Funds arrived during the grace period: the unpaid hour is billed and the contract runs."""

    contract_id: ContractId
    offtaker_id: OfftakerId
    node_id: NodeId


# Written by the market when a contract ends; its penalty is money the ledger then pays out,
# so a hand-made one could move funds from a farmer: raw appends are refused like money.
@event(Topic.RESERVATIONS, writer="market")
class SlaOutcomeRecorded(Event):
    """A contract ended after downtime on its node: was the farmer's SLA met, and the penalty.

    Uptime is judged over the contract's life (``started_at`` to ``ended_at``, at most the
    720-hour month TFChain bills): ``uptime_pct = (period - down) / period * 100``. Below the
    SLA's uptime the offtaker is owed ``price_hour * hours_down * penalty_pct / 100``.
    """

    contract_id: ContractId
    offtaker_id: OfftakerId
    farm_id: FarmId
    node_id: NodeId
    sla: Sla
    started_at: AwareDatetime
    ended_at: AwareDatetime
    period_hours: Decimal = Field(ge=0)
    hours_down: Decimal = Field(ge=0)
    uptime_pct: Decimal = Field(ge=0, le=100)
    met: bool
    penalty: Money


@event(Topic.RESERVATIONS)
class CommandRejected(Event):
    """A command that came over ``hero.commands`` was refused by the market's rules: nothing
    it asked for was written. Its answer on the log, as the events it caused are otherwise;
    not part of the market model's state (the model ignores it)."""

    command_id: Identifier
    command_type: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    reason: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    detail: str = Field(max_length=2000, pattern=TEXT_PATTERN)

"""Commands: what agents, the CLI and the gateway ask aggregates to do (``hero.commands``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, Field, ValidationInfo, field_validator, model_validator

from schemas.bounds import positive
from schemas.catalogue.common import DeclineReason, NodeStatus, Sla, StrategyDecision
from schemas.catalogue.policies import MAX_REPLICAS, MAX_TERM_HOURS, FarmerPolicy, Mandate
from schemas.catalogue.utilization import ScaleDecided
from schemas.ids import (
    TEXT_PATTERN,
    ContractId,
    FarmId,
    NegotiationId,
    NodeId,
    OfferId,
    OfftakerId,
    WorkloadId,
)
from schemas.messages import Command, command
from schemas.money import Money
from schemas.resources import Grid, Resources

__all__ = [
    "AcceptOffer",
    "AnswerCounter",
    "ApproveOffer",
    "CancelContract",
    "ChangeNodeStatus",
    "CloseNegotiation",
    "CounterOffer",
    "DeclineRfq",
    "ExpireHolds",
    "IssueRfq",
    "MakeOffer",
    "PayOutFarmer",
    "ReceiveFiatPayment",
    "RecordScaleDecision",
    "RefundOfftaker",
    "RegisterFarm",
    "RegisterNode",
    "RejectOffer",
    "RunBilling",
    "SetFarmerPolicy",
    "SetOfftakerMandate",
]


@command()
class SetFarmerPolicy(Command):
    farm_id: FarmId
    node_id: NodeId | None = None
    policy: FarmerPolicy
    source_text: str | None = None


@command()
class SetOfftakerMandate(Command):
    offtaker_id: OfftakerId
    mandate: Mandate
    source_text: str | None = None


@command()
class RegisterFarm(Command):
    farm_id: FarmId
    name: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    grid: Grid
    country: str = Field(min_length=2, max_length=64, pattern=TEXT_PATTERN)
    region: str = Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)
    certified: bool = False


@command()
class RegisterNode(Command):
    node_id: NodeId
    farm_id: FarmId
    grid: Grid
    country: str = Field(min_length=2, max_length=64, pattern=TEXT_PATTERN)
    region: str = Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)
    total: Resources
    certified: bool = False
    uptime_pct: Decimal = Field(default=Decimal("99"), ge=0, le=100)


@command()
class ChangeNodeStatus(Command):
    node_id: NodeId
    status: NodeStatus
    reason: str = ""


@command()
class IssueRfq(Command):
    negotiation_id: NegotiationId
    offtaker_id: OfftakerId
    workload_id: WorkloadId
    resources: Resources
    replicas: int = Field(ge=1, le=MAX_REPLICAS)
    regions: list[str] = Field(default_factory=list)
    grids: list[Grid]
    min_uptime_pct: Decimal = Field(default=Decimal(0), ge=0, le=100)
    max_price_cu_hour: Money
    term_hours: int = Field(gt=0, le=MAX_TERM_HOURS)
    deadline: AwareDatetime
    invited_farms: list[FarmId] = Field(default_factory=list)
    certified_only: bool = False

    @field_validator("max_price_cu_hour")
    @classmethod
    def _positive(cls, value: Money, info: ValidationInfo) -> Money:
        return positive(value, info)


@command()
class MakeOffer(Command):
    """Hold capacity on ``node_id`` and offer it; a hold that cannot be had becomes a decline."""

    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId
    node_id: NodeId
    price_hour: Money
    term_hours: int = Field(gt=0, le=MAX_TERM_HOURS)
    sla: Sla
    firm: bool = True
    expires_at: AwareDatetime
    decision: StrategyDecision | None = Field(
        default=None, description="which strategy decided, and why"
    )

    @field_validator("price_hour")
    @classmethod
    def _positive(cls, value: Money, info: ValidationInfo) -> Money:
        return positive(value, info)


@command()
class DeclineRfq(Command):
    negotiation_id: NegotiationId
    farm_id: FarmId
    node_id: NodeId | None = None
    reasons: list[DeclineReason] = Field(min_length=1)
    detail: str = ""
    decision: StrategyDecision | None = Field(
        default=None, description="which strategy decided, and why"
    )


@command()
class ApproveOffer(Command):
    negotiation_id: NegotiationId
    offer_id: OfferId


@command()
class RejectOffer(Command):
    negotiation_id: NegotiationId
    offer_id: OfferId
    reason: str = "rejected by the farmer"


@command()
class CounterOffer(Command):
    negotiation_id: NegotiationId
    offer_id: OfferId
    price_hour: Money
    decision: StrategyDecision | None = Field(
        default=None, description="which strategy decided, and why"
    )

    @field_validator("price_hour")
    @classmethod
    def _positive(cls, value: Money, info: ValidationInfo) -> Money:
        return positive(value, info)


@command()
class AnswerCounter(Command):
    negotiation_id: NegotiationId
    offer_id: OfferId
    accept: bool
    reasons: list[DeclineReason] = Field(default_factory=list)
    decision: StrategyDecision | None = Field(
        default=None, description="which strategy decided, and why"
    )


@command()
class AcceptOffer(Command):
    """Turn the offer's hold into a contract, at the agreed price. The contract's id is
    derived from the negotiation and the offer, so it is unique market-wide."""

    negotiation_id: NegotiationId
    offer_id: OfferId
    scores: dict[str, Decimal] = Field(
        default_factory=dict,
        description="the placement's weighted criteria, recorded in its ReplicaPlaced",
    )
    replaces_contract_id: ContractId | None = Field(
        default=None, description="the contract on a failed node this one takes over"
    )
    replaces_node_id: NodeId | None = Field(default=None, description="that contract's node")
    decision: StrategyDecision | None = Field(
        default=None, description="which strategy decided, and why"
    )

    @model_validator(mode="after")
    def _replaces_both(self) -> AcceptOffer:
        if (self.replaces_contract_id is None) != (self.replaces_node_id is None):
            raise ValueError("give replaces_contract_id and replaces_node_id together")
        return self


@command()
class RecordScaleDecision(Command):
    """Record an autoscaler's decision; the offtaker agent follows its ``desired_replicas``."""

    decision: ScaleDecided


@command()
class CloseNegotiation(Command):
    """End a negotiation: the holds of offers not accepted are released."""

    negotiation_id: NegotiationId
    outcome: Literal["awarded", "failed", "expired"]
    reason: str = ""
    decisions: list[StrategyDecision] = Field(
        default_factory=list, description="moves that led to no other event, and why"
    )


@command()
class ExpireHolds(Command):
    """Sweep a node's holds whose deadline has passed."""

    node_id: NodeId


@command()
class CancelContract(Command):
    contract_id: ContractId
    node_id: NodeId
    reason: str


@command()
class ReceiveFiatPayment(Command):
    provider: str = Field(min_length=1, max_length=64)
    provider_event_id: str = Field(min_length=1, max_length=200)
    offtaker_id: OfftakerId
    amount: Money

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: Money, info: ValidationInfo) -> Money:
        return positive(value, info)


@command()
class PayOutFarmer(Command):
    """Send a farmer's TFT out of the grid (to its Stellar address)."""

    farm_id: FarmId
    amount: Money

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: Money, info: ValidationInfo) -> Money:
        return positive(value, info)


@command()
class RefundOfftaker(Command):
    """Return TFT from an offtaker's account to the outside world."""

    offtaker_id: OfftakerId
    amount: Money
    reason: str = Field(min_length=1, max_length=200)

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: Money, info: ValidationInfo) -> Money:
        return positive(value, info)


@command()
class RunBilling(Command):
    """Bill every active contract for one hour (UTC, on the hour)."""

    hour: AwareDatetime

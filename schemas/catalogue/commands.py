"""Commands (``hero.commands``): what agents, the CLI and the gateway ask aggregates to do."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from schemas.catalogue.common import DeclineReason, NodeStatus
from schemas.catalogue.policies import FarmerPolicy, Mandate
from schemas.ids import ContractId, FarmId, Identifier, NegotiationId, NodeId, OfferId, OfftakerId
from schemas.messages import Command, command
from schemas.money import Money
from schemas.resources import Grid, Resources

__all__ = [
    "AcceptOffer",
    "ApproveOffer",
    "CancelContract",
    "ChangeNodeStatus",
    "CounterOffer",
    "DeclineRfq",
    "HoldCapacity",
    "IssueRfq",
    "MakeOffer",
    "ReceiveFiatPayment",
    "RegisterFarm",
    "RegisterNode",
    "RejectOffer",
    "ReleaseHold",
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
class ApproveOffer(Command):
    farm_id: FarmId
    offer_id: OfferId


@command()
class RejectOffer(Command):
    farm_id: FarmId
    offer_id: OfferId
    reason: str = ""


@command()
class RegisterFarm(Command):
    farm_id: FarmId
    name: str = Field(min_length=1, max_length=200)
    grid: Grid
    country: str = Field(min_length=2, max_length=64)
    region: str = Field(min_length=1, max_length=64)
    certified: bool = False


@command()
class RegisterNode(Command):
    node_id: NodeId
    farm_id: FarmId
    grid: Grid
    country: str = Field(min_length=2, max_length=64)
    region: str = Field(min_length=1, max_length=64)
    total: Resources
    certified: bool = False


@command()
class ChangeNodeStatus(Command):
    node_id: NodeId
    status: NodeStatus
    reason: str = ""


@command()
class IssueRfq(Command):
    negotiation_id: NegotiationId
    offtaker_id: OfftakerId
    workload_id: Identifier
    resources: Resources
    replicas: int = Field(ge=1)
    regions: list[str] = Field(default_factory=list)
    grids: list[Grid]
    max_price_cu_hour: Money
    term_hours: int = Field(gt=0)
    deadline: AwareDatetime


@command()
class MakeOffer(Command):
    negotiation_id: NegotiationId
    offer_id: OfferId
    farm_id: FarmId
    node_id: NodeId
    price_hour: Money
    term_hours: int = Field(gt=0)
    firm: bool = True


@command()
class DeclineRfq(Command):
    negotiation_id: NegotiationId
    farm_id: FarmId
    reasons: list[DeclineReason] = Field(min_length=1)
    detail: str = ""


@command()
class CounterOffer(Command):
    negotiation_id: NegotiationId
    offer_id: OfferId
    price_hour: Money


@command()
class HoldCapacity(Command):
    node_id: NodeId
    hold_id: Identifier
    negotiation_id: NegotiationId
    resources: Resources
    expires_at: AwareDatetime


@command()
class ReleaseHold(Command):
    node_id: NodeId
    hold_id: Identifier
    reason: str


@command()
class AcceptOffer(Command):
    negotiation_id: NegotiationId
    offer_id: OfferId


@command()
class CancelContract(Command):
    contract_id: ContractId
    reason: str


@command()
class ReceiveFiatPayment(Command):
    provider: str = Field(min_length=1, max_length=64)
    provider_event_id: str = Field(min_length=1, max_length=200)
    offtaker_id: OfftakerId
    amount: Money

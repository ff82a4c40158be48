"""A host's view of the market: the market model (:mod:`hero.model`) and the agents' indexes.

One view per agent host, shared by all the agents it hosts (agents stay small). The events are
folded by the model; this view adds what only the agents need: farms ranked by price (an index
rebuilt when farms, nodes or policies change) and the routing of each event to the agents it
concerns. Which agents an event brings into being is the roster's (:mod:`agents.roster`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from hero.domain.pricing import ask_price, price_per_cu_hour
from hero.model import Contract, Farm, MarketState, Negotiation, Node, apply
from schemas import (
    CapacityHeld,
    ContractCancelled,
    ContractCreated,
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    Envelope,
    Event,
    FarmerPolicySet,
    FarmRegistered,
    HoldExpired,
    HoldReleased,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    NodeRegistered,
    NodeStatusChanged,
    OfferAccepted,
    OfferApproved,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    OfftakerMandateSet,
    ReplicaMigrated,
    ReplicaPlaced,
    Resources,
    RfqIssued,
    ScaleDecided,
    SlaOutcomeRecorded,
    UtilizationSampled,
)
from schemas.catalogue.policies import PolicyMode

__all__ = [
    "FarmView",
    "MarketView",
    "NegotiationView",
    "NodeView",
    "autoscaler_id",
    "farmer_id",
    "offtaker_id",
]

# The agents' names for the model's records (the view holds no copies of its own).
FarmView = Farm
NodeView = Node
NegotiationView = Negotiation


def farmer_id(farm_id: str) -> str:
    return f"farmer:{farm_id}"


def offtaker_id(offtaker: str) -> str:
    return f"offtaker:{offtaker}"


def autoscaler_id(offtaker: str) -> str:
    return f"autoscaler:{offtaker}"


def _owner(offtaker: str) -> set[str]:
    """An offtaker's agents: the one that negotiates and the one that scales."""
    return {offtaker_id(offtaker), autoscaler_id(offtaker)}


_NODE_EVENTS = (
    CapacityHeld,
    HoldReleased,
    HoldExpired,
    ContractCreated,
    ContractCancelled,
    NodeStatusChanged,
)
_OFFER_EVENTS = (
    OfferMade,
    OfferDeclined,
    OfferApproved,
    OfferWithdrawn,
    CounterOffered,
    CounterAccepted,
    CounterRejected,
    OfferAccepted,
)
_CLOSE_EVENTS = (NegotiationAwarded, NegotiationFailed, NegotiationExpired)


class MarketView:
    def __init__(self, state: MarketState | None = None) -> None:
        self.state = state if state is not None else MarketState()
        self.standing: dict[str, Decimal] = {}
        # Farms in price order per resource shape, rebuilt when farms, nodes or policies change.
        self._by_price: dict[Resources, list[tuple[tuple[Decimal, Decimal], Farm]]] = {}
        # Each offtaker's live contracts (the model's records), oldest first: its agents read
        # them on every decision, and scanning every contract ever made would not scale.
        self._live: dict[str, dict[str, Contract]] = {}
        for contract_id in self.state.contracts:
            self._index_contract(contract_id)

    @property
    def farms(self) -> dict[str, Farm]:
        return self.state.farms

    @property
    def nodes(self) -> dict[str, Node]:
        return self.state.nodes

    @property
    def negotiations(self) -> dict[str, Negotiation]:
        return self.state.negotiations

    @property
    def contracts(self) -> dict[str, Contract]:
        """Every contract ever made (an ended one still names its owner for routing)."""
        return self.state.contracts

    @property
    def samples(self) -> dict[str, UtilizationSampled]:
        """The newest sample of each live contract: what an autoscaler reads."""
        return self.state.samples

    def standing_of(self, offtaker: str) -> Decimal:
        """An offtaker's standing in [0, 1]; 1 until the ledger issue gives it history."""
        return self.standing.get(offtaker, Decimal(1))

    def farm_nodes(self, farm_id: str) -> list[NodeView]:
        return self.state.farm_nodes(farm_id)

    def live_contracts_of(self, offtaker: str) -> Mapping[str, Contract]:
        """The offtaker's live contracts (created, not cancelled) by id, oldest first."""
        return self._live.get(offtaker, {})

    # -- indexes ----------------------------------------------------------------------------

    def farms_by_price(self, resources: Resources) -> list[FarmView]:
        """Farms with an active policy, by their asking price per CU-hour for ``resources``,
        then by their best node's uptime."""
        return [farm for _, farm in self.farms_ranked(resources)]

    def farms_ranked(self, resources: Resources) -> list[tuple[tuple[Decimal, Decimal], FarmView]]:
        """:meth:`farms_by_price` with each farm's rank (price per CU-hour, -uptime): farms
        with equal ranks are equally good to an offtaker."""
        ranked = self._by_price.get(resources)
        if ranked is None:
            keyed = []
            for farm in self.farms.values():
                if farm.policy is None or farm.policy.mode == PolicyMode.OFF:
                    continue
                ask = ask_price(farm.policy, resources)
                uptime = max(
                    (n.uptime_pct for n in self.farm_nodes(farm.farm_id)), default=Decimal(0)
                )
                keyed.append((price_per_cu_hour(ask, resources).amount, -uptime, farm.farm_id))
            ranked = self._by_price[resources] = [
                ((price, uptime), self.farms[f]) for price, uptime, f in sorted(keyed)
            ]
        return ranked

    def apply(self, envelope: Envelope, event: Event) -> None:
        if isinstance(event, (FarmRegistered, FarmerPolicySet, NodeRegistered)):
            self._by_price.clear()
        apply(self.state, envelope, event)
        if isinstance(event, (ContractCreated, ContractCancelled)):
            self._index_contract(event.contract_id)

    def _index_contract(self, contract_id: str) -> None:
        contract = self.state.contracts.get(contract_id)
        if contract is None:
            return
        live = self._live.setdefault(contract.offtaker_id, {})
        if contract.live:
            live[contract_id] = contract
        else:
            live.pop(contract_id, None)

    # -- routing ----------------------------------------------------------------------------

    def route(self, envelope: Envelope, event: Event) -> set[str]:
        """The agents this event concerns (call after ``apply``)."""
        match event:
            case FarmRegistered() | FarmerPolicySet():
                return {farmer_id(event.farm_id)}
            case NodeRegistered():
                return {farmer_id(event.farm_id)}
            case ContractCreated():
                return {farmer_id(event.farm_id), *_owner(event.offtaker_id)}
            case ContractCancelled():
                contract = self.contracts.get(event.contract_id)
                node = self.nodes.get(event.node_id)
                owners = _owner(contract.offtaker_id) if contract else set()
                return owners | ({farmer_id(node.farm_id)} if node else set())
            case NodeStatusChanged():
                node = self.nodes.get(event.node_id)
                if node is None:
                    return set()
                owners = {
                    agent
                    for c in node.contracts
                    if (contract := self.contracts.get(c)) is not None
                    for agent in _owner(contract.offtaker_id)
                }
                return {farmer_id(node.farm_id), *owners}
            case _ if isinstance(event, _NODE_EVENTS):
                node = self.nodes.get(getattr(event, "node_id", ""))
                return {farmer_id(node.farm_id)} if node else set()
            case OfftakerMandateSet() | ScaleDecided():
                return _owner(event.offtaker_id)
            case ReplicaPlaced() | ReplicaMigrated() | SlaOutcomeRecorded():
                return {offtaker_id(event.offtaker_id)}
            case UtilizationSampled():
                contract = self.contracts.get(event.contract_id)
                return {autoscaler_id(contract.offtaker_id)} if contract else set()
            case RfqIssued():
                invited = event.invited_farms or list(self.farms)
                return {offtaker_id(event.offtaker_id), *(farmer_id(f) for f in invited)}
            case _ if isinstance(event, _OFFER_EVENTS):
                nego = self.negotiations.get(getattr(event, "negotiation_id", ""))
                farm = farmer_id(getattr(event, "farm_id", ""))
                return {farm, offtaker_id(nego.offtaker_id)} if nego else {farm}
            case _ if isinstance(event, _CLOSE_EVENTS):
                nego = self.negotiations.get(getattr(event, "negotiation_id", ""))
                if nego is None:
                    return set()
                farms: Iterable[str] = nego.invited or nego.farms
                return {offtaker_id(nego.offtaker_id), *(farmer_id(f) for f in farms)}
        return set()
